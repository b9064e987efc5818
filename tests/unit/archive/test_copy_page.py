"""The page of a certified copy: what a parent reads on it, and the QR code that checks it.

The page holds everything one year's record holds (RULES.md §5), read from the record in the attached bundle; says in
words what the record does not state, and that a record is incomplete or replaced; shows the personal ID by its last
digits only and times in Vietnam time. Its QR code opens the public verification page of the copy's log entry and
carries the archive's signed statement of the copy after `#`. The PDF is PDF/A-3b with the bundle as an associated
file.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import segno
from PIL import Image
from pypdf import PdfReader
from typer.testing import CliRunner

from hocba.cli import app
from hocba.pdf import BUNDLE_NAME, QR_NAME, QR_SIZE, QR_X, QR_Y, copy_pdf_bytes, read_copy, render_copy, verify_base
from services.archive import handlers
from services.grades.domain import assemble_record
from services.grades.rulesets import CIRCULAR_22_2021, CIRCULAR_27_2020
from shared.contracts.archive import ExportRecord
from shared.contracts.signing import RecordsCompleted
from shared.crypto.bundle import archive_certificates, copy_claims, copy_qr, verify_copy
from shared.crypto.certs import from_x5c, identity
from shared.crypto.jws import protected_header, sign_compact
from shared.crypto.pki import ARCHIVE_SUBJECT
from shared.settings import Misconfigured, Settings
from tests.unit.archive.conftest import archive_deps, archive_keys
from tests.unit.grades.builders import enrolled, full_year, homeroom, scored, snapshot
from tests.unit.grades.test_primary import grade_entries, ratings
from tests.unit.signing.trust import signed_record

BASE = "https://hocba.example.edu.vn"
PERSONAL_ID = "079214000123"


def year_record(**changes: Any) -> dict[str, Any]:
    """A grade 6 record as grades assembles it: every subject, Toán with its own scores and a teacher's comment,
    conduct and absences by term; the fields a record version states itself are left to the test record."""
    entries = [e for e in full_year("s1") if not (e.subject == "Toán" and e.term == 1)]
    toan = scored("s1", "Toán", 1, ["8", "7.5", "9", "8.5"], "7", "9").model_copy(
        update={"comment": "Tiến bộ rõ ở hình học"}
    )
    document = assemble_record(
        CIRCULAR_22_2021, enrolled("s1"), snapshot("s1", PERSONAL_ID), [*entries, toan], homeroom("s1")
    ).document()
    kept = {k: v for k, v in document.items() if k not in ("record_id", "version", "school", "school_year")}
    return {**kept, **changes}


async def exported(trust, *records, record_id: str = "rec-0001", version: int | None = None):
    deps = archive_deps(trust)
    await handlers.archive_records(RecordsCompleted(records=list(records)), deps)
    asked = ExportRecord(record_id=record_id, version=version, certified_copy=True)
    return (await handlers.export_record(trust.staff.principal("79000701").signs(asked), deps)).reply


def trust_store(trust):
    """The PKI's trust anchor and CRL, as a verifier holds them."""
    return archive_keys(trust).trust()


def page_text(pdf: Path) -> str:
    """Every page's text, each run of white space one space (lines wrap where the layout says)."""
    return " ".join(" ".join(page.extract_text() for page in PdfReader(str(pdf)).pages).split())


@pytest.fixture
async def full(trust):
    return await exported(trust, *(signed_record(trust, n, **year_record()) for n in range(3)))


@pytest.fixture
def full_copy(full, tmp_path) -> Path:
    return render_copy(full.bundle, full.qr, tmp_path / "copy.pdf", datetime.now(UTC), verify_url=BASE)


# -- what the page says -----------------------------------------------------------------------------------------


