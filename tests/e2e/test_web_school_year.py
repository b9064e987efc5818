"""The principal's part of the school's year on the web page, in headless Chromium (Debian's `chromium`, driven
through its `chromium-driver` by selenium), on a stack whose five services, ministry simulator and web gateway run
as separate processes on real RabbitMQ and MongoDB-wire.

The school is the one `test_school_year` follows (tests/e2e/school_year.py): enrolled from its own staff table,
a grade-6 class and a grade-10 class, one student's term-I Tin học missing. Its year comes to the signing by
`hocba` commands and its CSV files, up to the year's close. Then the homeroom teacher of 6A1 reviews and signs
the class on the web page (the incomplete record is not signed), the homeroom teacher of 10A1 does the same at
the command line, and the principal sees each class where it stands and what the review found, clicks
"Ký toàn trường" and follows the progress until every complete record is signed and sealed. Every signed record
is archived and delivered to the ministry; the school's page counts them, and the operator's page shows the
school's term end. A screenshot of each page is kept under tests/artifacts/web/ (ignored by git).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from hocba.stack import WEB
from tests.browser import PHONE, headless_chromium, screenshots_folder
from tests.e2e.school_year import (
    GRADE_6,
    GRADE_10,
    INCOMPLETE,
    SCHOOL,
    SCHOOL_NAME,
    WHERE,
    YEAR,
    Ran,
    command_line,
    listed_until,
    record_ids,
    write_files,
)
from tests.support import throwaway_stack

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "web"
#: A phone's screen (CSS pixels): the pages are made to be used on one.
#: The tallest screenshot kept (CSS pixels): a school of 30 classes is many screens long on a phone.
TALLEST = 3 * PHONE[1]
PRINCIPAL, HOMEROOM_6A1 = "ht-cvl", "gvcn-6a1"
#: The school's page, where its principal starts.
SCHOOL_PAGE = f"/schools/{SCHOOL}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    options = {"web": True, "extra_env": {"HOCBA_WEB_SCHOOL_YEAR": YEAR}}
    with throwaway_stack(tmp_path_factory.mktemp("stack"), "webyear", **options) as running:
        yield running


@pytest.fixture(scope="module")
def hocba(stack, tmp_path_factory) -> Callable[..., Ran]:
    """Run `hocba ARGS` as the school's staff do, in the folder of its CSV files."""
    return command_line(stack, write_files(tmp_path_factory.mktemp("school")))


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = screenshots_folder(ARTIFACTS)
    print(f"\nscreenshots of the web pages: {folder}")
    return folder


