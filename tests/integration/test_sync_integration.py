"""sync against real RabbitMQ, the MongoDB-wire server and the ministry simulator served over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import uvicorn

from hocba.ministry_simulator import ReceiptStore, create_app
from services.sync.app import build_app
from services.sync.domain import DELIVERED, PENDING, SENDING, DeliveryPolicy, new_entry
from services.sync.repository import INDEXES, MongoOutboxRepository
from shared.contracts.archive import ArchivedRecord, RecordsArchived
from shared.contracts.sync import RecordsDelivered
from shared.mongo import ensure_indexes
from tests.support import drain, free_port, probing, running

FAST = DeliveryPolicy(max_attempts=50, base_seconds=0.2, cap_seconds=0.5, lease_seconds=30.0)


def archived(n: int, school: str = "79000702") -> RecordsArchived:
    return RecordsArchived(
        records=[
            ArchivedRecord(
                record_id=f"hb-{school}-{i:04d}",
                version=1,
                school_code=school,
                school_year="2025-2026",
                student_ref=f"s-{i}",
                seq=i,
                entry_hash=f"{i:064x}",
                digest=f"{i + 11:064x}",
                document={"record_id": f"hb-{school}-{i:04d}", "subjects": {"Toán": "8.5"}, "year_result": "Tốt"},
            )
            for i in range(n)
        ]
    )


@contextlib.asynccontextmanager
async def simulator(store: ReceiptStore, port: int) -> AsyncIterator[str]:
    """The ministry simulator served by uvicorn in this event loop, on `port`, until the block ends."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done():
            task.result()
        if time.monotonic() > deadline:
            raise TimeoutError("the simulator did not start")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_claims_are_exclusive_and_an_expired_lease_is_taken_again(mongo_client, settings):
    db = mongo_client[settings.names().database("sync")]
    await ensure_indexes(db, INDEXES)
    repo = MongoOutboxRepository(db)
    now = datetime.now(UTC)
    entries = [new_entry(r, now) for r in archived(20).records]
    assert await repo.add_new(entries) == 20
    assert await repo.add_new(entries[:5]) == 0

    keys = [e.key for e in entries]
    lease = now + timedelta(seconds=30)
    first, second = await asyncio.gather(
        repo.claim(keys, now, lease, "a", 20), repo.claim(keys, now, lease, "b", 20)
    )
    assert not {e.key for e in first} & {e.key for e in second}
    assert {e.key for e in first} | {e.key for e in second} == set(keys)
    assert {e.status for e in first + second} == {SENDING}
    assert await repo.claim(None, now + timedelta(seconds=10), lease, "c", 100) == []

    later = now + timedelta(seconds=31)
    taken = await repo.claim(None, later, later + timedelta(seconds=30), "d", 5)
    assert len(taken) == 5 and {e.claim for e in taken} == {"d"}
    assert await repo.backlog() == 20


async def test_each_record_version_reaches_the_ministry_once(mongo_client, settings):
    store = ReceiptStore()
    event = archived(12)
    async with simulator(store, free_port()) as url:
        service = build_app(settings.model_copy(update={"ministry_url": url}), mongo=mongo_client, policy=FAST)
        async with probing(settings, RecordsDelivered) as probes, running(service):
            await service.bus.publish(event)
            await service.bus.publish(event)  # a redelivery
            await service.bus.publish(event.model_copy(update={"message_id": "another-archive-event"}))

            db = mongo_client[settings.names().database("sync")]

            async def all_delivered() -> bool:
                return await db["outbox"].count_documents({"status": DELIVERED}) == 12

            await eventually(all_delivered, what="12 delivered outbox entries")
            await asyncio.sleep(1.5)  # a relay tick or two: nothing more may be sent
            announced = await drain(settings.amqp_url, probes[RecordsDelivered.ROUTING_KEY], timeout=5)

    assert store.stats() == {"accepted": 12, "duplicates": 0, "requests": 12}
    assert await db["outbox"].count_documents({}) == 12
    receipts = [doc async for doc in db["receipts"].find({})]
    assert len(receipts) == 12
    assert {r["_id"]: r["receipt_id"] for r in receipts} == {k: v["receipt_id"] for k, v in store.receipts.items()}
    outbox = {doc["_id"]: doc async for doc in db["outbox"].find({})}
    assert all(outbox[r["_id"]]["receipt_id"] == r["receipt_id"] for r in receipts)
    deliveries = [d for m in announced for d in RecordsDelivered.model_validate_json(m.body).deliveries]
    assert sorted(d.record_id for d in deliveries) == sorted(r.record_id for r in event.records)


async def test_entries_wait_through_a_ministry_outage_and_drain_after_it(mongo_client, settings):
    store = ReceiptStore()
    port = free_port()
    async with simulator(store, port) as url:
        pass  # the ministry was there, and now it is down
    service = build_app(
        settings.model_copy(update={"ministry_url": url}), mongo=mongo_client, policy=FAST, relay_interval=0.2
    )
    db = mongo_client[settings.names().database("sync")]
    async with running(service):
        await service.bus.publish(archived(5))

        async def all_failed_once() -> bool:
            return await db["outbox"].count_documents({"status": PENDING, "attempts": {"$gte": 1}}) == 5

        await eventually(all_failed_once, what="5 pending entries with a failed attempt")
        failed = service.registry.get_sample_value("hocba_sync_deliveries_total", {"outcome": "failed"})
        assert failed >= 5
        assert store.stats()["requests"] == 0

        async with simulator(store, port):

            async def drained() -> bool:
                return await db["outbox"].count_documents({"status": DELIVERED}) == 5

            await eventually(drained, what="the outbox to drain after the outage")

    assert store.stats() == {"accepted": 5, "duplicates": 0, "requests": 5}
    assert await db["receipts"].count_documents({}) == 5
    errors = [doc["last_error"] async for doc in db["outbox"].find({})]
    assert errors == [None] * 5
    assert service.registry.get_sample_value("hocba_sync_backlog_entries") == 0
