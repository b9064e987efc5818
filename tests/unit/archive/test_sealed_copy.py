"""A certified copy sealed PAdES B-LT by the school's seal through signing's handler: it verifies in `hocba verify` and in
pyHanko's own validator with the same trust, offline; a copy with a byte changed in the page, the attachment or the
signature, or with an update appended after signing, does not."""

from __future__ import annotations

import base64
import re
import zlib
from datetime import UTC, datetime
from io import BytesIO

import pytest
from prometheus_client import CollectorRegistry
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import DocumentSecurityStore, async_validate_pdf_signature
from typer.testing import CliRunner

from hocba.cli import app
from hocba.infra import free_port
from hocba.pades import (
    FIELD,
    CopySealing,
    HttpTimeStamper,
    asn1_certificate,
    asn1_crls,
    check_copy_signature,
    seal_chain,
)
from hocba.pdf import BUNDLE_NAME, copy_pdf_bytes
from hocba.tsa import from_pki
from services.archive import handlers as archive
from services.signing import handlers as signing
from services.signing.domain import StoredRecord
from services.signing.metrics import SigningMetrics
from services.signing.repository import InMemorySigningRepository
from shared.contracts.archive import ExportRecord
from shared.contracts.signing import CopySeal, RecordsCompleted, SealCopy
from shared.crypto.certs import load_crls
from shared.errors import Refused
from tests.copies import InProcessTimeStamper, key_ask, sealed_copy, sealing
from tests.unit.archive.conftest import archive_deps
from tests.unit.signing.trust import SCHOOL, signed_record

PURPOSE = "a certified copy for the student's transfer"


@pytest.fixture
async def signing_deps(trust):
    """signing holding record 1 signed and sealed (what the archive keeps), with its access log in memory."""
    deps = trust.deps(InMemorySigningRepository(), SigningMetrics(CollectorRegistry()))
    record = signed_record(trust, 1)
    stored = StoredRecord.of(record.record)
    await deps.repo.add_records([stored])
    await deps.repo.add_signatures([(s, *stored.scope) for s in record.signatures], "batch-1")
    return deps


@pytest.fixture
async def exported(trust):
    deps = archive_deps(trust)
    await archive.archive_records(RecordsCompleted(records=[signed_record(trust, n) for n in range(3)]), deps)
    request = trust.staff.principal(SCHOOL).signs(ExportRecord(record_id="rec-0001", certified_copy=True))
    return (await archive.export_record(request, deps)).reply


def asking(trust, deps, person=None, calls: list | None = None):
    """The printing command's side of `SealCopy`: the school's records administrator asks signing's handler."""
    person = person or trust.staff.school_admin(SCHOOL)

    async def ask(attributes: bytes) -> CopySeal:
        encoded = base64.b64encode(attributes).decode()
        request = SealCopy(
            school_code=SCHOOL, record_id="rec-0001", version=1, signed_attributes=encoded, purpose=PURPOSE
        )
        if calls is not None:
            calls.append(request)
        return (await signing.seal_copy(person.signs(request), deps)).reply

    return ask


@pytest.fixture
async def copy(trust, signing_deps, exported) -> bytes:
    return await sealed_copy(trust.pki, exported.bundle, exported.qr, asking(trust, signing_deps))


def run_verify(trust, path) -> tuple[int, str]:
    result = CliRunner().invoke(
        app,
        ["verify", str(path), "--trust-anchor", str(trust.pki.anchor_path), "--crl", str(trust.pki.crl_path)],
        env={"COLUMNS": "250"},
    )
    return result.exit_code, result.output


async def pyhanko_verdict(trust, data: bytes):
    """pyHanko's own validator, with the same trust: the anchor, and what the file's DSS embeds (nothing fetched)."""
    reader = PdfFileReader(BytesIO(data), strict=False)
    dss = DocumentSecurityStore.read_dss(reader)
    context = dss.as_validation_context(
        {
            "trust_roots": [asn1_certificate(a) for a in trust.pki.anchors()],
            "allow_fetching": False,
            "revocation_mode": "hard-fail",
        }
    )
    return await async_validate_pdf_signature(reader.embedded_signatures[0], context, context)


def flipped(data: bytes, at: int) -> bytes:
    changed = bytearray(data)
    changed[at] ^= 0x01
    return bytes(changed)


def contents_hex(data: bytes) -> tuple[int, int]:
    """Where the hex digits of the signature's /Contents start and end: the gap its /ByteRange leaves."""
    [signature] = PdfFileReader(BytesIO(data), strict=False).embedded_signatures
    _, first_end, second_start, _ = (int(n) for n in signature.sig_object["/ByteRange"])
    return first_end + 1, second_start - 1


