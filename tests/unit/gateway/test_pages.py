"""The web page of the term end: who may sign in and see what, the principal's one click with its progress, the
homeroom teacher's class, the operator's view across schools, and what a person reads when something fails."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pytest

from hocba.web.link import follow
from services.grades.repository import StatusNote, TermAction
from shared.auth import Actor, signed_by, verify_token
from shared.contracts.access import AccessLog, ListGradesAccesses
from shared.contracts.grades import ListRecords, RecordsReady
from shared.contracts.signing import RequestSignBatch
from shared.contracts.sync import GetSyncStatus
from shared.errors import NoAnswer
from tests.unit.gateway.conftest import UNCERTIFIED_SCHOOL
from tests.unit.signing.trust import OTHER_SCHOOL, SCHOOL, YEAR

PRINCIPAL, ADMIN = f"ht-{SCHOOL}", f"admin-{SCHOOL}"
HOMEROOM_6A1, HOMEROOM_6A2 = f"gvcn-{SCHOOL}-6A1", f"gvcn-{SCHOOL}-6A2"


def text(page: str) -> str:
    """What a person reads on the page: the tags dropped, the spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


#: A record whose term-I mathematics is missing, as grades assembles it.
TERM_I_MATHS_MISSING = {"complete": False, "missing": [{"subject": "Toán", "term": 1}]}
FINGERPRINT = re.compile(r'name="reviewed" value="([0-9a-f]+)"')


def ready(trust, count: int, incomplete: tuple[int, ...] = ()) -> RecordsReady:
    """`count` records of classes 6A1 (even) and 6A2 (odd), assembled and sealed by grades; `incomplete` lack
    their term-I mathematics."""
    records = [trust.record(n, **(TERM_I_MATHS_MISSING if n in incomplete else {})) for n in range(count)]
    return RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records)


def review_and_sign(page, teacher: str, class_name: str):
    """The homeroom teacher confirms the review their class's page shows, then signs the class."""
    page.sign_in(teacher)
    shown = page.client.get(f"/schools/{SCHOOL}/classes/{class_name}").text
    confirmed = page.post(
        f"/schools/{SCHOOL}/classes/{class_name}/review", {"reviewed": FINGERPRINT.search(shown).group(1)}
    )
    assert confirmed.status_code == 303, text(confirmed.text)
    return page.post(f"/schools/{SCHOOL}/classes/{class_name}/sign")


def batch_id(response) -> str:
    assert response.status_code == 303, response.text
    found = re.fullmatch(r"/batches/([0-9a-f]+)", response.headers["location"])
    assert found, response.headers["location"]
    return found.group(1)


# --- signing in ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/", f"/schools/{SCHOOL}", f"/schools/{SCHOOL}/classes/6A1", "/operator", "/batches/abc", "/nothing-here"],
)
def test_every_page_but_sign_in_needs_someone_signed_in(web, signing, path):
    with web(signing[0]) as page:
        answer = page.client.get(path)
    assert (answer.status_code, answer.headers["location"]) == (303, "/sign-in")


def test_the_progress_of_a_batch_is_not_told_to_someone_not_signed_in(web, signing):
    with web(signing[0]) as page:
        assert page.client.get("/batches/abc/progress").status_code == 401


def test_in_development_one_signs_in_as_an_enrolled_staff_member_or_the_operator(web, signing):
    with web(signing[0]) as page:
        picker = text(page.client.get("/sign-in").text)
        assert "Hiệu trưởng — Nguyễn Thị Hoa" in picker
        assert "Giáo viên chủ nhiệm 6A1 — Cô giáo lớp 6A1" in picker
        assert "Cán bộ vận hành Sở GD&ĐT" in picker

        signed_in = page.sign_in(PRINCIPAL)
        assert (signed_in.status_code, signed_in.headers["location"]) == (303, f"/schools/{SCHOOL}")
        assert page.sign_in(HOMEROOM_6A1).headers["location"] == f"/schools/{SCHOOL}/classes/6A1"
        assert page.sign_in("operator").headers["location"] == "/operator"


