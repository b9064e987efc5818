"""`hocba pki`: the development PKI (root CA, school seals, staff and service certificates, CRL).

For development and tests only. The PKI goes under the ignored data folder (`.hocba/pki` by
default, or HOCBA_PKI_DIR). Private keys are PKCS#8 files encrypted under HOCBA_PKI_PASSPHRASE —
when it is unset, a random development passphrase is generated once and kept beside the PKI with
0600 permissions (fine for a laptop, never for production) — or live in a PKCS#11 token.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from rich.markup import escape
from rich.table import Table

from hocba import demo_data
from hocba.commands import fail
from hocba.console import console
from hocba.staff import certificate_holders
from shared.crypto.pkcs11 import TokenConfig
from shared.crypto.pki import CRL_LIFETIME, DevPki, Holder, service_holders
from shared.settings import Settings

app = typer.Typer(
    help="The development PKI: certificates for staff, school seals and the services (archive, svc-grades).",
    no_args_is_help=True,
)

#: What `hocba pki init` (and a stack without a PKI) covers unless told otherwise.
DEFAULT_SCHOOLS = 3
DEFAULT_CLASSES = 30
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def class_names(count: int) -> list[str]:
    """The demo's class names: 6A1, 6A2, … (40 students a class)."""
    return [f"6A{n}" for n in range(1, count + 1)]


def demo_holders(schools: int = DEFAULT_SCHOOLS, classes: int = DEFAULT_CLASSES) -> list[Holder]:
    """Certificate holders for the demo's first `schools` schools with `classes` classes each, and the services'
    own certificates (the archive's, and grades' that seals the records it assembles)."""
    return [
        *certificate_holders([(s.code, s.name) for s in demo_data.schools(schools)], class_names(classes)),
        *service_holders(),
    ]


def open_pki(folder: Path | None = None, settings: Settings | None = None) -> DevPki:
    settings = settings or Settings()
    passphrase = settings.pki_passphrase.encode() if settings.pki_passphrase else None
    return DevPki(folder or settings.pki_path(), passphrase, settings.pkcs11_pin)


def ensure_dev_pki(
    folder: Path,
    schools: int = DEFAULT_SCHOOLS,
    classes: int = DEFAULT_CLASSES,
    report: Callable[[str], None] = lambda _: None,
) -> DevPki:
    """The development PKI in `folder`, created (or completed) for the demo's staff when needed."""
    pki = open_pki(folder)
    issued = pki.create(demo_holders(schools, classes))
    if issued:
        report(f"development PKI at {folder}: {issued} certificates issued")
    elif pki.renew_crl():
        report(f"development PKI at {folder}: its CRL was due for renewal and is re-issued")
    return pki


def enrol(pki: DevPki, schools: Iterable[tuple[str, str, Iterable[str]]]) -> int:
    """Certificates for the homeroom teachers, principal and seal of each (code, name, classes), and the services'
    own, if missing."""
    holders = [h for code, name, classes in schools for h in certificate_holders([(code, name)], sorted(set(classes)))]
    return pki.create([*holders, *service_holders()])


def init_softhsm(folder: Path, label: str, pin: str) -> dict[str, str]:
    """A SoftHSM2 token of the PKI's own (tokens under the PKI folder); returns the environment it needs."""
    tokens = folder / "softhsm" / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    config = folder / "softhsm" / "softhsm2.conf"
    config.write_text(f"directories.tokendir = {tokens.resolve()}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {"SOFTHSM2_CONF": str(config.resolve())}
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", pin],
        check=True,
        capture_output=True,
        env={**os.environ, **env},
    )
    return env


