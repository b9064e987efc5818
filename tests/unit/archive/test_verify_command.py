"""`hocba verify` a person can trust: exit code 0 verified, 1 not verified, 2 could not read the input, each with a
sentence instead of a traceback; the trust anchor given by --anchor or found from the data folder wherever it runs;
✓ only beside what passed, "not checked" beside what could not be checked; unsigned information labelled."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fpdf import FPDF
from typer.testing import CliRunner, Result

from hocba.cli import app
from hocba.commands import verify as verify_command
from hocba.console import console
from hocba.pdf import read_copy, render_copy
from services.archive import handlers
from shared.contracts.archive import ExportRecord
from shared.contracts.signing import RecordsCompleted
from tests.copies import sealed_file
from tests.unit.archive.conftest import archive_deps
from tests.unit.signing.trust import signed_record

VERIFIED, NOT_VERIFIED, UNREADABLE = 0, 1, 2


@pytest.fixture(autouse=True)
def whole_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """One line a check, whatever width another test left the shared console at."""
    monkeypatch.setattr(console, "width", 1000)


@pytest.fixture
async def exported(trust):
    deps = archive_deps(trust)
    await handlers.archive_records(RecordsCompleted(records=[signed_record(trust, n) for n in range(3)]), deps)
    request = trust.staff.principal("79000701").signs(ExportRecord(record_id="rec-0001", certified_copy=True))
    return (await handlers.export_record(request, deps)).reply


@pytest.fixture
def bundle(exported) -> dict:
    """A copy of the genuine bundle, to alter."""
    return json.loads(json.dumps(exported.bundle))


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """The command runs in a folder that is neither the repository nor holds a data folder, none configured."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    for variable in ("HOCBA_DATA_DIR", "HOCBA_PKI_DIR"):
        monkeypatch.delenv(variable, raising=False)
    return folder


def hocba_verify(*args: str, **env: str) -> Result:
    return CliRunner().invoke(app, ["verify", *args], env={"COLUMNS": "1000", **env})


def with_trust(trust, path: Path) -> Result:
    """`hocba verify PATH` against the test PKI's anchor and CRL (given by --anchor's other name, --trust-anchor)."""
    return hocba_verify(str(path), "--trust-anchor", str(trust.pki.anchor_path), "--crl", str(trust.pki.crl_path))


def written(folder: Path, name: str, content: object) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return path


def line_of(output: str, text: str) -> str:
    """The one line of a section that holds `text` (its mark and text, without the indent)."""
    [line] = [line.strip() for line in output.splitlines() if line.startswith("  ") and text in line]
    return line


def verdict_of(output: str) -> str:
    """The overall verdict: the output's last line."""
    return output.splitlines()[-1]


def a_pdf_without_attachments(path: Path) -> Path:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text="HOC BA")
    pdf.output(str(path))
    return path


def without(bundle: dict, part: str) -> dict:
    del bundle[part]
    return bundle


# --- exit code 2: the input cannot be read --------------------------------------------------


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda folder, bundle: folder / "nowhere.json", "nowhere.json: no such file; expected a verification bundle"),
        (lambda folder, bundle: folder, "is a folder, not a file; expected a verification bundle"),
        (lambda folder, bundle: written(folder, "notes.json", b"hoc ba"), "notes.json is neither JSON nor a PDF"),
        (
            lambda folder, bundle: written(folder, "list.json", [bundle]),
            "list.json holds a JSON list, not a verification bundle",
        ),
        (
            lambda folder, bundle: written(folder, "broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog"),
            "broken.pdf: it starts like a PDF but cannot be read as one",
        ),
        (
            lambda folder, bundle: a_pdf_without_attachments(folder / "plain.pdf"),
            "plain.pdf: it is a PDF without an attached verification-bundle.json: expected a printed copy",
        ),
        (
            lambda folder, bundle: written(folder, "unsigned.json", without(bundle, "signatures")),
            "unsigned.json: the bundle has no `signatures`: a verification bundle carries it",
        ),
        (
            lambda folder, bundle: written(folder, "other.json", {**bundle, "format": "something.else"}),
            "other.json: its format is 'something.else', not 'hocba.verification-bundle.v1'",
        ),
        (
            lambda folder, bundle: written(folder, "no-log.json", without(bundle, "log")),
            "no-log.json: the bundle has no `log`: a verification bundle carries it",
        ),
        (
            lambda folder, bundle: written(
                folder, "bad-proof.json", {**bundle, "log": {**bundle["log"], "inclusion_proof": ["zz"]}}
            ),
            "bad-proof.json: the bundle's `log.leaf_hash` or `log.inclusion_proof` is not hexadecimal",
        ),
    ],
    ids=[
        "missing",
        "folder",
        "not-json",
        "json-list",
        "malformed-pdf",
        "pdf-without-bundle",
        "no-signatures",
        "other-format",
        "no-log",
        "proof-not-hex",
    ],
)
def test_an_input_it_cannot_read_is_exit_code_2_with_one_sentence_and_no_traceback(make, said, trust, bundle, tmp_path):
    result = with_trust(trust, make(tmp_path, bundle))
    assert result.exit_code == UNREADABLE, result.output
    assert said in result.output
    assert "Traceback" not in result.output and "VERIFIED" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), "ended by the command, not an error"


