"""One-click signing throughput: a principal's request to the last record archived, next to raw ES256.

    .venv/bin/python bench/signing.py                       # 1,000 records with 1, 2 and 4 workers
    .venv/bin/python bench/signing.py --records 132000 --workers 4 --schools 132

Only signing (N worker processes) and archive run, on RabbitMQ and the embedded MongoDB-wire
server; record versions are seeded as grades would publish them (RecordsReady, each version sealed
with grades' service certificate, `svc-grades`, as signing requires), each class is reviewed
and confirmed, then signed by its homeroom teacher (timed apart), then each school's principal clicks once and
the clock runs until the archive has appended the last record. Each figure is printed beside the
raw ES256 signing rate of one process over the same documents, measured in the same run: the
machines are shared and noisy, so the ratio is the figure to compare. The CPU each process kind
spent per record from the click to the last record archived (user + system, from /proc) is printed
too: unlike the wall clock, it hardly depends on what else the machine runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from hocba import demo_data
from hocba.baselines import raw_es256_rate
from hocba.commands.pki import enrol, open_pki
from hocba.infra import EmbeddedMongo, ensure_rabbitmq, free_port
from hocba.keys import dev_issuer
from hocba.stack import Child, interrupt_on_signals
from hocba.staff import Staff
from hocba.watch import Watch
from shared.auth import service_subject
from shared.contracts.archive import CheckpointIssued, RecordsArchived
from shared.contracts.grades import RecordsReady, RecordVersion
from shared.contracts.record import content_of
from shared.contracts.signing import (
    BatchCompleted,
    BatchRefused,
    ClassReviews,
    ConfirmReview,
    RecordsReceived,
    RequestSignBatch,
    ReviewClasses,
    ReviewConfirmed,
)
from shared.crypto.seal import record_claims, seal
from shared.crypto.signer import X509Signer
from shared.messaging import Bus, delete_exchanges
from shared.settings import Names, Settings

YEAR = demo_data.SCHOOL_YEAR
console = Console()


def document(school_code: str, class_name: str, n: int) -> dict:
    """A year record shaped like the ones grades assembles: 12 subjects, results, the student (~3.5 KB)."""
    subjects = []
    for i, (name, _, scored) in enumerate(demo_data.SUBJECTS):
        if scored:
            term = {"regular": ["7.5", "8.0", "6.5"], "midterm": "7.0", "final": "8.0", "average": f"{6 + (n + i) % 4}.{i % 10}"}
            subjects.append({"name": name, "kind": "scored", "term_1": term, "term_2": term, "year": {"average": term["average"]}})
        else:
            subjects.append({"name": name, "kind": "comment", "term_1": {"level": "Đ"}, "term_2": {"level": "Đ"}, "year": {"level": "Đ"}})
    return {
        "record_id": f"{school_code}-{YEAR}-{n:06d}",
        "version": 1,
        "rule_set": "circular-22-2021/v2",
        "school": {"code": school_code},
        "school_year": YEAR,
        "grade": 6,
        "class_name": class_name,
        "student": {"student_ref": f"bench-{n:06d}", "identity": {
            "personal_id": f"0792140{n:05d}"[-12:], "full_name": "Nguyễn Văn An", "date_of_birth": "2014-05-06",
            "sex": "M", "place_of_birth": "Thành phố Hồ Chí Minh", "ethnicity": "Kinh", "guardian_name": "Nguyễn Văn Bình",
        }},
        "subjects": subjects,
        "learning_result": {"term_1": "Khá", "term_2": "Tốt", "year": "Tốt"},
        "complete": True,
        "missing": [],
    }


def records_for(schools: int, per_school: int, grades: X509Signer) -> dict[str, list[RecordVersion]]:
    """Each school's record versions, sealed by `grades` as grades seals the versions it assembles."""
    out: dict[str, list[RecordVersion]] = {}
    n = 0
    for school in demo_data.schools(schools):
        rows = []
        for i in range(per_school):
            class_name = f"6A{i // demo_data.CLASS_SIZE + 1}"
            doc = document(school.code, class_name, n)
            version = RecordVersion(record_id=doc["record_id"], version=1, school_code=school.code, school_year=YEAR,
                                    student_ref=f"bench-{n:06d}", content=content_of(doc))
            rows.append(version.model_copy(update={"seal": seal(grades, record_claims(version))}))
            n += 1
        out[school.code] = rows
    return out


def cpu_seconds(pid: int | None) -> float:
    """CPU (user + system) process `pid` has used so far, from /proc; 0 when it is gone or unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    records: int
    workers: int
    seconds: float
    to_batch_completed: float
    homeroom_seconds: float
    signatures: int
    #: CPU seconds per process kind (signing workers together, archive, database) from click to last archived.
    cpu: dict[str, float]


def ready(child: Child, client: httpx.Client, deadline: float) -> None:
    """Wait until `child` answers ready; its log's tail in the error when it exits or is not ready by `deadline`."""
    while True:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited:\n{child.log_tail()}")
        try:
            if client.get(child.base_url + "/health/ready").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} not ready:\n{child.log_tail()}")
        time.sleep(0.2)


