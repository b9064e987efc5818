"""The public verification page in headless Chromium (Debian's `chromium`, driven by selenium), against a running
archive on real RabbitMQ and MongoDB-wire: the archive admits signed record versions (one of them later amended),
signs checkpoints and exports genuine bundles and a certified copy; the browser verifies them itself.

A genuine bundle, a genuine sealed PDF copy and the page at the copy's QR address pass; a bundle tampered in each way
(a grade changed, a signature byte flipped, a proof hash changed, the checkpoint's signature broken, a signature by a
certificate from another CA, the superseded note altered), a PDF copy with a changed grade, and a sealed copy whose
printed page was edited, whose seal signature has a byte flipped or which is not signed at all are refused; a wrong
key in the address is the same 404 as no leaf. Screenshots are kept under build/artifacts/verify-page/ (ignored).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from fpdf import FPDF
from pyhanko.pdf_utils.reader import PdfFileReader
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from hocba.pades import seal_chain
from hocba.pdf import copy_pdf_bytes, render_copy
from services.archive.app import build_app
from shared.contracts.archive import ExportRecord, ProofReply
from shared.contracts.signing import BatchCompleted, RecordsCompleted, seal_subject
from shared.crypto.bundle import address_key, copy_qr
from shared.crypto.canonical import canonical_json
from shared.crypto.jws import b64url, b64url_decode, protected_header, sign_detached
from shared.messaging import delete_exchanges, delete_queues
from shared.service import ServiceApp, serve
from shared.settings import Settings
from tests.browser import PHONE, QUIET, headless_chromium, screenshots_folder
from tests.copies import key_ask, sealed_copy, sealing
from tests.support import amqp_url, bind_queues, free_port, mongo_server
from tests.unit.archive.conftest import archive_keys
from tests.unit.signing.trust import SCHOOL, Trust, make_trust, signed_record

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "artifacts" / "verify-page"
#: What the records' documents say of the student (tests/records.py): the page shows none of it.
STUDENT_NAME = "Nguyễn Văn An"
AMENDMENT = {"supersedes": 1, "reason": "appeal-decision", "note": "phúc khảo", "requested_by": "ht-79000701"}


class ArchiveThread:
    """The archive service (consumers, schedule and HTTP routes, as `python -m services.archive` serves them) in an
    event loop of its own thread, so the test drives a browser while it runs."""

    def __init__(self, settings: Settings, trust: Trust) -> None:
        self.settings, self.trust = settings, trust
        self.loop = asyncio.new_event_loop()
        self.service: ServiceApp | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self.service = build_app(
            self.settings, keys=archive_keys(self.trust), issuer_keys=self.trust.issuer.public_keys()
        )
        await serve(self.service)

    def start(self, timeout: float = 60) -> ServiceApp:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while self.service is None or not self.service.health.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the archive did not start"
            time.sleep(0.05)
        return self.service

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 90) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        assert self.service is not None
        self.loop.call_soon_threadsafe(self.service.app.exit)
        self.thread.join(60)
        asyncio.run(delete_queues(self.settings.amqp_url, self.service.topology.queues))
        asyncio.run(delete_exchanges(self.settings.amqp_url, self.settings.names()))


@pytest.fixture(scope="module")
def trust(tmp_path_factory) -> Trust:
    return make_trust(tmp_path_factory.mktemp("verify-page-trust"))


@pytest.fixture(scope="module")
def mongo_url(tmp_path_factory) -> Iterator[str]:
    with mongo_server(tmp_path_factory.mktemp("mongo")) as url:
        yield url


@pytest.fixture(scope="module")
def archive(trust, mongo_url, tmp_path_factory) -> Iterator[tuple[ArchiveThread, str]]:
    port = free_port()
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("hocba"),
        namespace=f"tverify{os.getpid()}{port}.",
        amqp_url=amqp_url(),
        mongo_url=mongo_url,
        http_port=port,
        delivery_limit=3,
        chunk_size=10,
    )
    running = ArchiveThread(settings, trust)
    # What the archive announces (archived versions, checkpoints) has somewhere to go, as sync's queues are there
    # in a whole stack: a probe queue bound to every routing key.
    probes = asyncio.run(bind_queues(settings, "probe", ["#"]))
    with pytest.MonkeyPatch.context() as patch:
        # FastStream sets SIGINT/SIGTERM handlers as it runs, which only the main thread may do; this archive is
        # stopped by `ArchiveThread.stop` instead.
        patch.setattr("faststream.app.set_exit", lambda *args, **kwargs: None)
        running.start()
        try:
            yield running, f"http://127.0.0.1:{port}"
        finally:
            running.stop()
            asyncio.run(delete_queues(settings.amqp_url, probes.values()))


def archived(service: ServiceApp, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (service.registry.get_sample_value("hocba_records_archived_total") or 0) < count:
        assert time.monotonic() < deadline, f"the archive did not archive {count} versions"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def exported(archive, trust) -> dict[str, Any]:
    """Three records archived under a checkpoint, then record 1 amended (its version 2 supersedes version 1); the
    bundles of record 0 (with a certified copy's QR payload) and of record 1's superseded version 1."""
    running, _ = archive
    service = running.service
    assert service is not None
    running.call(
        service.bus.publish(RecordsCompleted(records=[signed_record(trust, n) for n in range(3)], batch_id="b"))
    )
    archived(service, 3)
    running.call(
        service.bus.publish(
            BatchCompleted(
                batch_id="b",
                school_code=SCHOOL,
                school_year="2025-2026",
                records_signed=3,
                records_total=3,
                records_completed=3,
            )
        )
    )
    running.call(service.bus.publish(RecordsCompleted(records=[signed_record(trust, 1, 2, amendment=AMENDMENT)])))
    archived(service, 4)

    def export(record_id: str, version: int, certified: bool = False) -> ProofReply:
        request = trust.staff.operator().signs(
            ExportRecord(record_id=record_id, version=version, certified_copy=certified, purpose="verification test")
        )
        return running.call(service.bus.request(request, ProofReply, timeout=60))

    export("rec-0001", 2)  # signs the checkpoint over the amendment too
    copy_reply = export("rec-0000", 1, certified=True)
    superseded = export("rec-0001", 1)
    assert copy_reply.bundle and copy_reply.qr and superseded.bundle
    assert superseded.bundle["status"]["superseded_by"] == 2
    return {"bundle": copy_reply.bundle, "qr": copy_reply.qr, "superseded": superseded.bundle}


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with headless_chromium(*QUIET) as driver:
        yield driver


@pytest.fixture(scope="module")
def artifacts() -> Path:
    return screenshots_folder(ARTIFACTS)


class Page:
    """A reader at the verification page."""

    def __init__(self, driver: WebDriver, base_url: str, artifacts: Path, files: Path) -> None:
        self.driver, self.base_url, self.artifacts, self.files = driver, base_url, artifacts, files

    def open(self, path: str = "/verify") -> None:
        self.driver.get(self.base_url + path)

    def verdict(self, timeout: float = 60) -> dict[str, Any]:
        """Once the page has checked what it was given: the verdict, and the text of each line by its mark."""
        WebDriverWait(self.driver, timeout).until(
            lambda d: d.find_element(By.ID, "result").get_attribute("data-done") == "true"
        )
        lines: dict[str, list[str]] = {"passed": [], "failed": [], "not-checked": [], "information": []}
        for item in self.driver.find_elements(By.CSS_SELECTOR, "#result li"):
            lines[item.get_attribute("data-mark") or "?"].append(item.text.replace("\n", " "))
        banner = self.driver.find_element(By.ID, "verdict")
        return {"ok": banner.get_attribute("data-ok") == "true", "banner": banner.text, **lines}

    def drop(self, name: str, data: bytes) -> dict[str, Any]:
        """Pick a file on the page (as dropping one does) and wait for the verdict."""
        path = self.files / name
        path.write_bytes(data)
        self.open()
        self.driver.find_element(By.ID, "file").send_keys(str(path))
        return self.verdict()

    def shot(self, name: str) -> Path:
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(PHONE[0], min(max(PHONE[1], int(height)), 4 * PHONE[1]))
        path = self.artifacts / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), path
        self.driver.set_window_size(*PHONE)
        return path


@pytest.fixture
def page(browser, archive, artifacts, tmp_path) -> Page:
    return Page(browser, archive[1], artifacts, tmp_path)


def as_json(bundle: dict[str, Any]) -> bytes:
    return json.dumps(bundle, ensure_ascii=False, indent=1).encode()


def flipped(jws: str) -> str:
    """The JWS with one byte of its signature changed."""
    head, payload, signature = jws.split(".")
    raw = bytearray(b64url_decode(signature))
    raw[10] ^= 0x01
    return f"{head}.{payload}.{b64url(bytes(raw))}"


def grade_changed(bundle: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(bundle)
    subject = changed["record"]["document"]["subjects"][0]
    assert subject["year"]["average"] == "8.5"
    subject["year"]["average"] = "9.5"
    return changed


def signed_by_another_ca(bundle: dict[str, Any], other: Trust) -> dict[str, Any]:
    """The school seal's signature made again, over the same record and header, by another PKI's seal certificate: a
    valid signature whose chain leads to another root."""
    changed = copy.deepcopy(bundle)
    header = protected_header(changed["signatures"][-1])
    fields = {k: v for k, v in header.items() if k not in ("alg", "kid", "x5c")}
    signer = other.signers.signer_for(seal_subject(SCHOOL))
    changed["signatures"][-1] = sign_detached(signer, canonical_json(changed["record"]["document"]), fields)
    return changed


def test_a_genuine_bundle_passes_every_check_in_the_browser(page, exported):
    verdict = page.drop("genuine.json", as_json(exported["bundle"]))
    page.shot("01-genuine-bundle")
    (page.artifacts / "genuine-bundle.json").write_bytes(as_json(exported["bundle"]))
    assert verdict["ok"], verdict["failed"]
    assert not verdict["failed"]
    passed = " ".join(verdict["passed"])
    for check in (
        "RFC 8785",
        "ES256",
        "RFC 9162 inclusion",
        "signed by the archive",
        "chains to the trust anchor",
        "consistency proof",
        "is not revoked",
        "sealed by grades",
    ):
        assert check in passed, (check, verdict)
    # Dropped on its own, a bundle brings no QR payload: that is said, not passed.
    assert any("no QR payload" in line for line in verdict["not-checked"])
    summary = page.driver.find_element(By.ID, "summary").text
    assert "2025-2026" in summary and "6A1" in summary and "giờ Việt Nam" in summary
    assert STUDENT_NAME not in page.driver.find_element(By.TAG_NAME, "body").text


@pytest.mark.parametrize(
    ("tamper", "refused_for"),
    [
        ("grade", "digest"),
        ("signature", "ES256 signature"),
        ("proof", "inclusion proof"),
        ("checkpoint", "checkpoint of size"),
        ("other-ca", "trust anchor"),
    ],
)
def test_a_tampered_bundle_is_refused(page, exported, trust, tmp_path, tamper, refused_for):
    bundle = copy.deepcopy(exported["bundle"])
    if tamper == "grade":
        bundle = grade_changed(bundle)
    elif tamper == "signature":
        bundle["signatures"][1] = flipped(bundle["signatures"][1])
    elif tamper == "proof":
        first = bundle["log"]["inclusion_proof"][0]
        bundle["log"]["inclusion_proof"][0] = ("0" if first[0] != "0" else "1") + first[1:]
    elif tamper == "checkpoint":
        bundle["checkpoint"]["signature"] = flipped(bundle["checkpoint"]["signature"])
    else:
        bundle = signed_by_another_ca(bundle, make_trust(tmp_path / "other"))
    verdict = page.drop(f"tampered-{tamper}.json", as_json(bundle))
    page.shot(f"02-tampered-{tamper}")
    assert not verdict["ok"], f"a bundle with its {tamper} tampered passed"
    assert any(refused_for in line for line in verdict["failed"]), verdict["failed"]


def test_a_superseded_bundle_whose_note_says_current_is_refused(page, exported):
    genuine = page.drop("superseded.json", as_json(exported["superseded"]))
    assert genuine["ok"], genuine["failed"]
    assert any("SUPERSEDED by version 2" in line for line in genuine["passed"])
    assert "SUPERSEDED by version 2" in page.driver.find_element(By.ID, "summary").text

    altered = copy.deepcopy(exported["superseded"])
    altered["status"]["superseded_by"] = None
    verdict = page.drop("superseded-altered.json", as_json(altered))
    page.shot("03-superseded-note-altered")
    assert not verdict["ok"]
    assert any("SUPERSEDED by version 2" in line and "the bundle states current" in line for line in verdict["failed"])


@pytest.fixture(scope="module")
def sealed(exported, archive, trust) -> bytes:
    """The certified copy of record 0 as `hocba archive print` writes it: PDF/A-3 sealed PAdES B-LT by the seal."""
    qr = copy_qr(archive[1], exported["bundle"], exported["qr"])
    return asyncio.run(sealed_copy(trust.pki, exported["bundle"], qr))


#: What the page says of a sealed copy's own signature when every check of it passed.
PDF_SIGNATURE_CHECKS = (
    "starts at the file's first byte and leaves out exactly the /Contents string",
    "covers the file up to the end of the signed revision",
    "an appended update adding validation data only",
    "is the signature's messageDigest: the printed page and the attachments are unchanged",
    "ECDSA P-256 (SHA-256) signature of",
    "signed by the seal of the record's school (" + SCHOOL + ")",
    "chains to the trust anchor",
)


def pdf_signature_lines(page: Page) -> dict[str, list[str]]:
    """The lines of the page's section on the PDF's own signature, by mark."""
    sections = page.driver.find_elements(By.CSS_SELECTOR, "#result section.checks")
    [section] = [s for s in sections if "The PDF's signature" in s.find_element(By.TAG_NAME, "h3").text]
    lines: dict[str, list[str]] = {"passed": [], "failed": [], "not-checked": [], "information": []}
    for item in section.find_elements(By.TAG_NAME, "li"):
        lines[item.get_attribute("data-mark") or "?"].append(item.text.replace("\n", " "))
    return lines


def page_content(data: bytes) -> tuple[bytes, int, int]:
    """The printed page's content stream in the copy: its object number, where its bytes start and how many."""
    at = data.index(b"/Type /Page\n")
    number = re.search(rb"/Contents (\d+) 0 R", data[data.rindex(b" obj\n", 0, at) : at])
    assert number, "the page names its content stream"
    head = re.search(rb"\n" + number.group(1) + rb" 0 obj\n<<[^>]*?/Length (\d+)[^>]*>>\nstream\n", data)
    assert head, "the content stream's object"
    return number.group(1), head.end(), int(head.group(1))


def page_edited(data: bytes) -> bytes:
    """The sealed copy with a text operator of its printed page changed (the first line's position, `Td`), the page's
    content stream compressed again and padded to its length, so every byte outside it stays where it was signed."""
    _, start, length = page_content(data)
    content = zlib.decompress(data[start : start + length])
    line = content.rindex(b"BT ", 0, content.index(b" Td (")) + 3
    x = content[line : content.index(b" ", line)]
    moved = f"{float(x) + 7:.2f}".encode()
    assert len(moved) == len(x)
    compressed = zlib.compress(content[:line] + moved + content[line + len(x) :], 9)
    assert len(compressed) <= length, "the edited page compresses into its room"
    return data[:start] + compressed + b"\n" * (length - len(compressed)) + data[start + length :]


def page_appended(data: bytes) -> bytes:
    """The sealed copy with an incremental update appended after signing that redefines the page's content stream."""
    number, _, _ = page_content(data)
    text = b"BT /F1 12 Tf 100 700 Td (9.7) Tj ET"
    update = b"\n%s 0 obj\n<< /Length %d >>\nstream\n%s\nendstream\nendobj\n" % (number, len(text), text)
    return data + update


def seal_value_flipped(data: bytes) -> bytes:
    """The sealed copy with a hex digit of the seal's ECDSA signature value (in /Contents) changed."""
    [signature] = PdfFileReader(BytesIO(data), strict=False).embedded_signatures
    contents = bytes(signature.sig_object["/Contents"])
    value = contents.index(signature.signer_info["signature"].dump())
    at = int(signature.sig_object["/ByteRange"][1]) + 1 + 2 * value + 20
    changed = bytearray(data)
    changed[at] = ord("0") if changed[at] != ord("0") else ord("1")
    return bytes(changed)


def test_a_genuine_sealed_pdf_copy_passes_with_its_own_signature_checked(page, exported, sealed):
    verdict = page.drop("copy.pdf", sealed)
    page.shot("04-genuine-pdf")
    assert verdict["ok"], verdict["failed"]
    assert any("QR payload is signed by the archive" in line for line in verdict["passed"])
    assert any("the QR's address names this entry" in line for line in verdict["passed"])
    signature = pdf_signature_lines(page)
    assert not signature["failed"]
    passed = " ".join(signature["passed"])
    for check in PDF_SIGNATURE_CHECKS:
        assert check in passed, (check, signature)
    assert "Chữ ký của tệp PDF" in page.driver.find_element(By.ID, "result").text


def unsigned_copy(exported: dict[str, Any], base: str) -> bytes:
    return copy_pdf_bytes(exported["bundle"], copy_qr(base, exported["bundle"], exported["qr"]), datetime.now(UTC))


@pytest.mark.parametrize(
    ("tamper", "refused_for"),
    [
        ("page", "is NOT the signature's messageDigest: the file was changed after signing"),
        ("seal-signature", "over the signed attributes does NOT verify"),
        ("unsigned", "the PDF carries no signature"),
        ("appended-page", "the update appended after signing changes object(s)"),
    ],
)
def test_a_copy_whose_page_or_seal_was_changed_or_that_is_unsigned_is_refused(
    page, exported, archive, sealed, tamper, refused_for
):
    """The original attack: the printed page edited (a text operator of the page changed) with the attached bundle left
    intact. Every check of the bundle and its QR code still passes; the PDF's own signature does not, and the copy is
    NOT VERIFIED."""
    if tamper == "page":
        data = page_edited(sealed)
    elif tamper == "seal-signature":
        data = seal_value_flipped(sealed)
    elif tamper == "unsigned":
        data = unsigned_copy(exported, archive[1])
    else:
        data = page_appended(sealed)
    verdict = page.drop(f"tampered-{tamper}.pdf", data)
    page.shot(f"05-pdf-{tamper}")
    assert not verdict["ok"], f"a copy ({tamper}) passed"
    signature = pdf_signature_lines(page)
    assert any(refused_for in line for line in signature["failed"]), signature
    assert verdict["failed"] == signature["failed"], "only the PDF's own signature fails: the bundle is genuine"
    assert "NOT VERIFIED" in verdict["banner"]


def test_a_pdf_copy_with_a_changed_grade_is_refused(page, exported, archive, tmp_path):
    base = archive[1]
    qr = copy_qr(base, exported["bundle"], exported["qr"])
    tampered = render_copy(grade_changed(exported["bundle"]), qr, tmp_path / "tampered.pdf", datetime.now(UTC), base)
    refused = page.drop("tampered.pdf", tampered.read_bytes())
    page.shot("05-tampered-pdf")
    assert not refused["ok"]
    assert any("digest" in line for line in refused["failed"]), refused["failed"]
    assert "NOT VERIFIED, only what the file states" in page.driver.find_element(By.ID, "summary").text


def reads(base: str) -> dict[tuple[str, str], float]:
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    counted = {}
    for line in text.splitlines():
        if line.startswith("hocba_archive_public_reads_total{"):
            labels, value = line.split("} ")
            fields = dict(part.split("=") for part in labels.split("{")[1].split(","))
            counted[(fields["route"].strip('"'), fields["status"].strip('"'))] = float(value)
    return counted


def status_of(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_qr_address_shows_the_summary_and_passes_and_a_wrong_key_is_the_404_of_no_leaf(page, exported, archive):
    base = archive[1]
    bundle = exported["bundle"]
    index, key = bundle["log"]["leaf_index"], address_key(bundle["log"]["leaf_hash"])
    before = reads(base)
    page.open(f"/v/{index}.{key}#{exported['qr']}")
    verdict = page.verdict()
    page.shot("06-qr-address")
    assert verdict["ok"], verdict["failed"]
    assert any("QR payload is signed by the archive" in line for line in verdict["passed"])
    summary = page.driver.find_element(By.ID, "summary").text
    for shown in (SCHOOL, "2025-2026", "6A1", "Hiện hành / current", "Giáo viên chủ nhiệm", "giờ Việt Nam"):
        assert shown in summary, shown
    assert STUDENT_NAME not in page.driver.find_element(By.TAG_NAME, "body").text
    fingerprint = page.driver.find_element(By.ID, "anchor-fingerprint").text.replace(":", "").lower()
    anchor = page.driver.find_element(By.CSS_SELECTOR, 'meta[name="hocba-anchor-sha256"]').get_attribute("content")
    assert fingerprint == anchor and len(anchor) == 64

    wrong = ("A" if key[0] != "A" else "B") + key[1:]
    answers = {
        "wrong key": status_of(f"{base}/v1/copies/{index}.{wrong}"),
        "no such leaf": status_of(f"{base}/v1/copies/{index + 1000}.{key}"),
        "unreadable": status_of(f"{base}/v1/copies/{index}"),
    }
    assert {status for status, _ in answers.values()} == {404}
    assert len({body for _, body in answers.values()}) == 1, "each 404 reads the same"
    assert status_of(f"{base}/v/{index}.{wrong}")[0] == 404
    after = reads(base)
    assert after[("copy", "404")] - before.get(("copy", "404"), 0) == 3
    assert after[("copy", "200")] - before.get(("copy", "200"), 0) == 1
    assert after[("copy-page", "200")] - before.get(("copy-page", "200"), 0) == 1
    assert after[("copy-page", "404")] - before.get(("copy-page", "404"), 0) == 1


def test_the_page_refuses_a_file_that_is_not_a_bundle_and_allows_nothing_but_its_own_origin(page, archive):
    verdict = page.drop("list.json", b"[1, 2, 3]")
    assert not verdict["ok"]
    assert any("not a hocba verification bundle" in line for line in verdict["failed"])
    with urllib.request.urlopen(archive[1] + "/verify", timeout=10) as answer:
        policy = answer.headers["content-security-policy"]
        assert answer.headers["referrer-policy"] == "no-referrer"
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy


def certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool, pss: bool = False) -> bytes:
    """A DER certificate of `key` for `subject`, signed by `issuer_key` (RSA PKCS#1 v1.5, or PSS when `pss`)."""
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    padded = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH) if pss else None
    return builder.sign(issuer_key, hashes.SHA256(), rsa_padding=padded).public_bytes(Encoding.DER)