class OnTheWeb:
    """A person at the gateway's pages in the browser."""

    def __init__(self, driver: WebDriver, base_url: str, artifacts: Path) -> None:
        self.driver, self.base_url, self.artifacts = driver, base_url, artifacts
        self.shots: list[Path] = []

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def shot(self, name: str) -> None:
        """Keep a screenshot of the page as it is now: as tall as the page, up to a few screens."""
        self.driver.set_window_size(*PHONE)
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(PHONE[0], min(max(PHONE[1], int(height)), TALLEST))
        path = self.artifacts / f"{len(self.shots) + 1:02d}-{name}.png"
        assert self.driver.save_screenshot(str(path)), path
        self.shots.append(path)

    def text(self, selector: str = "body") -> str:
        return self.driver.find_element(By.CSS_SELECTOR, selector).text

    def texts(self, testids: tuple[str, ...]) -> dict[str, str]:
        return {testid: self.text(f"[data-testid={testid}]") for testid in testids}

    def rows(self, testid: str) -> list[list[str]]:
        """The cells of each row of a table's body."""
        return [
            [td.text for td in row.find_elements(By.CSS_SELECTOR, "td")]
            for row in self.driver.find_elements(By.CSS_SELECTOR, f"[data-testid={testid}] tbody tr")
        ]

    def sign_in(self, who: str, shot: str | None = None) -> None:
        """Sign in as `who` with the development picker of the enrolled staff."""
        self.driver.delete_all_cookies()
        self.open("/sign-in")
        Select(self.driver.find_element(By.ID, "who")).select_by_value(who)
        if shot:
            self.shot(shot)
        self.driver.find_element(By.CSS_SELECTOR, "form[action='/sign-in'] button[type=submit]").click()
        self.until_away_from("/sign-in")

    def until_away_from(self, path: str, timeout: float = 30) -> None:
        """Wait until the browser has left `path` (a form's answer may take a moment on a loaded machine)."""
        WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(
            lambda driver: not driver.current_url.split("?")[0].endswith(path)
        )

    def until_shown(self, testid: str, timeout: float = 30) -> str:
        """Wait until the page shows the element `testid` (the answer to a form posted back to the same page)."""
        WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(
            lambda driver: driver.find_elements(By.CSS_SELECTOR, f"[data-testid={testid}]")
        )
        return self.text(f"[data-testid={testid}]")

    def click(self, testid: str) -> None:
        self.driver.find_element(By.CSS_SELECTOR, f"[data-testid={testid}]").click()

    def until_finished(self, timeout: float = 300) -> str:
        """Wait on a batch's page until it is over (its script reloads the page then); the state it ended in."""

        def finished(driver: WebDriver) -> str | bool:
            state = driver.find_element(By.CSS_SELECTOR, "[data-testid=batch-state]").text
            return state if state in {"Hoàn tất", "Bị từ chối", "Chưa gửi được"} else False

        waiting = WebDriverWait(
            self.driver, timeout, poll_frequency=0.5, ignored_exceptions=(StaleElementReferenceException,)
        )
        return waiting.until(finished)

    def reloaded_until(self, check: Callable[[], bool], what: str, timeout: float = 60) -> None:
        """Load the page again every second until `check()` holds; fail saying `what` after `timeout` s."""

        def holds(driver: WebDriver) -> bool:
            if check():
                return True
            driver.refresh()
            return False

        WebDriverWait(self.driver, timeout, poll_frequency=1).until(holds, message=what)


@pytest.fixture(scope="module")
def web(stack, browser, artifacts) -> OnTheWeb:
    return OnTheWeb(browser, stack.child(WEB).base_url, artifacts)


@dataclass
class Seen:
    """What the steps learn as they go."""

    #: The incomplete record's id, as `hocba records list` shows it to the school.
    incomplete: str = ""
    #: The principal's one-click batch.
    batch: str = ""


@pytest.fixture(scope="module")
def seen() -> Seen:
    return Seen()


def class_lines(web: OnTheWeb) -> dict[str, list[str]]:
    """The school's classes as its page shows them: each class's cells after its name."""
    return {cells[0]: cells[1:] for cells in web.rows("classes")}


TOTALS = ("terms-closed", "sealed", "archived", "delivered", "review")
REVIEWED = "Mọi lớp đã rà soát; 1 hồ sơ chưa đầy đủ (không được ký)"


# --- the year, by commands, up to its close --------------------------------------------------------


def test_the_school_year_comes_to_the_signing_by_commands_and_csv_files(hocba, seen):
    steps = [
        ("pki", "enrol", "staff.csv"),
        ("identity", "import", "roster.csv", "--school-year", YEAR),
        ("grades", "import", "gradebook-6A1.csv"),
        ("grades", "import", "gradebook-10A1.csv"),
        ("grades", "conduct", "import", "hanh-kiem-6A1.csv"),
        ("grades", "conduct", "import", "hanh-kiem-10A1.csv"),
        ("term", "close", *WHERE, "--term", "1"),
        ("term", "close", *WHERE, "--term", "2"),
    ]
    for step in steps:
        done = hocba(*step)
        assert done.exit_code == 0, done
    closed = hocba("year", "close", *WHERE)
    assert closed.exit_code == 0, closed
    assert f"{YEAR} is closed in school {SCHOOL}: 6 records assembled (6 new) of 6 students" in closed.said

    incomplete = hocba("records", "list", *WHERE, "--status", "incomplete")
    assert incomplete.exit_code == 0, incomplete
    listed = record_ids(incomplete.stdout)
    assert list(listed) == [INCOMPLETE.name], incomplete
    seen.incomplete = listed[INCOMPLETE.name]