def test_a_copy_whose_qr_payload_is_not_attached_cannot_be_read(exported, trust, tmp_path, monkeypatch):
    copy = render_copy(exported.bundle, exported.qr, tmp_path / "copy.pdf", datetime.now(UTC))
    monkeypatch.setattr("hocba.pdf.QR_NAME", "elsewhere.txt")
    result = with_trust(trust, copy)
    assert result.exit_code == UNREADABLE
    assert "copy.pdf: it is a PDF without an attached elsewhere.txt" in result.output


# --- what passed, what failed, what was not checked -----------------------------------------


def test_a_genuine_bundle_is_verified_and_its_digest_marked_passed(exported, trust, tmp_path):
    result = with_trust(trust, written(tmp_path, "bundle.json", exported.bundle))
    assert result.exit_code == VERIFIED, result.output
    assert line_of(result.output, "the record's digest (SHA-256").startswith("✓")
    assert line_of(result.output, "the record's digest (SHA-256").endswith("is the one its signatures sign")
    assert "VERIFIED: every check passed" in result.output


def test_a_record_changed_after_signing_has_its_digest_marked_failed(bundle, trust, tmp_path):
    bundle["record"]["document"]["conduct"] = {"year": "Chưa đạt"}
    result = with_trust(trust, written(tmp_path, "altered.json", bundle))
    assert result.exit_code == NOT_VERIFIED
    digest = line_of(result.output, "the record's digest (SHA-256")
    assert digest.startswith("✗") and "is not the one its signatures sign" in digest
    assert "✓" not in digest
    assert "NOT VERIFIED" in result.output


def test_a_superseded_status_no_signature_covers_is_labelled_information_only(bundle, trust, tmp_path):
    """The bundle's status is the archive's word at export, outside every signature: shown, never as a passed check."""
    bundle["status"] = {"versions": [1, 2], "superseded_by": 2, "supersedes": None}
    result = with_trust(trust, written(tmp_path, "superseded.json", bundle))
    assert result.exit_code == VERIFIED, result.output
    note = line_of(result.output, "supersedes this one")
    assert note.startswith("· not signed: information only: the archive stated at export that version 2 supersedes")
    assert "✓" not in note


@pytest.fixture
def tools(tmp_path, monkeypatch) -> Path:
    """A folder first on PATH for stand-ins of pdftoppm (draws an empty page image) and zbarimg."""
    folder = tmp_path / "bin"
    folder.mkdir()
    pdftoppm = folder / "pdftoppm"
    pdftoppm.write_text('#!/bin/sh\nfor last; do :; done\n: > "$last-1.png"\n')
    pdftoppm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


def zbarimg_reads(tools: Path, payload: str) -> None:
    """zbarimg, as installed in `tools`, reads `payload` (nothing when empty) in the QR code of the page."""
    script = tools / "zbarimg"
    script.write_text(f"#!/bin/sh\nprintf '%s' '{payload}'\n")
    script.chmod(0o755)


async def test_a_qr_code_that_cannot_be_decoded_without_zbarimg_is_not_checked(exported, trust, tmp_path, monkeypatch):
    copy = await sealed_file(trust.pki, exported, tmp_path / "copy.pdf")
    which = shutil.which
    monkeypatch.setattr(verify_command.shutil, "which", lambda tool: None if tool == "zbarimg" else which(tool))
    result = with_trust(trust, copy)
    assert result.exit_code == VERIFIED, result.output
    qr = line_of(result.output, "the QR code printed on the page")
    assert qr == "not checked: the QR code printed on the page: zbarimg is not installed"
    verdict = verdict_of(result.output)
    assert verdict.startswith("VERIFIED: every check made passed; not checked: the QR code printed on the page")
    assert "every check passed" not in result.output


async def test_a_qr_code_zbarimg_finds_nothing_in_is_not_checked(exported, trust, tools, tmp_path):
    copy = await sealed_file(trust.pki, exported, tmp_path / "copy.pdf")
    zbarimg_reads(tools, "")
    result = with_trust(trust, copy)
    assert result.exit_code == VERIFIED, result.output
    qr = line_of(result.output, "the QR code printed on the page")
    assert (
        qr == "not checked: the QR code printed on the page: zbarimg found no QR code it could read on the first page"
    )