def test_the_page_verifies_a_chain_signed_by_rsa_certification_authorities(page):
    """Licensed CAs' roots and intermediates are RSA (PKCS#1 v1.5): each link is verified with WebCrypto; a link
    whose signature is altered, or signed RSA-PSS (which the page does not read), fails."""
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer_key = ec.generate_private_key(ec.SECP256R1())
    root = certificate("Licensed root", root_key, "Licensed root", root_key, ca=True)
    issuing = certificate("Licensed issuing CA", issuing_key, "Licensed root", root_key, ca=True)
    signer = certificate("A school seal", signer_key, "Licensed issuing CA", issuing_key, ca=False)
    pss = certificate("A school seal", signer_key, "Licensed issuing CA", issuing_key, ca=False, pss=True)
    altered = bytearray(signer)
    altered[-5] ^= 0x01
    page.open()
    links = page.driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const der = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        (async () => {
          const [root, issuing, signer, pss, altered] = await Promise.all(
            arguments[0].map((c) => hocbaVerify.parseCertificate(der(c))));
          return [
            await hocbaVerify.issuedBy(issuing, root), await hocbaVerify.issuedBy(signer, issuing),
            await hocbaVerify.issuedBy(pss, issuing), await hocbaVerify.issuedBy(altered, issuing),
            await hocbaVerify.issuedBy(signer, root),
          ];
        })().then(done, (e) => done(String(e)));
        """,
        [base64.b64encode(c).decode() for c in (root, issuing, signer, pss, bytes(altered))],
    )
    assert links == [True, True, False, False, False]


def test_a_copy_whose_attachments_are_compressed_is_read_and_verified(page, exported, archive, trust):
    """A PDF writer may compress the attached files (FlateDecode): the page inflates them (DecompressionStream). The
    copy is sealed as any copy is, so its own signature passes too."""
    pdf = FPDF()
    pdf.add_page()
    pdf.embed_file(bytes=as_json(exported["bundle"]), basename="verification-bundle.json", compress=True)
    qr = copy_qr(archive[1], exported["bundle"], exported["qr"])
    pdf.embed_file(bytes=qr.encode(), basename="qr-payload.txt", compress=True)
    bundle = exported["bundle"]
    ask = key_ask(trust.pki, bundle["record"]["school_code"])
    data = asyncio.run(sealing(trust.pki).seal(bytes(pdf.output()), seal_chain(bundle), ask))
    assert data.count(b"/FlateDecode") >= 2
    verdict = page.drop("compressed.pdf", data)
    assert verdict["ok"], verdict["failed"]
    assert any("the QR's address names this entry" in line for line in verdict["passed"])


def test_the_pages_rfc_8785_json_is_the_reference_implementations(page):
    """The page rebuilds signed bytes itself: its canonical JSON equals `rfc8785`'s for the cases RFC 8785 names."""
    values = [
        {"b": [1, 2.5, -0.0, 1e21, 1e-7, 0.1, 123456789012345680000.0], "a": None, "c": True},
        {"\U0001f600": 1, "\ufb33": 2, "\u20ac": 3, "a": {"z": '\u0000\u001f"\\/\u007f\u2028é'}},
        {"Nguyễn": "Văn An", "subjects": [{"name": "Toán", "year": {"average": "8.5"}}]},
    ]
    page.open()
    written = page.driver.execute_script("return arguments[0].map((v) => hocbaVerify.canonical(v));", values)
    assert written == [canonical_json(v).decode() for v in values]


