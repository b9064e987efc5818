"""On the MongoDB-wire server: a delivery recorded but whose receipt document was never written, or whose
announcement was never published (sync stopped between the writes), is found by sync and finished; `sync reconcile`
reads the receipts collection itself and names a receipt it lacks."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pymongo.errors import AutoReconnect

from hocba.ministry_simulator import ReceiptStore, create_app
from services.sync import handlers
from services.sync.domain import DELIVERED, DeliveryPolicy, Receipt
from services.sync.handlers import Deps
from services.sync.metrics import SyncMetrics
from services.sync.ministry import Ministry
from services.sync.repository import INDEXES, RECEIPTS, MongoOutboxRepository
from shared.contracts.keys import SyncKeyRotationProgress
from shared.contracts.sync import Reconcile, ReconcileReport, RecordsDelivered
from shared.crypto.vault import Vault
from tests.integration.conftest import service_database
from tests.support import Broker, idle_rotation
from tests.unit.sync.conftest import ISSUER, MINISTRY_URL, OPERATOR, Clock, archived, delivered_ids
from tests.unit.sync.sealed import trust

POLICY = DeliveryPolicy(max_attempts=4, base_seconds=2.0, cap_seconds=60.0, lease_seconds=30.0)
KEYS = ["hb-79000701-0000:1", "hb-79000701-0001:1", "hb-79000701-0002:1"]


class ReceiptsFailOnce(MongoOutboxRepository):
    """sync's MongoDB outbox whose first write of receipt documents fails after the entries were recorded delivered:
    sync stopped between the two writes."""

    crashed = False

    async def keep_receipts(self, receipts: list[Receipt]) -> None:
        if not self.crashed:
            self.crashed = True
            raise AutoReconnect("sync stopped before it kept the receipts")
        await super().keep_receipts(receipts)


@pytest.fixture
async def db(mongo_client, settings):
    return await service_database(mongo_client, settings, "sync", INDEXES)


@pytest.fixture
async def ministry():
    """The ministry simulator in-process, and sync's client of it."""
    store = ReceiptStore()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(store))) as client:
        yield store, Ministry(MINISTRY_URL, concurrency=4, client=client)


def sync_deps(repo: MongoOutboxRepository, ministry: Ministry, clock: Clock) -> Deps:
    registry = CollectorRegistry()
    return Deps(
        repo=repo,
        ministry=ministry,
        metrics=SyncMetrics(registry),
        issuer_keys=ISSUER.public_keys("sync"),
        trust=trust,
        deliveries_per_step=10,
        rotation=idle_rotation(SyncKeyRotationProgress, ISSUER.public_keys("sync"), registry),
        policy=POLICY,
        clock=clock,
        jitter=lambda: 0.0,
    )


async def differences(deps: Deps) -> dict[str, list[str]]:
    report = (await handlers.reconcile(OPERATOR.signs(Reconcile(limit=10)), deps)).reply
    assert isinstance(report, ReconcileReport)
    assert report.error is None
    return {d.name: d.examples for d in report.differences if d.count}


def announced_ids(broker: Broker) -> list[str]:
    return sorted(d.record_id for m in broker.published if isinstance(m, RecordsDelivered) for d in m.deliveries)


async def test_a_crash_between_recording_deliveries_and_keeping_their_receipts_is_named_then_repaired(db, ministry):
    store, client = ministry
    clock = Clock()
    deps = sync_deps(ReceiptsFailOnce(db, Vault.ephemeral()), client, clock)
    with pytest.raises(AutoReconnect):
        await handlers.accept_archived(archived(3), deps)
    assert {e.status for e in (await deps.repo.entries(KEYS)).values()} == {DELIVERED}
    assert await deps.repo.receipt_ids(KEYS) == {}
    assert await differences(deps) == {}, "within the grace the step that records a delivery may still be running"
    clock.advance(POLICY.announce_grace_seconds + 1)
    assert await differences(deps) == {"receipt_not_kept": KEYS}

    broker = Broker()
    await handlers.announcing(handlers.reannounce, deps, broker)

    assert await deps.repo.receipt_ids(KEYS) == {k: r["receipt_id"] for k, r in store.receipts.items()}
    assert await differences(deps) == {}
    assert announced_ids(broker) == [k.split(":")[0] for k in KEYS]


async def test_reconcile_names_a_delivered_entry_whose_receipt_document_is_gone(db, ministry):
    """The entry's own copy of the receipt agrees with the ministry; the receipts collection is what is checked."""
    _, client = ministry
    deps = sync_deps(MongoOutboxRepository(db, Vault.ephemeral()), client, Clock())
    await handlers.announced(deps, Broker(), await handlers.accept_archived(archived(3), deps))
    await db[RECEIPTS].delete_one({"_id": KEYS[1]})
    await db[RECEIPTS].update_one({"_id": KEYS[2]}, {"$set": {"receipt_id": "MOET-other"}})

    assert await differences(deps) == {"receipt_not_kept": KEYS[1:]}


async def test_deliveries_recorded_but_never_announced_are_announced_again_once(db, ministry):
    _, client = ministry
    clock = Clock()
    deps = sync_deps(MongoOutboxRepository(db, Vault.ephemeral()), client, clock)
    delivered = await handlers.accept_archived(archived(3), deps)
    with pytest.raises(ConnectionError):
        await handlers.announced(deps, Broker(failing=True), delivered)

    clock.advance(POLICY.announce_grace_seconds + 1)
    broker = Broker()
    for _ in range(3):
        await handlers.announcing(handlers.reannounce, deps, broker)
        clock.advance(POLICY.announce_interval_seconds)

    assert announced_ids(broker) == delivered_ids(delivered)
    [again] = broker.published
    assert isinstance(again, RecordsDelivered)
    assert {(d.record_id, d.receipt_id) for d in again.deliveries} == {
        (k.split(":")[0], r) for k, r in (await deps.repo.receipt_ids(KEYS)).items()
    }


async def test_deliveries_announced_are_not_announced_again(db, ministry):
    _, client = ministry
    clock = Clock()
    deps = sync_deps(MongoOutboxRepository(db, Vault.ephemeral()), client, clock)
    broker = Broker()
    await handlers.announced(deps, broker, await handlers.accept_archived(archived(3), deps))
    clock.advance(POLICY.announce_grace_seconds + 1)

    assert not (await handlers.reannounce(deps)).publish
    assert len(announced_ids(broker)) == 3
