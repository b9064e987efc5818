"""sync's use cases against the ministry simulator in-process: exactly once in effect, retries, parking."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx

from services.sync import handlers
from services.sync.domain import (
    DELIVERED,
    PARKED,
    PENDING,
    SENDING,
    Attempt,
    DeliveryPolicy,
    Outcome,
    after_failure,
    new_entry,
    receipt_from,
)
from services.sync.metrics import SyncMetrics
from services.sync.ministry import Ministry
from services.sync.relay import Relay
from shared.contracts.base import derived_id
from tests.unit.sync.conftest import MINISTRY_URL, archived, deliveries, stats


async def test_archived_records_reach_the_ministry_once_with_receipts(deps, repo, store, registry):
    event = archived(3)
    outcome = await handlers.accept_archived(event, deps)

    assert store.stats() == stats(3, 0, 3)
    assert {e.status for e in repo.entries.values()} == {DELIVERED}
    assert set(repo.receipts) == set(store.receipts) == {f"hb-79000701-{i:04d}:1" for i in range(3)}
    for key, receipt in repo.receipts.items():
        assert receipt.receipt_id == store.receipts[key]["receipt_id"]
        assert repo.delivered[key].receipt_id == receipt.receipt_id
    assert outcome.event is not None
    assert outcome.event.message_id == derived_id(event.message_id, "delivered")
    assert sorted(d.record_id for d in outcome.event.deliveries) == [f"hb-79000701-{i:04d}" for i in range(3)]
    assert deliveries(registry, "delivered") == 3
    assert registry.get_sample_value("hocba_sync_backlog_entries") == 0
    assert registry.get_sample_value("hocba_sync_delivery_seconds_count") == 3


async def test_the_ministry_receives_the_archived_payload(deps, store):
    event = archived(1)
    await handlers.accept_archived(event, deps)
    receipt = store.receipts["hb-79000701-0000:1"]
    record = event.records[0]
    assert (receipt["record_id"], receipt["version"], receipt["digest"]) == (record.record_id, 1, record.digest)


async def test_a_duplicate_event_delivers_nothing_new(deps, repo, store, registry):
    event = archived(3)
    await handlers.accept_archived(event, deps)
    again = await handlers.accept_archived(event, deps)

    assert again.claimed == 0 and again.event is None
    assert store.stats() == stats(3, 0, 3)
    assert len(repo.entries) == len(repo.receipts) == 3
    assert deliveries(registry, "delivered") == 3


async def test_the_same_record_version_in_another_event_is_not_sent_again(deps, store):
    await handlers.accept_archived(archived(2), deps)
    later = await handlers.accept_archived(archived(3), deps)
    assert [d.record_id for d in later.event.deliveries] == ["hb-79000701-0002"]
    assert store.stats()["requests"] == 3


async def test_a_5xx_leaves_the_entry_pending_until_the_relay_delivers_it(deps, repo, store, clock, registry):
    store.fail_next = 1
    outcome = await handlers.accept_archived(archived(1), deps)

    entry = repo.entries["hb-79000701-0000:1"]
    assert outcome.event is None
    assert (entry.status, entry.attempts) == (PENDING, 1)
    assert "503" in entry.last_error
    assert entry.next_attempt_at == clock.now + timedelta(seconds=1)  # base 2 s, jitter 0: lower half
    assert deliveries(registry, "failed") == 1
    assert registry.get_sample_value("hocba_sync_backlog_entries") == 1

    early = await handlers.deliver_due(deps, limit=10)
    assert early.claimed == 0, "an entry was retried before its back-off ran out"

    clock.advance(1)
    relayed = await handlers.deliver_due(deps, limit=10)
    assert [d.record_id for d in relayed.event.deliveries] == ["hb-79000701-0000"]
    assert repo.entries["hb-79000701-0000:1"].status == DELIVERED
    assert store.stats() == stats(1, 0, 2)
    assert deliveries(registry, "delivered") == 1
    assert registry.get_sample_value("hocba_sync_backlog_entries") == 0


async def test_after_the_bound_the_entry_is_parked_and_left_alone(deps, repo, store, clock, policy, registry):
    store.fail_next = 100
    await handlers.accept_archived(archived(1), deps)
    for _ in range(policy.max_attempts + 2):
        clock.advance(policy.cap_seconds)
        await handlers.deliver_due(deps, limit=10)

    entry = repo.entries["hb-79000701-0000:1"]
    assert (entry.status, entry.attempts) == (PARKED, policy.max_attempts)
    assert "503" in entry.last_error
    assert store.requests == policy.max_attempts
    assert deliveries(registry, "failed") == policy.max_attempts - 1
    assert deliveries(registry, "parked") == 1
    assert registry.get_sample_value("hocba_sync_backlog_entries") == 0


async def test_a_4xx_answer_parks_at_once_with_the_reason(deps, repo, store, registry):
    event = archived(1)
    record = event.records[0]
    store.accept(f"{record.record_id}:1", {"record_id": record.record_id, "version": 1, "digest": "other", "personal_id": "0" * 12})
    await handlers.accept_archived(event, deps)

    entry = repo.entries[f"{record.record_id}:1"]
    assert (entry.status, entry.attempts) == (PARKED, 1)
    assert entry.last_error.startswith("HTTP 409")
    assert deliveries(registry, "parked") == 1 and not repo.receipts


async def test_a_connection_error_is_retried_later(repo, clock, policy, registry):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        deps = handlers.SyncDeps(
            repo, Ministry(MINISTRY_URL, 4, client=client), SyncMetrics(registry), policy, clock, lambda: 0.0
        )
        await handlers.accept_archived(archived(2), deps)
    assert {(e.status, e.attempts) for e in repo.entries.values()} == {(PENDING, 1)}
    assert all("ConnectError" in e.last_error for e in repo.entries.values())


async def test_an_entry_held_by_another_sender_is_taken_again_only_after_its_lease(deps, repo, store, clock, policy):
    event = archived(1)
    await repo.add_new([new_entry(r, clock.now) for r in event.records])
    lease = clock.now + timedelta(seconds=policy.lease_seconds)
    taken = await repo.claim(None, clock.now, lease, "crashed-sender", 10)
    assert [e.status for e in taken] == [SENDING]

    assert (await handlers.accept_archived(event, deps)).claimed == 0
    clock.advance(policy.lease_seconds / 2)
    assert (await handlers.deliver_due(deps, limit=10)).claimed == 0
    assert store.requests == 0

    clock.advance(policy.lease_seconds)
    outcome = await handlers.deliver_due(deps, limit=10)
    assert outcome.claimed == 1 and len(outcome.receipts) == 1
    assert store.stats() == stats(1, 0, 1)


async def test_a_stale_sender_does_not_overwrite_a_newer_claim(deps, repo, clock, policy):
    event = archived(1)
    key = f"{event.records[0].record_id}:1"
    await repo.add_new([new_entry(r, clock.now) for r in event.records])
    stale = (await repo.claim(None, clock.now, clock.now, "stale", 10))[0]
    clock.advance(1)
    await repo.claim(None, clock.now, clock.now + timedelta(seconds=30), "fresh", 10)
    failure = after_failure(
        stale, Attempt(Outcome.RETRY, 0.1, error="late"), clock.now, 0.0, policy
    )
    await repo.record("stale", [], [failure])
    assert repo.entries[key].claim == "fresh" and repo.entries[key].status == SENDING
    late = receipt_from(stale, {"receipt_id": "r-late"}, clock.now)
    assert await repo.record("stale", [late], []) == []
    assert repo.entries[key].status == SENDING and not repo.receipts


async def test_requests_to_the_ministry_are_bounded(repo, clock, policy, registry):
    in_flight = 0
    peak = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        key = request.headers["Idempotency-Key"]
        return httpx.Response(201, json={"receipt_id": f"r-{key}", "received_at": "now", "idempotency_key": key})

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
        deps = handlers.SyncDeps(
            repo, Ministry(MINISTRY_URL, 3, client=client), SyncMetrics(registry), policy, clock, lambda: 0.0
        )
        outcome = await handlers.accept_archived(archived(12), deps)
    assert len(outcome.receipts) == 12
    assert peak == 3


async def test_a_2xx_without_a_receipt_is_not_taken_for_a_delivery(repo, clock, policy, registry):
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200, text="ok"))) as client:
        deps = handlers.SyncDeps(
            repo, Ministry(MINISTRY_URL, 2, client=client), SyncMetrics(registry), policy, clock, lambda: 0.0
        )
        await handlers.accept_archived(archived(1), deps)
    entry = next(iter(repo.entries.values()))
    assert (entry.status, entry.attempts) == (PENDING, 1)
    assert "without a receipt" in entry.last_error
    assert not repo.receipts


async def test_the_relay_loop_drains_entries_after_an_outage(repo, client, store, registry):
    policy = DeliveryPolicy(base_seconds=0.05, cap_seconds=0.1)
    deps = handlers.SyncDeps(repo, Ministry(MINISTRY_URL, 4, client=client), SyncMetrics(registry), policy)
    store.fail_next = 3
    await handlers.accept_archived(archived(3), deps)
    assert {e.status for e in repo.entries.values()} == {PENDING}

    async def step() -> int:
        return (await handlers.deliver_due(deps, limit=2)).claimed

    relay = Relay(step, limit=2, interval=0.02)
    await relay.start()
    try:
        async with asyncio.timeout(5):
            while {e.status for e in repo.entries.values()} != {DELIVERED}:
                await asyncio.sleep(0.02)
    finally:
        await relay.stop()
    assert relay.task is None
    assert store.stats() == stats(3, 0, 6)
    assert len(repo.receipts) == 3


async def test_the_relay_survives_a_failing_step():
    calls = 0

    async def step() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database away")
        return 0

    relay = Relay(step, limit=10, interval=0.01)
    await relay.start()
    async with asyncio.timeout(2):
        while calls < 3:
            await asyncio.sleep(0.01)
    await relay.stop()
    assert calls >= 3



async def test_an_unexpected_error_while_sending_is_a_failed_attempt_not_a_stuck_claim(repo, clock, policy, registry):
    class Broken:
        async def send(self, kind, key, payload):
            raise RuntimeError("bug in the sender")

    deps = handlers.SyncDeps(repo, Broken(), SyncMetrics(registry), policy, clock, lambda: 0.0)
    await handlers.accept_archived(archived(1), deps)
    entry = next(iter(repo.entries.values()))
    assert (entry.status, entry.attempts) == (PENDING, 1)
    assert entry.last_error == "RuntimeError: bug in the sender"


async def test_stopping_the_relay_lets_the_step_in_progress_finish():
    started = asyncio.Event()
    finished = []

    async def step() -> int:
        started.set()
        await asyncio.sleep(0.1)
        finished.append(True)
        return 0

    relay = Relay(step, limit=10, interval=5.0)
    await relay.start()
    await started.wait()
    await relay.stop()
    assert finished == [True] and relay.task is None


async def test_a_step_that_outlasts_the_grace_period_is_cancelled():
    started = asyncio.Event()

    async def step() -> int:
        started.set()
        await asyncio.sleep(60)
        return 0

    relay = Relay(step, limit=10, interval=5.0, grace=0.05)
    await relay.start()
    await started.wait()
    async with asyncio.timeout(2):
        await relay.stop()
    assert relay.task is None
