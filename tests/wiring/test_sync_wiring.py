"""sync's app under FastStream's in-memory broker, delivering to the ministry simulator in-process."""

from __future__ import annotations

import httpx
import pytest
from faststream.rabbit import RabbitMessage, TestRabbitBroker

from hocba.ministry_simulator import ReceiptStore, create_app
from services.sync.app import build_app
from services.sync.domain import DELIVERED, PENDING
from services.sync.repository import InMemoryOutboxRepository
from shared.contracts.archive import ArchivedRecord, RecordsArchived
from shared.contracts.base import derived_id
from shared.contracts.sync import RecordsDelivered
from shared.messaging import REASON_HEADER, dead_letter_queue
from tests.wiring.conftest import probe, send


def archived(n: int) -> RecordsArchived:
    return RecordsArchived(
        records=[
            ArchivedRecord(
                record_id=f"hb-79000701-{i:04d}",
                version=1,
                school_code="79000701",
                school_year="2025-2026",
                student_ref=f"s-{i}",
                seq=i,
                entry_hash=f"{i:064x}",
                digest=f"{i + 7:064x}",
                document={"year_result": "Tốt"},
            )
            for i in range(n)
        ]
    )


@pytest.fixture
def store() -> ReceiptStore:
    return ReceiptStore()


@pytest.fixture
async def service(settings, store):
    repo = InMemoryOutboxRepository()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(store))) as client:
        yield build_app(settings, repository=repo, http_client=client), repo


def sample(svc, name: str, labels: dict[str, str] | None = None) -> float | None:
    return svc.registry.get_sample_value(name, labels or {})


async def test_archived_records_are_delivered_and_announced(service, store):
    svc, repo = service
    seen = probe(svc, RecordsDelivered)
    event = archived(4)
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, event)

    assert store.stats() == {"accepted": 4, "duplicates": 0, "requests": 4}
    assert {e.status for e in repo.entries.values()} == {DELIVERED}
    assert len(seen) == 1, "RecordsDelivered was not published once"
    assert seen[0].message_id == derived_id(event.message_id, "delivered")
    assert {(d.record_id, d.receipt_id) for d in seen[0].deliveries} == {
        (r["record_id"], r["receipt_id"]) for r in store.receipts.values()
    }
    assert sample(svc, "hocba_sync_deliveries_total", {"outcome": "delivered"}) == 4
    assert sample(svc, "hocba_sync_backlog_entries") == 0
    assert sample(svc, "hocba_sync_delivery_seconds_count") == 4


async def test_a_redelivered_event_sends_and_announces_nothing_new(service, store):
    svc, repo = service
    seen = probe(svc, RecordsDelivered)
    event = archived(3)
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, event)
        await send(broker, svc, event)

    assert store.stats() == {"accepted": 3, "duplicates": 0, "requests": 3}
    assert len(repo.receipts) == 3
    assert len(seen) == 1


async def test_a_ministry_outage_keeps_entries_pending_and_is_counted(service, store):
    svc, repo = service
    seen = probe(svc, RecordsDelivered)
    store.fail_next = 10
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, archived(2))

    assert {(e.status, e.attempts) for e in repo.entries.values()} == {(PENDING, 1)}
    assert seen == []
    assert store.accepted == 0
    assert sample(svc, "hocba_sync_deliveries_total", {"outcome": "failed"}) == 2
    assert sample(svc, "hocba_sync_backlog_entries") == 2


async def test_an_invalid_event_is_dead_lettered_not_taken_into_the_outbox(service, store):
    svc, repo = service
    queue = svc.topology.queue_name(RecordsArchived.ROUTING_KEY)
    dead: list[dict] = []

    @svc.broker.subscriber(dead_letter_queue(svc.settings.names(), queue), exchange=svc.bus.dlx)
    async def collect(body: dict, message: RabbitMessage) -> None:
        dead.append({"body": body, "reason": message.headers.get(REASON_HEADER)})

    async with TestRabbitBroker(svc.broker) as broker:
        await broker.publish(
            {"message_id": "m-1", "records": []},
            exchange=svc.bus.exchange,
            routing_key=RecordsArchived.ROUTING_KEY,
        )
    assert repo.entries == {} and store.stats()["requests"] == 0
    assert dead == [{"body": {"message_id": "m-1", "records": []}, "reason": "invalid"}]
    assert sample(svc, "hocba_messages_dead_lettered_total", {"queue": queue, "reason": "invalid"}) == 1
