"""The `hocba` command: run the stack locally, run the term-end demo."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hocba import broker as broker_commands
from hocba.commands import amend as amend_command
from hocba.commands import archive as archive_commands
from hocba.commands import audit as audit_commands
from hocba.commands import dlq as dlq_commands
from hocba.commands import fail
from hocba.commands import grades as grades_commands
from hocba.commands import identity as identity_commands
from hocba.commands import keys as keys_commands
from hocba.commands import pki as pki_commands
from hocba.commands import records as records_commands
from hocba.commands import review as review_commands
from hocba.commands import sign as sign_command
from hocba.commands import sync as sync_commands
from hocba.commands import top as top_command
from hocba.commands import verify as verify_command
from hocba.commands import web as web_commands
from hocba.commands import year as year_commands
from hocba.console import console, errors
from hocba.demo import fresh_data_dir, run_demo
from hocba.infra import InfraError
from hocba.stack import TARGETS_FOLDER, Stack, StackConfig, interrupt_on_signals
from shared.settings import Settings

app = typer.Typer(help="hocba: electronic student academic records.", no_args_is_help=True, add_completion=False)
app.add_typer(sync_commands.app, name="sync")
app.add_typer(grades_commands.app, name="grades")
app.add_typer(identity_commands.app, name="identity")
app.add_typer(keys_commands.app, name="keys")


def data_root() -> Path:
    return Settings().data_dir


@app.command()
def up(
    signing_workers: Annotated[int, typer.Option(min=1, help="Signing worker processes to run.")] = 1,
    data_dir: Annotated[Path | None, typer.Option(help="Where data and logs go (default .hocba/).")] = None,
    any_ports: Annotated[
        bool, typer.Option("--any-ports", help="Pick free ports instead of the well-known ones (they are printed).")
    ] = False,
) -> None:
    """Start MongoDB (embedded unless MONGO_URL is set), the five services, the ministry simulator and the web page
    of the term end (process `web`).

    Runs until Ctrl-C, then stops everything it started. While it runs, the processes that serve /metrics are listed
    for Prometheus in <data-dir>/prometheus/up.json (file-based service discovery; deploy/prometheus/prometheus.yml
    reads it).
    """
    folder = data_dir or data_root()
    targets = folder / TARGETS_FOLDER / "up.json"
    stack = Stack(
        StackConfig.from_environment(
            folder, signing_workers=signing_workers, fixed_ports=not any_ports, web=True, targets_file=targets
        ),
        report=lambda line: console.print(f"· {line}", markup=False),
    )

    interrupt_on_signals()
    try:
        stack.start()
        show_processes(stack)
        console.print(
            f"broker: each process logs in as its own user; the command line as operator or school "
            f"(`hocba broker url operator`), passwords in {escape(str(folder / 'broker'))}"
        )
        console.print(f"logs: {folder / 'logs'} — press Ctrl-C to stop everything", markup=False)
        watch_children(stack)
    except KeyboardInterrupt:
        console.print("stopping…")
    except InfraError as exc:
        fail(f"cannot start: {exc}", 2)
    finally:
        stack.stop()
        console.print("stopped; nothing left running")


def show_processes(stack: Stack) -> None:
    table = Table(title="hocba is up")
    for column in ("process", "pid", "metrics and health"):
        table.add_column(column)
    for child in stack.children:
        table.add_row(child.name, str(child.pid), child.base_url)
    console.print(table)


def watch_children(stack: Stack) -> None:
    """Wait while every process runs; when one exits, show its log's end and exit 1."""
    while True:
        if dead := stack.dead_children():
            names = ", ".join(c.name for c in dead)
            errors.print(f"[red]{names} exited[/red]:\n{escape(dead[0].log_tail())}")
            raise typer.Exit(1)
        time.sleep(1)


@app.command()
def demo(
    schools: Annotated[int, typer.Option(min=1, help="Schools in the term end.")] = 1,
    students: Annotated[int, typer.Option(min=1, help="Students per school.")] = 1000,
    signing_workers: Annotated[int, typer.Option(min=1, help="Signing worker processes.")] = 1,
    timeout: Annotated[float, typer.Option(help="Seconds a stage may take before the demo gives up.")] = 600.0,
) -> None:
    """Run a term end on a fresh local stack and print what happened.

    Exits 0 only if every record reached the ministry simulator exactly once. While it runs, its processes are listed
    for Prometheus in .hocba/prometheus/demo.json (file-based service discovery), so a local Prometheus watches it.
    """
    folder = fresh_data_dir(data_root())
    interrupt_on_signals()
    try:
        outcome = run_demo(
            schools, students, folder, signing_workers, timeout, targets_file=data_root() / TARGETS_FOLDER / "demo.json"
        )
    except InfraError as exc:
        fail(f"cannot start: {exc}", 2)
    raise typer.Exit(0 if outcome.ok else 1)


app.add_typer(pki_commands.app, name="pki")
app.command("sign")(sign_command.sign)
app.command("verify")(verify_command.verify)
app.add_typer(archive_commands.app, name="archive")
app.add_typer(broker_commands.app, name="broker")
app.add_typer(audit_commands.app, name="audit")
app.add_typer(review_commands.app, name="review")
app.add_typer(year_commands.term_app, name="term")
app.add_typer(year_commands.year_app, name="year")
app.add_typer(records_commands.app, name="records")
app.add_typer(dlq_commands.app, name="dlq")
app.add_typer(web_commands.app, name="web")
grades_commands.app.command("history")(records_commands.history)
app.command("amend")(amend_command.amend)
app.command("top")(top_command.top)
app.command("status", hidden=True)(top_command.top)


def main() -> None:
    app()
