"""`hocba archive`: audit the log, export a record's verification bundle, print a certified copy; export or print a
whole class's records at once."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hocba.commands import BrokerRole, DataDir, Purpose, Session, Timeout, ask, fail, refusal, run, session
from hocba.commands.records import STATUS_WORDS, Reader, reader_of
from hocba.commands.verify import configured_tsa_anchors, trust_store
from hocba.commands.year import school_person, where
from hocba.console import console
from hocba.pades import NOT_SEALED, CopySealing, HttpTimeStamper, seal_chain
from hocba.pdf import copy_pdf_bytes, verify_base
from hocba.staff import Person
from shared.contracts.archive import AuditArchive, AuditReport, ExportRecord, IssueCheckpoint, ProofReply
from shared.contracts.grades import ListRecords, RecordLine, RecordList
from shared.contracts.signing import CopySeal, SealCopy
from shared.crypto.archive_log import check_checkpoint_fields
from shared.crypto.certs import TrustStore
from shared.crypto.merkle import verify_consistency
from shared.errors import Refused
from shared.settings import DEFAULT_HTTP_PORTS, Misconfigured

app = typer.Typer(
    help="The permanent archive: audit, export, certified copies (each request with the operator's token for it; "
    "a class's records with its school's records administrator's).",
    no_args_is_help=True,
)

#: Where a record stands once the archive keeps it: only those are exported or printed.
ARCHIVED = ("archived", "delivered")
#: Why this command, not a service, leaves a record's file unwritten: said as it is.
OWN_REFUSALS = frozenset({"no-bundle", "no-copy", "not-written", NOT_SEALED})
#: A class name as a file name may carry it: anything else becomes "_".
UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

RecordArgument = Annotated[str | None, typer.Argument(help="Record id (or --school, --year and --class for a class).")]
SchoolOption = Annotated[str | None, typer.Option("--school", help="A class's school code (8 digits), with --class.")]
YearOption = Annotated[str | None, typer.Option("--year", help="A class's school year, e.g. 2025-2026, with --class.")]
ClassOption = Annotated[
    str | None, typer.Option("--class", help="Every archived record of this class, one file each, into --out.")
]
ClassReaderOption = Annotated[
    Reader | None,
    typer.Option(
        "--as",
        help="With --class, who reads: the school's administrator (default) or principal, or an operator.",
        show_default=False,
    ),
]


def export_bundle(
    record: str, version: int | None, purpose: str, data_dir: Path | None = None, timeout: float = 60.0
) -> dict[str, Any]:
    """The record version's verification bundle, read by the operator for `purpose`."""
    reply = ask(
        ExportRecord(record_id=record, version=version, purpose=purpose), ProofReply, timeout, data_dir=data_dir
    )
    if reply.bundle is None:
        fail(f"the archive sent no bundle for {record}")
    return reply.bundle


@app.command("audit")
def audit(
    timeout: Annotated[float, typer.Option(help="Seconds the audit may take.")] = 600.0,
    data_dir: DataDir = None,
) -> None:
    """Recompute the log from its stored entries and check it against every signed checkpoint."""
    report = ask(AuditArchive(), AuditReport, timeout, data_dir=data_dir)
    show_audit(report)


def show_audit(report: AuditReport) -> None:
    """The audit's checks and findings, as the archive words them (printed as written); exits 1 on a finding."""
    console.print(f"audited {report.entries:,} entries against {report.checkpoints} signed checkpoints")
    for line in report.passed:
        console.print(f"  [green]✓[/green] {escape(line)}")
    for finding in report.findings:
        console.print(f"  [red]✗[/red] {escape(finding.problem)}")
    if not report.ok:
        console.print(f"[red]the log has been tampered with: {len(report.findings)} finding(s)[/red]")
        raise typer.Exit(1)
    console.print("[green]the log is intact[/green]")