class Services:
    """N signing workers and one archive as processes, under one namespace."""

    def __init__(self, base: Path, mongo_url: str, amqp_url: str, workers: int, jwks: Path, pki: Path) -> None:
        self.namespace = f"bench{uuid.uuid4().hex[:8]}."
        env = {
            **os.environ,
            "AMQP_URL": amqp_url,
            "MONGO_URL": mongo_url,
            "HOCBA_NAMESPACE": self.namespace,
            "HOCBA_EPHEMERAL": "1",
            "HOCBA_ACTOR_ISSUER_JWKS": str(jwks),
            "HOCBA_PKI_DIR": str(pki),
            "HOCBA_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        self.children = []
        for name, module in [*((f"signing-{n + 1}", "signing") for n in range(workers)), ("archive", "archive")]:
            port = free_port()
            self.children.append(Child(name, [sys.executable, "-m", f"services.{module}"],
                                       {**env, "HOCBA_HTTP_PORT": str(port), "HOCBA_INSTANCE": name},
                                       port, base / "logs" / self.namespace / f"{name}.log"))

    def start(self) -> None:
        for child in self.children:
            child.start()
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=2) as client:
            for child in self.children:
                ready(child, client, deadline)

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by the signing workers together and by the archive."""
        used: dict[str, float] = {}
        for child in self.children:
            kind = child.name.split("-")[0]
            used[kind] = used.get(kind, 0.0) + cpu_seconds(child.pid)
        return used

    def stop(self) -> None:
        for child in self.children:
            child.ask_to_stop()
        for child in self.children:
            if child.process is not None:
                child.process.wait(30)


class Seen:
    """What the run's watch has seen: records received and archived, batches completed or refused."""

    def __init__(self) -> None:
        self.received = 0
        self.archived: set[tuple[str, int]] = set()
        self.last_archived = 0.0
        self.done: dict[str, BatchCompleted] = {}
        self.refused: dict[str, str] = {}

    def watching(self, watch: Watch) -> Watch:
        watch.on(RecordsReceived, self.records_received)
        watch.on(BatchCompleted, self.batch_completed)
        watch.on(BatchRefused, self.batch_refused)
        watch.on(RecordsArchived, self.records_archived)
        watch.on(CheckpointIssued, lambda m: None)
        return watch

    def records_received(self, m: RecordsReceived) -> None:
        self.received += m.count

    def batch_completed(self, m: BatchCompleted) -> None:
        self.done[m.batch_id] = m

    def batch_refused(self, m: BatchRefused) -> None:
        self.refused[m.batch_id] = m.reason

    def records_archived(self, m: RecordsArchived) -> None:
        self.archived.update((r.record_id, r.version) for r in m.records)
        self.last_archived = time.perf_counter()

    async def until(self, what: str, check: Callable[[], bool], timeout: float = 3600) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.refused:
                raise RuntimeError(f"refused: {next(iter(self.refused.values()))}")
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            await asyncio.sleep(0.05)


async def seed_records(bus: Bus, by_school: dict[str, list[RecordVersion]]) -> None:
    """The record versions as grades publishes them, 100 a message."""
    for school, rows in by_school.items():
        for start in range(0, len(rows), 100):
            await bus.publish(RecordsReady(school_code=school, school_year=YEAR, records=rows[start : start + 100]))


async def reviews_confirmed(bus: Bus, staff: Staff, by_school: dict[str, list[RecordVersion]]) -> None:
    """Each class reviewed by its homeroom teacher, who confirms what the review shows (signing signs a class only
    as its review confirmed it), twenty classes at a time."""

    async def confirmed(school: str, class_name: str) -> None:
        teacher = staff.homeroom_teacher(school, class_name)
        asked = ReviewClasses(school_code=school, school_year=YEAR, class_name=class_name)
        for shown in (await bus.request(teacher.signs(asked), ClassReviews, 600)).classes:
            seen = ConfirmReview(
                school_code=school, school_year=YEAR, class_name=class_name, reviewed=shown.fingerprint
            )
            await bus.request(teacher.signs(seen), ReviewConfirmed, 600)

    classes = [(school, c) for school, rows in by_school.items() for c in sorted({r.fields.class_name for r in rows})]
    for start in range(0, len(classes), 20):
        await asyncio.gather(*(confirmed(*c) for c in classes[start : start + 20]))


async def homeroom_batches(bus: Bus, staff: Staff, by_school: dict[str, list[RecordVersion]]) -> list[str]:
    """Each class signed by its homeroom teacher."""
    batches = []
    for school, rows in by_school.items():
        for class_name in sorted({r.fields.class_name for r in rows}):
            request = staff.homeroom_teacher(school, class_name).signs(
                RequestSignBatch(school_code=school, school_year=YEAR, role="homeroom_teacher", class_name=class_name)
            )
            batches.append(request.batch_id)
            await bus.publish(request)
    return batches


async def principal_batches(bus: Bus, staff: Staff, schools: Iterable[str]) -> list[str]:
    """Each school's principal clicks once."""
    batches = []
    for school in schools:
        request = staff.principal(school).signs(RequestSignBatch(school_code=school, school_year=YEAR))
        batches.append(request.batch_id)
        await bus.publish(request)
    return batches