def cms_part_offset(data: bytes, part) -> int:
    """Where `part` (of the signature's SignedData) starts in the DER of the signature's /Contents."""
    [signature] = PdfFileReader(BytesIO(data), strict=False).embedded_signatures
    contents = bytes(signature.sig_object["/Contents"])
    return contents.index(part(signature.signed_data).dump())


def stream_start(data: bytes, marker: bytes) -> int:
    """Where the stream of the first object whose dictionary holds `marker` starts."""
    found = data.index(marker)
    return data.index(b"stream", found) + len(b"stream\n")


async def test_a_genuine_copy_passes_hocba_verify_and_pyhankos_validator(trust, copy, tmp_path):
    path = tmp_path / "copy.pdf"
    path.write_bytes(copy)
    code, output = run_verify(trust, path)
    assert code == 0, output
    assert "the page, the attached bundle and every other signed byte are as the seal signed them" in output
    assert "signed by the seal of Trường THCS thử nghiệm (seal-79000701), the record's school" in output
    assert "timestamped" in output and "(RFC 3161)" in output
    assert "CRL(s) are embedded" in output and "PAdES B-LT" in output

    status = await pyhanko_verdict(trust, copy)
    assert status.bottom_line and status.trusted and status.intact and status.valid
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted
    assert status.signer_reported_dt is None or status.signer_reported_dt.tzinfo is not None


async def test_the_copy_is_pades_baseline_lt_with_the_chain_and_crl_embedded(trust, copy):
    reader = PdfFileReader(BytesIO(copy), strict=False)
    [signature] = reader.embedded_signatures
    assert signature.field_name == FIELD
    assert signature.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    dss = DocumentSecurityStore.read_dss(reader)
    crls = [bytes(ref.get_object().data) for ref in dss.crls]
    assert crls and all(crl in {c.dump() for c in asn1_crls(load_crls(trust.pki.crl_path))} for crl in crls)
    subjects = {c.subject.native.get("user_id") for c in dss.load_certs()}
    assert {"seal-79000701", "tsa"} <= subjects
    # PDF/A-3 as printed: the unsigned copy's metadata and attachment are still there, under the signature.
    assert b"pdfaid:part" in copy and BUNDLE_NAME.encode() in copy


async def test_the_seal_is_asked_once_per_copy_and_each_ask_is_in_signings_access_log(trust, signing_deps, exported):
    calls: list[SealCopy] = []
    await sealed_copy(trust.pki, exported.bundle, exported.qr, asking(trust, signing_deps, calls=calls))
    assert len(calls) == 1
    [entry] = await signing_deps.access_log.of("student-0001", 10)
    assert (entry.action, entry.record_id, entry.purpose, entry.subject) == (
        "print",
        "rec-0001",
        PURPOSE,
        "admin-79000701",
    )


async def test_a_byte_changed_in_the_page_fails_both_validators(trust, copy, tmp_path):
    reader = PdfFileReader(BytesIO(copy), strict=False)
    page = reader.root["/Pages"]["/Kids"][0].get_object()
    contents = page.raw_get("/Contents")
    first = contents[0] if isinstance(contents, generic.ArrayObject) else contents
    assert first.get_object().data, "the page's drawing operators"
    altered = flipped(copy, stream_start(copy, f"\n{first.idnum} 0 obj".encode()) + 10)
    await check_fails(trust, altered, tmp_path, "the signed bytes were changed after signing")


async def test_a_byte_changed_in_the_attachment_fails_both_validators(trust, copy, tmp_path):
    at = copy.index(b"/EmbeddedFile")
    altered = flipped(copy, copy.index(b"stream", at) + len(b"stream\n") + 5)
    await check_fails(trust, altered, tmp_path, "the signed bytes were changed after signing")


async def test_a_byte_changed_in_the_signature_fails_both_validators(trust, copy, tmp_path):
    start, _ = contents_hex(copy)
    value = cms_part_offset(copy, lambda signed: signed["signer_infos"][0]["signature"])
    # A hex digit of the seal's ECDSA signature value changed.
    at = start + 2 * value + 20
    altered = bytearray(copy)
    altered[at] = ord("0") if altered[at] != ord("0") else ord("1")
    await check_fails(trust, bytes(altered), tmp_path, "the signed bytes were changed after signing")


async def test_a_byte_changed_in_a_certificate_the_signature_carries_fails_hocba_verify(trust, copy, tmp_path):
    """No digest covers the certificates a CMS signature carries (a validator may find a genuine copy of the seal's in
    the DSS): `hocba verify` checks each one against its issuer."""
    start, _ = contents_hex(copy)
    certificates = cms_part_offset(copy, lambda signed: signed["certificates"])
    at = start + 2 * certificates + 2 * 300
    altered = bytearray(copy)
    altered[at] = ord("0") if altered[at] != ord("0") else ord("1")
    path = tmp_path / "altered.pdf"
    path.write_bytes(bytes(altered))
    code, output = run_verify(trust, path)
    assert code == 1 and "NOT VERIFIED" in output
    assert "carried in the signature was changed" in output or "cannot be read: it was changed" in output