def test_signing_in_as_someone_not_enrolled_is_refused_saying_how_to_enrol_them(web, signing):
    with web(signing[0]) as page:
        answer = page.client.post("/sign-in", data={"who": "ht-99999999", "csrf": page.csrf()})
    assert answer.status_code == 400
    assert "không có trong danh sách cán bộ đã đăng ký" in text(answer.text)
    assert "hocba pki enrol" in answer.text


def test_a_form_without_the_sessions_token_is_refused(web, signing):
    """A page of another site cannot post the one click on a signed-in principal's behalf."""
    with web(signing[0]) as page:
        page.sign_in(PRINCIPAL)
        answer = page.client.post(f"/schools/{SCHOOL}/sign", data={"year": YEAR, "csrf": "forged"})
        assert answer.status_code == 403
        assert "Tải lại trang" in text(answer.text)
        assert page.link.sent == [], "nothing is sent"


def test_signing_out_ends_the_session(web, signing):
    with web(signing[0]) as page:
        page.sign_in(PRINCIPAL)
        assert page.post("/sign-out", from_page=f"/schools/{SCHOOL}").headers["location"] == "/sign-in"
        assert page.client.get(f"/schools/{SCHOOL}").headers["location"] == "/sign-in"


# --- the principal's page ------------------------------------------------------------------------


def test_the_principal_sees_the_classes_with_a_dash_where_no_service_answers(web, signing):
    with web(signing[0]) as page:  # grades is not running: nothing lists the records
        page.sign_in(PRINCIPAL)
        answer = page.client.get(f"/schools/{SCHOOL}")
    assert answer.status_code == 200
    rows = re.findall(r"<tr>(.*?)</tr>", answer.text, re.S)[1:]
    assert [text(r).split()[0] for r in rows] == ["6A1", "6A2"]
    first = text(rows[0]).split(" ")
    assert "Cô giáo lớp 6A1" in text(rows[0])
    assert first.count("—") == 8, "terms, records, incomplete, review, homeroom, sealed, archived, delivered"
    assert "Dịch vụ điểm không trả lời danh sách hồ sơ" in text(answer.text) and "hocba up" in text(answer.text)
    assert 'data-testid="sign-school"' in answer.text and "Ký toàn trường" in answer.text


def test_the_principal_signs_the_whole_school_in_one_click_and_follows_it_to_done(web, signing, trust):
    service, repo = signing
    with web(service) as page:
        page.run(page.link.publish, ready(trust, 25))
        for teacher, class_name in ((HOMEROOM_6A1, "6A1"), (HOMEROOM_6A2, "6A2")):
            review_and_sign(page, teacher, class_name)

        page.sign_in(PRINCIPAL)
        clicked = page.post(f"/schools/{SCHOOL}/sign")
        batch = batch_id(clicked)
        progress = page.client.get(f"/batches/{batch}/progress").json()
        shown = text(page.client.get(f"/batches/{batch}").text)
        school_page = page.client.get(f"/schools/{SCHOOL}").text
        school = text(school_page)

    assert progress == {
        "state": "done",
        "state_name": "Hoàn tất",
        "records_signed": 25,
        "records_total": 25,
        "percent": 100,
        "finished": True,
        "outcome": "Đã ký và đóng dấu 25 / 25 hồ sơ; 25 hồ sơ đủ chữ ký được chuyển lưu trữ và gửi Bộ GD&ĐT.",
    }
    assert "Hoàn tất" in shown and "25 / 25 hồ sơ" in shown
    assert "progress.js" not in shown, "a finished batch is not polled"
    request = next(m for m in page.link.sent if isinstance(m, RequestSignBatch) and m.role == "principal")
    assert (request.batch_id, request.school_code, request.school_year, request.class_name) == (
        batch,
        SCHOOL,
        YEAR,
        None,
    )
    signatures = [signature for signature, *_ in repo.signed.values()]
    assert {(s.role, s.signer) for s in signatures} >= {("principal", PRINCIPAL), ("school_seal", f"seal-{SCHOOL}")}
    assert len([s for s in signatures if s.role == "school_seal"]) == 25
    assert re.search(r'data-testid="sealed">([^<]*)<', school_page).group(1) == "—", (
        "grades is not running: the school's totals are not what the gateway saw announced"
    )
    assert "Mọi lớp đã rà soát" in school
    rows = [text(r).strip() for r in re.findall(r"<tr>(.*?)</tr>", school_page, re.S)][1:]
    assert rows[0] == "6A1 Cô giáo lớp 6A1 — — — Đã rà soát 13 hồ sơ — — —", (
        "the review and the homeroom teacher's signatures from signing; grades is not running: its columns say “—”"
    )