def test_the_page_holds_each_assessment_result_and_comment_of_the_record(full, full_copy):
    text = page_text(full_copy)
    document = full.bundle["record"]["document"]
    for subject in document["subjects"]:
        assert subject["name"] in text
    toan = next(s for s in document["subjects"] if s["name"] == "Toán")
    assert toan["term_1"] == {
        "regular": ["8.0", "7.5", "9.0", "8.5"],
        "midterm": "7.0",
        "final": "9.0",
        "average": "8.2",
    }
    assert (
        "Toán ĐĐGtx 8.0, 7.5, 9.0, 8.5 · ĐĐGgk 7.0 · ĐĐGck 9.0 8.2 ĐĐGtx 8.0, 8.0, 8.0, 8.0 · ĐĐGgk 8.0 · ĐĐGck 8.0 8.0 8.1"
        in text
    )
    assert "Nghệ thuật Đ Đ Đ" in text, "a comment-assessed subject: its level each term and the year"
    assert "Toán: học kì I: Tiến bộ rõ ở hình học" in text, "the subject teacher's comment"
    assert "Kết quả học tập Tốt Tốt Tốt" in text
    assert "Kết quả rèn luyện Tốt Tốt Tốt" in text
    assert document["absences"] == {"term_1": 1, "term_2": 2, "year": 3}
    assert "Số buổi nghỉ học 1 2 3" in text
    assert document["promotion"] == {"decision": "Được lên lớp"} and "Quyết định lên lớp: Được lên lớp" in text
    assert document["awards"] == ["Học sinh Giỏi"] and "Khen thưởng: Học sinh Giỏi" in text
    assert "Nhận xét của giáo viên chủ nhiệm, học kì I: ghi chú 1" in text
    assert "Nhận xét của giáo viên chủ nhiệm, học kì II: ghi chú 2" in text
    assert "Nhận xét của hiệu trưởng: (hồ sơ không ghi)" in text, "grades' record holds no principal's comment"
    assert f"{document['regulation']} (bộ quy tắc circular-22-2021/v2)" in text, "the rule set it was computed by"
    assert "Năm học 2025-2026 · Lớp 6A1 · Khối 6" in text and "TRUNG HỌC CƠ SỞ" in text


def test_each_signer_is_named_with_role_and_time_in_vietnam_time(full, full_copy):
    text = page_text(full_copy)
    titles = {
        "homeroom_teacher": "GIÁO VIÊN CHỦ NHIỆM",
        "principal": "HIỆU TRƯỞNG",
        "school_seal": "DẤU CỦA NHÀ TRƯỜNG",
    }
    for jws in full.bundle["signatures"]:
        header = protected_header(jws)
        signer = identity(from_x5c(header["x5c"])[0])
        signed_at = datetime.fromisoformat(header["signed_at"])
        in_vietnam = (signed_at.astimezone(UTC) + timedelta(hours=7)).strftime("%H:%M:%S ngày %d/%m/%Y")
        assert titles[header["role"]] in text
        assert f"{signer.name} Ký lúc {in_vietnam} (giờ Việt Nam, UTC+7)" in text
        assert signer.subject_id in text
        assert f"{signed_at.astimezone(UTC):%H:%M:%S} ngày" not in text, "no time is written in UTC"
    assert "UTC " not in text.replace("UTC+7", "")


def test_the_personal_id_shows_its_last_digits_only_and_the_internal_reference_not_at_all(full, full_copy):
    text = page_text(full_copy)
    assert "Số định danh cá nhân: •••••••••123" in text
    assert PERSONAL_ID not in text
    assert full.bundle["record"]["student_ref"] not in text, "the internal pseudonym is not the student's code"
    assert "Mã học sinh" not in text
    assert "Họ và tên: Nguyễn Văn An" in text and "Ngày sinh: 05/09/2014" in text and "Giới tính: Nam" in text