@app.command("export")
def export(  # noqa: PLR0913 - each option of the command is a parameter
    record: RecordArgument = None,
    version: Annotated[int | None, typer.Option(help="Version (default: the latest).")] = None,
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="Bundle file (default <record>-v<N>.json); with --class, the folder."),
    ] = None,
    school: SchoolOption = None,
    year: YearOption = None,
    class_name: ClassOption = None,
    as_: ClassReaderOption = None,
    purpose: Purpose = "record export from the command line",
    data_dir: DataDir = None,
    timeout: Timeout = 60.0,
) -> None:
    """Write the record version's offline verification bundle (record, signatures, chains, proof, checkpoint).

    With --school, --year and --class instead of a record id: the bundle of every archived record of the class,
    the latest version of each, into the folder --out (default <school>-<year>-<class>), each file named by the
    class and the student's position in the class list (`hocba records list --class`), e.g. 6A1-03-v1.json: no
    personal data in the file names. Exit status 1 when nothing was exported (saying why).

    The archive logs each export (who, why) in its access log: `hocba audit access` shows it.
    """
    if (job := class_job(record, version, (school, year, class_name), as_, purpose)) is not None:
        class_files(job, BUNDLES, out, data_dir, timeout)
        return
    bundle = export_bundle(one_record(record, as_), version, purpose, data_dir, timeout)
    path = out or Path(f"{record}-v{bundle['record']['version']}.json")
    path.write_text(json.dumps(bundle, ensure_ascii=False, indent=1))
    where = f"entry {bundle['log']['leaf_index']} of {bundle['log']['tree_size']}"
    console.print(f"wrote {escape(str(path))}: {escape(where)}; check it with `hocba verify {escape(str(path))}`")


@app.command("print")
def print_copy(  # noqa: PLR0913 - each option of the command is a parameter
    record: RecordArgument = None,
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="PDF to write (default copy.pdf); with --class, the folder.")
    ] = None,
    version: Annotated[int | None, typer.Option(help="Version (default: the latest).")] = None,
    school: SchoolOption = None,
    year: YearOption = None,
    class_name: ClassOption = None,
    as_: ClassReaderOption = None,
    purpose: Purpose = "certified copy printed from the command line",
    data_dir: DataDir = None,
    timeout: Timeout = 60.0,
) -> None:
    """Print a certified copy on A4: the record as on paper, signers and times, a signed QR code, the bundle attached.

    With --school, --year and --class instead of a record id: a certified copy of every archived record of the
    class, the latest version of each, into the folder --out (default <school>-<year>-<class>), each PDF named by
    the class and the student's position in the class list (`hocba records list --class`), e.g. 6A1-03-v1.pdf: no
    personal data in the file names. Exit status 1 when nothing was printed (saying why).

    Each copy is signed PAdES B-LT by the school's seal: the signing service puts the seal on it at the request of
    the school's records administrator (the principal with --as principal), and logs it; the TSA at HOCBA_TSA_URL
    timestamps it; the PKI's chains and CRLs are embedded, so it verifies offline. A copy that cannot be sealed is
    not written.

    The archive logs each print (who, why) in its access log: `hocba audit access` shows it. Each copy's QR code
    opens HOCBA_VERIFY_URL/v/<entry>.<key>, the public verification page (production: an https address).
    """
    checked_verify_url()
    if (job := class_job(record, version, (school, year, class_name), as_, purpose)) is not None:
        class_files(job, COPIES, out, data_dir, timeout)
        return
    record = one_record(record, as_)
    request = ExportRecord(record_id=record, version=version, certified_copy=True, purpose=purpose)
    reply = ask(request, ProofReply, timeout, data_dir=data_dir)
    if reply.bundle is None or reply.qr is None:
        fail(f"the archive sent no certified copy of {record}")
    path = out or Path("copy.pdf")
    seal_one(reply.bundle, reply.qr, path, purpose, data_dir, timeout)
    console.print(f"wrote {escape(str(path))}, sealed; check it with `hocba verify {escape(str(path))}`")


