"""`hocba sync status|retry|reconcile`: ask the sync service about its outbox, over request and reply."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hocba.commands import DataDir, ask
from hocba.console import console, duration
from shared.contracts.sync import (
    GetSyncStatus,
    Reconcile,
    ReconcileReport,
    RetryOutcome,
    RetryParked,
    SyncStatus,
)

app = typer.Typer(
    help="The ministry sync: outbox status, retry of parked entries, reconciliation (each request with the "
    "operator's token for it, from the data folder's development issuer key).",
    no_args_is_help=True,
)

Timeout = Annotated[float, typer.Option(help="Seconds to wait for sync's answer.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print sync's answer as JSON.")]

#: The exit status when sync refuses, cannot answer, or cannot be asked.
NOT_ANSWERED = 2


@app.command()
def status(
    parked: Annotated[int, typer.Option(min=0, help="Parked entries to list.")] = 20,
    timeout: Timeout = 30.0,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """The outbox by kind and status, the oldest waiting entry, the last checkpoint and the parked entries."""
    report = ask(GetSyncStatus(parked_limit=parked), SyncStatus, timeout, NOT_ANSWERED, data_dir=data_dir)
    if as_json:
        print(report.model_dump_json(indent=2))
        return
    show_outbox(report)
    show_parked(report)


def show_outbox(report: SyncStatus) -> None:
    table = Table(title="sync outbox")
    for column in ("kind", "status", "entries"):
        table.add_column(column, justify="right" if column == "entries" else "left")
    for count in report.counts:
        table.add_row(escape(count.kind), escape(count.status), f"{count.entries:,}")
    console.print(table)
    console.print(f"backlog {report.backlog:,}; oldest waiting {duration(report.oldest_waiting_seconds)}; parked {report.parked:,}")
    if report.last_checkpoint:
        c = report.last_checkpoint
        console.print(f"last checkpoint at the ministry: {escape(c.origin)} size {c.tree_size:,}, {c.delivered_at:%Y-%m-%d %H:%M:%S} UTC")
    else:
        console.print("no checkpoint delivered to the ministry yet")


def show_parked(report: SyncStatus) -> None:
    if not report.parked_entries:
        return
    table = Table(title=f"parked ({len(report.parked_entries)} of {report.parked:,})")
    for column in ("key", "kind", "attempts", "last error"):
        table.add_column(column)
    for e in report.parked_entries:
        table.add_row(escape(e.key), escape(e.kind), str(e.attempts), escape((e.last_error or "")[:120]))
    console.print(table)
    console.print("resume them with `hocba sync retry` once the cause is fixed")


@app.command()
def retry(
    key: Annotated[list[str] | None, typer.Option("--key", help="Only this entry (repeatable); a delivered one is sent again.")] = None,
    timeout: Timeout = 30.0,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """Hand parked entries (or the named ones) back to the relay, with a fresh count of attempts."""
    outcome = ask(RetryParked(keys=key or []), RetryOutcome, timeout, NOT_ANSWERED, data_dir=data_dir)
    if as_json:
        print(outcome.model_dump_json(indent=2))
        return
    console.print(f"resumed {outcome.resumed:,} entries; the relay sends them now")
    for skipped in outcome.skipped:
        console.print(f"[yellow]not resumed[/yellow] {escape(skipped)}: unknown, or already on its way")


@app.command()
def reconcile(
    limit: Annotated[int, typer.Option(min=0, help="Example keys shown per kind of difference.")] = 20,
    timeout: Timeout = 600.0,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """Compare what the ministry acknowledges with sync's outbox and receipts; list every difference.

    Exits 0 when both sides agree, 1 when they differ, 2 when the comparison could not be made.
    """
    report = ask(Reconcile(limit=limit), ReconcileReport, timeout, NOT_ANSWERED, data_dir=data_dir)
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        show_reconciliation(report)
    if not report.consistent:
        raise typer.Exit(1)


def show_reconciliation(report: ReconcileReport) -> None:
    console.print(
        f"sync holds {report.held:,} entries, the ministry acknowledges {report.acknowledged:,} keys; "
        f"{report.matched:,} match"
    )
    waiting = ", ".join(f"{n:,} {s}" for s, n in report.waiting.items() if n)
    console.print(f"still on their way (not differences): {escape(waiting or 'none')}")
    size = f"{report.archive_size:,}" if report.archive_size is not None else "unknown (no checkpoint yet)"
    console.print(f"archive size by the latest checkpoint: {size}")
    table = Table(title="differences")
    for column in ("difference", "count", "meaning", "examples"):
        table.add_column(column)
    for d in report.differences:
        style = "red" if d.count else "green"
        table.add_row(
            f"[{style}]{escape(d.name)}[/{style}]", f"{d.count:,}", escape(d.meaning), escape("\n".join(d.examples))
        )
    console.print(table)
