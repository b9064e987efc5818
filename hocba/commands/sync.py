"""`hocba sync status|retry|reconcile`: ask the sync service about its outbox, over request and reply."""

from __future__ import annotations

import asyncio
import getpass
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from joserfc.jwk import ECKey
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

from shared.auth import DEFAULT_ISSUER, Actor, IssuerKey, issue_token
from shared.contracts.base import Message
from shared.contracts.sync import (
    GetSyncStatus,
    Reconcile,
    ReconcileReport,
    RetryOutcome,
    RetryParked,
    SyncStatus,
)
from shared.messaging import make_broker, topic_exchange
from shared.settings import Settings

app = typer.Typer(help="The ministry sync: outbox status, retry of parked entries, reconciliation.", no_args_is_help=True)
console = Console()

#: The local stand-in issuer key `hocba up` makes (hocba/keys.py); production passes --token instead.
DEV_ISSUER_KEY = Path("keys") / "actor-issuer.private.jwk.json"

Timeout = Annotated[float, typer.Option(help="Seconds to wait for sync's answer.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print sync's answer as JSON.")]


class NoAnswer(RuntimeError):
    pass


async def ask(settings: Settings, request: Message, timeout: float) -> Any:
    """Send `request` to sync and return its decoded reply. The request expires unanswered after `timeout`."""
    broker, _, _ = make_broker(settings, CollectorRegistry(), "hocba-cli")
    try:
        await broker.start()
        reply = await broker.request(
            request,
            exchange=topic_exchange(settings.names()),
            routing_key=request.ROUTING_KEY,
            message_id=request.message_id,
            mandatory=True,
            timeout=timeout,
            expiration=timedelta(seconds=timeout),
        )
        return await reply.decode()
    except TimeoutError:
        raise NoAnswer(f"sync did not answer within {timeout:.0f}s; is it running? (`hocba up`, or the deployment)") from None
    except Exception as exc:  # noqa: BLE001 - reported to the operator, not as a traceback
        if "NO_ROUTE" in str(exc) or "unroutable" in str(exc).lower() or "returned" in str(exc).lower():
            raise NoAnswer(f"no sync queue takes {request.ROUTING_KEY}: sync has not started in this namespace") from exc
        raise NoAnswer(f"cannot ask sync: {type(exc).__name__}: {exc}") from exc
    finally:
        await broker.stop()


def run(request: Message, timeout: float) -> Any:
    try:
        return asyncio.run(ask(Settings(), request, timeout))
    except NoAnswer as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def operator_token(given: str | None) -> str | None:
    """The operator's actor token: given, or issued with the local development key when there is one."""
    if given:
        return given
    key_file = Settings().data_dir / DEV_ISSUER_KEY
    if not key_file.exists():
        return None
    issuer = IssuerKey(ECKey.import_key(json.loads(key_file.read_text())), DEFAULT_ISSUER)
    actor = Actor(
        subject=f"operator-{getpass.getuser()}",
        name="Operator",
        roles=frozenset({"operator"}),
        school_code="",
        expires_at=datetime.now(UTC) + timedelta(minutes=10),
    )
    return issue_token(issuer, actor)


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
    report = SyncStatus.model_validate(run(GetSyncStatus(parked_limit=parked), timeout))
    if as_json:
        print(report.model_dump_json(indent=2))
        return
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
    if report.parked_entries:
        parked_table = Table(title=f"parked ({len(report.parked_entries)} of {report.parked:,})")
        for column in ("key", "kind", "attempts", "last error"):
            parked_table.add_column(column)
        for e in report.parked_entries:
            parked_table.add_row(e.key, e.kind, str(e.attempts), (e.last_error or "")[:120])
        console.print(parked_table)
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
    outcome = RetryOutcome.model_validate(run(RetryParked(keys=key or [], actor=actor), timeout))
    if as_json:
        print(outcome.model_dump_json(indent=2))
    elif outcome.refused:
        console.print(f"[red]refused:[/red] {outcome.refused}")
    else:
        console.print(f"resumed {outcome.resumed:,} entries; the relay sends them now")
        for skipped in outcome.skipped:
            console.print(f"[yellow]not resumed[/yellow] {skipped}: unknown, or already on its way")
    if outcome.refused:
        raise typer.Exit(2)


@app.command()
def reconcile(
    limit: Annotated[int, typer.Option(min=0, help="Example keys shown per kind of difference.")] = 20,
    timeout: Timeout = 600.0,
    as_json: AsJson = False,
) -> None:
    """Compare what the ministry acknowledges with sync's outbox and receipts; list every difference.

    Exits 0 when both sides agree, 1 when they differ, 2 when the comparison could not be made.
    """
    report = ReconcileReport.model_validate(run(Reconcile(limit=limit), timeout))
    if as_json:
        print(report.model_dump_json(indent=2))
    elif report.error:
        console.print(f"[red]could not reconcile:[/red] {report.error}")
    else:
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
    if report.error:
        raise typer.Exit(2)
    if not report.consistent:
        raise typer.Exit(1)

