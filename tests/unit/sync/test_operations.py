"""Checkpoints to the ministry, and the operator's side of sync: status, retry of parked entries, reconciliation.

Operators' requests carry an operator's token for that request (`OPERATOR.signs(...)`); who else is
refused is in test_trust.py.
"""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.sync import handlers
from services.sync.domain import CHECKPOINT, DELIVERED, PARKED, PENDING
from services.sync.metrics import SyncMetrics
from services.sync.ministry import Ministry
from shared.auth import Unauthenticated
from shared.contracts.sync import (
    CheckpointDelivered,
    GetSyncStatus,
    Reconcile,
    RecordsDelivered,
    RetryParked,
)
from shared.errors import Unavailable
from tests.unit.sync.conftest import (
    MINISTRY_URL,
    OPERATOR,
    archived,
    checkpoint_issued,
    delivered_ids,
    deliveries,
    receipts,
    stats,
    statuses,
)


async def park_all(deps, store, clock, policy, n: int = 2) -> None:
    store.fail_next = 10_000
    await handlers.accept_archived(archived(n), deps)
    for _ in range(policy.max_attempts):
        clock.advance(policy.cap_seconds)
        await handlers.deliver_due(deps)
    store.fail_next = 0


@pytest.fixture
async def two_parked(deps, store, clock, policy) -> None:
    """Two record entries, parked after the ministry failed every attempt."""
    await park_all(deps, store, clock, policy)


# -- checkpoints ------------------------------------------------------------------------------


async def test_a_checkpoint_becomes_one_entry_delivered_once_and_announced(deps, repo, store, registry):
    event = checkpoint_issued(tree_size=3)
    outcome = await handlers.accept_checkpoint(event, deps)
    again = await handlers.accept_checkpoint(event.model_copy(update={"message_id": "another"}), deps)

    key = "checkpoint:hocba.test/archive:3"
    assert await statuses(repo) == {key: DELIVERED}
    assert set(store.checkpoints) == {key} and store.stats() == stats(checkpoints=1)
    assert not again.publish
    [announced] = outcome.publish
    assert isinstance(announced, CheckpointDelivered)
    assert (announced.origin, announced.tree_size) == ("hocba.test/archive", 3)
    assert announced.receipt_id == store.checkpoints[key]["receipt_id"]
    assert deliveries(registry, "delivered", kind=CHECKPOINT) == 1
    assert registry.get_sample_value("hocba_sync_checkpoint_delivered_tree_size") == 3
    assert registry.get_sample_value("hocba_sync_checkpoint_delivered_timestamp_seconds") > 0
    assert registry.get_sample_value("hocba_sync_delivery_lag_seconds_count", {"kind": CHECKPOINT}) == 1


async def test_checkpoints_of_other_sizes_are_other_entries(deps, repo, store):
    for size in (3, 5, 3):
        await handlers.accept_checkpoint(checkpoint_issued(tree_size=size), deps)
    assert sorted(await statuses(repo)) == ["checkpoint:hocba.test/archive:3", "checkpoint:hocba.test/archive:5"]
    assert store.stats()["checkpoints"] == 2


async def test_records_and_checkpoints_delivered_by_the_relay_are_announced_apart(deps, store, clock):
    store.fail_next = 2
    await handlers.accept_archived(archived(1), deps)
    await handlers.accept_checkpoint(checkpoint_issued(), deps)
    clock.advance(60)
    outcome = await handlers.deliver_due(deps)
    kinds = sorted(type(e).__name__ for e in outcome.publish)
    assert kinds == [CheckpointDelivered.__name__, RecordsDelivered.__name__]
    assert delivered_ids(outcome) == ["hb-79000701-0000"]


# -- gauges -----------------------------------------------------------------------------------


async def test_the_gauges_show_backlog_parked_entries_and_the_oldest_waiting_entry(deps, store, clock, policy, registry):
    await park_all(deps, store, clock, policy, n=2)
    assert registry.get_sample_value("hocba_sync_parked_entries") == 2
    assert registry.get_sample_value("hocba_sync_backlog_entries") == 0
    assert registry.get_sample_value("hocba_sync_oldest_entry_age_seconds") == 0

    store.fail_next = 1
    await handlers.accept_archived(archived(1, school="79000799"), deps)
    assert registry.get_sample_value("hocba_sync_backlog_entries") == 1
    # The test clock stands in the past, so the age (measured against the wall clock) is large.
    assert registry.get_sample_value("hocba_sync_oldest_entry_age_seconds") > 0


