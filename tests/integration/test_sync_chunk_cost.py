"""What sync asks of the MongoDB-wire server for one chunk of archived records, and for one round of its relay: the
same few commands whatever the number of records (the ministry takes them in batches over HTTP)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import httpx
import pytest
from prometheus_client import CollectorRegistry

from hocba.ministry_simulator import ReceiptStore, create_app
from services.sync import handlers
from services.sync.domain import DELIVERED, PENDING, DeliveryPolicy
from services.sync.handlers import Deps
from services.sync.metrics import SyncMetrics
from services.sync.ministry import Ministry
from services.sync.repository import INDEXES, MongoOutboxRepository
from shared.contracts.keys import SyncKeyRotationProgress
from shared.contracts.sync import RetryOutcome, RetryParked
from shared.crypto.vault import Vault
from tests.integration.commands import LARGE_CHUNK, Commands, emptied, watched_database
from tests.support import idle_rotation
from tests.unit.sync.conftest import ISSUER, MINISTRY_URL, OPERATOR, Clock, archived, delivered_ids
from tests.unit.sync.sealed import trust

POLICY = DeliveryPolicy(max_attempts=4, base_seconds=2.0, cap_seconds=60.0, lease_seconds=30.0)


@pytest.fixture
async def watched(mongo_url, settings):
    """sync's database in this test's namespace, through a client whose commands are counted."""
    async with watched_database(mongo_url, settings.names().database("sync"), INDEXES) as watched:
        yield watched


@asynccontextmanager
async def ministry(store: ReceiptStore, batch_size: int) -> AsyncIterator[Ministry]:
    """The ministry simulator in-process over `store`, taking `batch_size` entries a request."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(store))) as client:
        yield Ministry(MINISTRY_URL, concurrency=4, client=client, batch_size=batch_size)


@asynccontextmanager
async def sync_over(db, batch_size: int, per_step: int) -> AsyncIterator[tuple[Deps, ReceiptStore, Clock]]:
    """sync's dependencies over its MongoDB outbox, with the ministry simulator in-process taking `batch_size`
    entries a request, and the relay delivering up to `per_step` entries a round; the simulator's store and the
    clock beside them. The outbox's running counts are restored first, as at start."""
    store, clock, registry = ReceiptStore(), Clock(), CollectorRegistry()
    async with ministry(store, batch_size) as taking:
        deps = Deps(
            repo=MongoOutboxRepository(db, Vault.ephemeral()),
            ministry=taking,
            metrics=SyncMetrics(registry),
            issuer_keys=ISSUER.public_keys("sync"),
            trust=trust,
            deliveries_per_step=per_step,
            rotation=idle_rotation(SyncKeyRotationProgress, ISSUER.public_keys("sync"), registry),
            policy=POLICY,
            clock=clock,
            jitter=lambda: 0.0,
        )
        await handlers.restore_gauges(deps)
        yield deps, store, clock


