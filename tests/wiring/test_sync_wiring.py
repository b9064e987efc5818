"""sync's app under FastStream's in-memory broker, delivering to the ministry simulator in-process."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from faststream.rabbit import RabbitMessage, TestRabbitBroker

from hocba.ministry_simulator import ReceiptStore, create_app
from services.sync.app import build_app
from services.sync.domain import DELIVERED, PARKED, PENDING
from services.sync.repository import InMemoryOutboxRepository
from shared.auth import Actor, IssuerKey, issue_token
from shared.contracts.archive import ArchivedRecord, Checkpoint, CheckpointIssued, RecordsArchived
from shared.contracts.base import derived_id
from shared.contracts.sync import (
    CheckpointDelivered,
    GetSyncStatus,
    Reconcile,
    ReconcileReport,
    RecordsDelivered,
    RetryOutcome,
    RetryParked,
    SyncStatus,
)
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
                document={"student": {"identity": {"personal_id": f"0792120{i:05d}"}}, "learning_result": {"year": "Tốt"}},
            )
            for i in range(n)
        ]
    )


@pytest.fixture
def store() -> ReceiptStore:
    return ReceiptStore()


ISSUER = IssuerKey.generate("test-school-app")


@pytest.fixture
async def service(settings, store, tmp_path):
    jwks = tmp_path / "issuer.jwks.json"
    jwks.write_text(json.dumps({"keys": [ISSUER.key.as_dict(private=False)]}))
    settings = settings.model_copy(update={"actor_issuer_jwks": jwks, "ministry_url": "http://ministry.test"})
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

    assert (store.accepted, store.duplicates, store.requests) == (4, 0, 4)
    assert {e.status for e in repo.entries.values()} == {DELIVERED}
    assert len(seen) == 1, "RecordsDelivered was not published once"
    assert seen[0].message_id == derived_id(event.message_id, "delivered")
    assert {(d.record_id, d.receipt_id) for d in seen[0].deliveries} == {
        (r["record_id"], r["receipt_id"]) for r in store.receipts.values()
    }
    assert sample(svc, "hocba_sync_deliveries_total", {"kind": "record", "outcome": "delivered"}) == 4
    assert sample(svc, "hocba_sync_backlog_entries") == 0
    assert sample(svc, "hocba_sync_delivery_seconds_count") == 4


async def test_a_redelivered_event_sends_and_announces_nothing_new(service, store):
    svc, repo = service
    seen = probe(svc, RecordsDelivered)
    event = archived(3)
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, event)
        await send(broker, svc, event)

    assert (store.accepted, store.duplicates, store.requests) == (3, 0, 3)
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
    assert sample(svc, "hocba_sync_deliveries_total", {"kind": "record", "outcome": "failed"}) == 2
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


def checkpoint(tree_size: int) -> CheckpointIssued:
    return CheckpointIssued(
        checkpoint=Checkpoint(
            origin="hocba.test/archive",
            tree_size=tree_size,
            root_hash=f"{tree_size:064x}",
            issued_at=datetime(2026, 5, 20, tzinfo=UTC),
            signature="e30..c2ln",
        )
    )


async def test_a_checkpoint_is_delivered_once_and_announced(service, store):
    svc, repo = service
    seen = probe(svc, CheckpointDelivered)
    event = checkpoint(4)
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, event)
        await send(broker, svc, event)

    assert list(store.checkpoints) == ["checkpoint:hocba.test/archive:4"]
    assert [(c.origin, c.tree_size) for c in seen] == [("hocba.test/archive", 4)]
    assert sample(svc, "hocba_sync_deliveries_total", {"kind": "checkpoint", "outcome": "delivered"}) == 1


def operator_token() -> str:
    actor = Actor(
        subject="ops-1", roles=frozenset({"operator"}), school_code="", expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    return issue_token(ISSUER, actor)


async def test_operators_ask_for_status_retry_and_reconciliation_by_request_and_reply(service, store):
    svc, repo = service
    store.faults.fail_status, store.fail_next = 400, 2  # a permanent answer parks at once
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, archived(2))
        assert {e.status for e in repo.entries.values()} == {PARKED}

        status = SyncStatus.model_validate(await svc.bus.request(GetSyncStatus()))
        assert (status.parked, len(status.parked_entries)) == (2, 2)

        refused = RetryOutcome.model_validate(await svc.bus.request(RetryParked()))
        assert refused.resumed == 0 and "no actor token" in refused.refused

        resumed = RetryOutcome.model_validate(await svc.bus.request(RetryParked(actor=operator_token())))
        assert resumed.resumed == 2 and {e.status for e in repo.entries.values()} == {PENDING}

        report = ReconcileReport.model_validate(await svc.bus.request(Reconcile()))
        assert report.error is None and report.waiting[PENDING] == 2 and report.consistent
