"""`hocba pki`: the development PKI (root CA, school seals, staff and service certificates, CRL).

The PKI goes under the ignored data folder (`.hocba/pki` by default, or HOCBA_PKI_DIR); it is the
offline PKI, the only place the root CA's key is. Private keys are PKCS#8 files encrypted under the
passphrase, or live in a PKCS#11 token. The passphrase is a secret file (HOCBA_PKI_PASSPHRASE_FILE),
and so is the token's PIN (HOCBA_PKCS11_PIN_FILE). In development HOCBA_PKI_PASSPHRASE and
HOCBA_PKCS11_PIN also do, and without either a random passphrase is generated once and kept beside
the PKI (0600): fine for a laptop, refused in production (HOCBA_ENVIRONMENT=production), which takes
secrets as files only. Every file is 0600, every folder 0700.

Each service gets only its part (`hocba pki export --service S --to DIR`); after `hocba pki crl` or
`hocba pki revoke`, exporting again with --force brings the new CRL to it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer
from cryptography import x509
from rich.markup import escape
from rich.table import Table

from hocba import demo_data
from hocba.commands import fail
from hocba.console import console
from hocba.staff import certificate_holders
from shared.crypto.pkcs11 import TokenConfig
from shared.crypto.pki import (
    CRL_LIFETIME,
    GENERATED_PASSPHRASE,
    PASSPHRASE_FILE_ENV,
    PIN_FILE_ENV,
    DevPki,
    Holder,
    PkiRefused,
    ServicePart,
    service_holders,
)
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


#: The services that read the PKI: signing, archive and grades sign with their keys; identity and sync only verify.
PkiService = Literal["signing", "archive", "grades", "identity", "sync"]
#: Printed after every new CRL: how it reaches the services, which read the CRL in their own part of the PKI.
REEXPORT = (
    "the services read it once each service's part is exported again (`hocba pki export --service S --to DIR --force`)"
)


def open_pki(folder: Path | None = None, settings: Settings | None = None) -> DevPki:
    """The PKI at `folder` (default the configured one) with the operator's secrets, under their environment's rules."""
    return DevPki.configured(settings or Settings(), folder)


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """What the PKI refuses (a secret given the wrong way, no root CA key here) ends the command in one sentence."""
    try:
        yield
    except PkiRefused as exc:
        fail(str(exc), 2)


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
    tokens.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder / "softhsm", 0o700)
    config = folder / "softhsm" / "softhsm2.conf"
    conf = f"directories.tokendir = {tokens.resolve()}\nobjectstore.backend = file\nlog.level = ERROR\n"
    with os.fdopen(os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(conf)
    env = {"SOFTHSM2_CONF": str(config.resolve())}
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", pin],
        check=True,
        capture_output=True,
        env={**os.environ, **env},
        umask=0o077,
    )
    return env


@app.command("init")
def init(
    folder: Annotated[Path | None, typer.Option("--dir", help="PKI folder (default HOCBA_PKI_DIR or .hocba/pki).")] = None,
    schools: Annotated[int, typer.Option(min=1, help="Demo schools to issue certificates for.")] = DEFAULT_SCHOOLS,
    classes: Annotated[int, typer.Option(min=1, help="Classes per school (one homeroom teacher each).")] = DEFAULT_CLASSES,
    softhsm: Annotated[bool, typer.Option(help="Generate the signing keys inside a SoftHSM2 token of the PKI's own.")] = False,
    pkcs11_module: Annotated[str | None, typer.Option(help="Or inside this PKCS#11 module's token…")] = None,
    token_label: Annotated[str, typer.Option(help="…labelled so (its PIN from HOCBA_PKCS11_PIN_FILE).")] = "hocba",
) -> None:
    """Create the development PKI, or add what is missing to it (idempotent)."""
    settings = Settings()
    with refusals():
        pki = open_pki(folder, settings)
        issued = pki.create(demo_holders(schools, classes), token=_token(pki, softhsm, pkcs11_module, token_label))
    where = "a PKCS#11 token" if pki.token_path.exists() else "encrypted PKCS#8 files"
    console.print(f"PKI at {escape(str(pki.folder))}: {issued} certificates issued; signing keys in {where}")
    console.print(f"trust anchor: {escape(str(pki.anchor_path))}\nCRL: {escape(str(pki.crl_path))}")
    if settings.pki_passphrase_file is None and not settings.pki_passphrase:
        passphrase = escape(str(pki.folder / GENERATED_PASSPHRASE))
        console.print(
            f"[yellow]development passphrase kept in {passphrase} (0600); outside development give one as a file "
            f"with {PASSPHRASE_FILE_ENV}[/yellow]"
        )


def _token(pki: DevPki, softhsm: bool, module: str | None, label: str) -> TokenConfig | None:
    """The PKCS#11 token the new keys go into, when one is asked for (SoftHSM2's is made here first)."""
    if not (softhsm or module):
        return None
    pin = pki.user_pin()
    if softhsm and not pki.token_path.exists():
        os.environ.update(init_softhsm(pki.folder, label, pin))
    return TokenConfig(module or SOFTHSM_MODULE, label, pin, env=_token_env(pki.folder, softhsm))