@app.command("checkpoint")
def checkpoint(data_dir: DataDir = None) -> None:
    """Have the archive sign a checkpoint of its log now (it also does after every batch and on a schedule)."""
    reply = ask(IssueCheckpoint(), ProofReply, 60.0, data_dir=data_dir)
    stated = (reply.bundle or {}).get("checkpoint") or {}
    said = f"{stated.get('tree_size')} entries, root {stated.get('root_hash')}, {stated.get('issued_at')}"
    console.print(f"checkpoint: {escape(said)}")


def one_record(record: str | None, as_: Reader | None) -> str:
    """The record id of a one-record export or print; a usage error without one, or with a class's reader."""
    if record is None:
        fail("name the record (its id, as `hocba records list` shows it), or a class: --school, --year and --class", 2)
    if as_ is not None:
        fail("--as chooses who reads a class's records: it goes with --school, --year and --class", 2)
    return record


def class_job(
    record: str | None,
    version: int | None,
    named: tuple[str | None, str | None, str | None],
    as_: Reader | None,
    purpose: str,
) -> ClassExport | None:
    """A class's export or print when --school, --year or --class is given; None for one record's (a usage error with
    both)."""
    if all(part is None for part in named):
        return None
    if record is not None or version is not None:
        fail("give a record id, or --school, --year and --class for a class's records, not both", 2)
    return ClassExport(*class_named(*named), as_ or "school_admin", purpose)


def class_named(school: str | None, year: str | None, class_name: str | None) -> tuple[str, str, str]:
    """The school, year and class of a class's export, each given and well formed; a usage error otherwise."""
    if not (school and year and class_name):
        lacking = [
            option for option, given in (("--school", school), ("--year", year), ("--class", class_name)) if not given
        ]
        fail(f"a class's records need --school, --year and --class: add {', '.join(lacking)}", 2)
    where(school, year)
    return school, year, class_name


# --- a whole class -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassExport:
    """A class's export or print: whose records, who reads them and why."""

    school: str
    year: str
    class_name: str
    reader: Reader
    purpose: str

    @property
    def scope(self) -> str:
        return f"class {self.class_name} of school {self.school} for {self.year}"

    def default_folder(self) -> Path:
        return Path(f"{self.school}-{self.year}-{file_part(self.class_name)}")


@dataclass(frozen=True)
class Listed:
    """A record of the class as listed, at its position in the class list."""

    position: int
    line: RecordLine
    #: The class's size, which sets how many digits a position is written with in file names.
    of: int

    @property
    def archived(self) -> bool:
        """Whether the listed version is in the archive."""
        return self.line.status in ARCHIVED

    @property
    def pending_amendment(self) -> bool:
        """An amendment's version awaiting its signatures: the archive holds the version it supersedes."""
        return not self.archived and self.line.version > 1

    def file_name(self, class_name: str, version: int, suffix: str) -> str:
        """`6A1-03-v2.json`: the class, the position in the class list, the version; nothing personal."""
        width = max(2, len(str(self.of)))
        return f"{file_part(class_name)}-{self.position:0{width}d}-v{version}{suffix}"


@dataclass
class ClassOutcome:
    """What a class's export did: the files written, the records left out (not in the archive), those that failed,
    and the amendments awaiting their signatures whose superseded version was written instead."""

    listed: list[Listed]
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Listed, str]] = field(default_factory=list)
    earlier: list[tuple[Listed, int]] = field(default_factory=list)

    @property
    def in_archive(self) -> list[Listed]:
        return [r for r in self.listed if r.archived or r.pending_amendment]

    @property
    def not_archived(self) -> list[Listed]:
        return [r for r in self.listed if not (r.archived or r.pending_amendment)]


def file_part(text: str) -> str:
    """`text` as a part of a file name: letters, digits, '.', '_' and '-' kept, anything else '_'."""
    return UNSAFE.sub("_", text) or "_"


#: Writes one record's file from the archive's bundle (and, for a certified copy, its QR payload).
Writer = Callable[[dict[str, Any], str | None, Path], None]


def write_bundle(bundle: dict[str, Any], qr: str | None, path: Path) -> None:
    path.write_text(json.dumps(bundle, ensure_ascii=False, indent=1))