def test_each_message_carries_the_signed_in_persons_token_for_it(web, signing, trust):
    with web(signing[0]) as page:
        page.sign_in(PRINCIPAL)
        page.post(f"/schools/{SCHOOL}/sign")
    keys = {"signing": trust.issuer.public_keys("signing"), "grades": trust.issuer.public_keys("grades")}
    assert [type(m).__name__ for m in page.link.sent] == ["ReviewClasses", "ListRecords", "RequestSignBatch"]
    assert {verify_token(m, keys[m.ROUTING_KEY.split(".")[0]]).subject for m in page.link.sent} == {PRINCIPAL}


def test_a_click_before_the_classes_were_reviewed_says_which_classes_wait(web, signing, trust):
    with web(signing[0]) as page:
        page.run(page.link.publish, ready(trust, 4))
        page.sign_in(PRINCIPAL)
        progress = page.client.get(f"/batches/{batch_id(page.post(f'/schools/{SCHOOL}/sign'))}/progress").json()
    assert (progress["state"], progress["records_total"]) == ("done", 0)
    assert (
        progress["outcome"]
        == "Chưa ký hồ sơ nào. Các lớp chờ giáo viên chủ nhiệm rà soát: 6A1 (2 hồ sơ), 6A2 (2 hồ sơ)."
    )


def test_a_click_before_the_homeroom_teachers_signed_says_what_waits(web, signing, trust):
    with web(signing[0]) as page:
        page.run(page.link.publish, ready(trust, 4))
        for teacher, class_name in ((HOMEROOM_6A1, "6A1"), (HOMEROOM_6A2, "6A2")):
            page.sign_in(teacher)
            shown = page.client.get(f"/schools/{SCHOOL}/classes/{class_name}").text
            page.post(
                f"/schools/{SCHOOL}/classes/{class_name}/review", {"reviewed": FINGERPRINT.search(shown).group(1)}
            )
        page.sign_in(PRINCIPAL)
        progress = page.client.get(f"/batches/{batch_id(page.post(f'/schools/{SCHOOL}/sign'))}/progress").json()
    assert (progress["state"], progress["records_total"]) == ("done", 0)
    assert progress["outcome"].startswith("Chưa ký hồ sơ nào: 4 hồ sơ của trường năm học 2025-2026 còn chờ giáo viên")


def test_the_principal_sees_the_review_findings_and_an_incomplete_record_is_not_signed(web, signing, trust):
    with web(signing[0]) as page:
        page.run(page.link.publish, ready(trust, 6, incomplete=(2,)))
        page.sign_in(PRINCIPAL)
        before = text(page.client.get(f"/schools/{SCHOOL}").text)
        assert "2 lớp chờ rà soát; 1 hồ sơ chưa đầy đủ (không được ký)" in before
        assert "Lớp 6A1 (3 hồ sơ): Chưa rà soát; 1 hồ sơ chưa đầy đủ: rec-0002 thiếu Toán HK I" in before

        review_and_sign(page, HOMEROOM_6A1, "6A1")
        teacher_sees = text(page.client.get(f"/schools/{SCHOOL}/classes/6A1").text)
        assert "Đã rà soát · 3 hồ sơ" in teacher_sees and "rec-0002 thiếu Toán HK I" in teacher_sees
        review_and_sign(page, HOMEROOM_6A2, "6A2")

        page.sign_in(PRINCIPAL)
        progress = page.client.get(f"/batches/{batch_id(page.post(f'/schools/{SCHOOL}/sign'))}/progress").json()
    assert progress["records_signed"] == 5
    assert "1 hồ sơ chưa đầy đủ không được ký: bổ sung điểm còn thiếu" in progress["outcome"]
    assert ("rec-0002", 1) not in {key[:2] for key in signing[1].signed}