# --- the homeroom teachers ---------------------------------------------------------------------------


def test_the_homeroom_teacher_of_6A1_reviews_and_signs_the_class_on_the_web_page_but_not_the_incomplete_record(
    web, seen
):
    web.sign_in(HOMEROOM_6A1)
    assert web.driver.current_url.endswith(f"/schools/{SCHOOL}/classes/6A1"), web.driver.current_url
    assert web.text("[data-testid=review-status]").startswith("Chưa rà soát · 3 hồ sơ")
    assert web.texts(("records", "incomplete-records")) == {"records": "3 hồ sơ", "incomplete-records": "1 hồ sơ"}
    assert web.text("[data-testid=incomplete]") == f"{seen.incomplete} thiếu Tin học HK I"
    web.shot("class-6A1-review")

    web.click("confirm-review")
    notice = web.until_shown("notice")
    assert notice == (
        "Đã xác nhận rà soát lớp 6A1: 3 hồ sơ. 1 hồ sơ chưa đầy đủ sẽ không được ký cho đến khi bổ sung."
    ), notice
    assert web.text("[data-testid=review-status]").startswith("Đã rà soát · 3 hồ sơ")

    web.click("sign-class")
    web.until_away_from(f"/schools/{SCHOOL}/classes/6A1")
    assert web.until_finished() == "Hoàn tất", web.text()
    outcome = web.text("[data-testid=batch-outcome]")
    web.shot("class-6A1-signed")
    assert outcome.startswith("Đã ký 2 / 2 hồ sơ của lớp 6A1. 1 hồ sơ chưa đầy đủ không được ký"), outcome


def test_the_homeroom_teacher_of_10A1_confirms_and_signs_the_class_at_the_command_line(hocba):
    confirmed = hocba("review", "confirm", *WHERE, "--class", "10A1")
    assert confirmed.exit_code == 0, confirmed
    assert "confirmed the review of class 10A1: 3 record(s)." in confirmed.said
    signed = hocba("sign", *WHERE, "--as", "homeroom_teacher", "--class", "10A1")
    assert signed.exit_code == 0, signed
    assert "signed 3 of 3 records" in signed.said


# --- the principal -------------------------------------------------------------------------------------


def test_the_principal_sees_each_class_where_it_stands_and_what_the_review_found(web, seen):
    web.sign_in(PRINCIPAL, shot="sign-in")
    assert web.driver.current_url.endswith(SCHOOL_PAGE), web.driver.current_url
    page = web.text()
    totals, lines = web.texts(TOTALS), class_lines(web)
    findings = web.text("[data-testid=findings]")
    web.shot("school-before-the-click")

    assert SCHOOL_NAME in page and "Ký toàn trường" in page
    assert totals == {
        "terms-closed": "HK I, HK II",
        "sealed": "0 hồ sơ",
        "archived": "0 hồ sơ",
        "delivered": "0 hồ sơ",
        "review": REVIEWED,
    }
    # homeroom teacher, terms closed, records, incomplete, reviewed, signed by the homeroom teacher, signed and
    # sealed, archived, delivered
    assert lines == {
        "6A1": ["Phạm Thị Hoa", "HK I, HK II", "3 hồ sơ", "1 hồ sơ", "Đã rà soát", "2 hồ sơ", *["0 hồ sơ"] * 3],
        "10A1": ["Võ Minh Tuấn", "HK I, HK II", "3 hồ sơ", "0 hồ sơ", "Đã rà soát", "3 hồ sơ", *["0 hồ sơ"] * 3],
    }
    # The class and what its incomplete record lacks, by the record's id: the page names no student.
    assert findings.startswith("Lớp 6A1 (3 hồ sơ): Đã rà soát; 1 hồ sơ chưa đầy đủ:"), findings
    assert f"{seen.incomplete} thiếu Tin học HK I" in findings
    assert not [s.name for s in (*GRADE_6, *GRADE_10) if s.name in page]
    assert not [s.personal_id for s in (*GRADE_6, *GRADE_10) if s.personal_id in page]


