"""`hocba sync status|retry|reconcile`: ask the sync service about its outbox, over request and reply."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.table import Table

from hocba.commands import ask
from hocba.console import console
from hocba.keys import existing_dev_issuer
from hocba.staff import Staff
from shared.contracts.sync import (
    GetSyncStatus,
    Reconcile,
    ReconcileReport,
    RetryOutcome,
    RetryParked,
    SyncStatus,
)
from shared.settings import Settings

app = typer.Typer(help="The ministry sync: outbox status, retry of parked entries, reconciliation.", no_args_is_help=True)

Timeout = Annotated[float, typer.Option(help="Seconds to wait for sync's answer.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print sync's answer as JSON.")]

#: The exit status when sync refuses, cannot answer, or cannot be asked.
NOT_ANSWERED = 2


def operator_token(given: str | None) -> str | None:
    """The operator's actor token: given, or issued with the local development key when there is one."""
    if given:
        return given
    issuer = existing_dev_issuer(Settings().data_dir)
    return Staff(issuer).operator(getpass.getuser()) if issuer is not None else None


def age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@app.command()
def status(
    parked: Annotated[int, typer.Option(min=0, help="Parked entries to list.")] = 20,
    timeout: Timeout = 30.0,
    as_json: AsJson = False,
) -> None:
    """The outbox by kind and status, the oldest waiting entry, the last checkpoint and the parked entries."""
    report = ask(GetSyncStatus(parked_limit=parked), SyncStatus, timeout, NOT_ANSWERED)
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
        table.add_row(count.kind, count.status, f"{count.entries:,}")
    console.print(table)
    console.print(f"backlog {report.backlog:,}; oldest waiting {age(report.oldest_waiting_seconds)}; parked {report.parked:,}")
    if report.last_checkpoint:
        c = report.last_checkpoint
        console.print(f"last checkpoint at the ministry: {c.origin} size {c.tree_size:,}, {c.delivered_at:%Y-%m-%d %H:%M:%S} UTC")
    else:
        console.print("no checkpoint delivered to the ministry yet")


def show_parked(report: SyncStatus) -> None:
    if not report.parked_entries:
        return
    table = Table(title=f"parked ({len(report.parked_entries)} of {report.parked:,})")
    for column in ("key", "kind", "attempts", "last error"):
        table.add_column(column)
    for e in report.parked_entries:
        table.add_row(e.key, e.kind, str(e.attempts), (e.last_error or "")[:120])
    console.print(table)
    console.print("resume them with `hocba sync retry` once the cause is fixed")


@app.command()
def retry(
    key: Annotated[list[str] | None, typer.Option("--key", help="Only this entry (repeatable); a delivered one is sent again.")] = None,
    token: Annotated[str | None, typer.Option(envvar="HOCBA_ACTOR_TOKEN", help="The operator's actor token.")] = None,
    timeout: Timeout = 30.0,
    as_json: AsJson = False,
) -> None:
    """Hand parked entries (or the named ones) back to the relay, with a fresh count of attempts."""
    actor = operator_token(token)
    if actor is None:
        console.print("[yellow]no operator token (--token or HOCBA_ACTOR_TOKEN); sync will refuse[/yellow]")
    outcome = ask(RetryParked(keys=key or [], actor=actor), RetryOutcome, timeout, NOT_ANSWERED)
    if as_json:
        print(outcome.model_dump_json(indent=2))
        return
    console.print(f"resumed {outcome.resumed:,} entries; the relay sends them now")
    for skipped in outcome.skipped:
        console.print(f"[yellow]not resumed[/yellow] {skipped}: unknown, or already on its way")


@app.command()
def reconcile(
    limit: Annotated[int, typer.Option(min=0, help="Example keys shown per kind of difference.")] = 20,
    timeout: Timeout = 600.0,
    as_json: AsJson = False,
) -> None:
    """Compare what the ministry acknowledges with sync's outbox and receipts; list every difference.

    Exits 0 when both sides agree, 1 when they differ, 2 when the comparison could not be made.
    """
    report = ask(Reconcile(limit=limit), ReconcileReport, timeout, NOT_ANSWERED)
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
    console.print(f"still on their way (not differences): {waiting or 'none'}")
    size = f"{report.archive_size:,}" if report.archive_size is not None else "unknown (no checkpoint yet)"
    console.print(f"archive size by the latest checkpoint: {size}")
    table = Table(title="differences")
    for column in ("difference", "count", "meaning", "examples"):
        table.add_column(column)
    for d in report.differences:
        style = "red" if d.count else "green"
        table.add_row(f"[{style}]{d.name}[/{style}]", f"{d.count:,}", d.meaning, "\n".join(d.examples))
    console.print(table)