async def test_a_byte_changed_in_the_signatures_unused_room_fails_hocba_verify(trust, copy, tmp_path):
    """The zeros after the CMS structure are covered by no digest; `hocba verify` refuses a change there too."""
    _, end = contents_hex(copy)
    altered = bytearray(copy)
    altered[end - 3] = ord("1")
    path = tmp_path / "altered.pdf"
    path.write_bytes(bytes(altered))
    code, output = run_verify(trust, path)
    assert code == 1 and "the signature's contents were changed after signing" in output


async def test_an_update_appended_after_signing_is_reported_as_a_modification(trust, copy, tmp_path):
    writer = IncrementalPdfFileWriter(BytesIO(copy))
    page = writer.root["/Pages"]["/Kids"][0].get_object()
    drawn = generic.StreamObject(stream_data=zlib.compress(b"BT /F1 40 Tf 100 400 Td (9.7) Tj ET"))
    drawn["/Filter"] = generic.NameObject("/FlateDecode")
    page["/Contents"] = writer.add_object(drawn)
    writer.update_container(page)
    out = BytesIO()
    writer.write(out)
    await check_fails(trust, out.getvalue(), tmp_path, "the file was modified after it was signed")


async def check_fails(trust, altered: bytes, tmp_path, said: str | None) -> None:
    """`hocba verify` says NOT VERIFIED (or cannot read the file), and pyHanko's validator does not judge it valid."""
    path = tmp_path / "altered.pdf"
    path.write_bytes(altered)
    code, output = run_verify(trust, path)
    assert code in (1, 2), output
    if code == 1:
        assert "NOT VERIFIED" in output
        if said:
            assert said in re.sub(r"\s+", " ", output)
    try:
        status = await pyhanko_verdict(trust, altered)
    except Exception:  # noqa: BLE001 - pyHanko refusing to read the altered file is a failure too
        return
    assert not status.bottom_line or not status.docmdp_ok


async def test_the_signature_check_reads_the_time_its_timestamp_proves(trust, copy):
    verdict = check_copy_signature(copy, trust.pki.anchors(), SCHOOL)
    assert verdict.ok, verdict.lines
    assert verdict.timestamped_at is not None


async def test_a_copy_of_another_schools_record_is_not_taken_for_this_schools_seal(trust, copy):
    verdict = check_copy_signature(copy, trust.pki.anchors(), "79000702")
    assert not verdict.ok
    assert any("not by the seal of the record's school (79000702)" in text for ok, text in verdict.lines if not ok)


async def test_the_timestamp_authority_is_asked_once_per_copy_after_one_sizing_request(trust, exported):
    """pyHanko sizes the signature with one timestamp the first time (kept for the command), then asks once a copy."""
    counting = InProcessTimeStamper(from_pki(trust.pki))
    shared = sealing(trust.pki, counting)
    unsigned = copy_pdf_bytes(exported.bundle, exported.qr, datetime.now(UTC))
    for _ in range(3):
        await shared.seal(unsigned, seal_chain(exported.bundle), key_ask(trust.pki, SCHOOL))
    assert counting.requests == 1 + 3


async def test_a_copy_is_not_sealed_without_a_timestamp_and_says_why(trust, exported):
    unsigned = copy_pdf_bytes(exported.bundle, exported.qr, datetime.now(UTC))
    nowhere = CopySealing.of(
        HttpTimeStamper(f"http://127.0.0.1:{free_port()}/", 2), trust.pki.anchors(), load_crls(trust.pki.crl_path)
    )
    with pytest.raises(Refused) as refused:
        await nowhere.seal(unsigned, seal_chain(exported.bundle), key_ask(trust.pki, SCHOOL))
    assert refused.value.reason == "not-sealed"
    assert str(refused.value).startswith("no signature timestamp: the timestamp authority at http://127.0.0.1:")


async def test_a_seal_renewed_since_the_record_was_sealed_signs_the_copy_naming_its_current_certificate(
    trust, signing_deps, exported
):
    """The bundle names the certificate the record was sealed with; signing answers with the seal's current one, and
    the copy is signed again naming it (one more ask), so it verifies."""
    calls: list[SealCopy] = []
    unsigned = copy_pdf_bytes(exported.bundle, exported.qr, datetime.now(UTC))
    earlier = list(trust.pki.chain(f"ht-{SCHOOL}"))  # stands for the seal's certificate before its renewal
    copy = await sealing(trust.pki).seal(unsigned, earlier, asking(trust, signing_deps, calls=calls))
    assert len(calls) == 2
    assert check_copy_signature(copy, trust.pki.anchors(), SCHOOL).ok