def test_a_review_confirmed_on_records_that_changed_since_is_refused_saying_to_look_again(web, signing, trust):
    with web(signing[0]) as page:
        page.run(page.link.publish, ready(trust, 2))
        page.sign_in(HOMEROOM_6A1)
        answer = page.post(f"/schools/{SCHOOL}/classes/6A1/review", {"reviewed": "0" * 64})
    assert answer.status_code == 409
    said = text(answer.text)
    assert "Dịch vụ ký không nhận xác nhận rà soát" in said and "xem lại phần rà soát rồi xác nhận lại" in said


def test_a_click_on_a_year_not_closed_says_why_nothing_was_signed(web, signing):
    with web(signing[0]) as page:
        page.sign_in(PRINCIPAL)
        progress = page.client.get(f"/batches/{batch_id(page.post(f'/schools/{SCHOOL}/sign'))}/progress").json()
    assert "năm học chưa được khoá" in progress["outcome"]


def test_signing_refuses_a_principal_without_a_certificate_and_the_page_says_what_to_do(web, signing):
    with web(signing[0]) as page:
        page.sign_in(f"ht-{UNCERTIFIED_SCHOOL}")
        batch = batch_id(page.post(f"/schools/{UNCERTIFIED_SCHOOL}/sign"))
        shown = text(page.client.get(f"/batches/{batch}").text)
    assert "Bị từ chối" in shown
    assert "no-certificate" in shown and "hocba pki enrol staff.csv" in shown


def test_when_nothing_takes_the_request_the_page_says_the_system_must_be_running(web):
    with web() as page:  # no service on the bus
        page.sign_in(PRINCIPAL)
        batch = batch_id(page.post(f"/schools/{SCHOOL}/sign"))
        shown = text(page.client.get(f"/batches/{batch}").text)
    assert "Chưa gửi được" in shown and "hocba up" in shown


# --- the records grades lists ----------------------------------------------------------------------

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def assembled(grades, trust, count: int, incomplete: tuple[int, ...] = (), reached: dict[int, str] | None = None):
    """grades holds `count` records of 6A1 (even) and 6A2 (odd) as it assembled them at the year's close
    (`incomplete` lack their term-I mathematics), and the step each of `reached` was announced to reach."""
    _, repo = grades
    records = [trust.record(n, **(TERM_I_MATHS_MISSING if n in incomplete else {})) for n in range(count)]

    async def store() -> None:
        await repo.add_records(records)
        await repo.note_statuses([StatusNote(f"rec-{n:04d}", 1, step, NOW) for n, step in (reached or {}).items()])

    return store


def shown(page_html: str, *testids: str) -> dict[str, str]:
    """What the page shows in the elements of these `data-testid`s."""
    found = {name: re.search(rf'data-testid="{name}">([^<]*)<', page_html) for name in testids}
    return {name: match.group(1) for name, match in found.items() if match is not None}


def class_row(page_html: str, class_name: str) -> str:
    rows = [text(r).strip() for r in re.findall(r"<tr>(.*?)</tr>", page_html, re.S)]
    (row,) = [r for r in rows if r.startswith(f"{class_name} ")]
    return row


