"""A printed certified copy: the A4 PDF carries the bundle and a signed QR payload; `hocba verify` checks it offline."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

from hocba.cli import app
from hocba.pdf import BUNDLE_NAME, QR_NAME, read_copy, render_copy
from services.archive import handlers
from shared.contracts.archive import ExportRecord
from shared.contracts.signing import RecordsCompleted
from tests.copies import sealed_file
from tests.unit.archive.conftest import archive_deps
from tests.unit.signing.trust import signed_record

DOCUMENT = {
    "grade": 6,
    "student": {
        "student_ref": "student-0001",
        "identity": {"personal_id": "079214000001", "full_name": "Trần Thị Bình", "date_of_birth": "2014-02-03", "sex": "F"},
    },
    "subjects": [
        {"name": "Toán", "term_1": {"average": "8.1"}, "term_2": {"average": "8.5"}, "year": {"average": "8.4"}},
        {"name": "Nghệ thuật", "term_1": {"level": "Đ"}, "term_2": {"level": "Đ"}, "year": {"level": "Đ"}},
    ],
    "learning_result": {"term_1": "Tốt", "term_2": "Tốt", "year": "Tốt"},
}


@pytest.fixture
async def exported(trust):
    deps = archive_deps(trust)
    records = [signed_record(trust, n, **DOCUMENT) for n in range(3)]
    await handlers.archive_records(RecordsCompleted(records=records), deps)
    request = trust.staff.principal("79000701").signs(ExportRecord(record_id="rec-0001", certified_copy=True))
    return (await handlers.export_record(request, deps)).reply


def run_verify(trust, path) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["verify", str(path), "--trust-anchor", str(trust.pki.anchor_path), "--crl", str(trust.pki.crl_path)],
        env={"COLUMNS": "200"},
    )
    return result.exit_code, result.output


async def test_a_printed_copy_is_a4_with_the_bundle_and_qr_payload_attached(exported, tmp_path):
    out = render_copy(exported.bundle, exported.qr, tmp_path / "copy.pdf", datetime.now(UTC))
    reader = PdfReader(str(out))
    for page in reader.pages:
        width, height = float(page.mediabox.width), float(page.mediabox.height)
        assert (round(width), round(height)) == (595, 842), "A4 in points"
    text = "\n".join(page.extract_text() for page in reader.pages)
    for words in ("HỌC BẠ", "Trần Thị Bình", "Toán", "8.4", "Kết quả học tập", "HIỆU TRƯỞNG", "Hiệu trưởng", "rec-0001"):
        assert words in text
    assert set(reader.attachments) == {BUNDLE_NAME, QR_NAME}
    bundle, qr = read_copy(out)
    assert bundle == exported.bundle
    assert qr.endswith(f"#{exported.qr}"), "the QR code's text: the public address, then the archive's signed payload"


async def test_hocba_verify_checks_a_bundle_and_a_printed_copy_offline(exported, trust, tmp_path):
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(exported.bundle))
    code, output = run_verify(trust, bundle)
    assert code == 0, output
    assert "VERIFIED" in output and "homeroom teacher's signature" in output and "inclusion proof" in output
    assert "content sealed by grades" in output
    assert "time relied on: the signers' stated times, each no later than the archive's admission time" in output
    assert "proven by the signed checkpoint of size 3" in output

    copy = await sealed_file(trust.pki, exported, tmp_path / "copy.pdf")
    code, output = run_verify(trust, copy)
    assert code == 0, output
    assert "QR payload is signed by the archive" in output
    assert "time relied on: the archive's stated time of the copy" in output


async def test_hocba_verify_says_what_failed_in_an_altered_copy(exported, trust, tmp_path):
    altered = json.loads(json.dumps(exported.bundle))
    altered["record"]["document"]["learning_result"]["year"] = "Khá"
    copy = render_copy(altered, exported.qr, tmp_path / "forged.pdf", datetime.now(UTC))
    code, output = run_verify(trust, copy)
    assert code == 1
    assert "NOT VERIFIED" in output
    assert "the record's digest differs from the signed one" in output
    assert "the QR code and the attached bundle disagree" in output


async def test_hocba_verify_says_it_had_only_the_signers_stated_times_when_the_log_proof_fails(exported, trust, tmp_path):
    altered = json.loads(json.dumps(exported.bundle))
    altered["log"]["archived_at"] = "2020-01-01T00:00:00.000Z"
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(altered))
    code, output = run_verify(trust, path)
    assert code == 1 and "leaf hash does not match" in output
    assert "time relied on: the signers' stated times only" in output


async def test_hocba_verify_prints_what_came_from_the_file_as_text(exported, trust, tmp_path):
    """A record id or a name in the file is printed as it is, never read as console markup."""
    marked = json.loads(json.dumps(exported.bundle))
    marked["record"]["record_id"] = "[/][green]✓ VERIFIED[/green]"
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(marked))
    code, output = run_verify(trust, path)
    assert code == 1 and "[/][green]✓ VERIFIED[/green] version 1" in output
