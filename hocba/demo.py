"""`hocba demo`: a term end on a fresh local stack, with progress bars and a summary table."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hocba.console import console
from hocba.infra import PRIVATE_FOLDER, private_data_folder, private_folder
from hocba.keys import dev_issuer
from hocba.stack import Stack, StackConfig
from hocba.term_end import STAGES, StageResult, TermEnd
from shared.settings import Settings


@dataclass
class MinistryCheck:
    """What the ministry (simulator) holds compared with what the run produced."""

    expected: int
    accepted: int
    duplicates: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def exactly_once(self) -> bool:
        return self.accepted == self.expected and not self.missing and not self.unexpected


@dataclass
class DemoOutcome:
    stages: list[StageResult]
    ministry: MinistryCheck | None
    dead_letters: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.ministry is not None and self.ministry.exactly_once


def check_ministry(simulator_url: str, expected_keys: set[str]) -> MinistryCheck:
    with httpx.Client(base_url=simulator_url, timeout=30) as client:
        stats = client.get("/v1/stats").raise_for_status().json()
        held = {r["idempotency_key"] for r in client.get("/v1/receipts").raise_for_status().json()["receipts"]}
    return MinistryCheck(
        expected=len(expected_keys),
        accepted=stats["accepted"],
        duplicates=stats["duplicates"],
        missing=sorted(expected_keys - held),
        unexpected=sorted(held - expected_keys),
    )


def dead_letter_total(stack: Stack) -> int:
    total = 0.0
    with httpx.Client(timeout=5) as client:
        for child in stack.children:
            if child.name == "ministry-simulator" or not child.alive():
                continue
            text = client.get(child.base_url + "/metrics").text
            for family in text_string_to_metric_families(text):
                if family.name == "hocba_messages_dead_lettered":
                    total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return int(total)


def run_demo(
    schools: int,
    students: int,
    data_dir: Path,
    signing_workers: int = 1,
    stage_timeout: float = 600.0,
    targets_file: Path | None = None,
) -> DemoOutcome:
    """A fresh throw-away stack, the term end driven over it, and what the ministry simulator holds after.

    Its processes are listed for Prometheus in `targets_file` while it runs (file-based service discovery).
    """
    namespace = f"demo{uuid.uuid4().hex[:8]}."
    config = StackConfig.from_environment(
        data_dir,
        namespace=namespace,
        fixed_ports=False,
        ephemeral=True,
        signing_workers=signing_workers,
        targets_file=targets_file,
    )
    stack = Stack(config, report=lambda line: console.print(f"[dim]· {escape(line)}[/dim]"))
    console.print(f"[bold]hocba demo[/bold]: {schools} school(s) × {students} students, data in {escape(str(data_dir))}")
    stack.start()
    # The driver stands in for the schools' tools: it logs in to the broker as their user.
    settings = Settings(amqp_url=stack.url_for("school"), namespace=namespace)
    try:
        run = TermEnd(settings, dev_issuer(data_dir)[0], schools, students, stage_timeout=stage_timeout)
        error = drive_with_progress(run)
        ministry = None
        if error is None:
            expected = {f"{rid}:{version}" for rid, version in run.counts.ready}
            ministry = check_ministry(stack.simulator.base_url, expected)
        outcome = DemoOutcome(run.results, ministry, dead_letter_total(stack), error)
    finally:
        stack.stop()
    print_summary(outcome, data_dir)
    return outcome


def drive_with_progress(run: TermEnd) -> str | None:
    """Run the term end with a progress bar per stage; what went wrong, if anything, in words."""
    with Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bars:
        tasks = {stage: bars.add_task(what, total=None) for stage, what in STAGES}

        def progress(stage: str, done: int, total: int) -> None:
            bars.update(tasks[stage], completed=done, total=total)

        run.progress = progress
        try:
            asyncio.run(run.run())
        except Exception as exc:  # noqa: BLE001 - reported in the summary, exit code 1
            return f"{type(exc).__name__}: {exc}"
    return None


def print_summary(outcome: DemoOutcome, data_dir: Path) -> None:
    table = Table(title="term end")
    table.add_column("stage")
    table.add_column("count", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("per second", justify="right")
    for result in outcome.stages:
        table.add_row(result.what, f"{result.count:,}", f"{result.seconds:.1f}", f"{result.rate:,.0f}")
    console.print(table)
    console.print("[dim]archive and delivery run alongside signing: their seconds count from the signing request.[/dim]")
    if outcome.error:
        console.print(f"[red]failed:[/red] {escape(outcome.error)} — service logs are in {escape(str(data_dir / 'logs'))}")
    if outcome.ministry:
        m = outcome.ministry
        verdict = "[green]every record reached the ministry simulator exactly once[/green]" if m.exactly_once else "[red]delivery mismatch[/red]"
        console.print(
            f"{verdict}: expected {m.expected:,}, accepted {m.accepted:,}, "
            f"repeated requests answered idempotently {m.duplicates:,}, missing {len(m.missing)}, unexpected {len(m.unexpected)}"
        )
    console.print(f"dead-lettered messages: {outcome.dead_letters}")


def fresh_data_dir(base: Path) -> Path:
    """A new folder for one demo run under the data folder, both readable by their owner only."""
    folder = base / "demo" / time.strftime("%Y%m%d-%H%M%S")
    private_data_folder(base)
    private_folder(folder.parent)
    folder.mkdir(mode=PRIVATE_FOLDER, exist_ok=False)
    return folder
