"""`hocba archive renew`: timestamp the log's checkpoints again before their timestamps weaken.

An RFC 3161 token proves a checkpoint existed at its time only while the TSA's certificate and the token's digest
hold. Before the certificate expires (or the digest is to be retired), the archive takes a new token over the
checkpoint and the old token (RFC 4998 evidence records as the model): the chain then proves the first time for as
long as the newest token holds. The work goes a hundred checkpoints a request, with progress; asking again renews
nothing renewed already, so a run cut short is simply run again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal, cast

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hocba.commands import DataDir, Session, Timeout, fail, run, session
from hocba.commands.archive import app
from hocba.console import console
from shared.contracts.archive import RenewalProgress, RenewTimestamps

#: Checkpoints one request looks at.
PER_REQUEST = 100

Algorithm = Literal["sha256", "sha384", "sha512"]
ALGORITHMS = ("sha256", "sha384", "sha512")


@app.command("renew")
def renew(
    within: Annotated[
        float, typer.Option(help="Renew the timestamps whose TSA certificate expires within this many days.")
    ] = 365.0,
    hash_: Annotated[
        str,
        typer.Option("--hash", help="The digest of the new tokens; timestamps under a weaker one are renewed too."),
    ] = "sha256",
    timeout: Timeout = 60.0,
    data_dir: DataDir = None,
) -> None:
    """Re-timestamp the log's checkpoints whose timestamps weaken soon, each new token over the old one."""
    if hash_ not in ALGORITHMS:
        fail(f"--hash {hash_}: say {', '.join(ALGORITHMS)}", 2)
    if within < 0:
        fail("--within is a number of days, 0 or more", 2)
    until = datetime.now(UTC) + timedelta(days=within)
    totals = run(renew_all(until, cast(Algorithm, hash_), data_dir, timeout))
    said = f"{totals.examined} checkpoints looked at: {totals.renewed} renewed, {totals.stamped} timestamped first"
    if totals.renewed or totals.stamped:
        expiry = f"; the new tokens hold until {totals.tsa_not_after:%Y-%m-%d}" if totals.tsa_not_after else ""
        console.print(f"{said}{expiry}")
    else:
        console.print(f"{said}: every timestamp holds past {until:%Y-%m-%d} under {hash_} already")


async def renew_all(until: datetime, algorithm: Algorithm, data_dir: Path | None, timeout: float) -> RenewalProgress:
    """Ask the archive a hundred checkpoints at a time until it has looked at all of them; the sums."""
    async with session(data_dir, timeout) as s:
        return await _renew_all(s, until, algorithm)


async def _renew_all(s: Session, until: datetime, algorithm: Algorithm) -> RenewalProgress:
    totals = RenewalProgress()
    after = 0
    columns = (TextColumn("renewing timestamps"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("renew", total=None)
        while True:
            request = RenewTimestamps(until=until, algorithm=algorithm, after=after, limit=PER_REQUEST)
            step = await s.ask(s.operator.signs(request), RenewalProgress)
            totals = totals.model_copy(
                update={
                    "examined": totals.examined + step.examined,
                    "renewed": totals.renewed + step.renewed,
                    "stamped": totals.stamped + step.stamped,
                    "total": step.total,
                    "tsa_not_after": step.tsa_not_after or totals.tsa_not_after,
                }
            )
            progress.update(task, total=step.total, completed=step.total - step.remaining)
            if step.next_after is None:
                return totals
            after = step.next_after