# -- status -----------------------------------------------------------------------------------


async def test_status_counts_entries_by_kind_and_status_and_lists_the_parked(deps, store, clock, policy):
    await park_all(deps, store, clock, policy, n=2)
    await handlers.accept_archived(archived(3, school="79000702"), deps)
    await handlers.accept_checkpoint(checkpoint_issued(tree_size=5), deps)

    report = (await handlers.status(OPERATOR.signs(GetSyncStatus(parked_limit=1)), deps)).reply
    counts = {(c.kind, c.status): c.entries for c in report.counts}
    assert counts == {("checkpoint", DELIVERED): 1, ("record", DELIVERED): 3, ("record", PARKED): 2}
    assert (report.backlog, report.parked, report.oldest_waiting_seconds) == (0, 2, None)
    assert len(report.parked_entries) == 1
    assert report.parked_entries[0].attempts == policy.max_attempts
    assert "503" in report.parked_entries[0].last_error
    assert (report.last_checkpoint.origin, report.last_checkpoint.tree_size) == ("hocba.test/archive", 5)


# -- retry ------------------------------------------------------------------------------------


async def test_retry_is_refused_when_no_issuer_keys_are_configured(deps, two_parked):
    with pytest.raises(Unauthenticated, match="no actor-token issuer keys"):
        await handlers.retry_parked(OPERATOR.signs(RetryParked()), replace(deps, issuer_keys=None))
    assert await statuses(deps.repo) == dict.fromkeys(["hb-79000701-0000:1", "hb-79000701-0001:1"], PARKED)


async def test_retry_resumes_every_parked_entry_with_fresh_attempts_and_the_relay_delivers_them(
    deps, repo, store, clock, policy, registry
):
    await park_all(deps, store, clock, policy, n=3)
    assert store.accepted == 0

    outcome = (await handlers.retry_parked(OPERATOR.signs(RetryParked()), deps)).reply
    assert outcome.error is None and outcome.resumed == 3 and outcome.skipped == []
    resumed = (await repo.entries(await statuses(repo))).values()
    assert {(e.status, e.attempts) for e in resumed} == {(PENDING, 0)}
    assert registry.get_sample_value("hocba_sync_resumed_total") == 3
    assert registry.get_sample_value("hocba_sync_parked_entries") == 0
    assert registry.get_sample_value("hocba_sync_backlog_entries") == 3

    relayed = await handlers.deliver_due(deps)
    assert len(delivered_ids(relayed)) == 3 and store.accepted == 3
    assert set((await statuses(repo)).values()) == {DELIVERED}


async def test_retry_by_key_resends_a_delivered_record_the_ministry_lost(deps, repo, store, clock):
    await handlers.accept_archived(archived(2), deps)
    lost = "hb-79000701-0000:1"
    del store.receipts[lost]

    outcome = (await handlers.retry_parked(OPERATOR.signs(RetryParked(keys=[lost, "unknown:1"])), deps)).reply
    assert (outcome.resumed, outcome.keys, outcome.skipped) == (1, [lost], ["unknown:1"])
    relayed = await handlers.deliver_due(deps)
    assert delivered_ids(relayed) == ["hb-79000701-0000"]
    assert lost in store.receipts
    assert (await receipts(repo))[lost] == store.receipts[lost]["receipt_id"]


# -- reconcile --------------------------------------------------------------------------------


def differences(report) -> dict[str, list[str]]:
    return {d.name: d.examples for d in report.differences if d.count}


async def test_a_clean_delivery_reconciles_without_differences(deps, registry):
    await handlers.accept_archived(archived(3), deps)
    await handlers.accept_checkpoint(checkpoint_issued(tree_size=3), deps)
    report = (await handlers.reconcile(OPERATOR.signs(Reconcile()), deps)).reply
    assert report.error is None and report.consistent
    assert (report.held, report.acknowledged, report.matched, report.archive_size) == (4, 4, 4, 3)
    assert registry.get_sample_value("hocba_sync_reconcile_differences", {"difference": "missing_at_ministry"}) == 0


