"""`hocba verify`: check a verification bundle or a printed copy offline, say what passed, what failed and what could
not be checked, and which time each verdict relied on (the archive's admission time proven by a checkpoint, or the
signer's stated time).

Exit codes: 0 verified (every check made passed), 1 not verified (a check failed), 2 the input or the trust anchor
could not be read (each said in one sentence: what was found, what was expected).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography import x509
from pydantic import ValidationError
from rich.markup import escape

from hocba.commands import fail
from hocba.console import console
from hocba.pades import check_copy_signature
from hocba.pdf import NotACopy, read_copy
from shared.crypto.bundle import (
    Mark,
    Unreadable,
    Verdict,
    archive_certificates,
    trust_with_bundle_crl,
    verify_bundle,
    verify_copy,
)
from shared.crypto.certs import TrustStore, load_certificates, load_crls
from shared.settings import Settings

#: Exit codes, as the command's help states them.
VERIFIED, NOT_VERIFIED, UNREADABLE = 0, 1, 2
EXPECTED = "expected a verification bundle (.json, from `hocba archive export`) or a printed copy (.pdf)"
#: The data folder a stack keeps its PKI in, when none is configured.
DEFAULT_DATA_DIR = Path(".hocba")
ANCHOR = Path("ca") / "root.crt.pem"
CRL = Path("ca") / "crl.pem"
MARKS = {
    Mark.PASSED: "[green]✓[/green]",
    Mark.FAILED: "[red]✗[/red]",
    Mark.NOT_CHECKED: "[yellow]not checked:[/yellow]",
    Mark.INFORMATION: "[dim]·[/dim]",
}


@dataclass(frozen=True)
class PrintedQr:
    """What the QR code printed on a copy's first page says, or (`payload` None) why it could not be read."""

    payload: str | None
    why: str = ""


def printed_qr(path: Path) -> PrintedQr:
    """The QR code printed on the PDF's first page, decoded with pdftoppm and zbarimg when they are installed."""
    missing = [tool for tool in ("pdftoppm", "zbarimg") if not shutil.which(tool)]
    if missing:
        return PrintedQr(None, f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed")
    with tempfile.TemporaryDirectory() as folder:
        image = Path(folder) / "page"
        rendered = subprocess.run(
            ["pdftoppm", "-r", "200", "-png", "-f", "1", "-l", "1", str(path), str(image)], capture_output=True
        )
        pages = sorted(Path(folder).glob("page*.png"))
        if rendered.returncode != 0 or not pages:
            return PrintedQr(None, "pdftoppm could not draw the first page")
        found = subprocess.run(["zbarimg", "--raw", "-q", str(pages[0])], capture_output=True, text=True)
        payload = found.stdout.strip()
        if not payload:
            return PrintedQr(None, "zbarimg found no QR code it could read on the first page")
        return PrintedQr(payload)


def read_input(path: Path) -> tuple[dict[str, Any], str | None]:
    """The bundle in `path` and, for a printed copy (PDF), its QR payload; an unreadable input ends the command
    with exit code 2 and a sentence saying what was found."""
    if not path.exists():
        fail(f"{path}: no such file; {EXPECTED}", UNREADABLE)
    if path.is_dir():
        fail(f"{path} is a folder, not a file; {EXPECTED}", UNREADABLE)
    if not path.is_file():
        fail(f"{path} is not a regular file; {EXPECTED}", UNREADABLE)
    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"{path} cannot be read ({exc.strerror}); {EXPECTED}", UNREADABLE)
    if b"%PDF-" in data[:1024]:  # where a PDF reader looks for the header
        try:
            return read_copy(path)
        except NotACopy as exc:
            fail(f"{path}: {exc}", UNREADABLE)
    try:
        bundle = json.loads(data)
    except ValueError:
        fail(f"{path} is neither JSON nor a PDF; {EXPECTED}", UNREADABLE)
    if not isinstance(bundle, dict):
        found = "a JSON list" if isinstance(bundle, list) else "JSON that is not an object"
        fail(f"{path} holds {found}, not a verification bundle; {EXPECTED}", UNREADABLE)
    return bundle, None


def check(path: Path, bundle: dict[str, Any], qr: str | None, trust: TrustStore) -> list[Verdict]:
    """Verdicts on a bundle, and for a printed copy also on its QR payload, the QR code printed on its page and the PDF's
    PAdES signature by the school's seal (`hocba.pades.check_copy_signature`: the page and the attachment as signed)."""
    try:
        verdicts = [verify_bundle(bundle, trust, configured_tsa_anchors())]
    except Unreadable as exc:
        fail(f"{path}: {exc}", UNREADABLE)
    if qr is None:
        return verdicts
    copy = verify_copy(qr, archive_certificates(bundle), trust_with_bundle_crl(trust, bundle), bundle)
    section = copy.sections[0]
    printed = printed_qr(path)
    if printed.payload is None:
        section.not_checked("the QR code printed on the page", printed.why)
    elif printed.payload == qr:
        section.add(True, "the QR code printed on the page carries exactly the attached payload")
    else:
        section.add(False, "the QR code printed on the page does not carry the attached payload")
    sealed = copy.section("The PDF's signature (PAdES, the school's seal)")
    school = (bundle.get("record") or {}).get("school_code")
    signature = check_copy_signature(path.read_bytes(), trust.anchors, school if isinstance(school, str) else None)
    for ok, text in signature.lines:
        sealed.add(ok, text)
    if signature.ok:
        sealed.inform("the text printed on the page is under the seal's signature: as the school printed it")
    return [*verdicts, copy]


