"""`hocba sign`: a person's one-click "sign all" for a school year, with a progress bar and the outcome.

The command stands in for the school management application: it sends the request with the
person's actor token for it (from the development issuer) and watches the batch's progress events.
Who clicks is found in the staff register (`hocba pki enrol`): the school's principal, or the class's
homeroom teacher, as enrolled; the token names their staff id, which their certificate names too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hocba.commands import DataDir, Session, fail, run, school_year_problem, session
from hocba.commands.review import print_held_back
from hocba.console import console
from hocba.staff import NotEnrolled, Person, StaffMember, StaffRegister
from hocba.watch import Watch
from shared.contracts.signing import BatchCompleted, BatchProgress, BatchRefused, RequestSignBatch
from shared.errors import NoAnswer, Refused

Signer = Literal["principal", "homeroom_teacher"]
#: Records signed so far and records in the batch.
OnProgress = Callable[[int, int], None]


#: What a batch is refused for, and what the person can do about it (signing's codes); {school}, {year} and {klass}
#: are the request's.
REFUSAL_HINTS = {
    "no-certificate": "enrol the signer (`hocba pki enrol staff.csv`) or import their certificate "
    "(`hocba pki import-cert`), then export signing's part of the PKI again",
    "certificate-revoked": "the certificate is revoked: enrol the signer again to be issued a new one "
    "(`hocba pki enrol staff.csv`), or import a new one from the CA (`hocba pki import-cert`)",
    "not-reviewed": "the class's homeroom teacher reviews it and confirms the review: "
    "`hocba review confirm --school {school} --year {year} --class {klass}`, then signs again",
    "changed-since-review": "the class's homeroom teacher reviews it again and confirms: "
    "`hocba review confirm --school {school} --year {year} --class {klass}`, then signs again",
    "certificate-invalid": "renew the certificate (`hocba pki enrol staff.csv` issues expired development "
    "certificates again; a CA's certificate is imported anew with `hocba pki import-cert`)",
}
def enrolled_signer(register: StaffRegister, signer: Signer, school: str, class_name: str | None) -> StaffMember:
    """Who clicks "sign all", as the staff register has them: the class's homeroom teacher, or the school's
    principal. `NotEnrolled` says who is missing and how to enrol them."""
    return register.lead(school, class_name if signer == "homeroom_teacher" else None)


def signer_of(s: Session, member: StaffMember) -> Person:
    """The enrolled signer, with tokens from the development issuer."""
    return s.staff.enrolled(member)


def nothing_signed(outcome: BatchCompleted, school: str, year: str, signer: Signer, class_name: str | None) -> str:
    """Why a batch found nothing to sign, as far as signing can tell (it holds the records grades assembled)."""
    if outcome.records_waiting:
        return (
            f"nothing signed: the {outcome.records_waiting:,} records of school {school} for {year} wait for their "
            "homeroom teachers' signatures first (each signs their class: `hocba sign --as homeroom_teacher --class C`)"
        )
    scope = f"class {class_name} of school {school}" if signer == "homeroom_teacher" else f"school {school}"
    whose = "the homeroom teacher's" if signer == "homeroom_teacher" else "the principal's"
    return (
        f"nothing signed: signing holds no record of {scope} for {year} that awaits {whose} signature. Either the "
        f"year is not closed yet (grades assembles the records when the principal closes the year, after both "
        f"terms), or {scope} has no students enrolled for {year} (check the codes), or every record is signed already"
    )


async def sign_batch(s: Session, request: RequestSignBatch, timeout: float, on_progress: OnProgress) -> BatchCompleted:
    """Send the request and follow its batch until it completes.

    Raises `Refused` with signing's code when signing refuses the batch, `NoAnswer` when it does not end in `timeout`.
    """
    outcome: asyncio.Future[BatchCompleted | BatchRefused] = asyncio.get_running_loop().create_future()
    watch = Watch(s.settings.amqp_url, s.settings.names())

    def progress(event: BatchProgress) -> None:
        if event.batch_id == request.batch_id:
            on_progress(event.records_signed, event.records_total)

    def finished(event: BatchCompleted | BatchRefused) -> None:
        if event.batch_id == request.batch_id and not outcome.done():
            outcome.set_result(event)

    watch.on(BatchProgress, progress)
    watch.on(BatchCompleted, finished)
    watch.on(BatchRefused, finished)
    await watch.start()
    try:
        await s.send(request)
        event = await asyncio.wait_for(outcome, timeout)
    except TimeoutError:
        raise NoAnswer(f"no answer within {timeout:.0f}s (is `hocba up` running?)") from None
    finally:
        await watch.stop()
    if isinstance(event, BatchRefused):
        raise Refused(event.reason, reason=event.code)
    return event


def sign(
    school: Annotated[str, typer.Option(help="School code, e.g. 79007000.")],
    year: Annotated[str, typer.Option(help="School year, e.g. 2025-2026.")],
    as_: Annotated[
        Signer, typer.Option("--as", help="Who clicks: principal (signs and seals) or homeroom_teacher.")
    ] = "principal",
    class_name: Annotated[str | None, typer.Option("--class", help="The homeroom teacher's class.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the batch.")] = 1800.0,
    data_dir: DataDir = None,
) -> None:
    """Sign every record of a school year that awaits your signature, in one click."""
    if as_ == "homeroom_teacher" and not class_name:
        fail("a homeroom teacher signs a class: add --class", 2)
    if problem := school_year_problem(year):
        fail(f"--year {problem}", 2)
    try:
        member = enrolled_signer(StaffRegister.configured(data_dir), as_, school, class_name)
    except NotEnrolled as exc:
        fail(str(exc), 2)
    began = time.monotonic()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bars:
        task = bars.add_task(escape(f"signing {school} {year} as {as_}"), total=None)

        def on_progress(done: int, total: int) -> None:
            bars.update(task, completed=done, total=total)

        async def conversation() -> BatchCompleted:
            async with session(data_dir, timeout, "school") as s:
                request = signer_of(s, member).signs(
                    RequestSignBatch(school_code=school, school_year=year, role=as_, class_name=class_name)
                )
                try:
                    return await sign_batch(s, request, timeout, on_progress)
                except Refused as exc:
                    hint = REFUSAL_HINTS.get(exc.reason, "").format(school=school, year=year, klass=class_name or "C")
                    raise Refused(f"{exc}; {hint}" if hint else str(exc), reason=exc.reason) from None

        outcome = run(conversation())
        bars.update(task, completed=outcome.records_signed, total=outcome.records_total or 1)
    seconds = time.monotonic() - began
    held_back = print_held_back(outcome)
    if not outcome.records_total and held_back and not outcome.records_waiting:
        fail("nothing signed: what awaits this signature is held back, as listed above")
    if not outcome.records_total:
        fail(nothing_signed(outcome, school, year, as_, class_name))
    sealed = " and sealed" if as_ == "principal" else ""
    console.print(
        f"[green]signed{sealed} {outcome.records_signed:,} of {outcome.records_total:,} records[/green] "
        f"in {seconds:.1f}s; {outcome.records_completed:,} now carry every signature and go to the archive"
    )
    if outcome.records_waiting:
        console.print(f"{outcome.records_waiting:,} records wait for their homeroom teacher's signature first")
