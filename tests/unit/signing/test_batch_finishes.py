"""A signing batch always finishes by itself: a chunk dead-lettered (or held by nothing that finishes it) is published
again once its batch has not moved for a grace; a second click takes up what an earlier batch left, at once, and owes
the archive every completed version not known to have reached it; doing a chunk twice signs nothing twice."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from services.signing import domain, handlers
from services.signing.domain import COMPLETED, OPEN
from shared.contracts.signing import BatchCompleted, ChunkSigned, RecordsCompleted, SignWork
from shared.outcome import Outcome
from tests.support import Broker

from .test_signing_handlers import (
    T0,
    content,
    homeroom_request,
    plan,
    principal_request,
    received,
    sample,
    signature_count,
)
from .trust import SCHOOL, YEAR

RECORDS = 25  # three chunks of up to 10


def at(deps, seconds: float):
    """signing's dependencies with its clock `seconds` after the plans were made (T0)."""
    moment = T0 + timedelta(seconds=seconds)
    return replace(deps, clock=lambda: moment)


async def redriven(deps, seconds: float) -> list:
    """What one step of the re-driving loop publishes, `seconds` after T0."""
    return list((await handlers.redrive(at(deps, seconds))).publish)


def work_of(planned: Outcome) -> list[SignWork]:
    return [w for w in planned.publish if isinstance(w, SignWork)]


async def counted(deps, signed: Outcome) -> list:
    """The chunk counted, as the workers count what they signed: what counting published."""
    out: list = []
    for message in signed.publish:
        if isinstance(message, ChunkSigned):
            out += (await handlers.count_chunk(message, deps)).publish
    return out


async def done(deps, work: SignWork) -> tuple[Outcome, list]:
    """A chunk signed and counted: what signing published, and what counting did."""
    signed = await handlers.sign_chunk(work, deps)
    return signed, await counted(deps, signed)


async def school_work(deps, trust) -> list[SignWork]:
    """`RECORDS` records signed by their homeroom teachers (every batch finished), then the principal's click: its
    chunks, not signed yet."""
    await received(deps, trust, RECORDS)
    for class_name in ("6A1", "6A2"):
        for work in work_of(await plan(deps, homeroom_request(trust, class_name))):
            await done(at(deps, 1), work)
    return work_of(await plan(deps, principal_request(trust)))


def ended(messages) -> list[BatchCompleted]:
    return [m for m in messages if isinstance(m, BatchCompleted)]


async def test_a_batch_whose_chunk_was_dead_lettered_has_it_published_again_after_the_grace(deps, registry, trust):
    """Reproduction (the worker-kill drill): a chunk dead-lettered left its batch at 2 of 3 chunks for good."""
    works = await school_work(deps, trust)
    assert len(works) == 3
    await done(at(deps, 10), works[0])
    await done(at(deps, 10), works[2])  # works[1] was dead-lettered: nobody will hand it to a worker again
    grace = deps.redrive_grace_seconds

    assert await redriven(deps, 10 + grace - 1) == [], "it may still be on its way"
    step = await handlers.redrive(at(deps, 10 + grace + 1))
    assert content(step.publish) == content([works[1]]), (
        "the unfinished chunk as its plan published it: same id, same records"
    )
    assert await redriven(deps, 10 + grace + 1) == [], "one process takes the batch"
    assert content(await redriven(deps, 11 + 2 * grace)) == content([works[1]]), "not moved since: again"

    _, closing = await done(at(deps, 11 + 2 * grace + 5), works[1])
    [end] = ended(closing)
    assert (end.records_signed, end.records_total, end.records_completed) == (RECORDS, RECORDS, RECORDS)
    assert (await deps.repo.batch(works[1].batch_id)).status == COMPLETED
    assert await redriven(deps, 10 + 10 * grace) == [], "a finished batch is left alone"
    assert sample(registry, "hocba_signing_chunks_redriven_total") == 2


async def test_a_chunk_dead_lettered_after_its_signatures_were_stored_signs_nothing_twice(deps, registry, trust):
    works = await school_work(deps, trust)
    for work in (works[0], works[2]):
        await done(at(deps, 10), work)
    first = await handlers.sign_chunk(works[1], at(deps, 10))
    # ...stored, announced, then dead-lettered before it was counted.
    signed = sample(registry, "hocba_records_signed_total", {"role": "principal"})
    assert signed == RECORDS

    [again] = await redriven(deps, 10 + deps.redrive_grace_seconds + 1)
    second, closing = await done(at(deps, 200), again)
    assert sample(registry, "hocba_records_signed_total", {"role": "principal"}) == RECORDS, "no signature made twice"
    assert await signature_count(deps.repo, RECORDS) == RECORDS * 3, "one signature a record, version and role"
    [told_first] = [m for m in first.publish if isinstance(m, RecordsCompleted)]
    [told_again] = [m for m in second.publish if isinstance(m, RecordsCompleted)]
    assert told_again.records == told_first.records, "announced again as stored: the archive keeps them once"
    assert len(ended(closing)) == 1


async def test_the_repository_refuses_a_second_signature_of_a_role_on_a_version(deps, trust):
    works = await school_work(deps, trust)
    await handlers.sign_chunk(works[0], at(deps, 10))
    keys = [(k.record_id, k.version) for k in works[0].records]
    kept = await deps.repo.signatures(keys)
    later = T0 + timedelta(hours=1)
    remade = [kept[key]["principal"].model_copy(update={"signed_at": later, "jws": "other"}) for key in keys]
    assert await deps.repo.add_signatures([(s, SCHOOL, YEAR) for s in remade], works[0].batch_id) == 0
    assert await deps.repo.signatures(keys) == kept