async def test_what_the_record_does_not_state_is_said_in_words(trust, tmp_path):
    """The smallest record a release wrote: no place of birth, results, decisions or comments."""
    reply = await exported(trust, *(signed_record(trust, n) for n in range(2)))
    text = page_text(render_copy(reply.bundle, reply.qr, tmp_path / "copy.pdf", datetime.now(UTC), verify_url=BASE))
    for line in (
        "Nơi sinh: (hồ sơ không ghi)",
        "Dân tộc: (hồ sơ không ghi)",
        "Cha, mẹ hoặc người giám hộ: (hồ sơ không ghi)",
        "Kết quả rèn luyện không ghi không ghi không ghi",
        "Số buổi nghỉ học không ghi không ghi không ghi",
        "Quyết định lên lớp: (hồ sơ không ghi)",
        "Khen thưởng: (hồ sơ không ghi)",
        "Nhận xét của giáo viên bộ môn: (hồ sơ không ghi)",
        "Nhận xét của giáo viên chủ nhiệm, học kì I: (hồ sơ không ghi)",
        "Nhận xét của hiệu trưởng: (hồ sơ không ghi)",
    ):
        assert line in text
    assert "Toán không ghi không ghi 8.5" in text, "a subject's terms the record does not state, its year it does"
    assert "CHƯA ĐẦY ĐỦ" not in text and "THAY THẾ" not in text


async def test_an_incomplete_record_says_so_and_what_it_lacks(trust, tmp_path):
    missing = [{"subject": "Toán", "term": 2}, {"entry": "homeroom", "term": 1}]
    record = year_record(complete=False, missing=missing)
    reply = await exported(trust, *(signed_record(trust, n, **record) for n in range(2)))
    text = page_text(render_copy(reply.bundle, reply.qr, tmp_path / "copy.pdf", datetime.now(UTC), verify_url=BASE))
    assert "HỒ SƠ CHƯA ĐẦY ĐỦ: hồ sơ ghi còn thiếu Toán học kì II; đánh giá của giáo viên chủ nhiệm học kì I." in text


async def test_a_superseded_version_says_so_and_the_current_one_does_not(trust, tmp_path):
    amendment = {"supersedes": 1, "reason": "grade-correction", "note": "sửa điểm Toán", "requested_by": "ht-79000701"}
    first, second = (
        signed_record(trust, 1, **year_record()),
        signed_record(trust, 1, 2, **year_record(amendment=amendment)),
    )
    deps = archive_deps(trust)
    await handlers.archive_records(RecordsCompleted(records=[first]), deps)
    await handlers.archive_records(RecordsCompleted(records=[second]), deps)
    principal = trust.staff.principal("79000701")
    texts = {}
    for version in (1, 2):
        asked = principal.signs(ExportRecord(record_id="rec-0001", version=version, certified_copy=True))
        reply = (await handlers.export_record(asked, deps)).reply
        path = tmp_path / f"v{version}.pdf"
        texts[version] = page_text(render_copy(reply.bundle, reply.qr, path, datetime.now(UTC), verify_url=BASE))
    assert (
        "PHIÊN BẢN ĐÃ ĐƯỢC THAY THẾ: khi cấp bản sao này, kho lưu trữ ghi nhận phiên bản 2 thay thế phiên bản 1 này"
        in texts[1]
    )
    assert "không nằm trong phần được ký" in texts[1], "the page says the archive's note is not signed"
    assert "THAY THẾ:" not in texts[2]
    assert "BẢN ĐIỀU CHỈNH: thay thế phiên bản 1, lý do: grade-correction; sửa điểm Toán." in texts[2]


async def test_a_primary_school_record_shows_its_levels_tests_qualities_competencies_and_outcome(trust, tmp_path):
    document = assemble_record(
        CIRCULAR_27_2020,
        enrolled("p1", grade=5, class_name="5A"),
        snapshot("p1"),
        grade_entries(5),
        [ratings(1), ratings(2)],
    ).document()
    kept = {
        k: v for k, v in document.items() if k not in ("record_id", "version", "school", "school_year", "class_name")
    }
    reply = await exported(trust, *(signed_record(trust, n, **kept) for n in range(2)))
    text = page_text(render_copy(reply.bundle, reply.qr, tmp_path / "copy.pdf", datetime.now(UTC), verify_url=BASE))
    assert "TIỂU HỌC" in text and "Khối 5" in text
    assert "Toán KT giữa kì 10 · KT cuối kì 10 T" in text, "a tested subject: its tests and its level"
    assert "Phẩm chất" in text and "Năng lực" in text
    for name in (*CIRCULAR_27_2020.qualities, *CIRCULAR_27_2020.competencies):
        assert f"{name}: T" in text, "each quality and competency with its rating"
    assert "Đánh giá kết quả giáo dục cuối năm: Hoàn thành xuất sắc" in text
    assert f"Ghi nhận: {document['completion']}" in text
    assert "Khen thưởng: Học sinh Xuất sắc" in text
    assert "Kết quả rèn luyện" not in text, "primary school rates no conduct"


