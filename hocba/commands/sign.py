"""`hocba sign`: a person's one-click "sign all" for a school year, with a progress bar and the outcome.

The command stands in for the school management application: it sends the request with the
person's actor token (from the development issuer) and watches the batch's progress events.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Literal

import typer
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hocba.keys import dev_issuer
from hocba.staff import Staff
from hocba.watch import Watch
from shared.contracts.signing import BatchCompleted, BatchProgress, BatchRefused, RequestSignBatch
from shared.messaging import make_broker
from shared.settings import Settings

console = Console()
Signer = Literal["principal", "homeroom_teacher"]


async def run_batch(
    settings: Settings, request: RequestSignBatch, timeout: float, on_progress=lambda done, total: None
) -> BatchCompleted | BatchRefused | None:
    """Send the request and follow its batch until it completes or is refused (None on time-out)."""
    outcome: asyncio.Future = asyncio.get_running_loop().create_future()
    watch = Watch(settings.amqp_url, settings.names())

    def progress(event: BatchProgress) -> None:
        if event.batch_id == request.batch_id:
            on_progress(event.records_signed, event.records_total)

    def finished(event: BatchCompleted | BatchRefused) -> None:
        if event.batch_id == request.batch_id and not outcome.done():
            outcome.set_result(event)

    watch.on(BatchProgress, progress)
    watch.on(BatchCompleted, finished)
    watch.on(BatchRefused, finished)
    broker, bus, _ = make_broker(settings, CollectorRegistry(), "hocba-cli")
    await watch.start()
    await broker.connect()
    try:
        await bus.publish(request)
        return await asyncio.wait_for(outcome, timeout)
    except TimeoutError:
        return None
    finally:
        await broker.stop()
        await watch.stop()


def sign(
    school: Annotated[str, typer.Option(help="School code, e.g. 79007000.")],
    year: Annotated[str, typer.Option(help="School year, e.g. 2025-2026.")],
    as_: Annotated[Signer, typer.Option("--as", help="Who clicks: principal (signs and seals) or homeroom_teacher.")] = "principal",
    class_name: Annotated[str | None, typer.Option("--class", help="The homeroom teacher's class.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the batch.")] = 1800.0,
) -> None:
    """Sign every record of a school year that awaits your signature, in one click."""
    settings = Settings()
    issuer, _ = dev_issuer(settings.data_dir)
    staff = Staff(issuer)
    if as_ == "homeroom_teacher":
        if not class_name:
            console.print("[red]a homeroom teacher signs a class: add --class[/red]")
            raise typer.Exit(2)
        actor = staff.homeroom_teacher(school, class_name)
    else:
        actor = staff.principal(school)
    request = RequestSignBatch(school_code=school, school_year=year, role=as_, class_name=class_name, actor=actor)
    began = time.monotonic()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bars:
        task = bars.add_task(f"signing {school} {year} as {as_}", total=None)
        outcome = asyncio.run(
            run_batch(settings, request, timeout, lambda done, total: bars.update(task, completed=done, total=total))
        )
        if isinstance(outcome, BatchCompleted):
            bars.update(task, completed=outcome.records_signed, total=outcome.records_total or 1)
    seconds = time.monotonic() - began
    if outcome is None:
        console.print(f"[red]no answer within {timeout:.0f}s[/red] (is `hocba up` running?)")
        raise typer.Exit(1)
    if isinstance(outcome, BatchRefused):
        console.print(f"[red]refused ({outcome.code}):[/red] {outcome.reason}")
        raise typer.Exit(1)
    sealed = " and sealed" if as_ == "principal" else ""
    console.print(
        f"[green]signed{sealed} {outcome.records_signed:,} of {outcome.records_total:,} records[/green] "
        f"in {seconds:.1f}s; {outcome.records_completed:,} now carry every signature and go to the archive"
    )
    if outcome.records_waiting:
        console.print(f"{outcome.records_waiting:,} records wait for their homeroom teacher's signature first")
