"""A signing worker killed (SIGKILL) in the middle of a one-click batch, again and again as it is restarted: nothing
lost, nothing signed twice, no chunk dead-lettered for the chunks killed workers handed back, and the batch finishes by
itself."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from hocba.commands.pki import open_pki
from hocba.keys import dev_issuer
from hocba.stack import Stack
from hocba.staff import Staff
from hocba.watch import Watch
from shared.auth import service_subject
from shared.contracts.archive import RecordsArchived
from shared.contracts.grades import RecordsReady, RecordVersion
from shared.contracts.signing import (
    BatchCompleted,
    BatchProgress,
    BatchRefused,
    RecordsReceived,
    RequestSignBatch,
    SignWork,
)
from shared.crypto.seal import record_claims, seal
from shared.crypto.signer import X509Signer
from shared.messaging import Bus, delete_exchanges
from shared.mongo import make_client
from shared.settings import Settings
from tests import records
from tests.reviews import confirm_reviews
from tests.support import depth, throwaway_stack

SCHOOL, YEAR = "79007000", "2025-2026"
CLASSES = [f"6A{n}" for n in range(1, 16)]
RECORDS = 40 * len(CLASSES)
#: Times the same worker is killed during the principal's batch (more than the delivery limit of 5, the default).
KILLS = 7


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # Small chunks, so the batch is still under way when a worker dies.
    options = {"signing_workers": 3, "extra_env": {"HOCBA_CHUNK_SIZE": "5"}}
    with throwaway_stack(tmp_path_factory.mktemp("faults"), "faults", **options) as running:
        yield running


def grades_signer(stack: Stack) -> X509Signer:
    """grades' service certificate from the stack's PKI: signing stores only record versions it sealed."""
    return open_pki(Path(stack.child("grades").env["HOCBA_PKI_DIR"])).signer(service_subject("grades"))


def record(n: int, grades: X509Signer) -> RecordVersion:
    """Record version `n`, sealed by grades as grades seals the versions it assembles."""
    class_name = CLASSES[n // 40]
    version = records.record_version(
        f"{SCHOOL}-{YEAR}-fault-{n:05d}",
        1,
        SCHOOL,
        YEAR,
        f"fault-{n:05d}",
        class_name=class_name,
        learning_result={"year": "Tốt"},
    )
    return version.model_copy(update={"seal": seal(grades, record_claims(version))})


class Seen:
    def __init__(self) -> None:
        self.received = 0
        self.done: dict[str, BatchCompleted] = {}
        self.refused: dict[str, str] = {}
        self.progress: dict[str, int] = {}
        self.archived: set[tuple[str, int]] = set()

    async def until(self, what: str, check, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.refused:
                raise AssertionError(f"a batch was refused: {self.refused}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)


async def ready(child, timeout: float = 60.0) -> None:
    """Until the restarted worker says it is ready (consuming)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(f"{child.base_url}/health/ready", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{child.name} did not become ready again")


async def test_a_worker_killed_mid_batch_loses_nothing_and_signs_nothing_twice(stack):
    settings = Settings(amqp_url=stack.config.amqp_url, namespace=stack.config.namespace)
    staff = Staff(dev_issuer(stack.config.data_dir)[0])
    grades = grades_signer(stack)
    seen = Seen()
    watch = Watch(settings.amqp_url, settings.names())
    watch.on(RecordsReceived, lambda m: setattr(seen, "received", seen.received + m.count))
    watch.on(BatchCompleted, lambda m: seen.done.__setitem__(m.batch_id, m))
    watch.on(BatchRefused, lambda m: seen.refused.__setitem__(m.batch_id, m.reason))
    watch.on(BatchProgress, lambda m: seen.progress.__setitem__(m.batch_id, m.chunks_done))
    watch.on(RecordsArchived, lambda m: seen.archived.update((r.record_id, r.version) for r in m.records))
    bus = Bus(settings, "faults-test")
    await watch.start()
    await bus.broker.connect()
    try:
        for start in range(0, RECORDS, 100):
            await bus.publish(
                RecordsReady(
                    school_code=SCHOOL, school_year=YEAR, records=[record(n, grades) for n in range(start, start + 100)]
                )
            )
        await seen.until("records received", lambda: seen.received >= RECORDS)
        await confirm_reviews(bus, staff, SCHOOL, YEAR, CLASSES)
        teachers = [
            staff.homeroom_teacher(SCHOOL, c).signs(
                RequestSignBatch(school_code=SCHOOL, school_year=YEAR, role="homeroom_teacher", class_name=c)
            )
            for c in CLASSES
        ]
        for request in teachers:
            await bus.publish(request)
        await seen.until("homeroom batches", lambda: all(t.batch_id in seen.done for t in teachers))

        principal = staff.principal(SCHOOL).signs(RequestSignBatch(school_code=SCHOOL, school_year=YEAR))
        await bus.publish(principal)
        await seen.until("the batch under way", lambda: seen.progress.get(principal.batch_id, 0) >= 8, timeout=60)
        victim = stack.child("signing-2")
        chunks_at_kill = seen.progress[principal.batch_id]
        kills = 0
        while kills < KILLS and principal.batch_id not in seen.done:
            if kills:  # restarted, ready, and holding chunks again
                victim.start()
                await ready(victim)
                await asyncio.sleep(0.5)
            os.kill(victim.process.pid, signal.SIGKILL)
            victim.process.wait(10)
            kills += 1
        assert kills >= 2, "the batch finished before the second kill; the test proves little"
        assert chunks_at_kill < RECORDS // 5

        await seen.until("the batch completed by the other workers", lambda: principal.batch_id in seen.done)
        await seen.until("every record archived", lambda: len(seen.archived) >= RECORDS)
    finally:
        await bus.broker.stop()
        await watch.stop()

    done = seen.done[principal.batch_id]
    assert (done.records_signed, done.records_total, done.records_completed) == (RECORDS, RECORDS, RECORDS)
    assert [c.name for c in stack.dead_children()] == ["signing-2"]
    work = settings.names().queue("signing", SignWork.ROUTING_KEY)
    assert await depth(settings.amqp_url, f"{work}.dlq") == 0, "no chunk dead-lettered for being handed back"
    client = make_client(stack.mongo_url)
    try:
        names = settings.names()
        signatures = [
            (s["record_id"], s["version"], s["role"])
            async for s in client[names.database("signing")]["signatures"].find(
                {}, {"record_id": 1, "version": 1, "role": 1}
            )
        ]
        assert len(signatures) == len(set(signatures)) == RECORDS * 3, "each record signed once per role"
        batch = await client[names.database("signing")]["batches"].find_one({"_id": principal.batch_id})
        assert batch is not None
        assert sorted(batch["done_chunks"]) == list(range(RECORDS // 5))
        log = [(e["record_id"], e["version"]) async for e in client[names.database("archive")]["log"].find()]
        assert len(log) == len(set(log)) == RECORDS, "each record archived once"
    finally:
        await client.close()
    await delete_exchanges(settings.amqp_url, settings.names())
