"""A record version completed by a chunk is announced to the archive, and kept announced only once the broker has
confirmed it: a crash (or a chunk dead-lettered) between storing the seal and announcing leaves it owed, and signing
announces it again by itself after a grace."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

import pytest

from services.signing import handlers
from shared.contracts.base import Message, utcnow
from shared.contracts.signing import ChunkSigned, RecordsCompleted, SignWork
from shared.outcome import Outcome
from tests.support import Broker

from .test_signing_handlers import homeroom_signed, plan, principal_request

FAR = timedelta(days=1)


def later(deps, seconds: float):
    """signing's dependencies with its clock `seconds` ahead of now."""
    moment = utcnow() + timedelta(seconds=seconds)
    return replace(deps, clock=lambda: moment)


async def principal_work(deps, trust, make_record, count: int) -> list[SignWork]:
    """`count` records signed by their homeroom teachers; the principal's click planned, its chunks not signed yet."""
    await homeroom_signed(deps, trust, make_record, count)
    return [w for w in (await plan(deps, principal_request(trust))).publish if isinstance(w, SignWork)]


async def reannounced(deps, broker: Broker, seconds: float) -> Outcome:
    """One step of the loop that announces owed versions again, `seconds` from now."""
    return await handlers.announcing(handlers.reannounce, later(deps, seconds), broker)


def completed_in(messages: Sequence[Message]) -> list[RecordsCompleted]:
    return [m for m in messages if isinstance(m, RecordsCompleted)]


async def test_a_crash_between_storing_the_seal_and_announcing_is_announced_again_once(deps, trust, make_record):
    [work] = await principal_work(deps, trust, make_record, 4)
    lost = await handlers.sign_chunk(work, deps)  # signatures stored; the worker dies before publishing
    [never_published] = completed_in(lost.publish)

    broker = Broker()
    step = await reannounced(deps, broker, deps.announce_grace_seconds + 1)
    [again] = broker.published
    assert isinstance(again, RecordsCompleted)
    assert again.records == never_published.records, "the same bytes and signatures as stored"
    assert (again.batch_id, again.by) == (never_published.batch_id, never_published.by)
    assert step.publish == [] and not step.again

    await reannounced(deps, broker, deps.announce_grace_seconds + 60)
    assert broker.published == [again], "announced once: nothing is owed any more"


async def test_a_chunk_still_being_announced_is_not_announced_again_before_the_grace(deps, trust, make_record):
    [work] = await principal_work(deps, trust, make_record, 3)
    await handlers.sign_chunk(work, deps)
    broker = Broker()
    await reannounced(deps, broker, deps.announce_grace_seconds - 5)
    assert broker.published == []
    assert len(await deps.repo.unannounced(utcnow() + FAR, 100)) == 3, "still owed"


async def test_a_chunk_announced_as_usual_leaves_nothing_owed(deps, trust, make_record):
    works = await principal_work(deps, trust, make_record, 12)
    broker = Broker()
    rest = [await handlers.announced(deps, broker, await handlers.sign_chunk(w, deps)) for w in works]
    assert [len(m.records) for m in completed_in(broker.published)] == [10, 2]
    assert all(isinstance(m, ChunkSigned) for o in rest for m in o.publish), "the chunk's count is left to the edge"
    assert await deps.repo.unannounced(utcnow() + FAR, 100) == []
    await reannounced(deps, broker, deps.announce_grace_seconds + 60)
    assert len(broker.published) == 2


async def test_an_announcement_the_broker_did_not_confirm_leaves_the_versions_owed(deps, trust, make_record):
    [work] = await principal_work(deps, trust, make_record, 2)
    with pytest.raises(ConnectionError):
        await handlers.announced(deps, Broker(failing=True), await handlers.sign_chunk(work, deps))
    owed = await deps.repo.unannounced(utcnow() + FAR, 100)
    assert sorted(o.key for o in owed) == [("rec-0000", 1), ("rec-0001", 1)]
    assert {o.batch_id for o in owed} == {work.batch_id}


async def test_a_homeroom_teachers_signature_completes_nothing_and_owes_nothing(deps, trust, make_record):
    await homeroom_signed(deps, trust, make_record, 6)
    assert await deps.repo.unannounced(utcnow() + FAR, 100) == []


async def test_owed_versions_are_announced_a_chunk_at_a_time_until_none_is_left(deps, trust, make_record):
    works = await principal_work(deps, trust, make_record, 25)
    for work in works:
        await handlers.sign_chunk(work, deps)  # none announced
    broker = Broker()
    steps = [await reannounced(deps, broker, deps.announce_grace_seconds + 1) for _ in range(4)]
    assert [s.again for s in steps] == [True, True, False, False]
    assert [len(m.records) for m in broker.published] == [10, 10, 5]
    announced = [(s.record.record_id, s.record.version) for m in broker.published for s in m.records]
    assert sorted(announced) == [(f"rec-{n:04d}", 1) for n in range(25)]
