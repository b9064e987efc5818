"""signing against the MongoDB-wire server and real RabbitMQ: storage, the one-click flow, competing workers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest

from services.signing import domain
from services.signing.app import build_app
from services.signing.domain import COMPLETED, StoredRecord
from services.signing.repository import INDEXES, MongoSigningRepository
from shared.contracts.base import Message
from shared.contracts.grades import RecordsReady, RecordVersion
from shared.contracts.signing import (
    BatchCompleted,
    RecordsCompleted,
    RecordsReceived,
    RequestSignBatch,
    Signature,
)
from shared.crypto.canonical import digest
from shared.crypto.record_signatures import check_record
from shared.mongo import ensure_indexes
from shared.service import ServiceApp
from tests.support import drain, probing, running
from tests.unit.signing.trust import make_trust

SCHOOL, YEAR = "79000701", "2025-2026"
T0 = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)


def record(n: int, school_code: str = SCHOOL) -> RecordVersion:
    return RecordVersion(
        record_id=f"rec-{n:04d}",
        version=1,
        school_code=school_code,
        school_year=YEAR,
        student_ref=f"student-{n:04d}",
        document={"student_ref": f"student-{n:04d}", "class_name": f"6A{n % 2 + 1}", "conduct": "Tốt"},
    )


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return make_trust(tmp_path_factory.mktemp("signing-integration"))


def signing_app(settings, mongo_client, trust, instance: str = ""):
    authority = trust.authority()
    return build_app(
        settings.model_copy(update={"instance": instance}),
        mongo=mongo_client,
        signers=authority.signers,
        trust=authority.trust,
        issuer_keys=authority.issuer_keys,
    )


def requests(trust) -> list[RequestSignBatch]:
    """The homeroom teachers' requests, one per class."""
    return [
        RequestSignBatch(
            school_code=SCHOOL, school_year=YEAR, role="homeroom_teacher", class_name=c,
            actor=trust.staff.homeroom_teacher(SCHOOL, c),
        )
        for c in ("6A1", "6A2")
    ]


def principal(trust) -> RequestSignBatch:
    return RequestSignBatch(school_code=SCHOOL, school_year=YEAR, actor=trust.staff.principal(SCHOOL))


def signature(n: int, role: str = "principal") -> Signature:
    return Signature(
        record_id=f"rec-{n:04d}", version=1, role=role, key_id="k", digest="d" * 64, jws="h..s", signed_at=T0
    )


async def collect(
    url: str, queue: str, model: type[Message], until: Callable[[list], bool], timeout: float = 60.0
) -> list:
    """Messages from a probe queue until `until(messages)` holds (or the time is up)."""
    got: list = []
    deadline = time.monotonic() + timeout
    while not until(got) and time.monotonic() < deadline:
        got += [model.model_validate_json(m.body) for m in await drain(url, queue, timeout=1.0)]
    return got


@contextlib.asynccontextmanager
async def also_running(service: ServiceApp) -> AsyncIterator[ServiceApp]:
    """Run another copy of a service on the same queues; it leaves the queues to the first copy."""
    task = asyncio.create_task(service.app.run())
    while not service.health.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    try:
        yield service
    finally:
        service.app.exit()
        await asyncio.wait_for(task, 30)


async def repository(mongo_client, settings) -> MongoSigningRepository:
    db = mongo_client[settings.names().database("signing")]
    await ensure_indexes(db, INDEXES)
    return MongoSigningRepository(db)


async def test_record_versions_and_signatures_are_stored_once(mongo_client, settings):
    repo = await repository(mongo_client, settings)
    stored = [StoredRecord(record(n), digest(record(n).document)) for n in range(3)]
    assert await repo.add_records(stored) == 3
    assert await repo.add_records([*stored, StoredRecord(record(9, "79000999"), "e" * 64)]) == 1
    found = await repo.records([("rec-0001", 1), ("rec-0001", 2), ("nope", 1)])
    assert list(found) == [("rec-0001", 1)] and found[("rec-0001", 1)] == stored[1]

    all_three = [("rec-0000", 1), ("rec-0001", 1), ("rec-0002", 1)]
    assert await repo.unsigned(SCHOOL, YEAR, "principal") == (all_three, 0)
    assert await repo.unsigned(SCHOOL, YEAR, "homeroom_teacher", "6A2") == ([("rec-0001", 1)], 0)
    assert await repo.add_signatures([(signature(1), SCHOOL, YEAR)]) == 1
    assert await repo.add_signatures([(signature(1), SCHOOL, YEAR), (signature(2), SCHOOL, YEAR)]) == 1
    assert await repo.add_signatures([(signature(1, "homeroom_teacher"), SCHOOL, YEAR)]) == 1
    assert await repo.unsigned(SCHOOL, YEAR, "principal") == ([("rec-0000", 1)], 0)
    assert await repo.unsigned(SCHOOL, YEAR, "school_seal", after="principal") == ([("rec-0001", 1), ("rec-0002", 1)], 1)
    by_key = await repo.signatures([("rec-0001", 1), ("rec-0000", 1)])
    assert set(by_key) == {("rec-0001", 1)} and set(by_key[("rec-0001", 1)]) == {"principal", "homeroom_teacher"}
    assert by_key[("rec-0001", 1)]["principal"] == signature(1)


