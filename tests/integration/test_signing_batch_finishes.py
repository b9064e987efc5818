"""A signing batch always finishes, on real RabbitMQ and the MongoDB-wire server: chunks held by consumers that stop
are handed out again, never dead-lettered for it; a chunk dead-lettered anyway is published again by signing itself;
a second click takes up what was left and owes the archive what may not have reached it; the archive keeps a version
announced twice once."""

from __future__ import annotations

import asyncio
import contextlib

import aio_pika
import pytest
from prometheus_client import CollectorRegistry

from services.archive import handlers as archive
from services.archive.repository import INDEXES as ARCHIVE_INDEXES
from services.archive.repository import MongoArchiveRepository
from services.signing import handlers
from services.signing.app import build_app
from services.signing.metrics import SigningMetrics
from services.signing.repository import INDEXES, SIGNATURES, MongoSigningRepository
from shared.contracts.archive import RecordsArchived
from shared.contracts.base import derived_id
from shared.contracts.signing import BatchCompleted, RecordsCompleted, SignWork
from shared.crypto.vault import Vault
from shared.messaging import Bus
from tests.integration.conftest import service_database
from tests.support import Broker, collect, depth, probing, running
from tests.unit.archive.conftest import archive_deps
from tests.unit.signing.test_batch_finishes import RECORDS, at, done, ended, redriven, school_work
from tests.unit.signing.test_signing_handlers import principal_request, signature_count
from tests.unit.signing.trust import SCHOOL, YEAR, make_trust, signed_record


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return make_trust(tmp_path_factory.mktemp("signing-batch-finishes"))


@pytest.fixture
async def deps(mongo_client, settings, trust):
    """signing's use cases in this process, on the service's own database and key ring."""
    db = await service_database(mongo_client, settings, "signing", INDEXES)
    repo = MongoSigningRepository(db, Vault.for_service(settings, "signing"))
    return trust.deps(repo, SigningMetrics(CollectorRegistry()))


async def held_then_dropped(url: str, queue: str, count: int, rounds: int) -> list[int]:
    """`rounds` times, a consumer takes the `count` messages of `queue` (prefetched, unacknowledged) and stops holding
    them (its channel closes, as when its process is killed): each time the broker hands them all back. Returns the
    returns counted on the messages (`x-delivery-count`) at each round."""
    seen: list[int] = []
    connection = await aio_pika.connect(url)
    async with connection:
        for _ in range(rounds):
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=count)
            declared = await channel.declare_queue(queue, passive=True)
            held: list[aio_pika.abc.AbstractIncomingMessage] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10), declared.iterator() as messages:
                    async for message in messages:
                        held.append(message)
                        if len(held) == count:
                            break
            await channel.close()
            if len(held) < count:  # the broker no longer hands them all out
                break
            seen.append(max(int(m.headers.get("x-delivery-count", 0)) for m in held))
    return seen


async def test_chunks_held_by_consumers_that_stop_are_not_dead_lettered_and_the_batch_finishes(
    mongo_client, settings, trust, deps
):
    """Reproduction (the worker-kill drill): each killed worker handed back the chunks it had prefetched, the quorum
    queue counted every return against the delivery limit meant for messages that fail, and dead-lettered chunks
    that had never failed; the batch stayed at 96 of 100 chunks."""
    works = await school_work(deps, trust)
    service = build_app(
        settings, mongo=mongo_client, signers=trust.checked_signers(), issuer_keys=trust.issuer.public_keys()
    )
    await service.bus.declare_topology()
    queue = service.topology.queue_name(SignWork.ROUTING_KEY)
    sender = Bus(settings, "signing-test-sender")
    await sender.broker.connect()
    try:
        await sender.publish_all(works)
    finally:
        await sender.broker.stop()
    looking = Bus(settings, "signing")  # signing's queues, as a worker's re-driving loop looks at them
    await looking.broker.connect()
    try:
        assert await looking.waiting(SignWork) == len(works), "what the re-driving loop waits for"
    finally:
        await looking.broker.stop()

    stops = settings.delivery_limit + 2
    returns = await held_then_dropped(settings.amqp_url, queue, len(works), stops)
    assert returns == list(range(stops)), "every stop handed every chunk back"
    assert await depth(settings.amqp_url, f"{queue}.dlq") == 0, "no chunk dead-lettered for being handed back"
    assert await depth(settings.amqp_url, queue) == len(works)

    async with probing(settings, BatchCompleted, RecordsCompleted) as probes, running(service):
        finished = await collect(settings.amqp_url, probes[BatchCompleted.ROUTING_KEY], BatchCompleted, bool)
        assert await depth(settings.amqp_url, f"{queue}.dlq") == 0
    [end] = [b for b in finished if b.batch_id == works[0].batch_id]
    assert (end.records_signed, end.records_total, end.records_completed) == (RECORDS, RECORDS, RECORDS)
    assert await signature_count(deps.repo, RECORDS) == RECORDS * 3, "each record signed once per role"
    dead = service.registry.get_sample_value(
        "hocba_messages_dead_lettered_total", {"queue": queue, "reason": "retries-exhausted"}
    )
    assert dead == 0


