"""A term end on a whole local stack: time per stage, CPU per record of every process, next to in-run ceilings.

    .venv/bin/python bench/term_end.py --students 3000 [--schools 1] [--signing-workers 1]
    .venv/bin/python bench/term_end.py --pilot [--scale 0.05]

`--pilot` is the city's term end: 500 primary schools of 264 grade-1 students (Circular 27/2020,
132,000 records) and one lower-secondary school of 1,000 grade-6 students, on the embedded
database server with 2 signing workers. `--scale` keeps that shape with a share of the primary
schools (0.05: 25 schools, 6,600 records) and the one school whole. Rosters and gradebooks are
loaded (timed apart), every class's homeroom teacher signs, then the one school's principal clicks
alone (its latency: click → signed and sealed, → archived, → delivered), then every other principal;
the clock runs from the first click to the last ministry receipt.

CPU is what the kernel charged each process (/proc utime + stime), per record, for loading and for
sign → archive → deliver apart; with peak RSS (VmHWM) of each. The machines are shared and noisy:
the ceilings (raw ES256, raw insert of the sealed bytes, raw publish of the same bytes on the same
broker) are measured in the same run, and each stage is shown beside its ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ceilings import Ceiling, raw_insert, raw_publish, stored_sizes  # noqa: E402
from bench.meter import Meter, listening_pid  # noqa: E402
from hocba import demo_data  # noqa: E402
from hocba.baselines import raw_es256_rate  # noqa: E402
from hocba.keys import dev_issuer  # noqa: E402
from hocba.stack import Stack, StackConfig, interrupt_on_signals  # noqa: E402
from hocba.term_end import Cohort, StageResult, TermEnd, cohorts  # noqa: E402
from shared.at_rest import sealed_records  # noqa: E402
from shared.crypto.vault import Vault  # noqa: E402
from shared.mongo import make_client  # noqa: E402
from shared.settings import Settings  # noqa: E402

PILOT_SCHOOLS = 500
PILOT_STUDENTS = 264
PROBE_STUDENTS = 1_000
#: Records compared for the per-chunk cost at the start and at the end of the signing phase.
WINDOW = 1_000
#: Signatures each record gets from the principal's click: the principal's and the school's seal.
CLICK_SIGNATURES = 2
BROKER = "broker (RabbitMQ)"
DATABASE = "database (nx-27017)"
DRIVER = "driver (this process)"
CEILING_TIMEOUT = 180.0


@dataclass
class Plan:
    cohorts: list[Cohort]
    probe: str | None
    title: str


def plan(args: argparse.Namespace) -> Plan:
    """Who takes part: the pilot's shape (scaled) or `--students` over `--schools` grade-6 schools."""
    if not args.pilot:
        schools = demo_data.schools(args.schools)
        return Plan(cohorts(schools, args.students // args.schools), None, f"{args.students:,} grade-6 students")
    primary = demo_data.schools(max(1, round(PILOT_SCHOOLS * args.scale)), grade=demo_data.PRIMARY_GRADE)
    crowd = cohorts(primary, PILOT_STUDENTS)
    probe = Cohort(demo_data.schools(1)[0], PROBE_STUDENTS, len(primary) * PILOT_STUDENTS)
    title = f"pilot × {args.scale:g}: {len(primary)} primary schools × {PILOT_STUDENTS} grade-1 + 1 school × {PROBE_STUDENTS} grade-6"
    return Plan([probe, *crowd], probe.school.code, title)


async def sample_documents(mongo_url: str, settings: Settings, limit: int) -> list[dict]:
    """Record documents as signing keeps them, opened with signing's key ring (the stack's development one)."""
    client = make_client(mongo_url)
    try:
        records = sealed_records(client[settings.names().database("signing")]["records"], Vault.for_service(settings, "signing"))
        cursor = records.collection.find({}, {"_id": 0, "record_id": 1, "version": 1, "document": 1, "key_id": 1})
        return [records.opened(doc) async for doc in cursor.limit(limit)]
    finally:
        await client.close()


def processes(stack: Stack) -> dict[str, int]:
    """Every process the run charges: the stack's services and simulator, its database server, the driver."""
    pids = {child.name: child.pid for child in stack.children if child.pid is not None}
    if stack.mongo is not None and stack.mongo.process is not None:
        pids[DATABASE] = stack.mongo.process.pid
    pids[DRIVER] = os.getpid()
    if (broker := listening_pid(urlsplit(stack.config.amqp_url).port or 5672)) is not None:
        pids[BROKER] = broker
    return pids


async def drive(run: TermEnd, meter: Meter) -> list[StageResult]:
    """The term end, with the signing phase sampled: CPU beside records signed, archived and delivered."""
    c = run.counts
    sampler = asyncio.create_task(meter.sample(lambda: (len(c.signed) + len(c.archived) + len(c.delivered)) / 3))
    try:
        return await run.run()
    finally:
        sampler.cancel()


class Progress:
    """A line when a stage begins and every half minute while it runs, to follow a long run."""

    def __init__(self, console: Console) -> None:
        self.console, self.stage, self.last = console, "", 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != self.stage or now - self.last >= 30:
            self.console.print(f"[dim]· {time.strftime('%H:%M:%S')} {stage}: {done:,} of {total:,}[/dim]")
            self.stage, self.last = stage, now


@dataclass
class Ceilings:
    es256_ms: float
    insert: Ceiling
    publish: Ceiling


async def ceilings(stack: Stack, settings: Settings, meter: Meter, chunk: int) -> Ceilings:
    """The three ceilings, on this run's stack, over its records (each step bounded: a shared broker may stall)."""
    documents = await asyncio.wait_for(sample_documents(stack.mongo_url, settings, 1_000), CEILING_TIMEOUT)
    sizes = await asyncio.wait_for(stored_sizes(stack.mongo_url, settings, 2_000), CEILING_TIMEOUT)
    es256 = 1000 / raw_es256_rate(documents)
    insert = await asyncio.wait_for(raw_insert(stack.mongo_url, sizes, chunk, meter.pids.get(DATABASE)), CEILING_TIMEOUT)
    publish = await asyncio.wait_for(
        raw_publish(stack.config.amqp_url, sizes, chunk, meter.pids.get(BROKER)), CEILING_TIMEOUT
    )
    return Ceilings(es256, insert, publish)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=10_000, help="students in all (default 10000)")
    parser.add_argument("--schools", type=int, default=1)
    parser.add_argument("--pilot", action="store_true", help="the city's term end (see above)")
    parser.add_argument("--scale", type=float, default=1.0, help="share of the pilot's primary schools (default 1)")
    parser.add_argument("--signing-workers", type=int, default=None, help="default 1, with --pilot 2")
    parser.add_argument("--chunk-size", type=int, default=100)
    parser.add_argument("--stage-timeout", type=float, default=3600.0)
    args = parser.parse_args()
    workers = args.signing_workers or (2 if args.pilot else 1)
    console = Console(width=160)
    chosen = plan(args)
    namespace = f"bench{uuid.uuid4().hex[:8]}."
    data_dir = Path(tempfile.mkdtemp(prefix="hocba-bench-"))
    config = StackConfig.from_environment(
        data_dir, namespace=namespace, fixed_ports=False, ephemeral=True, signing_workers=workers,
        extra_env={"HOCBA_CHUNK_SIZE": str(args.chunk_size)},
    )
    stack = Stack(config, report=lambda line: console.print(f"[dim]· {line}[/dim]"))
    interrupt_on_signals()
    stack.start(ready_timeout=180)  # a shared machine under load starts slowly
    # The driver stands in for the schools' tools: it logs in to the broker as their user.
    settings = Settings(amqp_url=stack.url_for("school"), namespace=namespace, chunk_size=args.chunk_size, data_dir=data_dir)
    try:
        console.print(f"term end: {chosen.title}, {workers} signing worker(s), chunks of {args.chunk_size}")
        meter = Meter(processes(stack), shared=(BROKER,))
        run = TermEnd(
            settings, dev_issuer(data_dir)[0], chosen.cohorts, progress=Progress(console), stage_timeout=args.stage_timeout
        )
        run.probe, run.milestone = chosen.probe, meter.mark
        meter.mark("start")
        results = asyncio.run(drive(run, meter))
        meter.measure_peaks()
        ministry = httpx.get(f"{stack.simulator.base_url}/v1/stats", timeout=10).json()
        report = Report(console, run, meter, args.chunk_size)
        report.print(results, ministry)  # before the ceilings: a run's figures are not lost to a stalled broker
        report.against_ceilings(asyncio.run(ceilings(stack, settings, meter, args.chunk_size)))
    finally:
        stack.stop()
    shutil.rmtree(data_dir, ignore_errors=True)  # kept, with its logs, only when the run failed


class Report:
    def __init__(self, console: Console, run: TermEnd, meter: Meter, chunk: int) -> None:
        self.console, self.run, self.meter, self.chunk = console, run, meter, chunk
        self.records = run.total_students
        self.first_click = "crowd-click" if "crowd-click" in meter.marks else "click"

    def print(self, results: list[StageResult], ministry: dict[str, int]) -> None:
        self.stages(results)
        self.latencies()
        self.cpu()
        self.chunks()
        self.delivered(ministry)

    def stages(self, results: list[StageResult]) -> None:
        table = Table(title=f"term end, {self.records:,} records")
        for column in ("stage", "count", "seconds", "per second"):
            table.add_column(column, justify="left" if column == "stage" else "right")
        for r in results:
            table.add_row(r.what, f"{r.count:,}", f"{r.seconds:.1f}", f"{r.rate:,.0f}")
        self.console.print(table)
        self.console.print("[dim]archive and delivery count from the first signing request (homeroom included); "
                           "'assess' counts assessment entries, the other stages records.[/dim]")

    def latencies(self) -> None:
        m = self.meter
        lines = [
            ("loading: rosters and gradebooks (register + assess)", m.seconds("start", "assess")),
            ("assembling (close year)", m.seconds("assess", "assemble")),
            ("homeroom signing, every class", m.seconds("homeroom", "click")),
            ("first click → last ministry receipt", m.seconds("click", "deliver")),
        ]
        if "crowd-click" in m.marks:
            lines[3:3] = [
                ("one school (1,000): click → signed and sealed (goal ≤ 2 s)", m.seconds("click", "probe-signed")),
                ("one school (1,000): click → archived (goal ≤ 2 s)", m.seconds("click", "probe-archived")),
                ("one school (1,000): click → delivered", m.seconds("click", "probe-delivered")),
                ("the other principals: first click → last ministry receipt", m.seconds("crowd-click", "deliver")),
            ]
        table = Table(title="seconds")
        table.add_column("what")
        table.add_column("seconds", justify="right")
        for what, seconds in lines:
            table.add_row(what, f"{seconds:.1f}")
        self.console.print(table)

    def cpu(self) -> None:
        m, n = self.meter, self.records
        phases = (("loading", "start", "assess"), ("assembling", "assess", "assemble"),
                  ("homeroom signing", "homeroom", "click"), ("sign → archive → deliver", "click", "deliver"),
                  ("whole run", "start", "deliver"))
        spent = {label: m.spent(a, b) for label, a, b in phases}
        table = Table(title=f"CPU ms per record ({n:,} records; /proc utime + stime) and peak RSS")
        table.add_column("process")
        for label, *_ in phases:
            table.add_column(label, justify="right")
        table.add_column("peak RSS MB", justify="right")
        own = [name for name in m.pids if name != BROKER]
        for name in [*own, BROKER] if BROKER in m.pids else own:
            peak = m.peaks.get(name)
            table.add_row(name, *(f"{spent[label][name] * 1000 / n:.2f}" for label, *_ in phases),
                          "" if peak is None or name == BROKER else f"{peak:.0f}")
        table.add_row("[bold]total (all but the broker)[/bold]",
                      *(f"[bold]{sum(spent[label][p] for p in own) * 1000 / n:.2f}[/bold]" for label, *_ in phases), "")
        self.console.print(table)

    def click_phase(self, *names: str) -> float:
        """CPU ms per record of the named processes (prefix match) from the first click to the last receipt."""
        spent = self.meter.spent("click", "deliver")
        return sum(v for k, v in spent.items() if k.startswith(names)) * 1000 / self.records

    def against_ceilings(self, c: Ceilings) -> None:
        everything = self.click_phase(*(p for p in self.meter.pids if p != BROKER))
        floor = CLICK_SIGNATURES * c.es256_ms + c.insert.total_ms + c.publish.client_ms
        rows = [
            ("signing workers", self.click_phase("signing"), f"raw ES256 × {CLICK_SIGNATURES} (principal, seal)",
             CLICK_SIGNATURES * c.es256_ms),
            ("database server", self.click_phase(DATABASE), "raw insert of the sealed bytes, server", c.insert.server_ms),
            ("broker", self.click_phase(BROKER), "raw publish of the same bytes, broker", c.publish.server_ms),
            ("all processes but the broker", everything, "2 × ES256 + 1 insert + 1 publish", floor),
        ]
        table = Table(title="sign → archive → deliver beside its in-run ceilings (CPU ms per record)")
        for column in ("stage", "in the run", "ceiling", "ceiling ms", "÷ ceiling"):
            table.add_column(column, justify="left" if column in ("stage", "ceiling") else "right")
        for stage, value, what, limit in rows:
            table.add_row(stage, f"{value:.2f}", what, f"{limit:.3f}", f"{value / limit:.1f}" if limit else "")
        self.console.print(table)
        self.console.print(
            f"[dim]raw insert: {c.insert.rate:,.0f} records/s, server {c.insert.server_ms:.3f} + client "
            f"{c.insert.client_ms:.3f} ms/record; raw publish: {c.publish.rate:,.0f} records/s, broker "
            f"{c.publish.server_ms:.3f} + client {c.publish.client_ms:.3f} ms/record; raw ES256 {c.es256_ms:.3f} ms[/dim]"
        )

    def chunks(self) -> None:
        m = self.meter
        since = m.marks[self.first_click][0]
        first = m.per_chunk(since, WINDOW, self.chunk, first=True)
        last = m.per_chunk(since, WINDOW, self.chunk, first=False)
        if first is None or last is None:
            self.console.print("per-chunk cost: too few samples")
            return
        self.console.print(
            f"per-chunk cost (CPU s per {self.chunk} records through sign → archive → deliver, every process "
            f"but the broker, from {self.first_click}): first {WINDOW:,} records {first:.2f} s, "
            f"last {WINDOW:,} records {last:.2f} s, end ÷ start {last / first:.2f}"
        )

    def delivered(self, ministry: dict[str, int]) -> None:
        once = ministry["accepted"] == self.records and ministry["acknowledgements"] == ministry["accepted"]
        self.console.print(
            f"ministry: {ministry['accepted']:,} records accepted of {self.records:,}, {ministry['duplicates']:,} "
            f"repeated requests answered with their receipt, {ministry['requests']:,} requests; "
            f"every record delivered exactly once: {'yes' if once else 'NO'}"
        )


if __name__ == "__main__":
    main()