def test_a_dropped_anchor_file_is_the_one_chains_must_lead_to(page, exported, trust, tmp_path):
    """A reader who drops the department's anchor file checks against it; another root is shown as differing from the
    one the page ships, and the genuine bundle no longer chains to it."""
    bundle = page.files / "bundle.json"
    bundle.write_bytes(as_json(exported["bundle"]))
    ours, theirs = page.files / "root.crt.pem", page.files / "other-root.crt.pem"
    shutil.copy(trust.pki.anchor_path, ours)
    shutil.copy(make_trust(tmp_path / "other").pki.anchor_path, theirs)

    page.open()
    page.driver.find_element(By.ID, "file").send_keys(f"{ours}\n{bundle}")
    assert page.verdict()["ok"]
    assert page.driver.find_element(By.ID, "anchor-note").text == ""

    page.open()
    page.driver.find_element(By.ID, "file").send_keys(f"{theirs}\n{bundle}")
    verdict = page.verdict()
    page.shot("07-another-anchor-dropped")
    assert not verdict["ok"]
    assert any("does not lead to the trust anchor" in line for line in verdict["failed"])
    assert "differs from the anchor this page ships" in page.driver.find_element(By.ID, "anchor-note").text


def crl_revoking(trust: Trust, serial: int, since: datetime) -> str:
    """The PKI root's CRL (PEM) listing `serial` as invalid since `since` (RFC 5280 invalidityDate), for a reason
    that is not a key compromise."""
    root = x509.load_pem_x509_certificate(trust.pki.anchor_path.read_bytes())
    key = serialization.load_pem_private_key(trust.pki.root_key_path.read_bytes(), trust.pki.passphrase)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    now = datetime.now(UTC)
    revoked = (
        x509.RevokedCertificateBuilder()
        .serial_number(serial)
        .revocation_date(now)
        .add_extension(x509.CRLReason(x509.ReasonFlags.affiliation_changed), critical=False)
        .add_extension(x509.InvalidityDate(since.replace(tzinfo=None)), critical=False)
        .build()
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.subject)
        .last_update(now)
        .next_update(now + timedelta(days=7))
        .add_revoked_certificate(revoked)
        .sign(key, hashes.SHA256())
    )
    return crl.public_bytes(Encoding.PEM).decode()


def test_a_signer_revoked_before_signing_or_a_bundle_without_its_crl_is_refused(page, exported, trust):
    """The page reads the bundle's CRL itself (its signature by the root checked): a certificate invalid since before
    the signature fails; a bundle stripped of its CRL fails too, as `hocba verify` judges it, never passes unseen."""
    bundle = copy.deepcopy(exported["bundle"])
    header = protected_header(bundle["signatures"][0])
    teacher = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    signed_at = datetime.fromisoformat(header["signed_at"])
    bundle["crl"] = crl_revoking(trust, teacher.serial_number, signed_at - timedelta(hours=1))
    verdict = page.drop("revoked.json", as_json(bundle))
    page.shot("08-signer-revoked")
    assert not verdict["ok"]
    assert any("was revoked at" in line and "before the signing time" in line for line in verdict["failed"])

    stripped = copy.deepcopy(exported["bundle"])
    del stripped["crl"]
    verdict = page.drop("no-crl.json", as_json(stripped))
    assert not verdict["ok"]
    assert any("carries no CRL" in line for line in verdict["failed"])