async def test_a_batch_is_planned_once_counts_each_chunk_once_and_closes_once(mongo_client, settings):
    repo = await repository(mongo_client, settings)
    batch = domain.new_batch("batch-1", SCHOOL, YEAR, "principal", [(f"r{n:02d}", 1) for n in range(25)], 10, T0)
    assert await repo.add_batch(batch)
    assert not await repo.add_batch(domain.new_batch("batch-1", SCHOOL, YEAR, "principal", [], 10, T0))
    assert await repo.batch("batch-1") == batch

    # Chunk 1 delivered to several coordinators at once, and again later: counted once.
    counted = await asyncio.gather(*[repo.count_chunk("batch-1", 1, 10) for _ in range(8)])
    assert sum(c is not None for c in counted) == 1
    assert await repo.count_chunk("batch-1", 1, 10) is None
    await repo.count_chunk("batch-1", 0, 10)
    last = await repo.count_chunk("batch-1", 2, 5, 5)
    assert last.done_chunks == {0, 1, 2} and last.records_signed == 25 and last.all_chunks_done
    assert last.records_completed == 5

    closed = await asyncio.gather(*[repo.close_batch("batch-1", T0) for _ in range(5)])
    assert closed.count(True) == 1
    stored = await repo.batch("batch-1")
    assert stored.status == COMPLETED and stored.completed_at == T0


async def test_homeroom_teachers_then_one_click_sign_every_record_over_the_broker(mongo_client, settings, trust):
    service = signing_app(settings, mongo_client, trust)
    async with probing(settings, RecordsReceived, RecordsCompleted, BatchCompleted) as probes, running(service):
        ready = RecordsReady(school_code=SCHOOL, school_year=YEAR, records=[record(n) for n in range(25)])
        await service.bus.publish(ready)
        received = await collect(settings.amqp_url, probes[RecordsReceived.ROUTING_KEY], RecordsReceived, bool)
        assert [(r.count, r.source_message_id) for r in received] == [(25, ready.message_id)]

        for request in requests(trust):
            await service.bus.publish(request)
        teachers = await collect(
            settings.amqp_url, probes[BatchCompleted.ROUTING_KEY], BatchCompleted, lambda got: len(got) >= 2
        )
        request = principal(trust)
        await service.bus.publish(request)
        completed = await collect(
            settings.amqp_url,
            probes[RecordsCompleted.ROUTING_KEY],
            RecordsCompleted,
            lambda got: sum(len(m.records) for m in got) >= 25,
        )
        done = await collect(settings.amqp_url, probes[BatchCompleted.ROUTING_KEY], BatchCompleted, bool)

    assert sorted((d.class_name, d.records_signed) for d in teachers) == [("6A1", 13), ("6A2", 12)]
    signed = [r for m in completed for r in m.records]
    assert sorted(r.record.record_id for r in signed) == [f"rec-{n:04d}" for n in range(25)]
    for r in signed:
        check = check_record(
            r.record.record_id, 1, SCHOOL, r.record.document, [s.jws for s in r.signatures], trust.pki.trust_store()
        )
        assert check.ok, check.problems()
    assert [(d.batch_id, d.records_signed, d.records_completed) for d in done] == [(request.batch_id, 25, 25)]
    db = mongo_client[settings.names().database("signing")]
    assert await db["signatures"].count_documents({}) == 75
    batch = await db["batches"].find_one({"_id": request.batch_id})
    assert (batch["status"], batch["chunks_total"], sorted(batch["done_chunks"])) == (COMPLETED, 3, [0, 1, 2])


async def test_competing_workers_sign_each_record_once(mongo_client, settings, trust):
    first = signing_app(settings, mongo_client, trust, "signing-1")
    second = signing_app(settings, mongo_client, trust, "signing-2")
    async with probing(settings, RecordsCompleted, BatchCompleted) as probes, running(first), also_running(second):
        await first.bus.publish(
            RecordsReady(school_code=SCHOOL, school_year=YEAR, records=[record(n) for n in range(60)])
        )
        db = mongo_client[settings.names().database("signing")]
        deadline = time.monotonic() + 30
        while await db["records"].count_documents({}) < 60 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for request in requests(trust):
            await first.bus.publish(request)
        await collect(settings.amqp_url, probes[BatchCompleted.ROUTING_KEY], BatchCompleted, lambda got: len(got) >= 2)
        request = principal(trust)
        await first.bus.publish(request)
        await second.bus.publish(request)  # the principal clicked twice
        done = await collect(settings.amqp_url, probes[BatchCompleted.ROUTING_KEY], BatchCompleted, bool)
        await collect(
            settings.amqp_url,
            probes[RecordsCompleted.ROUTING_KEY],
            RecordsCompleted,
            lambda got: len({r.record.record_id for m in got for r in m.records}) >= 60,
        )
        await asyncio.sleep(1.0)
        late = await drain(settings.amqp_url, probes[BatchCompleted.ROUTING_KEY], timeout=1.0)

    assert [(d.records_signed, d.records_total) for d in done] == [(60, 60)] and late == []
    keys = [(s["record_id"], s["role"]) async for s in db["signatures"].find()]
    assert len(keys) == len(set(keys)) == 180
    total = sum(
        app.registry.get_sample_value("hocba_records_signed_total", {"role": "principal"}) or 0
        for app in (first, second)
    )
    assert total == 60