def checked_verify_url() -> str:
    """HOCBA_VERIFY_URL, which every copy's QR code opens, checked once before any copy is printed; a usage error
    (exit 2) with the sentence saying why when production refuses it."""
    try:
        return verify_base()
    except Misconfigured as exc:
        fail(str(exc), 2)


def unsealed_copy(bundle: dict[str, Any], qr: str | None, path: Path) -> None:
    """A certified copy is written sealed (`Sealer`), never from the bundle alone."""
    raise Refused(f"{path.name} is not sealed: no unsigned copy is written", reason="not-sealed")


@dataclass(frozen=True)
class FileKind:
    """What a class's export writes for each record: bundles, or certified copies."""

    suffix: str
    certified: bool
    write: Writer
    #: One file and several, in words.
    one: str
    many: str
    #: What was done to a record, in words.
    done: str

    def count(self, n: int) -> str:
        return f"{n} {self.one if n == 1 else self.many}"


BUNDLES = FileKind(".json", False, write_bundle, "bundle", "bundles", "exported")
COPIES = FileKind(".pdf", True, unsealed_copy, "certified copy", "certified copies", "printed")


async def fetch_class(
    s: Session, job: ClassExport, kind: FileKind, folder: Path, sealer: Sealer | None = None
) -> ClassOutcome:
    """List the class's records as the reader sees them, then have the archive export each one it holds, and write
    its file (a certified copy sealed by `sealer` first)."""
    reader: Person = reader_of(s, job.school, job.reader)
    request = ListRecords(school_code=job.school, school_year=job.year, class_name=job.class_name, purpose=job.purpose)
    found = await s.ask(reader.signs(request), RecordList)
    outcome = ClassOutcome([Listed(n, line, len(found.records)) for n, line in enumerate(found.records, start=1)])
    if not outcome.in_archive:
        return outcome
    folder.mkdir(parents=True, exist_ok=True)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bars:
        task = bars.add_task(escape(f"class {job.class_name}"), total=len(outcome.in_archive))
        for item in outcome.in_archive:
            try:
                reply = await fetch_one(s, reader.signs(export_request(item, job, kind)), item)
                sealed = await sealer.copy(reply.bundle or {}, reply.qr) if sealer is not None else None
                path, version = write_one(kind, job, item, reply, folder, sealed)
            except Refused as exc:
                outcome.failed.append((item, str(exc) if exc.reason in OWN_REFUSALS else refusal(exc)))
            else:
                outcome.written.append(path)
                if version != item.line.version:
                    outcome.earlier.append((item, version))
            bars.advance(task)
    return outcome


def export_request(item: Listed, job: ClassExport, kind: FileKind) -> ExportRecord:
    """The listed version; for an amendment awaiting its signatures, the archive's latest (the version it
    supersedes)."""
    version = item.line.version if item.archived else None
    return ExportRecord(
        record_id=item.line.record_id, version=version, certified_copy=kind.certified, purpose=job.purpose
    )


async def fetch_one(s: Session, request: ExportRecord, item: Listed) -> ProofReply:
    """The archive's export of one record: its bundle (and QR payload); `Refused` when it sends none."""
    reply = await s.ask(request, ProofReply)
    if reply.bundle is None:
        raise Refused(f"the archive sent no bundle for {item.line.record_id}", reason="no-bundle")
    return reply


def write_one(
    kind: FileKind, job: ClassExport, item: Listed, reply: ProofReply, folder: Path, sealed: bytes | None = None
) -> tuple[Path, int]:
    """Write one record's file from the archive's reply (a sealed copy's bytes as they are); the file and the version it
    holds."""
    assert reply.bundle is not None  # fetch_one refuses a reply without it
    version = (reply.bundle.get("record") or {}).get("version", item.line.version)
    path = folder / item.file_name(job.class_name, version, kind.suffix)
    try:
        if sealed is not None:
            path.write_bytes(sealed)
        else:
            kind.write(reply.bundle, reply.qr, path)
    except OSError as exc:
        raise Refused(f"cannot write {path}: {exc.strerror or exc}", reason="not-written") from None
    return path, version