async def test_a_batch_whose_chunks_were_all_counted_but_which_was_never_closed_is_closed(deps, trust):
    works = await school_work(deps, trust)
    for work in works:
        signed = await handlers.sign_chunk(work, at(deps, 10))
        [chunk] = [m for m in signed.publish if isinstance(m, ChunkSigned)]
        # Counted, and the counting worker stopped before it closed the batch.
        await deps.repo.count_chunk(chunk.batch_id, chunk.chunk_no, chunk.signed, chunk.completed, T0)
    assert (await deps.repo.batch(works[0].batch_id)).status == OPEN
    [end] = await redriven(deps, deps.redrive_grace_seconds + 1)
    assert isinstance(end, BatchCompleted) and end.batch_id == works[0].batch_id
    assert (await deps.repo.batch(works[0].batch_id)).status == COMPLETED


async def test_a_second_click_takes_up_the_unfinished_batch_at_once(deps, trust):
    """Reproduction (the worker-kill drill): a second click planned nothing, as the records it would plan carried the
    principal's signature, and left the first batch at 96 of 100 chunks."""
    works = await school_work(deps, trust)
    await done(at(deps, 10), works[0])
    await handlers.sign_chunk(works[1], at(deps, 10))  # signed, never counted: dead-lettered
    await done(at(deps, 10), works[2])

    click = await handlers.plan_batch(principal_request(trust), at(deps, 20))  # no grace waited
    assert content(work_of(click)) == content([works[1]]), "the first batch's unfinished chunk, as it was"
    [empty] = ended(click.publish)
    assert empty.records_total == 0, "the new click itself finds nothing left to sign"
    _, closing = await done(at(deps, 25), works[1])
    [end] = ended(closing)
    assert end.batch_id == works[1].batch_id and end.records_signed == RECORDS


async def test_a_homeroom_teachers_click_takes_up_only_their_class(deps, trust):
    await received(deps, trust, RECORDS)
    [first, *_] = work_of(await plan(deps, homeroom_request(trust, "6A1")))
    others = work_of(await plan(deps, homeroom_request(trust, "6A2")))
    again = await handlers.plan_batch(homeroom_request(trust, "6A1"), at(deps, 5))
    resumed = [w for w in work_of(again) if w.batch_id in {first.batch_id, others[0].batch_id}]
    assert resumed and {w.batch_id for w in resumed} == {first.batch_id}


async def test_a_second_click_owes_the_archive_the_completed_versions_not_known_to_have_reached_it(deps, trust):
    """Reproduction (the worker-kill drill): 400 records signed by all three roles were never archived, and a second
    click did not announce them; among them versions completed before announcements were kept, which nothing owed."""
    works = await school_work(deps, trust)
    broker = Broker()
    for work in works[:2]:
        signed, _ = await done(at(deps, 10), work)
        await handlers.announced(deps, broker, signed)  # announced and kept announced
    legacy = await handlers.sign_chunk(works[2], at(deps, 10))
    [lost] = [m for m in legacy.publish if isinstance(m, RecordsCompleted)]
    deps.repo.owed.clear()  # completed before announcements were kept: nothing says whether they were
    assert await handlers.reannounce(at(deps, 10 * deps.announce_grace_seconds)) == handlers.NOTHING

    await handlers.plan_batch(principal_request(trust), at(deps, 30))
    broker.published.clear()
    await handlers.announcing(handlers.reannounce, at(deps, 31), broker)
    [again] = broker.published
    assert isinstance(again, RecordsCompleted)
    assert again.records == lost.records, "the versions not known announced, and only those"
    await handlers.announcing(handlers.reannounce, at(deps, 10 * deps.announce_grace_seconds), broker)
    assert broker.published == [again], "announced once"


def test_only_an_open_batch_that_has_not_moved_since_the_grace_is_stalled():
    start = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)
    batch = domain.Batch("b", "s", "y", "principal", (), start, 3, 30, done_chunks=frozenset({0, 2}))
    assert batch.unfinished_chunks == (1,)
    assert batch.stalled(start) and not batch.stalled(start - timedelta(seconds=1))
    moved = replace(batch, progressed_at=start + timedelta(minutes=5))
    assert not moved.stalled(start + timedelta(minutes=4)) and moved.stalled(start + timedelta(minutes=5))
    assert not replace(batch, status=COMPLETED).stalled(start + timedelta(days=1))


async def test_a_batch_a_revoked_certificate_stopped_is_not_published_again(repo, metrics, own_trust):
    deps = own_trust.deps(repo, metrics)
    await received(deps, own_trust, 10)
    works = work_of(await plan(deps, homeroom_request(own_trust, "6A1"), per_chunk=2))
    await done(at(deps, 1), works[0])
    own_trust.pki.revoke("gvcn-79000701-6A1", at=datetime.now(UTC) - timedelta(seconds=1))
    assert (await handlers.sign_chunk(works[1], deps)).refused.reason == "certificate-revoked"
    assert (await deps.repo.batch(works[0].batch_id)).status == domain.REFUSED
    assert await redriven(deps, 10 * deps.redrive_grace_seconds) == [], "refused again and again otherwise"


async def test_nothing_is_published_again_while_chunks_wait_in_the_work_queue(deps, trust):
    """A batch queued behind others does not move either: publishing its chunks again would only queue them twice."""
    works = await school_work(deps, trust)
    waiting = [len(works)]

    async def work_waiting() -> int:
        return waiting[0]

    queued = replace(deps, work_waiting=work_waiting)
    assert await redriven(queued, 10 * deps.redrive_grace_seconds) == []
    waiting[0] = 0
    assert content(await redriven(queued, 10 * deps.redrive_grace_seconds)) == content(works)