async def test_reconciliation_lists_every_kind_of_difference(deps, store, registry):
    await handlers.accept_archived(archived(4), deps)  # seq 0-3
    # The archive has 6 entries (its checkpoint says so); sync never received seq 4 and 5.
    await handlers.accept_checkpoint(checkpoint_issued(tree_size=6), deps)
    # The ministry lost one, re-issued another's receipt, holds a record sync never sent ...
    del store.receipts["hb-79000701-0000:1"]
    store.receipts["hb-79000701-0001:1"] = {**store.receipts["hb-79000701-0001:1"], "receipt_id": "MOET-other"}
    store.accept("hb-elsewhere:1", {"record_id": "hb-elsewhere", "version": 1, "digest": "x"})
    # ... and acknowledged one record twice.
    store.faults.duplicate_next = 1
    await handlers.accept_archived(archived(1, school="79000777"), deps)
    # An answer was lost: the ministry holds the record, sync's entry still waits.
    store.faults.lose_next, store.faults.hang_seconds = 1, 0
    await handlers.accept_archived(archived(1, school="79000788"), deps)

    report = (await handlers.reconcile(OPERATOR.signs(Reconcile(limit=10)), deps)).reply
    assert report.error is None and not report.consistent
    assert differences(report) == {
        "missing_at_ministry": ["hb-79000701-0000:1"],
        "receipt_mismatch": ["hb-79000701-0001:1"],
        "unknown_to_sync": ["hb-elsewhere:1"],
        "acknowledged_twice": ["hb-79000777-0000:1"],
        "acknowledged_not_recorded": ["hb-79000788-0000:1"],
        "not_in_outbox": ["seq 4-5"],
    }
    assert report.waiting[PENDING] == 0
    assert registry.get_sample_value("hocba_sync_reconcile_differences", {"difference": "not_in_outbox"}) == 2


async def test_a_ministry_that_cannot_be_listed_gives_a_reason_not_a_timeout(deps):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        unreachable = replace(deps, ministry=Ministry(MINISTRY_URL, 4, client=client))
        with pytest.raises(Unavailable) as failed:
            await handlers.reconcile(OPERATOR.signs(Reconcile()), unreachable)
    assert str(failed.value) == "listing /v1/receipts failed: ConnectError: connection refused"


async def test_a_listing_that_cannot_be_read_gives_a_reason(deps):
    def garbled(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"receipts": [{"receipt_id": "MOET-1"}], "next": None})

    async with httpx.AsyncClient(transport=httpx.MockTransport(garbled)) as client:
        with pytest.raises(Unavailable, match="listing /v1/receipts failed: KeyError"):
            await handlers.reconcile(OPERATOR.signs(Reconcile()), replace(deps, ministry=Ministry(MINISTRY_URL, 4, client=client)))


class BrokenListing:
    """A ministry client whose listing fails in a way the client does not foresee; sending still works."""

    def __init__(self, ministry) -> None:
        self.ministry = ministry

    async def send(self, kind, key, payload):
        return await self.ministry.send(kind, key, payload)

    async def acknowledgements(self, kind):
        raise ConnectionError("ministry unreachable")
        yield  # pragma: no cover


async def test_any_failure_to_compare_is_told_to_the_operator_in_words(deps):
    await handlers.accept_archived(archived(1), deps)
    with pytest.raises(Unavailable, match="ConnectionError: ministry unreachable"):
        await handlers.reconcile(OPERATOR.signs(Reconcile()), replace(deps, ministry=BrokenListing(deps.ministry)))


async def test_a_restarted_sync_shows_the_outbox_and_the_last_checkpoint_at_once(deps, repo, store, clock, policy):
    await handlers.accept_checkpoint(checkpoint_issued(tree_size=7), deps)
    await park_all(deps, store, clock, policy, n=2)
    fresh = CollectorRegistry()
    restarted = replace(deps, metrics=SyncMetrics(fresh))
    await handlers.restore_gauges(restarted)
    assert fresh.get_sample_value("hocba_sync_parked_entries") == 2
    assert fresh.get_sample_value("hocba_sync_checkpoint_delivered_tree_size") == 7