def class_files(job: ClassExport, kind: FileKind, out: Path | None, data_dir: Path | None, timeout: float) -> None:
    """Export (or print) the class's archived records into `out`, with a progress bar, and tell the outcome."""
    folder = out or job.default_folder()
    if folder.exists() and not folder.is_dir():
        fail(f"--out {folder} is a file: with --class, --out names the folder the class's files go into", 2)
    role: BrokerRole = "operator" if job.reader == "operator" else "school"

    async def conversation() -> ClassOutcome:
        async with session(data_dir, timeout, role) as s:
            if not kind.certified:
                return await fetch_class(s, job, kind, folder)
            async with sealing(s, job.school, job.reader, job.purpose) as sealer:
                return await fetch_class(s, job, kind, folder, sealer)

    outcome = run(conversation())
    tell_class(job, kind, folder, outcome)


def waiting_words(waiting: list[Listed]) -> str:
    """Why records are not in the archive yet, and what brings them there."""
    signed = "the archive keeps a record once it is signed and sealed (`hocba sign`)"
    if all(item.line.status != "incomplete" for item in waiting):
        return signed
    return f"{signed}; an incomplete record is never signed as it is (`hocba review` names the entries it lacks)"


def tell_class(job: ClassExport, kind: FileKind, folder: Path, outcome: ClassOutcome) -> None:
    """The class's outcome: each record left out and why, a summary line; exit 1 when nothing was written."""
    done = kind.done
    if not outcome.listed:
        fail(
            f"nothing {done}: grades lists no record of {job.scope}. Records are assembled when the principal closes "
            "the year (`hocba year close`); check --school, --year and --class"
        )
    for item, why in outcome.failed:
        console.print(
            f"[red]position {item.position} ({escape(item.line.record_id)})[/red]: not {done}: {escape(why)}",
            soft_wrap=True,
        )
    for item, version in outcome.earlier:
        console.print(
            f"position {item.position}: version {item.line.version} is an amendment awaiting its signatures; "
            f"{done} version {version}, the archive's latest",
            soft_wrap=True,
            markup=False,
        )
    if outcome.not_archived:
        by_status: dict[str, list[str]] = {}
        for item in outcome.not_archived:
            by_status.setdefault(STATUS_WORDS[item.line.status], []).append(str(item.position))
        said = "; ".join(
            f"{status} at position{'s' if len(at) > 1 else ''} {', '.join(at)}" for status, at in by_status.items()
        )
        console.print(
            f"not {done}, not in the archive yet: {said} of the class list; {waiting_words(outcome.not_archived)}",
            soft_wrap=True,
            markup=False,
        )
    if not outcome.written:
        why = "could be" if outcome.failed else "is archived yet"
        fail(f"nothing {done}: none of the {len(outcome.listed)} record(s) of {job.scope} {why} (above)")
    console.print(
        f"[green]{done} {kind.count(len(outcome.written))} of {escape(job.scope)}[/green] into {escape(str(folder))} "
        f"({len(outcome.listed)} record(s) in the class); check each with `hocba verify FILE`",
        soft_wrap=True,
    )
    if outcome.failed:
        fail(f"{len(outcome.failed)} record(s) of {job.scope} were not {done} (above)")


# --- the school's seal on certified copies -------------------------------------------------------


