"""What signing one chunk asks of the MongoDB-wire server: the same few commands whatever the chunk's size."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry

from services.signing import handlers
from services.signing.metrics import SigningMetrics
from services.signing.repository import INDEXES, MongoSigningRepository
from shared.contracts.base import Message
from shared.contracts.grades import RecordsReady
from shared.contracts.signing import (
    ChunkSigned,
    ConfirmReview,
    RecordsCompleted,
    RequestSignBatch,
    ReviewClasses,
    SignWork,
)
from shared.crypto.vault import Vault
from tests.integration.commands import LARGE_CHUNK, Commands, emptied, watched_database
from tests.unit.signing.trust import SCHOOL, YEAR, make_trust


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return make_trust(tmp_path_factory.mktemp("signing-chunk-cost"))


@pytest.fixture
async def watched(mongo_url, settings):
    """signing's database in this test's namespace, through a client whose commands are counted."""
    async with watched_database(mongo_url, settings.names().database("signing"), INDEXES) as watched:
        yield watched


async def first_chunk_commands(db, commands: Commands, trust, per_chunk: int) -> Counter[str]:
    """The commands signing and counting the first chunk of a principal's click sends, `per_chunk` records a chunk."""
    deps = trust.deps(MongoSigningRepository(db, Vault.ephemeral()), SigningMetrics(CollectorRegistry()), per_chunk)
    records = [trust.record(n) for n in range(2 * LARGE_CHUNK)]
    await handlers.receive_records(RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records), deps)
    for class_name in ("6A1", "6A2"):
        homeroom = trust.staff.homeroom_teacher(SCHOOL, class_name)
        asked = ReviewClasses(school_code=SCHOOL, school_year=YEAR, class_name=class_name)
        [shown] = (await handlers.review_classes(homeroom.signs(asked), deps)).reply.classes
        seen = ConfirmReview(school_code=SCHOOL, school_year=YEAR, class_name=class_name, reviewed=shown.fingerprint)
        await handlers.confirm_review(homeroom.signs(seen), deps)
        teacher = homeroom.signs(
            RequestSignBatch(school_code=SCHOOL, school_year=YEAR, role="homeroom_teacher", class_name=class_name)
        )
        for work in (await handlers.plan_batch(teacher, deps)).publish:
            assert isinstance(work, SignWork)
            await handlers.sign_chunk(work, deps)
    click = trust.staff.principal(SCHOOL).signs(RequestSignBatch(school_code=SCHOOL, school_year=YEAR))
    first = (await handlers.plan_batch(click, replace(deps, records_per_chunk=per_chunk))).publish[0]
    assert isinstance(first, SignWork)

    published: list[Message] = []

    async def publish(messages: Sequence[Message]) -> None:
        published.extend(messages)

    with commands.counted() as sent:
        outcome = await handlers.announced(deps, publish, await handlers.sign_chunk(first, deps))
        [chunk] = [m for m in outcome.publish if isinstance(m, ChunkSigned)]
        await handlers.count_chunk(chunk, deps)
    [completed] = [m for m in published if isinstance(m, RecordsCompleted)]
    assert len(completed.records) == per_chunk and chunk.signed == per_chunk
    return sent


async def test_a_chunk_sends_the_same_commands_to_the_database_whatever_its_size(watched, trust):
    """One read of the plan, one of the records (in one reply), one of their classes' latest reviews, one of their
    signatures, one insert of the new signatures (the completing ones marked owed to the archive), one update keeping
    the completed versions announced once published, one count: for 120 record versions as for 10. The count returns
    the batch's totals, not its plan."""
    db, commands = watched
    small = await first_chunk_commands(db, commands, trust, per_chunk=10)
    await emptied(db, INDEXES)
    large = await first_chunk_commands(db, commands, trust, per_chunk=LARGE_CHUNK)
    assert small == large == {"find": 4, "insert": 1, "update": 1, "findAndModify": 1}
