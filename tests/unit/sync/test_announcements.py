"""A delivery is recorded, its receipt kept and its announcement published in steps a crash can come between: what is
left half done is found and finished by sync itself, and `sync reconcile` names a receipt the receipts collection
lacks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from services.sync import handlers
from services.sync.domain import DELIVERED, Receipt
from services.sync.repository import InMemoryOutboxRepository
from shared.contracts.base import Message
from shared.contracts.sync import CheckpointDelivered, Reconcile, ReconcileReport, RecordsDelivered, RetryParked
from tests.support import Broker
from tests.unit.sync.conftest import OPERATOR, archived, checkpoint_issued, delivered_ids, receipts, statuses


class ReceiptsFailOnce(InMemoryOutboxRepository):
    """An outbox whose first write of receipt documents fails, after the entries were recorded delivered: sync
    stopped between the two writes."""

    def __init__(self) -> None:
        super().__init__()
        self.crashed = False

    async def keep_receipts(self, receipts: list[Receipt]) -> None:
        if not self.crashed:
            self.crashed = True
            raise ConnectionError("sync stopped before it kept the receipts")
        await super().keep_receipts(receipts)


def record_ids(messages: Sequence[Message]) -> list[str]:
    return sorted(d.record_id for m in messages if isinstance(m, RecordsDelivered) for d in m.deliveries)


async def differences(deps) -> dict[str, list[str]]:
    report = (await handlers.reconcile(OPERATOR.signs(Reconcile(limit=10)), deps)).reply
    assert isinstance(report, ReconcileReport)
    return {d.name: d.examples for d in report.differences if d.count}


async def test_a_delivery_is_kept_announced_once_its_announcement_is_published(deps, clock, policy):
    broker = Broker()
    delivered = await handlers.accept_archived(archived(3), deps)
    left = await handlers.announced(deps, broker, delivered)

    assert record_ids(broker.published) == delivered_ids(delivered) and len(delivered_ids(delivered)) == 3
    assert not left.publish, "published once, here, not again by the edge"
    clock.advance(policy.announce_grace_seconds + 1)
    assert not (await handlers.reannounce(deps)).publish


async def test_a_delivery_recorded_but_never_announced_is_announced_again_once(deps, repo, clock, policy, registry):
    """sync stopped (or lost the broker) after recording the deliveries, before announcing them."""
    gone = Broker(failing=True)
    with pytest.raises(ConnectionError):
        await handlers.announced(deps, gone, await handlers.accept_archived(archived(3), deps))
    assert set((await statuses(repo)).values()) == {DELIVERED}

    broker = Broker()
    clock.advance(policy.announce_grace_seconds + 1)
    await handlers.announcing(handlers.reannounce, deps, broker)
    clock.advance(policy.announce_interval_seconds)
    await handlers.announcing(handlers.reannounce, deps, broker)

    assert record_ids(broker.published) == ["hb-79000701-0000", "hb-79000701-0001", "hb-79000701-0002"]
    assert registry.get_sample_value("hocba_sync_reannounced_total") == 3
    [announcement] = broker.published
    assert isinstance(announcement, RecordsDelivered)
    assert {(d.record_id, d.receipt_id) for d in announcement.deliveries} == {
        (key.split(":")[0], receipt) for key, receipt in (await receipts(repo)).items()
    }, "announced with the receipts the ministry gave"


async def test_a_delivery_being_announced_is_left_to_its_own_announcement(deps, repo):
    """Within the grace after it was recorded, a delivery not yet marked announced is on its way out, not lost."""
    await handlers.accept_archived(archived(2), deps)
    assert not (await handlers.reannounce(deps)).publish


async def test_a_checkpoint_delivered_but_never_announced_is_announced_again(deps, clock, policy):
    with pytest.raises(ConnectionError):
        await handlers.announced(
            deps, Broker(failing=True), await handlers.accept_checkpoint(checkpoint_issued(5), deps)
        )
    clock.advance(policy.announce_grace_seconds + 1)
    broker = Broker()
    await handlers.announcing(handlers.reannounce, deps, broker)
    assert [(m.origin, m.tree_size) for m in broker.published if isinstance(m, CheckpointDelivered)] == [
        ("hocba.test/archive", 5)
    ]


async def test_a_step_that_finds_more_unannounced_deliveries_than_it_may_take_runs_again(deps, clock, policy):
    with pytest.raises(ConnectionError):
        await handlers.announced(deps, Broker(failing=True), await handlers.accept_archived(archived(15), deps))
    clock.advance(policy.announce_grace_seconds + 1)
    broker = Broker()
    first = await handlers.announcing(handlers.reannounce, deps, broker)
    second = await handlers.announcing(handlers.reannounce, deps, broker)
    assert (first.again, second.again) == (True, False)
    assert len(record_ids(broker.published)) == 15


async def test_a_delivered_entry_sent_again_by_an_operator_is_no_longer_owed_an_announcement(deps, repo, clock, policy):
    with pytest.raises(ConnectionError):
        await handlers.announced(deps, Broker(failing=True), await handlers.accept_archived(archived(1), deps))
    await handlers.retry_parked(OPERATOR.signs(RetryParked(keys=["hb-79000701-0000:1"])), deps)
    clock.advance(policy.announce_grace_seconds + 1)
    assert not (await handlers.reannounce(deps)).publish


async def test_a_crash_between_recording_a_delivery_and_keeping_its_receipt_is_repaired(deps, clock, policy):
    repo = ReceiptsFailOnce()
    crashing = replace(deps, repo=repo)
    with pytest.raises(ConnectionError):
        await handlers.accept_archived(archived(2), crashing)
    assert set((await statuses(repo)).values()) == {DELIVERED}
    assert await receipts(repo) == {}
    assert await differences(crashing) == {}, "within the grace the step that records a delivery may still be running"
    clock.advance(policy.announce_grace_seconds + 1)
    assert await differences(crashing) == {"receipt_not_kept": ["hb-79000701-0000:1", "hb-79000701-0001:1"]}

    broker = Broker()
    await handlers.announcing(handlers.reannounce, crashing, broker)

    kept = await receipts(repo)
    assert kept == {k: r.receipt_id for k, r in repo.held_receipts.items()} and len(kept) == 2
    assert await differences(crashing) == {}
    assert record_ids(broker.published) == ["hb-79000701-0000", "hb-79000701-0001"]