# -- the QR code ----------------------------------------------------------------------------------------------------


def printed_modules(pdf: Path, size: int, dpi: int = 200) -> list[list[bool]]:
    """The QR code as drawn on the first page, read back module by module (dark or not, at each module's centre) from
    the part of the page pdftoppm renders where the code is."""
    px = dpi / 25.4
    left, top, side = int(QR_X * px), int(QR_Y * px), int(QR_SIZE * px) + 2
    crop = ["-x", str(left), "-y", str(top), "-W", str(side), "-H", str(side)]
    subprocess.run(
        ["pdftoppm", "-r", str(dpi), "-gray", "-png", "-f", "1", "-l", "1", *crop, str(pdf), str(pdf.parent / "qr")],
        check=True,
    )
    image = Image.open(next(pdf.parent.glob("qr*.png"))).convert("L")
    step = QR_SIZE / (size + 8)  # four modules of quiet zone each side

    def dark(row: int, column: int) -> bool:
        x, y = (QR_X + (4 + column + 0.5) * step) * px - left, (QR_Y + (4 + row + 0.5) * step) * px - top
        return image.getpixel((round(x), round(y))) < 128  # type: ignore[operator]

    return [[dark(r, c) for c in range(size)] for r in range(size)]


def test_the_qr_code_opens_the_entrys_address_and_carries_the_signed_payload_after_the_fragment(full, full_copy, trust):
    log = full.bundle["log"]
    key = base64.urlsafe_b64encode(bytes.fromhex(log["leaf_hash"])).rstrip(b"=").decode()[:16]
    address = f"{BASE}/v/{log['leaf_index']}.{key}"
    attached = read_copy(full_copy)[1]
    assert attached == f"{address}#{full.qr}" == copy_qr(BASE, full.bundle, full.qr)
    assert len(attached) < 500, "short enough for a QR code a phone reads from paper"
    expected = segno.make(attached, error="m", micro=False)
    assert shutil.which("pdftoppm"), "poppler-utils (`make signing-tools`) draws the page"
    assert printed_modules(full_copy, expected.symbol_size(border=0)[0]) == [
        [bool(m) for m in row] for row in expected.matrix
    ], "the code printed on the page is the encoding of the address and payload"
    verdict = verify_copy(attached, archive_certificates(full.bundle), trust_store(trust), full.bundle)
    assert verdict.ok, verdict.sections
    assert "names this entry and its key" in " ".join(text for _, text in verdict.sections[0].lines)


def test_the_signed_payload_states_the_entry_compactly_with_the_copys_time_to_the_millisecond(full):
    header = protected_header(full.qr)
    claims = json.loads(base64.urlsafe_b64decode(full.qr.split(".")[1] + "=="))
    assert header["typ"] == "hocba-copy" and header["alg"] == "ES256"
    assert set(claims) == {"i", "h", "n", "t", "c"}
    assert {k: claims[k] for k in "ihnt"} == copy_claims(full.bundle)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", claims["c"])


def test_a_qr_code_whose_address_names_another_entry_fails(full, trust):
    log = full.bundle["log"]
    other = copy_qr(BASE, {"log": {**log, "leaf_index": log["leaf_index"] + 1}}, full.qr)
    verdict = verify_copy(other, archive_certificates(full.bundle), trust_store(trust), full.bundle)
    assert not verdict.ok
    assert any("does not name this entry with its key" in text for text in verdict.failed)