def test_the_principal_sees_each_class_s_records_and_where_they_stand_as_grades_lists_them(web, signing, grades, trust):
    # 6A1: rec-0, 2, 4, 6, 8 (rec-0002 incomplete); 6A2: rec-1, 3, 5, 7, 9.
    reached = {0: "signed-and-sealed", 4: "archived", 6: "delivered", 8: "delivered", 1: "delivered"}
    with web(signing[0], grades[0]) as page:
        page.run(assembled(grades, trust, 10, incomplete=(2,), reached=reached))
        page.sign_in(PRINCIPAL)
        answer = page.client.get(f"/schools/{SCHOOL}")
    assert answer.status_code == 200
    # Lớp, GVCN, học kỳ đã khoá (grades: none yet), hồ sơ, chưa đầy đủ, đã rà soát and GVCN đã ký (signing holds
    # none here: —), đã ký và đóng dấu, đã lưu trữ, đã gửi Bộ
    assert (
        class_row(answer.text, "6A1") == "6A1 Cô giáo lớp 6A1 Chưa khoá 5 hồ sơ 1 hồ sơ — — 4 hồ sơ 3 hồ sơ 2 hồ sơ"
    ), "a delivered record was archived, signed and sealed before: it counts in each"
    assert class_row(answer.text, "6A2") == "6A2 Cô giáo lớp 6A2 Chưa khoá 5 hồ sơ 0 hồ sơ — — 1 hồ sơ 1 hồ sơ 1 hồ sơ"
    assert shown(answer.text, "sealed", "archived", "delivered") == {
        "sealed": "5 hồ sơ",
        "archived": "4 hồ sơ",
        "delivered": "3 hồ sơ",
    }, "the school's, from grades"
    assert "bản tổng hợp hồ sơ dịch vụ điểm trả lời" in text(answer.text), "the legend says where the counts come from"
    (asked,) = [m for m in page.link.sent if isinstance(m, ListRecords)]
    assert (asked.school_code, asked.school_year, asked.class_name, asked.status) == (SCHOOL, YEAR, None, None)
    assert asked.summary, "counts only: the page names no student"
    assert verify_token(asked, trust.issuer.public_keys("grades")).subject == PRINCIPAL


def test_the_counts_are_grades_answer_not_what_the_page_saw_announced(web, signing, grades, trust):
    with web(signing[0], grades[0]) as page:
        page.run(assembled(grades, trust, 4))
        page.run(page.link.publish, ready(trust, 4))  # signing holds them too; nothing signed yet
        page.sign_in(PRINCIPAL)
        answer = page.client.get(f"/schools/{SCHOOL}")
    assert (
        class_row(answer.text, "6A1")
        == "6A1 Cô giáo lớp 6A1 Chưa khoá 2 hồ sơ 0 hồ sơ Chưa rà soát 0 hồ sơ 0 hồ sơ 0 hồ sơ 0 hồ sơ"
    ), "none signed: signing and grades say 0, not “—”"
    assert shown(answer.text, "sealed") == {"sealed": "0 hồ sơ"}


def test_a_class_grades_lists_no_record_of_counts_none(web, signing, grades, trust):
    with web(signing[0], grades[0]) as page:
        page.sign_in(PRINCIPAL)  # the year not closed: grades holds no record
        answer = page.client.get(f"/schools/{SCHOOL}")
    assert class_row(answer.text, "6A2") == "6A2 Cô giáo lớp 6A2 Chưa khoá 0 hồ sơ 0 hồ sơ — — 0 hồ sơ 0 hồ sơ 0 hồ sơ"


def test_the_homeroom_teacher_sees_their_class_s_records_as_grades_lists_them(web, signing, grades, trust):
    with web(signing[0], grades[0]) as page:
        page.run(assembled(grades, trust, 10, incomplete=(2,), reached={0: "delivered", 1: "delivered", 4: "archived"}))
        page.sign_in(HOMEROOM_6A1)
        answer = page.client.get(f"/schools/{SCHOOL}/classes/6A1")
    assert shown(
        answer.text, "records", "incomplete-records", "homeroom-signed", "sealed", "archived", "delivered"
    ) == {
        "records": "5 hồ sơ",
        "incomplete-records": "1 hồ sơ",
        "homeroom-signed": "—",  # signing holds no record of the class here: its review does not name it
        "sealed": "2 hồ sơ",
        "archived": "2 hồ sơ",
        "delivered": "1 hồ sơ",
    }
    (asked,) = [m for m in page.link.sent if isinstance(m, ListRecords)]
    assert (asked.class_name, asked.summary) == ("6A1", True)
    assert verify_token(asked, trust.issuer.public_keys("grades")).subject == HOMEROOM_6A1


