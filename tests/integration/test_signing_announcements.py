"""On the MongoDB-wire server: a record version completed by a chunk whose announcement was never published
(signing stopped between storing the seal and publishing) is found by signing and announced again, once; the look-up
is one index range with a limit, however many signatures are held."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry

from services.signing import handlers
from services.signing.metrics import SigningMetrics
from services.signing.repository import INDEXES, SIGNATURES, MongoSigningRepository
from shared.contracts.base import Message, utcnow
from shared.contracts.signing import RecordsCompleted, SignWork
from shared.crypto.vault import Vault
from tests.integration.commands import watched_database
from tests.unit.signing.test_announcements import Broker, later
from tests.unit.signing.test_signing_handlers import homeroom_signed, plan, principal_request
from tests.unit.signing.trust import make_trust


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return make_trust(tmp_path_factory.mktemp("signing-announcements"))


@pytest.fixture
async def watched(mongo_url, settings):
    """signing's database in this test's namespace, through a client whose commands are counted."""
    async with watched_database(mongo_url, settings.names().database("signing"), INDEXES) as watched:
        yield watched


@pytest.fixture
def deps(watched, trust):
    db, _ = watched
    return trust.deps(MongoSigningRepository(db, Vault.ephemeral()), SigningMetrics(CollectorRegistry()))


async def principal_work(deps, trust, count: int) -> list[SignWork]:
    await homeroom_signed(deps, trust, trust.record, count)
    return [w for w in (await plan(deps, principal_request(trust))).publish if isinstance(w, SignWork)]


def completed_in(messages: Sequence[Message]) -> list[RecordsCompleted]:
    return [m for m in messages if isinstance(m, RecordsCompleted)]


async def test_a_crash_between_storing_the_seal_and_announcing_is_announced_again_once(deps, trust):
    [work] = await principal_work(deps, trust, 6)
    [never_published] = completed_in((await handlers.sign_chunk(work, deps)).publish)

    broker = Broker()
    grace = deps.announce_grace_seconds
    await handlers.announcing(handlers.reannounce, later(deps, grace - 5), broker)
    assert broker.published == [], "a chunk may still be announcing its own"
    await handlers.announcing(handlers.reannounce, later(deps, grace + 1), broker)
    await handlers.announcing(handlers.reannounce, later(deps, grace + 60), broker)
    [again] = broker.published
    assert isinstance(again, RecordsCompleted)
    assert (again.records, again.batch_id) == (never_published.records, never_published.batch_id)


async def test_a_chunk_announced_as_usual_leaves_nothing_owed(deps, trust):
    works = await principal_work(deps, trust, 14)
    broker = Broker()
    for work in works:
        await handlers.announced(deps, broker, await handlers.sign_chunk(work, deps))
    assert [len(m.records) for m in completed_in(broker.published)] == [10, 4]
    assert await deps.repo.unannounced(utcnow() + timedelta(days=1), 100) == []


async def test_versions_owed_an_announcement_are_one_index_range_with_a_limit(watched, deps, trust):
    """signing looks every few seconds for completed versions a crash left unannounced, among every signature."""
    _, commands = watched
    for work in await principal_work(deps, trust, 20):
        await handlers.sign_chunk(work, deps)  # none announced

    with commands.counted():
        owed = await deps.repo.unannounced(utcnow() + timedelta(days=1), 10)
        await deps.repo.announced([o.key for o in owed])

    assert len(owed) == 10
    [(find, looked), (update, marked)] = [(n, body) for n, body in commands.asked if body.get(n) == SIGNATURES]
    assert (find, set(looked["filter"]), looked["limit"]) == ("find", {"unannounced_ts"}, 10)
    assert ("unannounced_ts", 1) in [
        k for i in INDEXES if i.collection == SIGNATURES and len(i.keys) == 1 for k in i.keys
    ]
    assert update == "update" and all(set(u["q"]) == {"_id"} for u in marked["updates"])
    assert len(await deps.repo.unannounced(utcnow() + timedelta(days=1), 100)) == 10, "the other ten still owed"
