"""Versions are archived, and checkpoints stored, before they are announced: one a crash (or a broker gone) left
stored but not announced is announced again by the archive itself, under a new seal, once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from services.archive import handlers
from services.archive.handlers import Deps
from shared.contracts.archive import CheckpointIssued, IssueCheckpoint, RecordsArchived
from shared.contracts.base import Message
from shared.contracts.signing import RecordsCompleted
from shared.crypto.seal import archived_claims, seal_problems
from tests.support import Broker


class Clock:
    """The archive's clock, moved on by the test."""

    def __init__(self, at: datetime) -> None:
        self.now = at

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(at) -> Clock:
    return Clock(at)


@pytest.fixture
def deps(deps, clock) -> Deps:
    return replace(deps, clock=clock)


def chunk(make_signed, numbers: range, batch_id: str = "b1") -> RecordsCompleted:
    return RecordsCompleted(records=[make_signed(n) for n in numbers], batch_id=batch_id)


def archived(messages: Sequence[Message]) -> list[tuple[str, int, int]]:
    """(record id, version, position) of every version `messages` announce as archived."""
    return sorted(
        (r.record_id, r.version, r.seq) for m in messages if isinstance(m, RecordsArchived) for r in m.records
    )


def checkpoints(messages: Sequence[Message]) -> list[int]:
    return [m.checkpoint.tree_size for m in messages if isinstance(m, CheckpointIssued)]


async def test_versions_are_kept_announced_once_their_announcement_is_published(deps, make_signed, clock):
    broker = Broker()
    left = await handlers.announced(deps, broker, await handlers.archive_records(chunk(make_signed, range(3)), deps))

    assert archived(broker.published) == [("rec-0000", 1, 0), ("rec-0001", 1, 1), ("rec-0002", 1, 2)]
    assert not left.publish, "published once, here, not again by the edge"
    clock.advance(deps.announce_grace_seconds + 1)
    assert not (await handlers.reannounce(deps)).publish


async def test_versions_archived_but_never_announced_are_announced_again_once(deps, make_signed, trust, clock):
    """The archive stopped (or lost the broker) after appending the versions, before announcing them."""
    first = await handlers.archive_records(chunk(make_signed, range(3)), deps)
    with pytest.raises(ConnectionError):
        await handlers.announced(deps, Broker(failing=True), first)

    broker = Broker()
    clock.advance(deps.announce_grace_seconds + 1)
    await handlers.announcing(handlers.reannounce, deps, broker)
    clock.advance(deps.announce_interval_seconds)
    await handlers.announcing(handlers.reannounce, deps, broker)

    [again] = broker.published
    assert isinstance(again, RecordsArchived)
    [lost] = first.publish
    assert isinstance(lost, RecordsArchived)
    assert again.records == lost.records, "the same versions, places, digests and contents"
    assert seal_problems(again.seal, archived_claims(again.records), trust.pki.trust_store(), "archive", clock()) == []


async def test_an_announcement_on_its_way_out_is_left_to_itself(deps, make_signed):
    """Within the grace after the versions were archived, an announcement not yet published is under way, not lost."""
    await handlers.archive_records(chunk(make_signed, range(2)), deps)
    assert not (await handlers.reannounce(deps)).publish


async def test_a_chunk_redelivered_after_a_crash_announces_its_versions_and_leaves_nothing_owed(
    deps, make_signed, clock
):
    event = chunk(make_signed, range(2))
    with pytest.raises(ConnectionError):
        await handlers.announced(deps, Broker(failing=True), await handlers.archive_records(event, deps))
    broker = Broker()
    await handlers.announced(deps, broker, await handlers.archive_records(event, deps))

    assert archived(broker.published) == [("rec-0000", 1, 0), ("rec-0001", 1, 1)]
    clock.advance(deps.announce_grace_seconds + 1)
    assert not (await handlers.reannounce(deps)).publish


async def test_a_checkpoint_stored_but_never_announced_is_announced_again(deps, make_signed, clock):
    await handlers.announced(deps, Broker(), await handlers.archive_records(chunk(make_signed, range(3)), deps))
    with pytest.raises(ConnectionError):
        await handlers.announcing(handlers.scheduled_checkpoint, deps, Broker(failing=True))
    assert await handlers.scheduled_checkpoint(deps) == handlers.NOTHING, "the log has not grown: no new checkpoint"

    clock.advance(deps.announce_grace_seconds + 1)
    broker = Broker()
    await handlers.announcing(handlers.reannounce, deps, broker)
    await handlers.announcing(handlers.reannounce, deps, broker)

    assert checkpoints(broker.published) == [3]
    [stored] = await deps.repo.checkpoints()
    [again] = broker.published
    assert isinstance(again, CheckpointIssued)
    assert (again.message_id, again.checkpoint) == (handlers.checkpoint_event(stored).message_id, stored), (
        "the same checkpoint, announced under the same id"
    )


async def test_an_empty_logs_checkpoint_is_never_owed_an_announcement(deps, trust, clock):
    """An operator's checkpoint of an empty log is answered, not announced."""
    outcome = await handlers.issue_checkpoint(trust.staff.operator().signs(IssueCheckpoint()), deps)
    assert outcome.reply is not None and not outcome.publish
    clock.advance(deps.announce_grace_seconds + 1)
    assert not (await handlers.reannounce(deps)).publish


async def test_a_step_that_finds_more_owed_announcements_than_it_may_make_runs_again(deps, make_signed, clock):
    limited = replace(deps, announced_per_step=4)
    with pytest.raises(ConnectionError):
        await handlers.announced(
            limited, Broker(failing=True), await handlers.archive_records(chunk(make_signed, range(6)), limited)
        )
    clock.advance(deps.announce_grace_seconds + 1)
    broker = Broker()
    first = await handlers.announcing(handlers.reannounce, limited, broker)
    second = await handlers.announcing(handlers.reannounce, limited, broker)

    assert (first.again, second.again) == (True, False)
    assert [len(m.records) for m in broker.published if isinstance(m, RecordsArchived)] == [4, 2]
    assert archived(broker.published) == [(f"rec-{n:04d}", 1, n) for n in range(6)]
