"""The principal's part of a term end on the web page, in headless Chromium (Debian's `chromium`, driven through
its `chromium-driver` by selenium), on a stack whose five services, ministry simulator and web gateway run as
separate processes on real RabbitMQ and MongoDB-wire.

The school's year comes to the signing by the term-end driver (roster, gradebooks, conduct, closed terms, closed
year, staff enrolled); from there everything happens on the page: each homeroom teacher confirms their class's
review and signs it, then the principal sees the classes, clicks "Ký toàn trường" and follows the progress until
every record is signed and sealed. The driver then sees every record archived and delivered to the ministry, and
the operator's page shows it. A screenshot of each page is kept under tests/artifacts/web/ (ignored by git).
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from hocba.commands.pki import enrol, open_pki
from hocba.demo_data import SCHOOL_YEAR
from hocba.keys import dev_issuer
from hocba.stack import WEB
from hocba.term_end import TermEnd
from shared.settings import Settings
from tests.support import needs, throwaway_stack

STUDENTS = 60  # classes 6A1 (40) and 6A2 (20)
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "web"
#: A phone's screen (CSS pixels): the pages are made to be used on one.
PHONE = (412, 915)
#: The tallest screenshot kept (CSS pixels): a school of 30 classes is many screens long on a phone.
TALLEST = 3 * PHONE[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    options = {"web": True, "extra_env": {"HOCBA_WEB_SCHOOL_YEAR": SCHOOL_YEAR}}
    with throwaway_stack(tmp_path_factory.mktemp("stack"), "web", **options) as running:
        yield running


@pytest.fixture
def browser():
    needs(CHROMIUM.exists() and CHROMEDRIVER.exists(), "Debian's chromium and chromium-driver")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--window-size={PHONE[0]},{PHONE[1]}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    print(f"\nscreenshots of the web pages: {ARTIFACTS}")
    return ARTIFACTS


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

    def sign_in(self, who: str, shot: str | None = None) -> None:
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
            lambda driver: not driver.current_url.endswith(path)
        )

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


class SignedOnTheWeb(TermEnd):
    """The term-end driver, whose signing happens on the web page: the homeroom teachers review and sign their
    classes, then the principal clicks once."""

    def __init__(self, web: OnTheWeb, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.web = web
        self.seen: dict[str, str] = {}

    async def _review(self) -> None:
        """Nothing before signing: the homeroom teachers review their classes on the web page (`_sign`)."""

    async def _sign(self) -> None:
        # The school's staff enrolled as `hocba pki enrol` enrols them, as the driver does before it signs.
        pki = open_pki(self.settings.pki_dir or Settings().pki_path())
        enrol(pki, [(s.code, s.name, set(self.counts.classes(s.code))) for s in self.schools])
        (school,) = self.schools
        batch = await asyncio.to_thread(self.signed_in_the_browser, school.code, self.counts.classes(school.code))
        self.principal_batches.append(batch)

    def signed_in_the_browser(self, school: str, classes: list[str]) -> str:
        web = self.web
        for n, class_name in enumerate(classes):
            web.sign_in(f"gvcn-{school}-{class_name}")
            assert web.driver.current_url.endswith(f"/schools/{school}/classes/{class_name}"), web.driver.current_url
            assert "Chưa rà soát" in web.text("[data-testid=review-status]")
            if n == 0:
                web.shot(f"class-{class_name}-review")
            web.click("confirm-review")
            assert "Đã xác nhận rà soát lớp" in web.text("[data-testid=notice]")
            web.click("sign-class")
            assert web.until_finished() == "Hoàn tất", web.text()
            self.seen[f"homeroom-{class_name}"] = web.text("[data-testid=batch-outcome]")

        web.sign_in(f"ht-{school}", shot="sign-in")
        assert web.driver.current_url.endswith(f"/schools/{school}"), web.driver.current_url
        self.seen["school"] = web.text()
        web.shot("school-before-the-click")
        web.click("sign-school")
        web.until_away_from(f"/schools/{school}")
        found = re.search(r"/batches/([0-9a-f]+)$", web.driver.current_url)
        assert found, web.driver.current_url
        self.seen["progress"] = web.text("[data-testid=batch-state]")
        web.shot("progress")
        assert web.until_finished() == "Hoàn tất", web.text()
        self.seen["done"] = web.text("[data-testid=batch-outcome]")
        web.shot("signed-and-sealed")
        return found.group(1)


def test_the_principal_signs_the_school_on_the_web_page_and_every_record_reaches_the_ministry(
    stack, browser, artifacts
):
    web = OnTheWeb(browser, stack.child(WEB).base_url, artifacts)
    settings = Settings(amqp_url=stack.url_for("school"), namespace=stack.config.namespace, chunk_size=50)
    run = SignedOnTheWeb(web, settings, dev_issuer(stack.config.data_dir)[0], 1, STUDENTS, stage_timeout=300)
    asyncio.run(run.run())
    (school,) = run.schools
    code = school.code

    assert [r.count for r in run.results] == [STUDENTS, run.expected_entries(), STUDENTS, STUDENTS, STUDENTS, STUDENTS]
    assert run.seen["homeroom-6A1"] == "Đã ký 40 / 40 hồ sơ của lớp 6A1."
    assert run.seen["homeroom-6A2"] == "Đã ký 20 / 20 hồ sơ của lớp 6A2."
    school_page = run.seen["school"]
    assert "6A1" in school_page and "6A2" in school_page and "Ký toàn trường" in school_page
    assert "Mọi lớp đã rà soát" in school_page
    assert run.seen["progress"] in {"Đã gửi yêu cầu", "Đang ký", "Hoàn tất"}
    assert run.seen["done"].startswith(f"Đã ký và đóng dấu {STUDENTS} / {STUDENTS} hồ sơ")

    # The school's page and the operator's, once the ministry holds every record.
    web.sign_in(f"ht-{code}")
    totals = {
        name: web.text(f"[data-testid={name}]")
        for name in ("terms-closed", "sealed", "archived", "delivered", "review")
    }
    # Per class, from grades' list of the records: records, incomplete, reviewed, signed by the homeroom teacher (as
    # the page saw it announced), signed and sealed, archived, delivered.
    classes = {
        row.find_element(By.CSS_SELECTOR, "td").text: [td.text for td in row.find_elements(By.CSS_SELECTOR, "td")][3:]
        for row in web.driver.find_elements(By.CSS_SELECTOR, "[data-testid=classes] tbody tr")
    }
    listing_problem = web.driver.find_elements(By.CSS_SELECTOR, "[data-testid=records-problem]")
    web.shot("school-after")
    assert totals == {
        "terms-closed": "HK I, HK II",
        "sealed": f"{STUDENTS} hồ sơ",
        "archived": f"{STUDENTS} hồ sơ",
        "delivered": f"{STUDENTS} hồ sơ",
        "review": "Mọi lớp đã rà soát",
    }
    assert not listing_problem, "grades answered the page's ListRecords"
    with_records = {name: cells for name, cells in classes.items() if cells[0] != "0 hồ sơ"}
    assert with_records == {
        name: [f"{n} hồ sơ", "0 hồ sơ", "Đã rà soát", *[f"{n} hồ sơ"] * 4] for name, n in {"6A1": 40, "6A2": 20}.items()
    }, "the other classes enrolled have no student this year"
    web.sign_in("operator")
    operator = web.text("[data-testid=schools]")
    web.shot("operator")
    assert f"({code})" in operator and f"{STUDENTS} hồ sơ" in operator
    assert web.text("[data-testid=parked]") == "0"
    assert [p.stem for p in web.shots] == [
        "01-class-6A1-review",
        "02-sign-in",
        "03-school-before-the-click",
        "04-progress",
        "05-signed-and-sealed",
        "06-school-after",
        "07-operator",
    ]
    assert all(p.stat().st_size > 5_000 for p in web.shots)