@dataclass
class Sealer:
    """Seals a command's certified copies PAdES B-LT (`hocba.pades`): the school's records administrator or principal
    asks the signing service for the seal over each copy's signed attributes (one `SealCopy` a copy, in the signing
    service's access log), and the TSA for its timestamp; the seal's key never comes here."""

    s: Session
    school: str
    person: Person
    purpose: str
    sealing: CopySealing

    async def copy(self, bundle: dict[str, Any], qr: str | None) -> bytes:
        """The certified copy of the bundle's record version, sealed; `Refused` saying why when it cannot be."""
        if qr is None:
            raise Refused("the archive sent no signed QR payload for the certified copy", reason="no-copy")
        record = bundle.get("record") or {}
        try:
            unsigned = copy_pdf_bytes(bundle, qr, datetime.now(UTC))
        except OSError as exc:
            raise Refused(f"cannot render the copy: {exc.strerror or exc}", reason="not-written") from None

        async def ask(attributes: bytes) -> CopySeal:
            request = SealCopy(
                school_code=self.school,
                record_id=str(record.get("record_id", "")),
                version=int(record.get("version", 1)),
                signed_attributes=base64.b64encode(attributes).decode(),
                purpose=self.purpose,
            )
            return await self.s.ask(self.person.signs(request), CopySeal)

        return await self.sealing.seal(unsigned, seal_chain(bundle), ask)


def copy_sealing(s: Session, client: httpx.AsyncClient) -> CopySealing:
    """The TSA at HOCBA_TSA_URL, and the PKI's trust anchors (with HOCBA_TSA_ANCHOR's) and CRLs, whose chains and
    CRLs each copy embeds."""
    _, trust = trust_store(None, None, s.data_dir)
    anchors = [*trust.anchors, *configured_tsa_anchors()]
    stamper = HttpTimeStamper(s.settings.tsa_url, s.settings.tsa_timeout_seconds, client)
    return CopySealing.of(stamper, anchors, trust.crls)


@contextlib.asynccontextmanager
async def sealing(s: Session, school: str, reader: Reader, purpose: str) -> AsyncIterator[Sealer]:
    """A sealer for the school's copies, over a school login (a second connection when `s` is an operator's): the
    principal when they read, else the school's records administrator asks for the seal."""
    person = school_person(s, school, "principal" if reader == "principal" else "school_admin")
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(httpx.AsyncClient())
        school_login = s
        if reader == "operator":
            school_login = await stack.enter_async_context(session(s.data_dir, s.timeout, "school"))
        yield Sealer(school_login, school, person, purpose, copy_sealing(s, client))


def seal_one(
    bundle: dict[str, Any], qr: str | None, path: Path, purpose: str, data_dir: Path | None, timeout: float
) -> None:
    """Write the record version's certified copy to `path`, sealed at the request of its school's records
    administrator; nothing is written when it cannot be sealed (the command ends saying why)."""
    school = str((bundle.get("record") or {}).get("school_code", ""))

    async def conversation() -> bytes:
        async with session(data_dir, timeout, "school") as s, sealing(s, school, "school_admin", purpose) as sealer:
            return await sealer.copy(bundle, qr)

    data = run(conversation())
    try:
        path.write_bytes(data)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")


# --- the log held to its word, over HTTP --------------------------------------------------------

ArchiveUrl = Annotated[
    str | None,
    typer.Option("--url", help="The archive's HTTP address (its metrics port); default http://127.0.0.1:9104."),
]


@app.command("consistency")
def consistency(  # noqa: PLR0913 - each option of the command is a parameter
    old: Annotated[int, typer.Argument(help="Tree size of the older signed checkpoint.")],
    new: Annotated[int, typer.Argument(help="Tree size of the newer signed checkpoint.")],
    url: ArchiveUrl = None,
    anchor: Annotated[
        Path | None, typer.Option(help="The root CA's certificate (PEM); default: the PKI of the data folder.")
    ] = None,
    crl: Annotated[Path | None, typer.Option(help="A CRL (PEM); default: the PKI's crl.pem.")] = None,
    timeout: Timeout = 30.0,
    data_dir: DataDir = None,
) -> None:
    """Print the archive's RFC 9162 consistency proof between two signed checkpoints and check it.

    Asked over the archive's public HTTP route (no sign-in); the two checkpoints it names are checked against the
    trust anchor, and the proof against their signed roots. Exit 0 when the log of NEW entries extends that of OLD,
    1 when a check fails, 2 when the archive cannot be asked or its answer read.
    """
    _, trust = trust_store(anchor, crl, data_dir)
    base = (url or f"http://127.0.0.1:{DEFAULT_HTTP_PORTS['archive']}").rstrip("/")
    answer = fetch_json(f"{base}/v1/log/consistency", {"first": old, "second": new}, timeout)
    checks = consistency_checks(old, new, answer, trust)
    show_consistency(old, new, answer, checks)
    if not all(ok for ok, _ in checks):
        console.print(
            f"[red]NOT CONSISTENT: the archive's log of {new} entries is not shown to extend that of {old}[/red]"
        )
        raise typer.Exit(1)
    console.print(
        f"[green]CONSISTENT: the archive's log of {new} entries extends that of {old}, as both signed[/green]"
    )