def requests_for(k: int, batch_size: int) -> int:
    """How many batch requests k entries take, `batch_size` a request."""
    return -(-k // batch_size)


async def chunk_commands(db, commands: Commands, k: int, batch_size: int) -> Counter[str]:
    """The commands taking one RecordsArchived chunk of k versions into the outbox sends, delivery included."""
    async with sync_over(db, batch_size, per_step=k) as (deps, store, _):
        with commands.counted() as sent:
            outcome = await handlers.accept_archived(archived(k), deps)
    assert len(delivered_ids(outcome)) == k and len(store.receipts) == k
    assert store.batches == requests_for(k, batch_size)
    return sent


async def relay_round_commands(db, commands: Commands, k: int, batch_size: int) -> Counter[str]:
    """The commands one round of the relay sends to deliver k due entries: taken in while the ministry was failing,
    and due again a minute later."""
    async with sync_over(db, batch_size, per_step=k) as (deps, store, clock):
        store.faults.fail_next = k
        taken_in = await handlers.accept_archived(archived(k), deps)
        assert delivered_ids(taken_in) == [] and not store.receipts
        assert {e.status for e in (await deps.repo.entries(archived_keys(k))).values()} == {PENDING}
        clock.advance(60)
        with commands.counted() as sent:
            outcome = await handlers.deliver_due(deps)
    assert len(delivered_ids(outcome)) == k and len(store.receipts) == k
    assert {e.status for e in (await deps.repo.entries(archived_keys(k))).values()} == {DELIVERED}
    return sent


async def resend_round_commands(db, commands: Commands, k: int, batch_size: int) -> Counter[str]:
    """The commands one round of the relay sends to deliver again k entries an operator handed back after the
    ministry lost them: its new receipts replace those kept."""
    async with sync_over(db, batch_size, per_step=k) as (deps, store, clock):
        await handlers.accept_archived(archived(k), deps)
        first = await deps.repo.receipt_ids(archived_keys(k))
        resumed = await handlers.retry_parked(OPERATOR.signs(RetryParked(keys=archived_keys(k))), deps)
        assert isinstance(resumed.reply, RetryOutcome) and resumed.reply.resumed == k
        clock.advance(1)
        async with ministry(ReceiptStore(), batch_size) as afresh:
            with commands.counted() as sent:
                outcome = await handlers.deliver_due(replace(deps, ministry=afresh))
        again = await deps.repo.receipt_ids(archived_keys(k))
    assert len(delivered_ids(outcome)) == k and len(store.receipts) == k
    assert set(again) == set(first) and not set(again.values()) & set(first.values()), "every receipt is the new one"
    return sent


def archived_keys(k: int) -> list[str]:
    """The outbox keys of the k record versions `archived(k)` announces."""
    return [f"{r.record_id}:{r.version}" for r in archived(k).records]


async def test_taking_a_chunk_into_the_outbox_sends_the_same_commands_whatever_its_size(watched, settings):
    """One insert of the entries and one move of the running counts; one claim of them (an update and a read in one
    reply), the ministry's answers recorded (one update, one read of the delivered, one insert of the receipts, one
    move of the counts), the gauges read (two finds): for 120 record versions as for 10."""
    db, commands = watched
    batch = settings.ministry_batch_size
    small = await chunk_commands(db, commands, 10, batch)
    await emptied(db, INDEXES)
    large = await chunk_commands(db, commands, LARGE_CHUNK, batch)
    assert small == large == {"insert": 2, "update": 4, "find": 4}


async def test_a_relay_round_sends_the_same_commands_whatever_the_number_of_due_entries(watched, settings):
    """One read of the due entries (in one reply), then the same claim, answers and gauges as a chunk's delivery:
    for 120 due entries as for 10, sent in batches of `ministry_batch_size`."""
    db, commands = watched
    batch = settings.ministry_batch_size
    small = await relay_round_commands(db, commands, 10, batch)
    await emptied(db, INDEXES)
    large = await relay_round_commands(db, commands, LARGE_CHUNK, batch)
    assert small == large == {"insert": 1, "update": 3, "find": 5}


async def test_the_database_commands_do_not_depend_on_how_many_entries_a_ministry_request_carries(watched):
    """Batches of 10 or of 100: the same database commands for one round of 120 due entries."""
    db, commands = watched
    by_ten = await relay_round_commands(db, commands, LARGE_CHUNK, 10)
    await emptied(db, INDEXES)
    by_hundred = await relay_round_commands(db, commands, LARGE_CHUNK, 100)
    assert by_ten == by_hundred


async def test_a_round_delivering_again_what_the_ministry_lost_replaces_the_receipts_at_once(watched, settings):
    """Entries an operator sends again come back with new receipts, which replace the kept ones in one write: the
    same commands for 120 entries as for 10 (a look at the receipts kept, after the insert finds them there, and
    one replacement of them)."""
    db, commands = watched
    batch = settings.ministry_batch_size
    small = await resend_round_commands(db, commands, 10, batch)
    await emptied(db, INDEXES)
    large = await resend_round_commands(db, commands, LARGE_CHUNK, batch)
    assert small == large == {"insert": 1, "update": 4, "find": 6}


async def announcing_commands(db, commands: Commands, k: int, batch_size: int) -> tuple[Counter[str], Counter[str]]:
    """The commands announcing one chunk's k deliveries sends (kept announced once published, a look for any left
    unannounced finding none); and those of one round finishing k deliveries a crash left with neither receipt
    documents nor announcement."""
    async with sync_over(db, batch_size, per_step=k) as (deps, _, clock):
        published: list = []

        async def publish(messages) -> None:
            published.extend(messages)

        delivered = await handlers.accept_archived(archived(k), deps)
        with commands.counted() as announcing:
            await handlers.announced(deps, publish, delivered)
            clock.advance(POLICY.announce_grace_seconds + 1)
            assert not (await handlers.reannounce(deps)).publish

        left = await handlers.accept_archived(archived(k, school="79000702"), deps)
        await db["receipts"].delete_many({"subject": {"$in": delivered_ids(left)}})
        clock.advance(POLICY.announce_grace_seconds + 1)
        with commands.counted() as finishing:
            await handlers.announcing(handlers.reannounce, deps, publish)
    assert len(published) == 2 and [len(m.deliveries) for m in published] == [k, k]
    return announcing, finishing


async def test_announcing_deliveries_and_finishing_those_a_crash_left_send_the_same_commands_whatever_their_number(
    watched, settings
):
    """Kept announced in one update, after a look (one find) that finds none; a crash's leftovers found (one find),
    their receipts kept (one insert) and kept announced (one update): for 120 deliveries as for 10."""
    db, commands = watched
    batch = settings.ministry_batch_size
    small = await announcing_commands(db, commands, 10, batch)
    await emptied(db, INDEXES)
    large = await announcing_commands(db, commands, LARGE_CHUNK, batch)
    assert small == large == ({"update": 1, "find": 1}, {"find": 1, "insert": 1, "update": 1})