def test_a_qr_payload_of_another_kind_the_archive_signed_is_not_a_copy(full, trust):
    claims = {**copy_claims(full.bundle), "c": "2026-05-20T08:00:00.000Z"}
    signer = trust.signers.signer_for(ARCHIVE_SUBJECT)
    other = sign_compact(signer, json.dumps(claims).encode(), {"typ": "hocba-checkpoint"})
    verdict = verify_copy(other, archive_certificates(full.bundle), trust_store(trust), full.bundle)
    assert verdict.failed == ["the QR payload is not a statement of a copy (its type is not hocba-copy)"]


def test_a_copy_printed_with_the_longer_payload_of_earlier_releases_still_verifies(full, trust):
    bundle, record = full.bundle, full.bundle["record"]
    earlier = {
        "o": bundle["log"]["origin"],
        "r": record["record_id"],
        "v": record["version"],
        "s": record["school_code"],
        "d": "digest",
        **copy_claims(bundle),
        "a": bundle["log"]["archived_at"],
        "c": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    signer = trust.signers.signer_for(ARCHIVE_SUBJECT)
    payload = sign_compact(signer, json.dumps(earlier, separators=(",", ":")).encode(), {"typ": "hocba-copy"})
    assert verify_copy(payload, archive_certificates(bundle), trust_store(trust), bundle).ok


def test_a_qr_code_over_an_altered_record_fails_though_the_bundle_states_the_old_leaf_hash(full, trust):
    altered = json.loads(json.dumps(full.bundle))
    altered["record"]["document"]["learning_result"]["year"] = "Khá"
    verdict = verify_copy(copy_qr(BASE, altered, full.qr), archive_certificates(altered), trust_store(trust), altered)
    assert "the QR code and the attached bundle disagree on h" in verdict.failed


# -- the file -------------------------------------------------------------------------------------------------------


def test_the_copy_is_pdf_a_3b_with_the_bundle_as_an_associated_file(full):
    data = copy_pdf_bytes(full.bundle, full.qr, datetime.now(UTC), verify_url=BASE)
    assert data.startswith(b"%PDF-1.7")
    reader = PdfReader(BytesIO(data))
    root = reader.trailer["/Root"]
    xmp = root["/Metadata"].get_object().get_data().decode()
    assert "<pdfaid:part>3</pdfaid:part>" in xmp and "<pdfaid:conformance>B</pdfaid:conformance>" in xmp
    [intent] = [i.get_object() for i in root["/OutputIntents"]]
    assert intent["/S"] == "/GTS_PDFA1" and intent["/OutputConditionIdentifier"] == "sRGB"
    assert intent["/DestOutputProfile"].get_object().get_data()[36:40] == b"acsp", "an ICC profile"
    files = {f.get_object()["/F"]: f.get_object() for f in root["/AF"]}
    assert set(files) == {BUNDLE_NAME, QR_NAME}
    assert files[BUNDLE_NAME]["/AFRelationship"] == "/Data"
    assert json.loads(files[BUNDLE_NAME]["/EF"]["/F"].get_object().get_data()) == full.bundle
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            descriptor = font.get_object()["/DescendantFonts"][0].get_object()["/FontDescriptor"]
            assert "/FontFile2" in descriptor, "every font embedded"


# -- where the QR code points -----------------------------------------------------------------------------------------


def test_production_prints_copies_for_an_https_verification_page_only():
    with pytest.raises(Misconfigured, match="HOCBA_VERIFY_URL must be an https address"):
        verify_base(Settings(environment="production", verify_url="http://verify.example"))
    assert (
        verify_base(Settings(environment="production", verify_url="https://verify.example/"))
        == "https://verify.example"
    )
    assert verify_base(Settings()).startswith("http://127.0.0.1:"), "development: the archive as `hocba up` runs it"


def test_hocba_archive_print_refuses_an_http_verification_page_in_production_before_asking(monkeypatch):
    monkeypatch.setenv("HOCBA_ENVIRONMENT", "production")
    monkeypatch.setenv("HOCBA_VERIFY_URL", "http://verify.example")
    result = CliRunner().invoke(app, ["archive", "print", "rec-0001"])
    assert result.exit_code == 2
    assert "HOCBA_VERIFY_URL must be an https address in production" in result.output
    assert "Traceback" not in result.output
