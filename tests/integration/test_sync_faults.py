"""sync under each fault the ministry simulator can inject: nothing lost, nothing twice in effect, the backlog drains.

sync runs against real RabbitMQ and the MongoDB-wire server; the simulator is served over HTTP by
uvicorn in the test's event loop. Each test publishes archived records, injects one kind of
trouble, lifts it, and then checks the same three things on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from hocba.ministry_simulator import ReceiptStore
from hocba.staff import Staff
from services.sync.app import build_app
from services.sync.domain import DELIVERED, DeliveryPolicy
from shared.auth import IssuerKey
from shared.contracts.sync import Reconcile, ReconcileReport, RecordsDelivered
from shared.service import ServiceApp
from tests.integration.test_sync_integration import archived, eventually, simulator
from tests.support import drain, free_port, probing, running
from tests.unit.sync.sealed import trust

N = 12
#: Quick retries, the relay looking ten times a second; the lease outlasts the ministry timeout so a
#: slow answer is never taken twice; while the ministry is down, a probe five times a second.
POLICY = DeliveryPolicy(
    max_attempts=100,
    base_seconds=0.1,
    cap_seconds=0.4,
    lease_seconds=20.0,
    relay_interval_seconds=0.1,
    probe_seconds=0.2,
)
TIMEOUT = 0.5
ISSUER = IssuerKey.generate("test-school-app")
#: Who asks sync for a reconciliation: an operator, with a token for each request.
OPERATOR = Staff(ISSUER).operator()


@dataclass
class Harness:
    service: ServiceApp
    store: ReceiptStore
    db: AsyncDatabase
    probe_queue: str
    backlog_seen: list[float] = field(default_factory=list)
    errors_seen: set[str] = field(default_factory=set)

    def gauge(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.service.registry.get_sample_value(name, labels or {}) or 0.0

    async def outbox(self, status: str) -> int:
        return await self.db["outbox"].count_documents({"status": status})

    async def watch_backlog(self) -> None:
        while True:
            self.backlog_seen.append(self.gauge("hocba_sync_backlog_entries"))
            await asyncio.sleep(0.05)

    async def errors_recorded(self) -> None:
        """Keep every error the outbox records, however briefly: a retry that succeeds clears it again."""
        while True:
            async for doc in self.db["outbox"].find({}, {"last_error": 1}):
                if doc.get("last_error"):
                    self.errors_seen.add(doc["last_error"])
            await asyncio.sleep(0.02)

    async def all_delivered(self, timeout: float = 30.0) -> None:
        async def done() -> bool:
            # The gauges are set once a round's answers are recorded, just after its entries turn delivered.
            return await self.outbox(DELIVERED) == N and self.gauge("hocba_sync_backlog_entries") == 0

        await eventually(done, timeout=timeout, what=f"{N} delivered entries")

    async def reconcile(self) -> ReconcileReport:
        """Reconcile through sync's request route, as `hocba sync reconcile` does: an operator's request."""
        return await self.service.bus.request(OPERATOR.signs(Reconcile(limit=50)), ReconcileReport, timeout=30)


@pytest.fixture
async def harness(mongo_client, settings, tmp_path) -> AsyncIterator[Harness]:
    async with harnessed(mongo_client, settings, tmp_path, POLICY) as harness:
        yield harness


@contextlib.asynccontextmanager
async def harnessed(mongo_client, settings, tmp_path, policy: DeliveryPolicy) -> AsyncIterator[Harness]:
    """sync with `policy` against the simulator, on the real broker and database, with its backlog watched."""
    store = ReceiptStore()
    jwks = tmp_path / "issuer.jwks.json"
    jwks.write_text(json.dumps({"keys": [ISSUER.key.as_dict(private=False)]}))
    async with simulator(store, free_port()) as url:
        service = build_app(
            settings.model_copy(
                update={"ministry_url": url, "ministry_timeout_seconds": TIMEOUT, "actor_issuer_jwks": jwks}
            ),
            mongo=mongo_client,
            policy=policy,
            trust=trust,
        )
        db = mongo_client[settings.names().database("sync")]
        async with probing(settings, RecordsDelivered) as probes, running(service):
            harness = Harness(service, store, db, probes[RecordsDelivered.ROUTING_KEY])
            watcher = asyncio.create_task(harness.watch_backlog())
            try:
                yield harness
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            # Lift every fault so the simulator's hanging requests end and it can stop.
            store.faults.update({"reset": True})


async def assert_once_and_drained(h: Harness, *, duplicate_acks: int = 0) -> None:
    """Nothing lost, nothing delivered twice in effect, and the backlog back at zero."""
    expected = {f"{r.record_id}:1" for r in archived(N).records}
    # Nothing lost: the ministry holds every record version; sync holds a receipt for each.
    assert set(h.store.receipts) == expected
    assert await h.outbox(DELIVERED) == N
    receipts = {doc["_id"]: doc["receipt_id"] async for doc in h.db["receipts"].find({})}
    assert set(receipts) == expected
    # Nothing twice in effect: one stored record per key at the ministry (a repeat was answered
    # with the first receipt), one receipt per key in sync, each key announced and counted once.
    assert h.store.accepted == N
    if not duplicate_acks:
        assert receipts == {k: v["receipt_id"] for k, v in h.store.receipts.items()}
    announced = await drain(h.service.settings.amqp_url, h.probe_queue, timeout=3)
    keys = [f"{d.record_id}:{d.version}" for m in announced for d in RecordsDelivered.model_validate_json(m.body).deliveries]
    assert sorted(keys) == sorted(expected), "a delivery was announced twice or not at all"
    assert h.gauge("hocba_sync_deliveries_total", {"kind": "record", "outcome": "delivered"}) == N
    # The backlog drained.
    assert h.gauge("hocba_sync_backlog_entries") == 0
    assert h.gauge("hocba_sync_oldest_entry_age_seconds") == 0
    assert h.gauge("hocba_sync_parked_entries") == 0
    report = await h.reconcile()
    differences = {d.name: d.count for d in report.differences if d.count}
    assert differences == ({"acknowledged_twice": duplicate_acks} if duplicate_acks else {})
    assert report.matched == N


async def test_latency_slows_delivery_but_loses_and_repeats_nothing(harness):
    h = harness
    h.store.faults.update({"latency_seconds": 0.3})
    await h.service.bus.publish(archived(N))
    await h.all_delivered()
    assert h.store.requests == N, "a slow answer was taken for a failure and sent again"
    assert h.gauge("hocba_sync_delivery_seconds_sum") >= 0.3 * h.gauge("hocba_sync_delivery_seconds_count") > 0
    await assert_once_and_drained(h)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_errors_leave_entries_waiting_and_the_backlog_drains_after_recovery(harness, status):
    h = harness
    h.store.faults.update({"fail_next": 10_000, "fail_status": status})
    await h.service.bus.publish(archived(N))

    async def failing() -> bool:
        return h.gauge("hocba_sync_deliveries_total", {"kind": "record", "outcome": "failed"}) >= 2 * N

    await eventually(failing, what="every entry failing twice")
    assert h.store.accepted == 0 and h.gauge("hocba_sync_backlog_entries") == N
    assert h.gauge("hocba_sync_oldest_entry_age_seconds") > 0
    last_error = (await h.db["outbox"].find_one({}))["last_error"]
    assert last_error.startswith(f"HTTP {status}")

    h.store.faults.update({"fail_next": 0})
    await h.all_delivered()
    assert max(h.backlog_seen) == N
    await assert_once_and_drained(h)


async def test_timeouts_store_nothing_and_the_entries_are_sent_again(harness):
    h = harness
    recorded = asyncio.create_task(h.errors_recorded())
    h.store.faults.update({"timeout_next": N, "hang_seconds": TIMEOUT * 3})
    await h.service.bus.publish(archived(N))

    async def timed_out() -> bool:
        return h.gauge("hocba_sync_deliveries_total", {"kind": "record", "outcome": "failed"}) >= N

    await eventually(timed_out, what="every first attempt timing out")
    recorded.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await recorded
    assert any("Timeout" in error for error in h.errors_seen)
    await h.all_delivered()
    assert h.store.duplicates == 0, "the ministry stored nothing during the timeouts, so nothing repeats"
    await assert_once_and_drained(h)


async def test_answers_lost_after_the_ministry_stored_the_record_are_repeated_harmlessly(harness):
    h = harness
    h.store.faults.update({"lose_next": N, "hang_seconds": TIMEOUT * 3})
    await h.service.bus.publish(archived(N))

    async def stored_but_unanswered() -> bool:
        return h.store.accepted == N and h.gauge("hocba_sync_deliveries_total", {"kind": "record", "outcome": "failed"}) >= N

    await eventually(stored_but_unanswered, what="the ministry storing every record without answering")
    # Until the retries go through, reconciliation shows the records the ministry holds unrecorded.
    mid = await h.reconcile()
    found = {d.name: d.count for d in mid.differences if d.count}
    assert set(found) <= {"acknowledged_not_recorded"} and found.get("acknowledged_not_recorded", 0) + mid.matched == N

    await h.all_delivered()
    assert h.store.duplicates == N, "each retry reached the ministry as a repeat of a stored key"
    await assert_once_and_drained(h)


async def test_duplicate_acknowledgements_are_recorded_once_and_reported(harness):
    h = harness
    h.store.faults.update({"duplicate_next": N})
    await h.service.bus.publish(archived(N))
    await h.service.bus.publish(archived(N))  # and the event itself arrives twice
    await h.all_delivered()
    assert h.store.stats()["acknowledgements"] == 2 * N
    await assert_once_and_drained(h, duplicate_acks=N)


async def test_the_relay_keeps_delivering_while_faults_come_and_go(harness):
    h = harness
    await h.service.bus.publish(archived(N))
    await h.all_delivered()
    # Everything at once on a second school's records: slow, failing, hanging and losing answers.
    more = archived(N, school="79000703")
    h.store.faults.update({"latency_seconds": 0.05, "fail_next": 5, "timeout_next": 3, "lose_next": 3, "hang_seconds": TIMEOUT * 2})
    await h.service.bus.publish(more)

    async def all_two() -> bool:
        # The outbox entry turns delivered with its receipt; the receipts collection and the gauges follow it.
        delivered = await h.outbox(DELIVERED) == 2 * N and await h.db["receipts"].count_documents({}) == 2 * N
        return delivered and h.gauge("hocba_sync_backlog_entries") == 0

    await eventually(all_two, what="both schools delivered")
    assert h.store.accepted == 2 * N
    receipts = {doc["_id"]: doc["receipt_id"] async for doc in h.db["receipts"].find({})}
    assert receipts == {k: v["receipt_id"] for k, v in h.store.receipts.items()}
    assert h.gauge("hocba_sync_parked_entries") == 0
    report = await h.reconcile()
    assert report.consistent and report.matched == 2 * N


#: The relay left to the test: its interval outlasts the test, so each round is one the test runs (`Loop.run_once`);
#: the circuit opens after two rounds in which every request failed, and probes every round while open.
PACED = DeliveryPolicy(
    max_attempts=100,
    base_seconds=0.1,
    cap_seconds=0.4,
    lease_seconds=20.0,
    relay_interval_seconds=3600.0,
    circuit_rounds=2,
    probe_seconds=0.0,
)


async def test_a_ministry_down_then_up_gets_every_entry_within_a_bounded_number_of_rounds(mongo_client, settings, tmp_path):
    async with harnessed(mongo_client, settings, tmp_path, PACED) as h:
        [relay] = [loop for loop in h.service.loops if loop.name == "sync-relay"]
        per_step = h.service.settings.chunk_size
        h.store.faults.update({"fail_next": 10_000, "fail_status": 503})
        await h.service.bus.publish(archived(N))  # taken in, and the first round fails

        async def open_circuit() -> bool:
            await relay.run_once()
            return h.gauge("hocba_sync_ministry_circuit_open") == 1

        await eventually(open_circuit, what="the circuit opening while the ministry fails every request")
        attempts = {doc["_id"]: doc["attempts"] async for doc in h.db["outbox"].find({})}
        assert len(attempts) == N and h.store.accepted == 0

        # Open: each round sends one probe at most, and no entry's attempts are counted.
        for _ in range(3):
            sent = h.store.requests
            await relay.run_once()
            assert h.store.requests - sent <= 1
        assert {doc["_id"]: doc["attempts"] async for doc in h.db["outbox"].find({})} == attempts

        # Up again: the first round's probe closes the circuit and makes every entry due; each further round
        # delivers up to a step's worth, whatever back-off each entry had.
        h.store.faults.update({"fail_next": 0})
        rounds = 0
        while await h.outbox(DELIVERED) < N:
            rounds += 1
            assert rounds <= 1 + -(-N // per_step) + 1, f"{await h.outbox(DELIVERED)} of {N} delivered after {rounds} rounds"
            await relay.run_once()
        assert h.gauge("hocba_sync_ministry_circuit_open") == 0
        await h.all_delivered()
        await assert_once_and_drained(h)
