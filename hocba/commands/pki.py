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

A school's staff are enrolled from their staff table (`hocba pki enrol staff.csv`, `hocba.enrolment`): the
staff register and the certificates of those who sign. The demo enrols its generated staff the same way.
A certificate a licensed CA issued replaces a development one with `hocba pki import-cert`
(`hocba.certificate_import`).
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
from hocba.certificate_import import (
    CertificateImport,
    ImportRefused,
    KeyGiven,
    describe,
    expected_holder,
    import_certificate,
    read_certificates,
    read_crl,
)
from hocba.commands import CsvShapeError, fail, finish_import, read_rows
from hocba.console import console
from hocba.enrolment import COLUMNS, Enrolment, enrol_rows, table_rows
from hocba.staff import StaffRegister, demo_staff_table
from shared.crypto.certs import crl_signed_by
from shared.crypto.pkcs11 import TokenConfig
from shared.crypto.pki import (
    CRL_LIFETIME,
    GENERATED_PASSPHRASE,
    PASSPHRASE_FILE_ENV,
    PIN_FILE_ENV,
    DevPki,
    PkiRefused,
    ServicePart,
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


def demo_table(schools: int = DEFAULT_SCHOOLS, classes: int = DEFAULT_CLASSES) -> list[dict[str, str]]:
    """The staff table of the demo's first `schools` schools with `classes` classes each."""
    return [
        dict(row)
        for row in demo_staff_table((s.code, s.name, class_names(classes)) for s in demo_data.schools(schools))
    ]


#: The services that read the PKI: signing, archive and grades sign with their keys; identity and sync only verify.
PkiService = Literal["signing", "archive", "grades", "identity", "sync", "web"]
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
    outcome = enrol_rows(pki, table_rows(demo_table(schools, classes)))
    for number, reason in sorted(outcome.bad.items()):
        report(f"the demo's staff table, row {number}, is not enrolled: {reason}")
    if outcome.certificates:
        report(f"development PKI at {folder}: {outcome.certificates} certificates issued")
    elif pki.renew_crl():
        report(f"development PKI at {folder}: its CRL was due for renewal and is re-issued")
    return pki


def enrol(pki: DevPki, schools: Iterable[tuple[str, str, Iterable[str]]]) -> int:
    """Enrol the demo's staff of each (code, name, classes) through the path a school's staff table takes: the
    register, certificates for the homeroom teachers, the principal and the seal, and the services' own, if missing.
    Returns how many certificates were issued; `PkiRefused` when a row of the generated table is not enrolled."""
    outcome = enrol_rows(pki, table_rows(demo_staff_table(schools)))
    if outcome.bad:
        reasons = "; ".join(f"row {n}: {r}" for n, r in sorted(outcome.bad.items())[:3])
        raise PkiRefused(f"the demo's staff are not all enrolled in the PKI at {pki.folder}: {reasons}")
    return outcome.certificates


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
    folder: Annotated[
        Path | None, typer.Option("--dir", help="PKI folder (default HOCBA_PKI_DIR or .hocba/pki).")
    ] = None,
    schools: Annotated[int, typer.Option(min=1, help="Demo schools to issue certificates for.")] = DEFAULT_SCHOOLS,
    classes: Annotated[
        int, typer.Option(min=1, help="Classes per school (one homeroom teacher each).")
    ] = DEFAULT_CLASSES,
    softhsm: Annotated[
        bool, typer.Option(help="Generate the signing keys inside a SoftHSM2 token of the PKI's own.")
    ] = False,
    pkcs11_module: Annotated[str | None, typer.Option(help="Or inside this PKCS#11 module's token…")] = None,
    token_label: Annotated[str, typer.Option(help="…labelled so (its PIN from HOCBA_PKCS11_PIN_FILE).")] = "hocba",
) -> None:
    """Create the development PKI, or add what is missing to it (idempotent)."""
    settings = Settings()
    with refusals():
        pki = open_pki(folder, settings)
        token = _token(pki, softhsm, pkcs11_module, token_label)
        outcome = enrol_rows(pki, table_rows(demo_table(schools, classes)), token)
    issued = outcome.certificates
    for number, reason in sorted(outcome.bad.items()):
        console.print(f"[yellow]demo staff table row {number} not enrolled[/yellow]: {escape(reason)}")
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


