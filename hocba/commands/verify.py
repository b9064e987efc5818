"""`hocba verify`: check a verification bundle or a printed copy offline, say what passed and what failed, and
which time each verdict relied on (the archive's admission time proven by a checkpoint, or the signer's stated time)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from hocba.commands import fail
from hocba.console import console
from hocba.pdf import read_copy
from shared.crypto.bundle import Verdict, archive_certificates, trust_with_bundle_crl, verify_bundle, verify_copy
from shared.crypto.certs import TrustStore
from shared.settings import Settings


def printed_qr(path: Path) -> str | None:
    """What the QR code printed on the PDF's first page says, when pdftoppm and zbarimg are installed."""
    if not (shutil.which("pdftoppm") and shutil.which("zbarimg")):
        return None
    with tempfile.TemporaryDirectory() as folder:
        image = Path(folder) / "page"
        subprocess.run(["pdftoppm", "-r", "200", "-png", "-f", "1", "-l", "1", str(path), str(image)], check=True)
        page = next(Path(folder).glob("page*.png"))
        found = subprocess.run(["zbarimg", "--raw", "-q", str(page)], capture_output=True, text=True)
        return found.stdout.strip() or ""


def check_file(path: Path, trust: TrustStore) -> list[Verdict]:
    """Verdicts on a bundle (JSON) or a certified copy (PDF: its bundle, its QR payload, its printed QR)."""
    if path.read_bytes()[:5] == b"%PDF-":
        bundle, qr = read_copy(path)
        verdicts = [verify_bundle(bundle, trust)]
        copy = verify_copy(qr, archive_certificates(bundle), trust_with_bundle_crl(trust, bundle), bundle)
        printed = printed_qr(path)
        section = copy.sections[0]
        if printed is None:
            section.add(True, "note: the printed QR image was not decoded (pdftoppm and zbarimg are not installed)")
        else:
            section.add(printed == qr, "the QR code printed on the page carries exactly this payload"
                        if printed == qr else "the QR code printed on the page does not carry the attached payload")
        return [*verdicts, copy]
    return [verify_bundle(json.loads(path.read_text()), trust)]


def show(verdict: Verdict) -> None:
    """Each section and line of a verdict (what came from the file is printed as text, never as markup)."""
    for section in verdict.sections:
        console.print(f"[bold]{escape(section.title)}[/bold]")
        for ok, text in section.lines:
            console.print(f"  {'[green]✓[/green]' if ok else '[red]✗[/red]'} {escape(text)}")
    if verdict.relied_on:
        console.print(f"[bold]time relied on[/bold]: {escape(verdict.relied_on)}")


def verify(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A bundle (.json) or a printed copy (.pdf).")],
    trust_anchor: Annotated[Path | None, typer.Option(help="Root certificate to trust (default: the PKI's).")] = None,
    crl: Annotated[Path | None, typer.Option(help="A CRL to use beside the one in the bundle (default: the PKI's).")] = None,
) -> None:
    """Verify where the content comes from, every signature, certificate chain, the signing order, the digest and
    the archive proof, offline; say which time each verdict relied on."""
    pki = Settings().pki_path()
    anchor = trust_anchor or pki / "ca" / "root.crt.pem"
    if not anchor.exists():
        fail(f"no trust anchor at {anchor}: pass --trust-anchor", 2)
    trust = TrustStore.from_files(anchor, [crl or pki / "ca" / "crl.pem"])
    verdicts = check_file(path, trust)
    console.print(f"[bold]{escape(str(path))}[/bold]: {escape(verdicts[0].subject)}, trust anchor {escape(str(anchor))}")
    for verdict in verdicts:
        show(verdict)
    failed = sum(1 for v in verdicts for s in v.sections for ok, _ in s.lines if not ok)
    if failed:
        console.print(f"[red]NOT VERIFIED: {failed} check(s) failed[/red]")
        raise typer.Exit(1)
    console.print("[green]VERIFIED: every check passed[/green]")
