"""What signing one chunk asks of the MongoDB-wire server: the same few commands whatever the chunk's size."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from services.signing import handlers
from services.signing.metrics import SigningMetrics
from services.signing.repository import INDEXES, MongoSigningRepository
from shared.contracts.grades import RecordsReady
from shared.contracts.signing import ChunkSigned, RecordsCompleted, RequestSignBatch, SignWork
from shared.crypto.vault import Vault
from shared.mongo import ensure_indexes
from tests.unit.signing.trust import SCHOOL, YEAR, make_trust

#: More record versions than a cursor's first reply holds by default (101): a chunk this size must not need more.
LARGE_CHUNK = 120


class Commands(CommandListener):
    """The commands a client sends the server, by name, while `counting`."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.counting = False

    def started(self, event: CommandStartedEvent) -> None:
        if self.counting:
            self.sent[event.command_name] += 1

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return make_trust(tmp_path_factory.mktemp("signing-chunk-cost"))


@pytest.fixture
async def watched(mongo_url, mongo_client, settings):
    """signing's database in this test's namespace, through a client whose commands are counted."""
    commands = Commands()
    client: AsyncMongoClient = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[commands])
    db = client[settings.names().database("signing")]
    await ensure_indexes(db, INDEXES)
    yield db, commands
    await client.close()


async def first_chunk_commands(db, commands: Commands, trust, per_chunk: int) -> Counter[str]:
    """The commands signing and counting the first chunk of a principal's click sends, `per_chunk` records a chunk."""
    deps = trust.deps(MongoSigningRepository(db, Vault.ephemeral()), SigningMetrics(CollectorRegistry()), per_chunk)
    records = [trust.record(n) for n in range(2 * LARGE_CHUNK)]
    await handlers.receive_records(RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records), deps)
    for class_name in ("6A1", "6A2"):
        teacher = trust.staff.homeroom_teacher(SCHOOL, class_name).signs(
            RequestSignBatch(school_code=SCHOOL, school_year=YEAR, role="homeroom_teacher", class_name=class_name)
        )
        for work in (await handlers.plan_batch(teacher, deps)).publish:
            assert isinstance(work, SignWork)
            await handlers.sign_chunk(work, deps)
    click = trust.staff.principal(SCHOOL).signs(RequestSignBatch(school_code=SCHOOL, school_year=YEAR))
    first = (await handlers.plan_batch(click, replace(deps, records_per_chunk=per_chunk))).publish[0]
    assert isinstance(first, SignWork)

    commands.counting = True
    outcome = await handlers.sign_chunk(first, deps)
    [chunk] = [m for m in outcome.publish if isinstance(m, ChunkSigned)]
    await handlers.count_chunk(chunk, deps)
    commands.counting = False
    [completed] = [m for m in outcome.publish if isinstance(m, RecordsCompleted)]
    assert len(completed.records) == per_chunk and chunk.signed == per_chunk
    return commands.sent


async def test_a_chunk_sends_the_same_commands_to_the_database_whatever_its_size(watched, trust):
    """One read of the plan, one of the records (in one reply), one of their signatures, one insert of the new
    signatures, one count: for 120 record versions as for 10. The count returns the batch's totals, not its plan."""
    db, commands = watched
    small = await first_chunk_commands(db, commands, trust, per_chunk=10)
    await db.client.drop_database(db.name)
    await ensure_indexes(db, INDEXES)
    commands.sent.clear()
    large = await first_chunk_commands(db, commands, trust, per_chunk=LARGE_CHUNK)
    assert small == large == {"find": 3, "insert": 1, "findAndModify": 1}