async def one_run(amqp_url: str, services: Services, staff: Staff, by_school: dict[str, list[RecordVersion]], workers: int,
                  database_pid: int | None) -> Run:
    settings = Settings(amqp_url=amqp_url, namespace=services.namespace)
    total = sum(len(r) for r in by_school.values())
    seen = Seen()
    watch = seen.watching(Watch(amqp_url, settings.names()))
    bus = Bus(settings, "bench")
    await watch.start()
    await bus.broker.connect()
    try:
        await seed_records(bus, by_school)
        await seen.until("records received", lambda: seen.received >= total)
        await reviews_confirmed(bus, staff, by_school)
        began = time.perf_counter()
        teachers = await homeroom_batches(bus, staff, by_school)
        await seen.until("homeroom batches", lambda: all(b in seen.done for b in teachers))
        homeroom_seconds = time.perf_counter() - began

        cpu_before = {**services.cpu(), "database": cpu_seconds(database_pid)}
        began = time.perf_counter()
        principals = await principal_batches(bus, staff, by_school)
        await seen.until("principal batches", lambda: all(b in seen.done for b in principals))
        to_completed = time.perf_counter() - began
        await seen.until("archived", lambda: len(seen.archived) >= total)
        seconds = seen.last_archived - began
        cpu_after = {**services.cpu(), "database": cpu_seconds(database_pid)}
    finally:
        await bus.broker.stop()
        await watch.stop()
    cpu = {kind: cpu_after[kind] - cpu_before.get(kind, 0.0) for kind in cpu_after}
    return Run(total, workers, seconds, to_completed, homeroom_seconds, total * 2, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000, help="records in all (default 1000)")
    parser.add_argument("--schools", type=int, default=1, help="schools the records are split over (one click each)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="signing worker counts to run")
    args = parser.parse_args()
    interrupt_on_signals()
    amqp_url = Settings().amqp_url
    console.print(f"RabbitMQ: {ensure_rabbitmq(amqp_url)}")
    base = Path(tempfile.mkdtemp(prefix="hocba-bench-signing-"))
    mongo = EmbeddedMongo(base / "mongo", free_port())
    mongo.start()
    per_school = args.records // args.schools
    issuer, jwks = dev_issuer(base)
    pki = open_pki(base / "pki")
    schools = demo_data.schools(args.schools)
    classes = {f"6A{i // demo_data.CLASS_SIZE + 1}" for i in range(per_school)}
    enrol(pki, [(s.code, s.name, classes) for s in schools])
    by_school = records_for(args.schools, per_school, pki.signer(service_subject("grades")))
    documents = [r.document for rows in by_school.values() for r in rows][:5000]
    raw = raw_es256_rate(documents)
    runs: list[Run] = []
    try:
        for workers in args.workers:
            services = Services(base, mongo.url, amqp_url, workers, jwks.resolve(), pki.folder.resolve())
            services.start()
            try:
                database_pid = mongo.process.pid if mongo.process is not None else None
                runs.append(asyncio.run(one_run(amqp_url, services, Staff(issuer), by_school, workers, database_pid)))
            finally:
                services.stop()
                # Only once every process has stopped: a service still running declares its exchanges again.
                asyncio.run(delete_exchanges(amqp_url, Names(services.namespace)))
            raw = max(raw, raw_es256_rate(documents))  # measured again between runs; the best one is shown
    finally:
        mongo.stop()
    table = Table(title=f"one-click signing, {args.records:,} records in {args.schools} school(s), request to last archived")
    for column in ("workers", "records", "seconds", "records/s", "signatures/s", "to batch completed (s)",
                   "homeroom phase (s)", "raw ES256/s (1 process)", "signatures/s ÷ raw"):
        table.add_column(column, justify="right")
    for run in runs:
        rate = run.records / run.seconds
        table.add_row(str(run.workers), f"{run.records:,}", f"{run.seconds:.1f}", f"{rate:,.0f}",
                      f"{run.signatures / run.seconds:,.0f}", f"{run.to_batch_completed:.1f}",
                      f"{run.homeroom_seconds:.1f}", f"{raw:,.0f}", f"{run.signatures / run.seconds / raw:.3f}")
    console.print(table)
    cpu = Table(title="CPU per record from the click to the last record archived (ms, user + system)")
    for column in ("workers", "signing (all workers)", "archive", "database", "all"):
        cpu.add_column(column, justify="right")
    for run in runs:
        per_record = {kind: 1000 * seconds / run.records for kind, seconds in run.cpu.items()}
        cpu.add_row(str(run.workers), *(f"{per_record.get(k, 0.0):.2f}" for k in ("signing", "archive", "database")),
                    f"{sum(per_record.values()):.2f}")
    console.print(cpu)
    console.print("[dim]the principal's click signs and seals: two ES256 signatures a record; archive verifies all three "
                  f"signatures and chains before it appends. Data in {base}.[/dim]")


if __name__ == "__main__":
    main()
