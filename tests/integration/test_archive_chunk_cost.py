"""What archiving one chunk asks of the MongoDB-wire server: the same few commands whatever the chunk's size."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import pytest

from services.archive import handlers
from services.archive.domain import key_of
from services.archive.repository import INDEXES, MongoArchiveRepository
from shared.contracts.archive import RecordsArchived
from shared.contracts.base import Message
from shared.contracts.signing import RecordsCompleted, SignedRecord
from shared.crypto.vault import Vault
from tests.integration.commands import LARGE_CHUNK, Commands, emptied, watched_database
from tests.unit.archive.conftest import archive_deps
from tests.unit.signing.trust import completed_version, make_trust, signed_record, signed_version

#: Record versions in the log before a chunk of new ones comes: it is appended after them, as in a term end under way.
ARCHIVED_BEFORE = 3
#: Chunk sizes compared: one version (whose record is looked up by equality), a few, more than a cursor's first reply.
SIZES = (1, 10, LARGE_CHUNK)
BATCH = "batch-1"


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return make_trust(tmp_path_factory.mktemp("archive-chunk-cost"))


@pytest.fixture
async def watched(mongo_url, settings):
    """archive's database in this test's namespace, through a client whose commands are counted."""
    async with watched_database(mongo_url, settings.names().database("archive"), INDEXES) as watched:
        yield watched


def amendment(trust, n: int) -> SignedRecord:
    """Version 2 of record n, as signing keeps an amendment its school asked for: unsealed, naming version 1."""
    asked = {"supersedes": 1, "reason": "grade-correction", "note": "", "requested_by": f"ht-{n:04d}"}
    return signed_version(trust, completed_version(n, 2, amendment=asked))


@dataclass(frozen=True)
class Archiving:
    """A chunk to archive, and what the log holds before it comes."""

    archived: list[SignedRecord]
    chunk: list[SignedRecord]


def new_records(trust, k: int) -> Archiving:
    """k first versions, after a few archived before them."""
    before, after = range(ARCHIVED_BEFORE), range(ARCHIVED_BEFORE, ARCHIVED_BEFORE + k)
    return Archiving([signed_record(trust, n) for n in before], [signed_record(trust, n) for n in after])


def amendments(trust, k: int) -> Archiving:
    """The amended versions of k archived records."""
    return Archiving([signed_record(trust, n) for n in range(k)], [amendment(trust, n) for n in range(k)])


def redelivered(trust, k: int) -> Archiving:
    """k versions archived already, coming again (the broker redelivers a chunk whose acknowledgement was lost)."""
    records = [signed_record(trust, n) for n in range(k)]
    return Archiving(records, records)


async def chunk_commands(db, commands: Commands, trust, archiving: Archiving) -> Counter[str]:
    """The commands archiving the chunk and announcing it send, as a chunk of a signing batch, to an archive that
    loaded its log at start and has archived what came before (an earlier chunk of the batch)."""
    deps = archive_deps(trust, MongoArchiveRepository(db, Vault.ephemeral()))
    await handlers.load_log(deps)
    await handlers.archive_records(RecordsCompleted(records=archiving.archived, batch_id=BATCH), deps)

    published: list[Message] = []
    with commands.counted() as sent:
        outcome = await handlers.archive_records(RecordsCompleted(records=archiving.chunk, batch_id=BATCH), deps)
        await handlers.announced(deps, published_to(published), outcome)
    [archived] = published
    assert isinstance(archived, RecordsArchived)
    log_order = list(dict.fromkeys(key_of(s) for s in archiving.archived + archiving.chunk))
    assert [((r.record_id, r.version), r.seq) for r in archived.records] == [
        (key_of(s), log_order.index(key_of(s))) for s in archiving.chunk
    ], "every version of the chunk, at its place in the log"
    assert deps.log.tree.size == len(log_order)
    return sent


def published_to(published: list[Message]) -> Callable[[Sequence[Message]], Awaitable[None]]:
    """A broker that confirms every message, kept in `published`."""

    async def publish(messages: Sequence[Message]) -> None:
        published.extend(messages)

    return publish


async def commands_by_size(watched, trust, make: Callable[..., Archiving]) -> list[Counter[str]]:
    """The commands archiving a chunk of each of SIZES versions sends, each in a fresh database."""
    db, commands = watched
    sent = []
    for k in SIZES:
        sent.append(await chunk_commands(db, commands, trust, make(trust, k)))
        await emptied(db, INDEXES)
    return sent


async def test_a_chunk_of_new_versions_sends_the_same_commands_to_the_database_whatever_its_size(watched, trust):
    """One read of the rows of versions archived already, the same again under the log's lock, one insert of the
    log entries, one of the rows (each owed its announcement), and once the announcement is published one update that
    keeps them announced: for 120 record versions as for 10 or 1. No checkpoint is signed per chunk (a batch's
    checkpoint follows the batch's completion)."""
    one, small, large = await commands_by_size(watched, trust, new_records)
    assert one == small == large == {"find": 2, "insert": 2, "update": 1}


async def test_a_chunk_of_amendments_reads_the_archived_versions_of_its_records_at_once(watched, trust):
    """The archived versions of every record a chunk amends come in one read, not one per record: for 120
    amendments as for 10 or 1."""
    one, small, large = await commands_by_size(watched, trust, amendments)
    assert one == small == large == {"find": 3, "insert": 2, "update": 1}


async def test_a_redelivered_chunk_finds_its_versions_in_one_reply_and_appends_nothing_whatever_its_size(
    watched, trust
):
    """Each look for where the versions are is one read answered in one reply, however many they are; nothing is
    appended, the rows, all there already, are one insert that adds none, and the announcement made again is kept
    announced in one update."""
    one, small, large = await commands_by_size(watched, trust, redelivered)
    assert one == small == large == {"find": 2, "insert": 1, "update": 1}
