"""`hocba sign`: a person's one-click "sign all" for a school year, with a progress bar and the outcome.

The command stands in for the school management application: it sends the request with the
person's actor token for it (from the development issuer) and watches the batch's progress events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hocba.commands import DataDir, Session, fail, run, session
from hocba.console import console
from hocba.staff import Person
from hocba.watch import Watch
from shared.contracts.signing import BatchCompleted, BatchProgress, BatchRefused, RequestSignBatch
from shared.errors import NoAnswer, Refused

Signer = Literal["principal", "homeroom_teacher"]
#: Records signed so far and records in the batch.
OnProgress = Callable[[int, int], None]


def signer_of(s: Session, signer: Signer, school: str, class_name: str | None) -> Person:
    """Who clicks "sign all": the class's homeroom teacher, or the school's principal."""
    if signer == "homeroom_teacher" and class_name is not None:
        return s.staff.homeroom_teacher(school, class_name)
    return s.staff.principal(school)


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
    as_: Annotated[Signer, typer.Option("--as", help="Who clicks: principal (signs and seals) or homeroom_teacher.")] = "principal",
    class_name: Annotated[str | None, typer.Option("--class", help="The homeroom teacher's class.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the batch.")] = 1800.0,
    data_dir: DataDir = None,
) -> None:
    """Sign every record of a school year that awaits your signature, in one click."""
    if as_ == "homeroom_teacher" and not class_name:
        fail("a homeroom teacher signs a class: add --class", 2)
    began = time.monotonic()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bars:
        task = bars.add_task(escape(f"signing {school} {year} as {as_}"), total=None)

        def on_progress(done: int, total: int) -> None:
            bars.update(task, completed=done, total=total)

        async def conversation() -> BatchCompleted:
            async with session(data_dir, timeout, "school") as s:
                request = signer_of(s, as_, school, class_name).signs(
                    RequestSignBatch(school_code=school, school_year=year, role=as_, class_name=class_name)
                )
                return await sign_batch(s, request, timeout, on_progress)

        outcome = run(conversation())
        bars.update(task, completed=outcome.records_signed, total=outcome.records_total or 1)
    seconds = time.monotonic() - began
    sealed = " and sealed" if as_ == "principal" else ""
    console.print(
        f"[green]signed{sealed} {outcome.records_signed:,} of {outcome.records_total:,} records[/green] "
        f"in {seconds:.1f}s; {outcome.records_completed:,} now carry every signature and go to the archive"
    )
    if outcome.records_waiting:
        console.print(f"{outcome.records_waiting:,} records wait for their homeroom teacher's signature first")