@app.command("init")
def init(
    folder: Annotated[Path | None, typer.Option("--dir", help="PKI folder (default HOCBA_PKI_DIR or .hocba/pki).")] = None,
    schools: Annotated[int, typer.Option(min=1, help="Demo schools to issue certificates for.")] = DEFAULT_SCHOOLS,
    classes: Annotated[int, typer.Option(min=1, help="Classes per school (one homeroom teacher each).")] = DEFAULT_CLASSES,
    softhsm: Annotated[bool, typer.Option(help="Generate the signing keys inside a SoftHSM2 token of the PKI's own.")] = False,
    pkcs11_module: Annotated[str | None, typer.Option(help="Or inside this PKCS#11 module's token…")] = None,
    token_label: Annotated[str, typer.Option(help="…labelled so (the PIN comes from HOCBA_PKCS11_PIN).")] = "hocba",
) -> None:
    """Create the development PKI, or add what is missing to it (idempotent)."""
    settings = Settings()
    pki = open_pki(folder, settings)
    token = None
    if softhsm or pkcs11_module:
        pin = settings.pkcs11_pin or os.environ.get("HOCBA_PKCS11_PIN")
        if not pin:
            fail("set HOCBA_PKCS11_PIN to the token's user PIN", 2)
        if softhsm and not (pki.folder / "token.json").exists():
            os.environ.update(init_softhsm(pki.folder, token_label, pin))
        token = TokenConfig(pkcs11_module or SOFTHSM_MODULE, token_label, pin, env=_token_env(pki.folder, softhsm))
    issued = pki.create(demo_holders(schools, classes), token=token)
    where = "a PKCS#11 token" if (pki.folder / "token.json").exists() else "encrypted PKCS#8 files"
    console.print(f"PKI at {escape(str(pki.folder))}: {issued} certificates issued; signing keys in {where}")
    console.print(f"trust anchor: {escape(str(pki.anchor_path))}\nCRL: {escape(str(pki.crl_path))}")
    if not (settings.pki_passphrase or os.environ.get("HOCBA_PKI_PASSPHRASE")):
        passphrase = escape(str(pki.folder / "passphrase"))
        console.print(
            f"[yellow]development passphrase kept in {passphrase} (0600); "
            "set HOCBA_PKI_PASSPHRASE instead outside development[/yellow]"
        )


def _token_env(folder: Path, softhsm: bool) -> dict[str, str]:
    config = folder / "softhsm" / "softhsm2.conf"
    return {"SOFTHSM2_CONF": str(config.resolve())} if softhsm else {}


@app.command("revoke")
def revoke(
    subject: Annotated[str, typer.Argument(help="Subject id, e.g. ht-79007000 or gvcn-79007000-6A1.")],
    reason: Annotated[str, typer.Option(help="CRL reason: key_compromise, affiliation_changed, superseded, …")] = "key_compromise",
    folder: Annotated[Path | None, typer.Option("--dir", help="PKI folder.")] = None,
) -> None:
    """Revoke a holder's certificate: the CRL is re-issued; signing refuses it within seconds."""
    pki = open_pki(folder)
    when = pki.revoke(subject, reason)
    console.print(
        f"revoked {escape(subject)} as of {when:%Y-%m-%d %H:%M:%S}Z ({escape(reason)}); CRL at {escape(str(pki.crl_path))}"
    )


@app.command("crl")
def renew_crl(folder: Annotated[Path | None, typer.Option("--dir", help="PKI folder.")] = None) -> None:
    """Re-issue the CRL now (same revocations, nextUpdate 30 days on): a CRL past its nextUpdate fails every check."""
    pki = open_pki(folder)
    pki.renew_crl(due_within=CRL_LIFETIME)
    crl = x509.load_pem_x509_crl(pki.crl_path.read_bytes())
    console.print(f"CRL re-issued: next update {crl.next_update_utc:%Y-%m-%d %H:%M}Z", markup=False)


@app.command("show")
def show(folder: Annotated[Path | None, typer.Option("--dir", help="PKI folder.")] = None) -> None:
    """List the certificate holders and whether each is revoked now."""
    pki = open_pki(folder)
    if not pki.exists():
        fail(f"no PKI at {pki.folder}: run `hocba pki init`")
    trust = pki.trust_store()
    table = Table(title=escape(f"PKI at {pki.folder}"))
    for column in ("subject", "name", "role", "school", "status"):
        table.add_column(column)
    for holder in pki.holders():
        check = trust.validate([pki.certificate(holder.subject_id)], datetime.now(UTC), purpose="checkpoint")
        status = "valid" if check.ok else "; ".join(check.failed)
        table.add_row(*map(escape, (holder.subject_id, holder.name, holder.role, holder.school_code, status)))
    console.print(table)