async def test_a_dead_lettered_chunk_is_published_again_once_and_its_batch_finishes(deps, trust):
    works = await school_work(deps, trust)
    await done(at(deps, 10), works[0])
    await done(at(deps, 10), works[2])
    grace = deps.redrive_grace_seconds
    assert await redriven(deps, 10 + grace - 1) == []
    [again] = await redriven(deps, 11 + grace)
    assert (again.message_id, again.chunk_no) == (works[1].message_id, 1)
    assert await redriven(deps, 11 + grace) == [], "another worker's loop finds it taken"
    _, closing = await done(at(deps, 20 + grace), again)
    assert [e.records_signed for e in ended(closing)] == [RECORDS]
    assert await deps.repo.open_batches() == []


async def test_a_second_click_owes_versions_completed_before_announcements_were_kept(
    mongo_client, settings, deps, trust
):
    """Reproduction (the worker-kill drill): versions signed by every role before signing kept what it owed the
    archive carry no mark at all; a second click neither announced them nor anything else."""
    works = await school_work(deps, trust)
    broker = Broker()
    for work in works[:2]:
        signed, _ = await done(at(deps, 10), work)
        await handlers.announced(deps, broker, signed)
    await handlers.sign_chunk(works[2], at(deps, 10))
    lost = [f"{k.record_id}:{k.version}:school_seal" for k in works[2].records]
    db = mongo_client[settings.names().database("signing")]
    await db[SIGNATURES].update_many({"_id": {"$in": lost}}, {"$unset": {"unannounced_ts": "", "batch_id": ""}})
    assert await deps.repo.unannounced(at(deps, 3600).clock(), 100) == []

    await handlers.plan_batch(principal_request(trust), at(deps, 30))
    broker.published.clear()
    await handlers.announcing(handlers.reannounce, at(deps, 31), broker)
    [again] = broker.published
    assert isinstance(again, RecordsCompleted)
    assert sorted(s.record.record_id for s in again.records) == sorted(k.record_id for k in works[2].records)
    assert await deps.repo.completed_not_known_announced(SCHOOL, YEAR) == []


async def test_the_archive_keeps_a_version_announced_again_under_another_message_id_once(mongo_client, settings, trust):
    db = await service_database(mongo_client, settings, "archive", ARCHIVE_INDEXES)
    deps = archive_deps(trust, MongoArchiveRepository(db, Vault.ephemeral()))
    versions = [signed_record(trust, n) for n in range(4)]
    first = RecordsCompleted(records=versions, batch_id="b1")
    again = RecordsCompleted(message_id=derived_id("signing.reannounce", "again"), records=versions[1:], batch_id="b1")
    [told] = (await archive.archive_records(first, deps)).publish
    [retold] = (await archive.archive_records(again, deps)).publish
    assert isinstance(told, RecordsArchived) and isinstance(retold, RecordsArchived)
    assert await db["log"].count_documents({}) == 4, "nothing appended twice"
    placed = {r.record_id: r.seq for r in told.records}
    assert {r.record_id: r.seq for r in retold.records} == {rid: placed[rid] for rid in placed if rid != "rec-0000"}
