"""On the MongoDB-wire server: versions archived and a checkpoint stored whose announcement was never published (the
archive stopped, or lost the broker, between the writes and the publish) are found by the archive and announced
again, once; a normal run leaves nothing owed; what is owed is looked up by one index range, however large the log."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.archive import handlers
from services.archive.handlers import Deps
from services.archive.repository import CHECKPOINTS, INDEXES, LOG, RECORDS, MongoArchiveRepository
from shared.contracts.archive import CheckpointIssued, RecordsArchived
from shared.contracts.signing import RecordsCompleted
from shared.crypto.seal import archived_claims, seal_problems
from shared.crypto.vault import Vault
from tests.integration.commands import watched_database
from tests.support import Broker
from tests.unit.archive.conftest import archive_deps
from tests.unit.signing.trust import make_trust, signed_record

#: Well past the grace after which an owed announcement is made again.
LATER = timedelta(minutes=2)


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return make_trust(tmp_path_factory.mktemp("archive-announcements"))


@pytest.fixture
async def watched(mongo_url, settings):
    """archive's database in this test's namespace, through a client whose commands are counted."""
    async with watched_database(mongo_url, settings.names().database("archive"), INDEXES) as watched:
        yield watched


@pytest.fixture
def deps(watched, trust) -> Deps:
    db, _ = watched
    return archive_deps(
        trust, MongoArchiveRepository(db, Vault.ephemeral()), at=datetime.now(UTC).replace(microsecond=0)
    )


def chunk(trust, numbers: range) -> RecordsCompleted:
    return RecordsCompleted(records=[signed_record(trust, n) for n in numbers], batch_id="b1")


def later(deps: Deps) -> Deps:
    """The same archive, its clock past the grace."""
    at = deps.clock() + LATER
    return replace(deps, clock=lambda: at)


async def owed(deps: Deps) -> tuple[list[tuple[str, int]], list[int]]:
    """The versions and the checkpoints' tree sizes still owed an announcement, past the grace."""
    moment = later(deps).clock()
    entries = await deps.repo.unannounced(moment, 1000)
    checkpoints = await deps.repo.unannounced_checkpoints(moment, 1000)
    return [e.key for e in entries], [c.tree_size for c in checkpoints]


async def test_versions_and_a_checkpoint_never_announced_are_announced_again_once(deps, trust):
    archived = await handlers.archive_records(chunk(trust, range(3)), deps)
    with pytest.raises(ConnectionError):
        await handlers.announced(deps, Broker(failing=True), archived)
    with pytest.raises(ConnectionError):
        await handlers.announcing(handlers.scheduled_checkpoint, deps, Broker(failing=True))
    assert await owed(deps) == ([("rec-0000", 1), ("rec-0001", 1), ("rec-0002", 1)], [3])

    broker = Broker()
    await handlers.announcing(handlers.reannounce, later(deps), broker)
    await handlers.announcing(handlers.reannounce, later(later(deps)), broker)

    again, checkpoint = broker.published
    assert isinstance(again, RecordsArchived) and isinstance(checkpoint, CheckpointIssued)
    [lost] = archived.publish
    assert isinstance(lost, RecordsArchived)
    assert again.records == lost.records, "the same versions, places, digests and contents, read from the log"
    assert (
        seal_problems(again.seal, archived_claims(again.records), trust.pki.trust_store(), "archive", deps.clock())
        == []
    )
    assert checkpoint.checkpoint == (await deps.repo.checkpoints())[0]
    assert await owed(deps) == ([], [])


class StopsBeforeKeepingOnce(MongoArchiveRepository):
    """archive's repository whose first keeping of versions announced fails: the archive stopped after publishing."""

    stopped = False

    async def announced(self, keys) -> None:
        if not self.stopped:
            self.stopped = True
            raise ConnectionError("the archive stopped before it kept the versions announced")
        await super().announced(keys)


async def test_an_archive_stopped_after_publishing_before_keeping_it_announces_again_once(watched, deps, trust):
    """Announced twice is harmless (sync takes a version into its outbox once); never announced is not."""
    db, _ = watched
    deps = replace(deps, repo=StopsBeforeKeepingOnce(db, Vault.ephemeral()))
    first = Broker()
    with pytest.raises(ConnectionError):
        await handlers.announced(deps, first, await handlers.archive_records(chunk(trust, range(2)), deps))

    broker = Broker()
    await handlers.announcing(handlers.reannounce, later(deps), broker)
    await handlers.announcing(handlers.reannounce, later(deps), broker)
    assert [[r.seq for r in m.records] for m in first.published + broker.published] == [[0, 1], [0, 1]]
    assert await owed(deps) == ([], [])


async def test_a_normal_run_leaves_nothing_owed(deps, trust):
    broker = Broker()
    await handlers.announced(deps, broker, await handlers.archive_records(chunk(trust, range(3)), deps))
    await handlers.announcing(handlers.scheduled_checkpoint, deps, broker)

    assert [type(m).__name__ for m in broker.published] == ["RecordsArchived", "CheckpointIssued"]
    assert await owed(deps) == ([], [])
    assert not (await handlers.reannounce(later(deps))).publish


async def test_what_is_owed_is_one_index_range_not_a_look_through_the_log(watched, deps, trust):
    """The archive looks every few seconds for announcements a crash left owed, among every archived version."""
    _, commands = watched
    for numbers in (range(0, 12), range(12, 20)):
        archived = await handlers.archive_records(chunk(trust, numbers), deps)
        if numbers.start:
            await handlers.announced(deps, Broker(), archived)
    with pytest.raises(ConnectionError):
        await handlers.announcing(handlers.scheduled_checkpoint, deps, Broker(failing=True))

    with commands.counted():
        outcome = await handlers.announcing(handlers.reannounce, replace(later(deps), announced_per_step=10), Broker())
    assert outcome.again

    indexed = {
        index.keys[0][0] for index in INDEXES if len(index.keys) == 1 and index.collection in (RECORDS, CHECKPOINTS)
    }
    assert "unannounced_ts" in indexed
    finds = [(body["find"], body) for name, body in commands.asked if name == "find"]
    [(rows, owed_rows), (log, entries), (checkpoints, owed_checkpoints)] = finds
    assert (rows, set(owed_rows["filter"]), owed_rows["limit"]) == (RECORDS, {"unannounced_ts"}, 10)
    assert (log, set(entries["filter"])) == (LOG, {"_id"}), "the owed entries by position"
    assert (checkpoints, set(owed_checkpoints["filter"]), owed_checkpoints["limit"]) == (
        CHECKPOINTS,
        {"unannounced_ts"},
        10,
    )
    updates = [body for name, body in commands.asked if name == "update"]
    assert [u["update"] for u in updates] == [RECORDS, CHECKPOINTS]
    assert all(set(u["q"]) == {"_id"} for body in updates for u in body["updates"]), "kept announced by key"