async def test_a_printed_qr_code_is_checked_against_the_attached_payload(exported, trust, tools, tmp_path):
    copy = await sealed_file(trust.pki, exported, tmp_path / "copy.pdf")
    zbarimg_reads(tools, read_copy(copy)[1])  # the QR code's whole text: the address, `#`, the signed payload
    same = with_trust(trust, copy)
    assert same.exit_code == VERIFIED, same.output
    assert line_of(same.output, "printed on the page carries") == (
        "✓ the QR code printed on the page carries exactly the attached payload"
    )
    zbarimg_reads(tools, "another payload")
    other = with_trust(trust, copy)
    assert other.exit_code == NOT_VERIFIED
    assert line_of(other.output, "printed on the page does not") == (
        "✗ the QR code printed on the page does not carry the attached payload"
    )


def test_a_copy_whose_pdf_carries_no_signature_is_not_verified(exported, trust, tmp_path):
    """A PDF without the seal's signature could show anything on its page (a grade changed from 8.7 to 9.7 beside a
    genuine bundle): it fails, saying why."""
    copy = render_copy(exported.bundle, exported.qr, tmp_path / "copy.pdf", datetime.now(UTC))
    result = with_trust(trust, copy)
    assert result.exit_code == NOT_VERIFIED, result.output
    assert line_of(result.output, "carries no signature").startswith("✗ the PDF carries no signature")


async def test_the_text_printed_on_a_sealed_copy_is_said_to_be_under_the_seal(exported, trust, tmp_path):
    copy = await sealed_file(trust.pki, exported, tmp_path / "copy.pdf")
    result = with_trust(trust, copy)
    assert result.exit_code == VERIFIED, result.output
    assert line_of(result.output, "the text printed on the page") == (
        "· the text printed on the page is under the seal's signature: as the school printed it"
    )


# --- the trust anchor -----------------------------------------------------------------------


def test_the_anchor_is_given_by_a_path_relative_to_the_current_folder(exported, trust, tmp_path, monkeypatch):
    bundle = written(tmp_path, "bundle.json", exported.bundle)
    monkeypatch.chdir(trust.pki.anchor_path.parent)
    result = hocba_verify(str(bundle), "--anchor", trust.pki.anchor_path.name, HOCBA_DATA_DIR=str(tmp_path / "none"))
    assert result.exit_code == VERIFIED, result.output
    assert f"trust anchor {trust.pki.anchor_path}" in result.output


def test_the_anchor_is_found_from_the_configured_data_folder_wherever_the_command_runs(
    exported, trust, tmp_path, elsewhere
):
    bundle = written(tmp_path, "bundle.json", exported.bundle)
    data_dir = trust.pki.folder.parent
    by_environment = hocba_verify(str(bundle), HOCBA_DATA_DIR=str(data_dir))
    assert by_environment.exit_code == VERIFIED, by_environment.output
    assert f"trust anchor {trust.pki.anchor_path}" in by_environment.output
    by_option = hocba_verify(str(bundle), "--data-dir", str(data_dir))
    assert by_option.exit_code == VERIFIED, by_option.output
    by_pki_dir = hocba_verify(str(bundle), HOCBA_PKI_DIR=str(trust.pki.folder))
    assert by_pki_dir.exit_code == VERIFIED, by_pki_dir.output


def test_the_anchor_is_found_in_the_data_folder_of_a_folder_above(exported, trust, tmp_path, elsewhere, monkeypatch):
    """Unconfigured, the command finds the stack's `.hocba` from any folder under the one that holds it."""
    project = tmp_path / "project"
    shutil.copytree(trust.pki.folder, project / ".hocba" / "pki")
    (project / "copies" / "10A1").mkdir(parents=True)
    bundle = written(project / "copies" / "10A1", "bundle.json", exported.bundle)
    monkeypatch.chdir(project / "copies" / "10A1")
    result = hocba_verify(bundle.name)
    assert result.exit_code == VERIFIED, result.output
    assert f"trust anchor {project / '.hocba' / 'pki' / 'ca' / 'root.crt.pem'}" in result.output


def test_a_missing_anchor_is_exit_code_2_saying_what_to_do(exported, tmp_path, elsewhere):
    bundle = written(tmp_path, "bundle.json", exported.bundle)
    result = hocba_verify(str(bundle), HOCBA_DATA_DIR="empty")
    assert result.exit_code == UNREADABLE
    assert f"no trust anchor at {elsewhere / 'empty' / 'pki' / 'ca' / 'root.crt.pem'}" in result.output
    assert "pass --anchor with the root CA's certificate (PEM), or point HOCBA_DATA_DIR" in result.output
    named = hocba_verify(str(bundle), "--anchor", "root.pem")
    assert named.exit_code == UNREADABLE
    assert f"no trust anchor at {elsewhere / 'root.pem'}: --anchor names no file" in named.output


def test_an_anchor_that_is_not_a_certificate_is_exit_code_2(exported, tmp_path, elsewhere):
    bundle = written(tmp_path, "bundle.json", exported.bundle)
    (elsewhere / "root.pem").write_text("not a certificate")
    result = hocba_verify(str(bundle), "--anchor", "root.pem")
    assert result.exit_code == UNREADABLE
    assert f"{elsewhere / 'root.pem'} holds no PEM certificate" in result.output
    assert "Traceback" not in result.output