@app.command("enrol")
def enrol_staff(
    table: Annotated[
        Path,
        typer.Argument(
            dir_okay=False,
            help="Staff table, CSV: school_code, staff_id, name, role (homeroom_teacher, subject_teacher, principal, "
            'school_admin), classes (e.g. "6A1 6A2"); optional school_name, subjects (separated by ;).',
        ),
    ],
    folder: Annotated[
        Path | None, typer.Option("--dir", help="PKI folder (default HOCBA_PKI_DIR or .hocba/pki).")
    ] = None,
) -> None:
    """Enrol a school's staff: the staff register, and certificates for the homeroom teachers, the principal and
    the school's seal (idempotent: enrolling the same table again issues nothing)."""
    if not table.is_file():
        fail(f"no staff table at {table}: give the CSV file of the school's staff ({','.join(COLUMNS)},classes)", 2)
    with refusals():
        pki = open_pki(folder)
        try:
            outcome = enrol_rows(pki, list(read_rows(table, COLUMNS)))
        except CsvShapeError as exc:
            fail(str(exc), 2)
    _report_enrolment(pki, outcome, table)


def _report_enrolment(pki: DevPki, outcome: Enrolment, table: Path) -> None:
    if outcome.renewed:
        console.print(f"issued again (the certificate no longer served): {escape(', '.join(outcome.renewed))}")
    for note in outcome.notes:
        console.print(f"[yellow]{escape(note)}[/yellow]")
    console.print(f"staff register: {escape(str(StaffRegister.load(pki.folder).path))}", highlight=False)
    finish_import(f"staff of {table.name}", outcome.counts(), outcome.bad)


@app.command("import-cert")
def import_cert(  # noqa: PLR0913 - each option of the command is a parameter
    certificate: Annotated[
        Path, typer.Argument(dir_okay=False, help="The certificate (PEM; then any intermediate CA certificates).")
    ],
    staff: Annotated[
        str | None, typer.Option(help="Whose: an enrolled homeroom teacher's or principal's staff id…")
    ] = None,
    seal: Annotated[str | None, typer.Option(help="…or an enrolled school's seal, by school code.")] = None,
    key: Annotated[Path | None, typer.Option(dir_okay=False, help="Its private key, a PEM file (P-256).")] = None,
    key_passphrase_file: Annotated[
        Path | None,
        typer.Option(dir_okay=False, help="The file holding the key file's passphrase, when it is encrypted."),
    ] = None,
    pkcs11_uri: Annotated[
        str | None, typer.Option(help="Or its key in the PKI's PKCS#11 token: pkcs11:token=LABEL;object=KEY_LABEL")
    ] = None,
    anchor: Annotated[
        Path | None, typer.Option(dir_okay=False, help="The licensed CA's root certificate, trusted from now on.")
    ] = None,
    crl: Annotated[
        list[Path] | None, typer.Option(dir_okay=False, help="The CA's current CRL (repeat for each CA).")
    ] = None,
    folder: Annotated[
        Path | None, typer.Option("--dir", help="PKI folder (default HOCBA_PKI_DIR or .hocba/pki).")
    ] = None,
) -> None:
    """Take in a certificate a licensed CA issued for a staff member or a school's seal, once it checks out as signing
    checks it: chains to a trust anchor, valid now and not revoked, key usage for signing, subject naming the holder."""
    with refusals():
        pki = open_pki(folder)
        if not pki.exists():
            fail(f"no PKI at {pki.folder}: run `hocba pki init` or `hocba pki enrol staff.csv` first", 2)
        try:
            request = CertificateImport(
                pki,
                expected_holder(StaffRegister.load(pki.folder), staff, seal),
                read_certificates(certificate),
                read_certificates(anchor)[0] if anchor is not None else None,
                [read_crl(path) for path in crl or []],
            )
            outcome = import_certificate(request, KeyGiven(key, key_passphrase_file, pkcs11_uri))
        except ImportRefused as exc:
            fail(str(exc), 1)
    console.print(
        f"[green]{escape(outcome.holder.subject_id)} signs with[/green] {escape(describe(outcome.certificate))}"
    )
    if outcome.anchor_added is not None:
        console.print(f"trust anchor added: {escape(describe(outcome.anchor_added))}")
    if outcome.crls_kept:
        console.print(f"CRLs kept and published with the PKI's CRL: {outcome.crls_kept}")
    where = {
        "file": "key kept encrypted in the PKI",
        "token": "key in the PKCS#11 token",
        "kept": "the key held already",
    }
    console.print(where[outcome.key])
    if outcome.superseded:
        console.print("the development certificate it replaces is revoked (superseded); signatures made with it stand")
    for note in outcome.notes:
        console.print(f"[yellow]{escape(note)}[/yellow]")
    console.print(REEXPORT, markup=False)


