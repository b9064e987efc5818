"""sync's use cases against the ministry simulator in-process: exactly once in effect, retries, parking, the relay's step."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import httpx

from services.sync import handlers
from services.sync.domain import DELIVERED, PARKED, PENDING, SENDING, DeliveryPolicy, new_entry
from services.sync.ministry import Ministry
from shared.contracts.base import derived_id
from tests.unit.sync.conftest import (
    MINISTRY_URL,
    archived,
    delivered_ids,
    deliveries,
    entry,
    receipts,
    records_delivered,
    stats,
    statuses,
)


async def test_archived_records_reach_the_ministry_once_with_receipts(deps, repo, store, registry):
    event = archived(3)
    outcome = await handlers.accept_archived(event, deps)

    keys = {f"hb-79000701-{i:04d}:1" for i in range(3)}
    assert store.stats() == stats(3, 0, 3)
    assert await statuses(repo) == dict.fromkeys(keys, DELIVERED)
    assert set(store.receipts) == keys
    assert await receipts(repo) == {key: store.receipts[key]["receipt_id"] for key in keys}
    assert {h.key: h.receipt_id async for h in repo.holdings()} == await receipts(repo)
    [announced] = outcome.publish
    assert announced.message_id == derived_id(event.message_id, "delivered")
    assert delivered_ids(outcome) == [f"hb-79000701-{i:04d}" for i in range(3)]
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

    assert not again.publish
    assert store.stats() == stats(3, 0, 3)
    assert len(await statuses(repo)) == len(await receipts(repo)) == 3
    assert deliveries(registry, "delivered") == 3


async def test_the_same_record_version_in_another_event_is_not_sent_again(deps, store):
    await handlers.accept_archived(archived(2), deps)
    later = await handlers.accept_archived(archived(3), deps)
    assert delivered_ids(later) == ["hb-79000701-0002"]
    assert store.stats()["requests"] == 3


async def test_a_5xx_leaves_the_entry_pending_until_the_relay_delivers_it(deps, repo, store, clock, registry):
    store.fail_next = 1
    outcome = await handlers.accept_archived(archived(1), deps)

    waiting = await entry(repo, "hb-79000701-0000:1")
    assert not outcome.publish
    assert (waiting.status, waiting.attempts) == (PENDING, 1)
    assert "503" in waiting.last_error
    assert waiting.next_attempt_at == clock.now + timedelta(seconds=1)  # base 2 s, jitter 0: lower half
    assert deliveries(registry, "failed") == 1
    assert registry.get_sample_value("hocba_sync_backlog_entries") == 1

    early = await handlers.deliver_due(deps)
    assert not early.publish and store.stats()["requests"] == 1, "an entry was retried before its back-off ran out"

    clock.advance(1)
    relayed = await handlers.deliver_due(deps)
    assert delivered_ids(relayed) == ["hb-79000701-0000"]
    assert (await entry(repo, "hb-79000701-0000:1")).status == DELIVERED
    assert store.stats() == stats(1, 0, 2)
    assert deliveries(registry, "delivered") == 1
    assert registry.get_sample_value("hocba_sync_backlog_entries") == 0


async def test_after_the_bound_the_entry_is_parked_and_left_alone(deps, repo, store, clock, policy, registry):
    store.fail_next = 100
    await handlers.accept_archived(archived(1), deps)
    for _ in range(policy.max_attempts + 2):
        clock.advance(policy.cap_seconds)
        await handlers.deliver_due(deps)

    parked = await entry(repo, "hb-79000701-0000:1")
    assert (parked.status, parked.attempts) == (PARKED, policy.max_attempts)
    assert "503" in parked.last_error
    assert store.requests == policy.max_attempts
    assert deliveries(registry, "failed") == policy.max_attempts - 1
    assert deliveries(registry, "parked") == 1
    assert registry.get_sample_value("hocba_sync_backlog_entries") == 0


async def test_a_4xx_answer_parks_at_once_with_the_reason(deps, repo, store, registry):
    event = archived(1)
    record = event.records[0]
    store.accept(f"{record.record_id}:1", {"record_id": record.record_id, "version": 1, "digest": "other", "personal_id": "0" * 12})
    await handlers.accept_archived(event, deps)

    parked = await entry(repo, f"{record.record_id}:1")
    assert (parked.status, parked.attempts) == (PARKED, 1)
    assert parked.last_error.startswith("HTTP 409")
    assert deliveries(registry, "parked") == 1 and not await receipts(repo)


async def test_a_connection_error_is_retried_later(deps, repo):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        await handlers.accept_archived(archived(2), replace(deps, ministry=Ministry(MINISTRY_URL, 4, client=client)))
    waiting = (await repo.entries(await statuses(repo))).values()
    assert {(e.status, e.attempts) for e in waiting} == {(PENDING, 1)}
    assert all("ConnectError" in e.last_error for e in waiting)


async def test_an_entry_held_by_another_sender_is_taken_again_only_after_its_lease(deps, repo, store, clock, policy):
    event = archived(1)
    await repo.add_new([new_entry(r, clock.now) for r in event.records])
    lease = clock.now + timedelta(seconds=policy.lease_seconds)
    taken = await repo.claim(None, clock.now, lease, "crashed-sender", 10)
    assert [e.status for e in taken] == [SENDING]

    assert not (await handlers.accept_archived(event, deps)).publish
    clock.advance(policy.lease_seconds / 2)
    assert not (await handlers.deliver_due(deps)).publish
    assert store.requests == 0

    clock.advance(policy.lease_seconds)
    outcome = await handlers.deliver_due(deps)
    assert delivered_ids(outcome) == [event.records[0].record_id]
    assert store.stats() == stats(1, 0, 1)


async def test_a_sender_killed_mid_round_leaves_its_entries_to_another_within_seconds(deps, repo, store, clock):
    """A SIGKILLed sync cannot release its claim: its entries wait out the lease, which is seconds, not minutes (a
    live round renews it, below)."""
    deps = replace(deps, policy=replace(deps.policy, lease_seconds=DeliveryPolicy().lease_seconds))
    assert deps.policy.lease_seconds <= 15
    event = archived(1)
    await repo.add_new([new_entry(r, clock.now) for r in event.records])
    lease = clock.now + timedelta(seconds=deps.policy.lease_seconds)
    assert [e.status for e in await repo.claim(None, clock.now, lease, "killed-sender", 10)] == [SENDING]

    clock.advance(deps.policy.lease_seconds + 1)
    assert delivered_ids(await handlers.deliver_due(deps)) == [event.records[0].record_id]
    assert store.stats() == stats(1, 0, 1)


class HeldBack:
    """The ministry, answering only when the test says so."""

    def __init__(self, ministry: Ministry) -> None:
        self.ministry, self.asked, self.answer = ministry, asyncio.Event(), asyncio.Event()

    async def deliver(self, items):
        self.asked.set()
        await self.answer.wait()
        return await self.ministry.deliver(items)


async def test_a_round_slower_than_its_lease_keeps_its_entries_by_renewing_it(deps, repo, store, clock):
    deps = replace(deps, policy=replace(deps.policy, renew_seconds=0.01))
    event = archived(1)
    await repo.add_new([new_entry(r, clock.now) for r in event.records])
    slow = HeldBack(deps.ministry)
    round_ = asyncio.create_task(handlers.deliver_due(replace(deps, ministry=slow)))
    await slow.asked.wait()

    for _ in range(3):  # the round waits three leases for its answer, renewing as it goes
        clock.advance(deps.policy.lease_seconds - 1)
        await asyncio.sleep(0.05)
        assert delivered_ids(await handlers.deliver_due(deps)) == [], "another sender takes nothing the round holds"
    assert store.requests == 0

    slow.answer.set()
    assert delivered_ids(await round_) == [event.records[0].record_id]
    assert store.stats() == stats(1, 0, 1)


async def test_requests_to_the_ministry_are_bounded(deps):
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
        three_at_once = replace(deps, ministry=Ministry(MINISTRY_URL, 3, client=client))
        outcome = await handlers.accept_archived(archived(12), three_at_once)
    assert len(records_delivered(outcome).deliveries) == 12
    assert peak == 3


async def test_a_2xx_without_a_receipt_is_not_taken_for_a_delivery(deps, repo):
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200, text="ok"))) as client:
        await handlers.accept_archived(archived(1), replace(deps, ministry=Ministry(MINISTRY_URL, 2, client=client)))
    waiting = await entry(repo, "hb-79000701-0000:1")
    assert (waiting.status, waiting.attempts) == (PENDING, 1)
    assert "without a receipt" in waiting.last_error
    assert not await receipts(repo)


async def test_an_unexpected_error_while_sending_is_a_failed_attempt_not_a_stuck_claim(deps, repo):
    class Broken:
        async def deliver(self, items):
            raise RuntimeError("bug in the sender")

    await handlers.accept_archived(archived(1), replace(deps, ministry=Broken()))
    waiting = await entry(repo, "hb-79000701-0000:1")
    assert (waiting.status, waiting.attempts) == (PENDING, 1)
    assert waiting.last_error == "RuntimeError: bug in the sender"


# --- the relay's step ------------------------------------------------------------------------


async def test_the_relay_step_drains_entries_after_an_outage_and_asks_again_while_a_step_is_full(
    deps, repo, store, clock
):
    store.fail_next = 3
    await handlers.accept_archived(archived(3), deps)
    assert set((await statuses(repo)).values()) == {PENDING}

    clock.advance(60)
    two_per_step = replace(deps, deliveries_per_step=2)
    first = await handlers.deliver_due(two_per_step)
    assert first.again, "a full step says more may be waiting"
    assert len(delivered_ids(first)) == 2
    second = await handlers.deliver_due(two_per_step)
    assert not second.again
    assert len(delivered_ids(second)) == 1

    assert set((await statuses(repo)).values()) == {DELIVERED}
    assert store.stats() == stats(3, 0, 6)
    assert len(await receipts(repo)) == 3


async def test_the_relay_step_announces_under_an_id_made_from_the_keys_it_delivered(deps, store, clock):
    store.fail_next = 2
    await handlers.accept_archived(archived(2), deps)
    clock.advance(60)
    outcome = await handlers.deliver_due(deps)
    [announced] = outcome.publish
    assert announced.message_id == derived_id("sync.relay", "hb-79000701-0000:1", "hb-79000701-0001:1")
    assert not outcome.again


async def test_a_relay_step_with_nothing_due_publishes_nothing_and_waits(deps, store):
    outcome = await handlers.deliver_due(deps)
    assert not outcome.publish and not outcome.again
    assert store.requests == 0