def _token_env(folder: Path, softhsm: bool) -> dict[str, str]:
    config = folder / "softhsm" / "softhsm2.conf"
    return {"SOFTHSM2_CONF": str(config.resolve())} if softhsm else {}


@app.command("revoke")
def revoke(
    subject: Annotated[str, typer.Argument(help="Subject id, e.g. ht-79007000 or gvcn-79007000-6A1.")],
    reason: Annotated[str, typer.Option(help="CRL reason: key_compromise, affiliation_changed, superseded, …")] = "key_compromise",
    folder: Annotated[Path | None, typer.Option("--dir", help="PKI folder.")] = None,
) -> None:
    """Revoke a holder's certificate: the CRL is re-issued; signing refuses it within seconds of reading it."""
    with refusals():
        pki = open_pki(folder)
        when = pki.revoke(subject, reason)
    console.print(
        f"revoked {escape(subject)} as of {when:%Y-%m-%d %H:%M:%S}Z ({escape(reason)}); CRL at {escape(str(pki.crl_path))}"
    )
    console.print(REEXPORT, markup=False)


@app.command("crl")
def renew_crl(folder: Annotated[Path | None, typer.Option("--dir", help="PKI folder.")] = None) -> None:
    """Re-issue the CRL now (same revocations, nextUpdate 30 days on): a CRL past its nextUpdate fails every check."""
    with refusals():
        pki = open_pki(folder)
        pki.renew_crl(due_within=CRL_LIFETIME)
    crl = x509.load_pem_x509_crl(pki.crl_path.read_bytes())
    console.print(f"CRL re-issued: next update {crl.next_update_utc:%Y-%m-%d %H:%M}Z; {REEXPORT}", markup=False)


@app.command("show")
def show(folder: Annotated[Path | None, typer.Option("--dir", help="PKI folder.")] = None) -> None:
    """List the certificate holders and whether each is revoked now."""
    with refusals():
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


@app.command("export")
def export(
    service: Annotated[
        PkiService,
        typer.Option(
            help="Whose part: signing (every signer's key), archive (its own key), grades (svc-grades' key); "
            "identity and sync verify only and get no key."
        ),
    ],
    to: Annotated[Path, typer.Option("--to", file_okay=False, help="The folder to write (0700, its files 0600).")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace the part exported to that folder before (a new CRL, say).")
    ] = False,
    folder: Annotated[Path | None, typer.Option("--dir", help="PKI folder (default HOCBA_PKI_DIR or .hocba/pki).")] = None,
) -> None:
    """Write the part of the PKI one service needs and nothing else: the trust anchor, the CRL, the certificates and
    that service's keys. Never the root CA's key, never the passphrase (the service gets it as a secret file)."""
    with refusals():
        part = open_pki(folder).export(service, to, replace=force)
    console.print(f"{service}'s part of the PKI at {escape(str(part.folder))}:", highlight=False)
    for line in part_lines(part):
        console.print(f"  {line}", markup=False, highlight=False)


def part_lines(part: ServicePart) -> list[str]:
    """What an exported part holds, in counts; and which secret the service is to be given beside it."""
    lines = ["trust anchor and CRL (ca/)", f"{part.certificates} certificates (certs/)"]
    if part.token:
        lines.append(f"token.json: the keys stay in the PKCS#11 token; give its PIN as a file ({PIN_FILE_ENV})")
    elif part.keys:
        keys = f"{part.keys} private key{'s' if part.keys > 1 else ''}"
        lines.append(f"{keys}, encrypted PKCS#8 (keys/); give the passphrase as a file ({PASSPHRASE_FILE_ENV})")
    else:
        lines.append(f"no private key: {part.service} only verifies")
    if part.removed:
        lines.append(f"{part.removed} files of the part exported there before removed")
    lines.append("not included: the root CA's key, the passphrase")
    return lines