def trust_store(anchor: Path | None, crl: Path | None, data_dir: Path | None) -> tuple[Path, TrustStore]:
    """The trust anchor (and CRLs) to verify against: `--anchor`, else the PKI of the configured data folder; a
    missing or unreadable one ends the command with exit code 2 and what to do."""
    try:
        settings = Settings()
    except ValidationError as exc:
        fail(f"the HOCBA_ settings in the environment cannot be read ({exc.errors()[0]['msg']})", UNREADABLE)
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    pki = _pki_folder(settings, configured=data_dir is not None)
    if anchor is not None:
        anchor = anchor.expanduser().absolute()
        if not anchor.is_file():
            fail(
                f"no trust anchor at {anchor}: --anchor names no file; give the root CA's certificate (PEM)", UNREADABLE
            )
    else:
        anchor = (pki / ANCHOR).absolute()
        if not anchor.is_file():
            fail(
                f"no trust anchor at {anchor}: pass --anchor "
                "with the root CA's certificate (PEM), or point HOCBA_DATA_DIR (or HOCBA_PKI_DIR, or --data-dir) at "
                "the stack's data folder",
                UNREADABLE,
            )
    crls = [crl.expanduser().absolute()] if crl is not None else [p for p in [(pki / CRL).absolute()] if p.is_file()]
    if crl is not None and not crls[0].is_file():
        fail(f"no CRL at {crls[0]}: --crl names no file; give a CRL (PEM), or leave it out", UNREADABLE)
    try:
        anchors = load_certificates(anchor)
    except (OSError, ValueError):
        anchors = []
    if not anchors:
        fail(f"{anchor} holds no PEM certificate: the trust anchor is the root CA's certificate (PEM)", UNREADABLE)
    try:
        return anchor, TrustStore(anchors, [c for p in crls for c in load_crls(p)])
    except (OSError, ValueError):
        fail(f"{crls[0]} is not a readable CRL: expected the PKI's crl.pem (PEM)", UNREADABLE)


def _pki_folder(settings: Settings, configured: bool) -> Path:
    """The PKI folder: HOCBA_PKI_DIR, else `pki` in the configured data folder; with neither configured, in the
    nearest `.hocba` folder of the current directory or one above it (the repository's, from any folder in it)."""
    if settings.pki_dir is not None or configured or "data_dir" in settings.model_fields_set:
        return settings.pki_path()
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / DEFAULT_DATA_DIR / "pki" / ANCHOR).is_file():
            return folder / DEFAULT_DATA_DIR / "pki"
    return settings.pki_path()


def configured_tsa_anchors() -> list[x509.Certificate]:
    """The certificates a production TSA chains to (HOCBA_TSA_ANCHOR), beside the trust anchor; none when unset (the
    development TSA chains to the PKI's root)."""
    path = Settings().tsa_anchor
    if path is None:
        return []
    try:
        return load_certificates(path.expanduser())
    except (OSError, ValueError):
        fail(f"no TSA anchor at {path} (HOCBA_TSA_ANCHOR): give the TSA's root certificate (PEM)", UNREADABLE)


def show(verdict: Verdict) -> None:
    """Each section and line of a verdict (what came from the file is printed as text, never as markup)."""
    for section in verdict.sections:
        console.print(f"[bold]{escape(section.title)}[/bold]")
        for mark, text in section.lines:
            console.print(f"  {MARKS[mark]} {escape(text)}")
    if verdict.relied_on:
        console.print(f"[bold]time relied on[/bold]: {escape(verdict.relied_on)}")


def verify(
    path: Annotated[Path, typer.Argument(help="A bundle (.json) or a printed copy (.pdf).")],
    anchor: Annotated[
        Path | None,
        typer.Option(
            "--anchor",
            "--trust-anchor",
            help="The root CA certificate (PEM) to trust; a relative path is taken from the current folder "
            "(default: the PKI of the data folder).",
        ),
    ] = None,
    crl: Annotated[
        Path | None, typer.Option(help="A CRL to use beside those in the bundle (default: the PKI's, when there).")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="The stack's data folder, whose pki/ holds the trust anchor (default: HOCBA_DATA_DIR)."),
    ] = None,
) -> None:
    """Verify where the content comes from, every signature, certificate chain, the signing order, the digest and
    the archive proof, offline; say which time each verdict relied on.

    Each line is marked ✓ (passed), ✗ (failed), "not checked:" (could not be checked, and why) or · (information,
    such as what the archive states without a signature over it).

    The trust anchor is --anchor, else ca/root.crt.pem of the PKI: HOCBA_PKI_DIR, else pki/ in the data folder
    (--data-dir, HOCBA_DATA_DIR, else the nearest .hocba of the current folder or one above it).

    Exit codes: 0 verified (every check made passed; the verdict names what was not checked), 1 not verified (a check
    failed), 2 the file or the trust anchor could not be read (not a file, not JSON, not a bundle or a printed copy,
    a part missing).
    """
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # a malformed PDF is told in one sentence, not in warnings
    bundle, qr = read_input(path)
    anchor, trust = trust_store(anchor, crl, data_dir)
    verdicts = check(path, bundle, qr, trust)
    console.print(
        f"[bold]{escape(str(path))}[/bold]: {escape(verdicts[0].subject)}, trust anchor {escape(str(anchor))}"
    )
    for verdict in verdicts:
        show(verdict)
    failed = [text for v in verdicts for text in v.failed]
    unchecked = "; ".join(what for v in verdicts for what in v.not_checked)
    also = f"; [yellow]not checked: {escape(unchecked)}[/yellow]" if unchecked else ""
    if failed:
        console.print(f"[red]NOT VERIFIED: {len(failed)} check(s) failed[/red]{also}")
        raise typer.Exit(NOT_VERIFIED)
    if unchecked:
        console.print(f"[green]VERIFIED: every check made passed[/green]{also}")
    else:
        console.print("[green]VERIFIED: every check passed[/green]")