@app.command("import-crl")
def import_crl(
    crl: Annotated[Path, typer.Argument(dir_okay=False, help="A licensed CA's current CRL (PEM or DER).")],
    folder: Annotated[
        Path | None, typer.Option("--dir", help="PKI folder (default HOCBA_PKI_DIR or .hocba/pki).")
    ] = None,
) -> None:
    """Keep a licensed CA's new CRL in place of its last one: a CRL past its nextUpdate fails every check of that CA's
    certificates."""
    with refusals():
        pki = open_pki(folder)
        try:
            given = read_crl(crl)
        except ImportRefused as exc:
            fail(str(exc), 2)
        issuers = [c for c in _known_cas(pki) if c.subject == given.issuer]
        if not issuers:
            fail(
                f"the CRL of '{given.issuer.rfc4514_string()}' is not from a CA this PKI trusts or holds a certificate of"
            )
        if not any(crl_signed_by(given, c) for c in issuers):
            fail(
                f"the CRL names '{given.issuer.rfc4514_string()}' as its issuer but is not signed by that CA's key: "
                "download the CRL the CA publishes (its certificates' CRL distribution point) and import that one"
            )
        pki.add_crl(given)
    console.print(
        f"CRL of {escape(given.issuer.rfc4514_string())} kept: next update {given.next_update_utc:%Y-%m-%d %H:%M}Z"
    )
    console.print(REEXPORT, markup=False)


def _known_cas(pki: DevPki) -> list[x509.Certificate]:
    """The anchors, and every CA certificate in the chains the PKI keeps."""
    chains = [
        c
        for holder in pki.holders()
        if pki.cert_path(holder.subject_id).exists()
        for c in pki.chain(holder.subject_id)[1:]
    ]
    return [*pki.anchors(), *chains]


@app.command("revoke")
def revoke(
    subject: Annotated[str, typer.Argument(help="Subject id, e.g. ht-79007000 or gvcn-79007000-6A1.")],
    reason: Annotated[
        str, typer.Option(help="CRL reason: key_compromise, affiliation_changed, superseded, …")
    ] = "key_compromise",
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
        check = trust.validate(pki.chain(holder.subject_id), datetime.now(UTC), purpose="checkpoint")
        status = "valid" if check.ok else "; ".join(check.failed)
        table.add_row(*map(escape, (holder.subject_id, holder.name, holder.role, holder.school_code, status)))
    console.print(table)


@app.command("export")
def export(
    service: Annotated[
        PkiService,
        typer.Option(
            help="Whose part: signing (every signer's key), archive (its own key), grades (svc-grades' key), web "
            "(the web gateway's svc-web key); identity and sync verify only and get no key."
        ),
    ],
    to: Annotated[Path, typer.Option("--to", file_okay=False, help="The folder to write (0700, its files 0600).")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace the part exported to that folder before (a new CRL, say).")
    ] = False,
    folder: Annotated[
        Path | None, typer.Option("--dir", help="PKI folder (default HOCBA_PKI_DIR or .hocba/pki).")
    ] = None,
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