def test_a_page_load_reads_no_student_s_personal_data_and_grades_logs_no_access(web, signing, grades, trust):
    """The page shows counts: grades' summary names no student, so no read of anyone is kept in its access log (and
    none counts towards the unusual-reads alert, however often the page is loaded)."""
    service, _ = grades
    operator = Actor(subject="operator-1", roles=frozenset({"operator"}), school_code="")

    async def read_by(student_ref: str) -> list[tuple[str, str, str]]:
        asked = signed_by(ListGradesAccesses(student_ref=student_ref), trust.issuer, operator)
        log = await service.bus.request(asked, AccessLog, 5.0)
        return [(e.subject, e.action, e.purpose) for e in log.entries]

    with web(signing[0], service) as page:
        page.run(assembled(grades, trust, 4))
        page.sign_in(HOMEROOM_6A1)
        assert "2 hồ sơ" in text(page.client.get(f"/schools/{SCHOOL}/classes/6A1").text)
        page.sign_in(PRINCIPAL)
        assert "2 hồ sơ" in text(page.client.get(f"/schools/{SCHOOL}").text)
        page.sign_in("operator")
        assert page.client.get("/operator").status_code == 200
        logged = [page.run(read_by, f"student-{n:04d}") for n in range(4)]
    assert logged == [[], [], [], []]
    reads = [
        sample.value
        for metric in service.registry.collect()
        for sample in metric.samples
        if sample.name == "hocba_personal_data_reads_total" and sample.labels["role"] != "operator"
    ]
    assert reads and sum(reads) == 0, "no personal-data read counted (the operator's reads of the log apart)"


def test_the_terms_closed_are_grades_answer(web, signing, grades, trust):
    _, repo = grades

    async def close_term_i() -> None:
        await repo.set_term(SCHOOL, YEAR, TermAction(1, True, PRINCIPAL, NOW, "close-1"))

    with web(signing[0], grades[0]) as page:
        page.run(assembled(grades, trust, 2))
        page.run(close_term_i)
        page.sign_in(PRINCIPAL)
        answer = page.client.get(f"/schools/{SCHOOL}")
    assert shown(answer.text, "terms-closed") == {"terms-closed": "HK I"}
    assert class_row(answer.text, "6A1").startswith("6A1 Cô giáo lớp 6A1 HK I 1 hồ sơ")


def test_a_gateway_started_after_the_homeroom_teachers_signed_shows_what_signing_and_grades_hold(
    web, signing, grades, trust
):
    """The figures are asked of the services when the page loads, not remembered from announcements: a gateway
    (re)started after the class was signed and the terms closed shows them as the first one did."""
    _, repo = grades

    async def close_both_terms() -> None:
        for term in (1, 2):
            await repo.set_term(SCHOOL, YEAR, TermAction(term, True, PRINCIPAL, NOW, f"close-{term}"))

    with web(signing[0], grades[0]) as page:
        page.run(assembled(grades, trust, 4))
        page.run(close_both_terms)
        page.run(page.link.publish, ready(trust, 4))
        assert review_and_sign(page, HOMEROOM_6A1, "6A1").status_code == 303
    with web(signing[0], grades[0]) as restarted:
        assert restarted.board.batches == {}, "the new gateway saw no announcement"
        restarted.sign_in(PRINCIPAL)
        answer = restarted.client.get(f"/schools/{SCHOOL}")
    assert class_row(answer.text, "6A1") == (
        "6A1 Cô giáo lớp 6A1 HK I, HK II 2 hồ sơ 0 hồ sơ Đã rà soát 2 hồ sơ 0 hồ sơ 0 hồ sơ 0 hồ sơ"
    )
    assert class_row(answer.text, "6A2").startswith(
        "6A2 Cô giáo lớp 6A2 HK I, HK II 2 hồ sơ 0 hồ sơ Chưa rà soát 0 hồ sơ"
    )


# --- who sees what ------------------------------------------------------------------------------