def test_the_principals_one_click_signs_and_seals_every_complete_record_and_leaves_the_incomplete_one(web, seen):
    web.click("sign-school")
    web.until_away_from(SCHOOL_PAGE)
    found = re.search(r"/batches/([0-9a-f]+)$", web.driver.current_url)
    assert found, web.driver.current_url
    seen.batch = found.group(1)
    progress = web.text("[data-testid=batch-state]")
    web.shot("progress")
    assert progress in {"Đã gửi yêu cầu", "Đang ký", "Hoàn tất"}

    assert web.until_finished() == "Hoàn tất", web.text()
    outcome = web.text("[data-testid=batch-outcome]")
    web.shot("signed-and-sealed")
    assert outcome.startswith(
        "Đã ký và đóng dấu 5 / 5 hồ sơ; 5 hồ sơ đủ chữ ký được chuyển lưu trữ và gửi Bộ GD&ĐT."
    ), outcome
    assert "1 hồ sơ chưa đầy đủ không được ký: bổ sung điểm còn thiếu (xem phần rà soát của lớp)" in outcome


def test_every_signed_record_is_archived_and_delivered_and_the_pages_count_them(hocba, web, seen):
    delivered = "6 record(s): 1 incomplete (entries missing), 5 delivered to the ministry"
    listed_until(hocba, delivered, "not every signed record reached the ministry", *WHERE)

    web.open(SCHOOL_PAGE)
    totals, lines = web.texts(TOTALS), class_lines(web)
    findings = web.text("[data-testid=findings]")
    listing_problem = web.driver.find_elements(By.CSS_SELECTOR, "[data-testid=records-problem]")
    web.shot("school-after")
    assert not listing_problem, "grades answered the page's listing"
    assert totals == {
        "terms-closed": "HK I, HK II",
        "sealed": "5 hồ sơ",
        "archived": "5 hồ sơ",
        "delivered": "5 hồ sơ",
        "review": REVIEWED,
    }
    assert lines == {
        "6A1": ["Phạm Thị Hoa", "HK I, HK II", "3 hồ sơ", "1 hồ sơ", "Đã rà soát", *["2 hồ sơ"] * 4],
        "10A1": ["Võ Minh Tuấn", "HK I, HK II", "3 hồ sơ", "0 hồ sơ", "Đã rà soát", *["3 hồ sơ"] * 4],
    }
    assert f"{seen.incomplete} thiếu Tin học HK I" in findings, "the incomplete record still waits, and why"

    web.sign_in("operator")
    assert web.driver.current_url.endswith("/operator"), web.driver.current_url

    def school_line() -> list[str]:
        (line,) = [cells for cells in web.rows("schools") if f"({SCHOOL})" in cells[0]]
        return line

    # school, classes, terms closed, the principal's click, signed and sealed, archived, delivered
    expected = [f"{SCHOOL_NAME} ({SCHOOL})", "2", "HK I, HK II", "Hoàn tất", *["5 hồ sơ"] * 3]
    web.reloaded_until(lambda: school_line()[:7] == expected, "the operator's page did not show the term end")
    click = web.driver.find_elements(By.CSS_SELECTOR, f"[data-testid=schools] a[href='/batches/{seen.batch}']")
    parked = web.text("[data-testid=parked]")
    web.shot("operator")
    assert click, "the school's line links to the principal's click"
    assert parked == "0"


def test_each_page_is_kept_as_a_screenshot(web):
    assert [p.stem for p in web.shots] == [
        "01-class-6A1-review",
        "02-class-6A1-signed",
        "03-sign-in",
        "04-school-before-the-click",
        "05-progress",
        "06-signed-and-sealed",
        "07-school-after",
        "08-operator",
    ]
    assert all(p.stat().st_size > 5_000 for p in web.shots)