def fetch_json(url: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    """The archive's JSON answer; a refusal, an unreachable archive or an unreadable answer ends the command (2)."""
    try:
        response = httpx.get(url, params=params, timeout=timeout)
    except httpx.HTTPError as exc:
        fail(f"cannot ask the archive at {url}: {exc}; is the stack running (`hocba up`), or is --url right?", 2)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        fail(f"the archive at {url} answered HTTP {response.status_code} without a JSON object", 2)
    if response.status_code != 200:
        fail(f"the archive answered HTTP {response.status_code}: {body.get('error', 'no reason given')}", 2)
    return body


def consistency_checks(old: int, new: int, answer: dict[str, Any], trust: TrustStore) -> list[tuple[bool, str]]:
    """Each check of the answer, passed or not, in words: both checkpoints signed by the archive's certificate from the
    PKI at the sizes asked, and the proof leading from the older signed root to the newer (RFC 9162 §2.1.4.2)."""
    checks: list[tuple[bool, str]] = []
    stated = answer.get("checkpoints")
    checkpoints = stated if isinstance(stated, list) and len(stated) == 2 else [None, None]
    roots: list[bytes | None] = []
    for size, checkpoint in zip((old, new), checkpoints, strict=True):
        if not isinstance(checkpoint, dict):
            checks.append((False, f"the archive states no signed checkpoint of tree size {size}"))
            roots.append(None)
            continue
        verdict = check_checkpoint_fields(checkpoint, trust)
        checks += [(True, line) for line in verdict.passed] + [(False, line) for line in verdict.failed]
        if checkpoint.get("tree_size") != size:
            checks.append((False, f"the checkpoint stated for size {size} is of size {checkpoint.get('tree_size')}"))
        roots.append(hex_bytes(checkpoint.get("root_hash")) if verdict.ok else None)
    proof = [hex_bytes(p) for p in answer.get("proof") or []] if isinstance(answer.get("proof"), list) else []
    first, second = roots
    if first is None or second is None or any(p is None for p in proof):
        checks.append((False, "the proof cannot be checked without both signed roots and a proof of hex hashes"))
    elif verify_consistency(old, new, first, second, [p for p in proof if p is not None]):
        checks.append((True, f"the RFC 9162 proof leads from the signed root of {old} entries to that of {new}"))
    else:
        checks.append(
            (False, f"the RFC 9162 proof does not lead from the signed root of {old} entries to that of {new}")
        )
    return checks


def hex_bytes(value: Any) -> bytes | None:
    try:
        return bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        return None


def show_consistency(old: int, new: int, answer: dict[str, Any], checks: list[tuple[bool, str]]) -> None:
    """The proof as the archive gave it, then each check."""
    console.print(f"consistency proof from tree size {old} to {new}:")
    console.print(f"  root of {old}: {escape(str(answer.get('first_root')))}")
    console.print(f"  root of {new}: {escape(str(answer.get('second_root')))}")
    for n, node in enumerate(answer.get("proof") or []):
        console.print(f"  proof[{n}]: {escape(str(node))}")
    for ok, line in checks:
        console.print(f"  {'[green]✓[/green]' if ok else '[red]✗[/red]'} {escape(line)}")


from hocba.commands import archive_renew  # noqa: E402, F401 - registers `hocba archive renew` on `app`