def test_a_homeroom_teacher_sees_and_signs_their_class_only(web, signing, trust):
    with web(signing[0]) as page:
        page.run(page.link.publish, ready(trust, 6))
        page.sign_in(HOMEROOM_6A1)
        own = page.client.get(f"/schools/{SCHOOL}/classes/6A1")
        assert own.status_code == 200 and "Ký lớp 6A1" in own.text
        assert page.client.get(f"/schools/{SCHOOL}/classes/6A2").status_code == 403
        assert page.client.get(f"/schools/{SCHOOL}").status_code == 403
        assert page.client.get("/operator").status_code == 403

        refused = page.client.post(f"/schools/{SCHOOL}/classes/6A2/sign", data={"csrf": page.csrf(), "year": YEAR})
        assert refused.status_code == 403 and "không ký được lớp 6A2" in text(refused.text)

        unreviewed = batch_id(page.post(f"/schools/{SCHOOL}/classes/6A1/sign"))
        refusal = page.client.get(f"/batches/{unreviewed}/progress").json()
        assert refusal["state"] == "refused" and "Xác nhận đã rà soát" in refusal["outcome"]

        batch = batch_id(review_and_sign(page, HOMEROOM_6A1, "6A1"))
        assert page.client.get(f"/batches/{batch}/progress").json()["outcome"] == "Đã ký 3 / 3 hồ sơ của lớp 6A1."
        assert "3 hồ sơ" in text(page.client.get(f"/schools/{SCHOOL}/classes/6A1").text)

        page.sign_in(HOMEROOM_6A2)
        assert page.client.get(f"/batches/{batch}").status_code == 403, "another class's batch"


def test_a_principal_sees_their_own_school_only_and_the_administrator_sees_without_signing(web, signing):
    with web(signing[0]) as page:
        page.sign_in(f"ht-{OTHER_SCHOOL}")
        foreign = page.client.get(f"/schools/{SCHOOL}")
        assert foreign.status_code == 403 and "không được xem trường 79000701" in text(foreign.text)

        page.sign_in(ADMIN)
        seen = page.client.get(f"/schools/{SCHOOL}")
        assert seen.status_code == 200 and 'data-testid="sign-school"' not in seen.text
        assert page.post(f"/schools/{SCHOOL}/sign").status_code == 403
        assert not [m for m in page.link.sent if isinstance(m, RequestSignBatch)]


def test_the_operator_sees_the_term_end_across_schools_and_the_ministry_outbox(web, signing, grades, sync, trust):
    with web(signing[0], grades[0], sync) as page:
        page.run(assembled(grades, trust, 4, reached={0: "delivered", 1: "archived"}))
        page.sign_in("operator")
        shown = page.client.get("/operator")
    assert shown.status_code == 200
    rows = [text(r).strip() for r in re.findall(r"<tr>(.*?)</tr>", shown.text, re.S)]
    # Trường, số lớp, học kỳ đã khoá, lượt ký toàn trường, đã ký và đóng dấu, đã lưu trữ, đã gửi Bộ, kết quả rà soát
    assert "Trường THCS thử nghiệm (79000701) 2 Chưa khoá — 2 hồ sơ 2 hồ sơ 1 hồ sơ —" in rows, "grades' summary"
    assert "Trường THCS khác (79000702) 0 Chưa khoá — 0 hồ sơ 0 hồ sơ 0 hồ sơ —" in rows
    assert re.search(r'data-testid="backlog">0<', shown.text) and re.search(r'data-testid="parked">0<', shown.text)
    (asked,) = [m for m in page.link.sent if isinstance(m, GetSyncStatus)]
    assert asked.actor, "asked with the operator's token"
    summaries = [m for m in page.link.sent if isinstance(m, ListRecords)]
    assert {m.school_code for m in summaries} >= {SCHOOL, OTHER_SCHOOL} and all(m.summary for m in summaries)


def test_the_operator_page_says_when_grades_cannot_be_asked_and_asks_it_once(web, signing):
    with web(signing[0]) as page:  # grades is not running
        page.sign_in("operator")
        shown = page.client.get("/operator")
    assert "Dịch vụ điểm không trả lời" in text(shown.text)
    assert len([m for m in page.link.sent if isinstance(m, ListRecords)]) == 1, "not asked again for each school"


def test_the_operator_page_says_when_sync_cannot_be_asked(web, signing):
    with web(signing[0]) as page:
        page.sign_in("operator")
        shown = text(page.client.get("/operator").text)
    assert "Dịch vụ đồng bộ không trả lời" in shown and "hocba up" in shown


# --- what a person reads when something is wrong ---------------------------------------------------


def test_a_malformed_school_year_is_explained(web, signing):
    with web(signing[0]) as page:
        page.sign_in(PRINCIPAL)
        answer = page.client.get(f"/schools/{SCHOOL}?year=2025")
    assert answer.status_code == 400
    said = text(answer.text)
    assert "Không đọc được năm học '2025'" in said and "ví dụ 2025-2026" in said


class Failing:
    """A link whose requests fail in a way nobody planned for."""

    ready = True
    sent: list = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, message) -> None:
        raise RuntimeError("connection state corrupted at 0x7f…")

    async def ask(self, message, answer, login):
        raise RuntimeError("connection state corrupted at 0x7f…")


def test_no_traceback_reaches_a_person(web):
    with web(link=Failing(), raise_server_exceptions=False) as page:
        page.sign_in(PRINCIPAL)
        answer = page.post(f"/schools/{SCHOOL}/sign")
    assert answer.status_code == 500
    said = text(answer.text)
    assert "Cổng gặp lỗi không mong đợi" in said and "Thử lại sau ít phút" in said
    assert "Traceback" not in answer.text and "0x7f" not in answer.text


def test_an_unknown_batch_says_what_the_gateway_knows(web, signing):
    with web(signing[0]) as page:
        page.sign_in(PRINCIPAL)
        answer = page.client.get("/batches/0123abcd")
    assert answer.status_code == 404 and "Cổng không biết lượt ký này" in text(answer.text)


# --- fit for a phone, in Vietnamese; health ------------------------------------------------------


def test_pages_are_in_vietnamese_and_fit_a_phone(web, signing):
    with web(signing[0]) as page:
        page.sign_in(PRINCIPAL)
        shown = page.client.get(f"/schools/{SCHOOL}").text
        css = page.client.get("/static/style.css").text
    assert '<html lang="vi">' in shown
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in shown
    assert "@media (max-width: 40rem)" in css and "attr(data-label)" in css, "a table becomes cards on a phone"
    assert 'data-label="GVCN đã ký"' in shown


def test_ready_when_the_bus_is(web, signing):
    with web(signing[0]) as page:
        assert page.client.get("/health/ready").json() == {"ready": True, "checks": {"bus": True}}
        assert page.client.get("/health/live").status_code == 200
        assert "hocba_gateway_sign_requests_total" in page.client.get("/metrics").text


def test_the_board_follows_every_announcement_the_pages_show():
    from hocba.web.board import Board

    followed = {m.ROUTING_KEY for m in follow(Board())}
    assert followed == {
        "signing.batch.progress.v1",
        "signing.batch.completed.v1",
        "signing.batch.refused.v1",
    }, "a batch's progress only: every other status is asked of its service when a page loads"


def test_a_link_that_cannot_send_is_no_answer():
    assert issubclass(NoAnswer, Exception)


def test_someone_removed_from_the_staff_register_is_signed_out_and_can_no_longer_act(web, signing, register):
    with web(signing[0]) as page:
        page.sign_in(PRINCIPAL)
        token = page.csrf(f"/schools/{SCHOOL}")
        del register.staff[PRINCIPAL]
        clicked = page.client.post(f"/schools/{SCHOOL}/sign", data={"csrf": token, "year": YEAR})
        assert (clicked.status_code, clicked.headers["location"]) == (303, "/sign-in")
        assert page.client.get(f"/schools/{SCHOOL}").headers["location"] == "/sign-in"
    assert not [m for m in page.link.sent if isinstance(m, RequestSignBatch)]


def test_another_schools_principal_does_not_see_a_batch(web, signing):
    with web(signing[0]) as page:
        page.sign_in(PRINCIPAL)
        batch = batch_id(page.post(f"/schools/{SCHOOL}/sign"))
        page.sign_in(f"ht-{OTHER_SCHOOL}")
        assert page.client.get(f"/batches/{batch}").status_code == 403
        assert page.client.get(f"/batches/{batch}/progress").status_code == 403
