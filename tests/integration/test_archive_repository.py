"""archive's repository contract: the in-memory and the MongoDB repository keep the same promises."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.archive import domain, handlers
from services.archive.handlers import LogState
from services.archive.repository import (
    INDEXES,
    ArchivedRow,
    InMemoryArchiveRepository,
    MongoArchiveRepository,
    Position,
)
from shared.contracts.signing import RecordsCompleted
from shared.crypto.archive_log import sign_checkpoint
from shared.crypto.merkle import MerkleTree
from shared.crypto.vault import Vault
from tests.integration.conftest import service_database
from tests.unit.archive.conftest import archive_deps
from tests.unit.signing.trust import make_trust, signed_record

AT = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return make_trust(tmp_path_factory.mktemp("archive-repository"))


@pytest.fixture
async def repo(backend, mongo_client, settings):
    if backend == "in-memory":
        return InMemoryArchiveRepository()
    return MongoArchiveRepository(await service_database(mongo_client, settings, "archive", INDEXES), Vault.ephemeral())


def row(entry: domain.Entry, batch_id: str | None = None) -> ArchivedRow:
    return ArchivedRow(
        record_id=entry.record_id,
        version=entry.version,
        seq=entry.seq,
        school_code=entry.school_code,
        school_year=entry.school_year,
        student_ref=entry.student_ref,
        archived_at=entry.archived_at,
        batch_id=batch_id,
        supersedes=entry.supersedes,
        leaf_hash=entry.leaf_hash,
    )


async def test_the_log_takes_each_position_and_each_version_once(repo, trust):
    entries = domain.build_entries(0, [signed_record(trust, n) for n in range(3)], AT)
    assert await repo.append(entries) == 3
    assert await repo.append(entries) == 0
    again = domain.build_entries(3, [signed_record(trust, 1)], AT)
    assert await repo.append(again) == 0, "a version is archived once, whatever position it asks for"
    taken = domain.build_entries(2, [signed_record(trust, 7), signed_record(trust, 8)], AT)
    assert await repo.append(taken) == 0, "an append stops at the first position taken"
    assert await repo.entries() == entries
    assert await repo.leaf_hashes() == [bytes.fromhex(e.leaf_hash) for e in entries]
    assert await repo.entry("rec-0002") == entries[2]
    positions = await repo.log_positions([("rec-0001", 1), ("nope", 1)])
    assert list(positions) == [("rec-0001", 1)] and positions[("rec-0001", 1)].seq == 1


async def test_an_append_stops_at_the_first_entry_another_appender_got_to_first(repo, trust):
    assert await repo.append(domain.build_entries(0, [signed_record(trust, 0)], AT)) == 1
    ours = domain.build_entries(1, [signed_record(trust, n) for n in (1, 0, 2)], AT)
    assert await repo.append(ours) == 1, "rec-0000 is in the log already: the append stops there"
    assert [e.key for e in await repo.entries()] == [("rec-0000", 1), ("rec-0001", 1)]


async def test_entries_are_read_in_log_order_and_a_record_by_version_or_its_latest(repo, trust):
    entries = domain.build_entries(0, [signed_record(trust, n) for n in range(12)], AT)
    later = domain.build_entries(12, [signed_record(trust, 3, 2, amendment={"supersedes": 1})], AT)
    await repo.append(entries + later)
    assert [e.seq for e in await repo.entries()] == list(range(13)), "seq 10 after 9, not after 1"
    assert [e.seq for e in await repo.entries(start=9, limit=2)] == [9, 10]
    assert await repo.entry("rec-0003") == later[0]
    assert await repo.entry("rec-0003", 1) == entries[3]
    assert later[0].supersedes == 1 and (await repo.entry("rec-0003")).document == later[0].document
    assert await repo.entry("rec-0003", 3) is None and await repo.entry("nope") is None


async def test_rows_are_stored_once_and_answer_positions_versions_and_batches(repo, trust):
    entries = domain.build_entries(0, [signed_record(trust, n) for n in range(3)], AT)
    amendment = domain.build_entries(3, [signed_record(trust, 1, 2, amendment={"supersedes": 1})], AT)
    assert await repo.add_rows([row(e, "b1") for e in entries]) == 3
    assert await repo.add_rows([row(e, "b1") for e in entries] + [row(amendment[0], "b2")]) == 1
    positions = await repo.positions([("rec-0002", 1), ("rec-0001", 2), ("nope", 1)])
    assert set(positions) == {("rec-0002", 1), ("rec-0001", 2)}
    assert positions[("rec-0001", 2)] == Position(3, amendment[0].leaf_hash, amendment[0].archived_at)
    versions = await repo.versions(["rec-0001", "rec-0000", "nope"])
    assert sorted(v.version for v in versions["rec-0001"]) == [1, 2]
    assert [(v.version, v.school_code) for v in versions["rec-0000"]] == [(1, "79000701")] and versions["nope"] == []
    assert (await repo.count_batch("b1"), await repo.count_batch("b2"), await repo.count_batch("b3")) == (3, 1, 0)
    assert await repo.schools_of("student-0001") == {"79000701"} and await repo.schools_of("nobody") == set()


async def test_an_entry_keeps_grades_seal_and_hashes_with_it(repo, trust):
    [entry] = domain.build_entries(0, [signed_record(trust, 1)], AT)
    assert entry.seal is not None
    assert await repo.append([entry]) == 1
    stored = await repo.entry("rec-0001")
    assert stored.seal == entry.seal and stored.computed_leaf_hash() == entry.leaf_hash


async def test_a_checkpoint_is_stored_once_per_tree_size_and_read_smallest_first(repo, trust):
    signer = trust.signers.signer_for("archive")
    tree = MerkleTree(bytes([n]) * 32 for n in range(4))
    large, small = (sign_checkpoint(signer, "test", size, tree.root(size), AT) for size in (4, 2))
    assert await repo.add_checkpoint(large)
    assert await repo.add_checkpoint(small)
    assert not await repo.add_checkpoint(sign_checkpoint(signer, "test", 4, tree.root(4), AT.replace(hour=9)))
    assert await repo.checkpoints() == [small, large]
    assert (await repo.checkpoint(), await repo.checkpoint(2), await repo.checkpoint(3)) == (large, small, None)


def seconds(n: float) -> datetime:
    return AT + timedelta(seconds=n)


async def test_archived_versions_are_owed_their_announcement_oldest_first_until_kept_announced(repo, trust):
    entries = domain.build_entries(0, [signed_record(trust, n) for n in range(4)], AT)
    await repo.append(entries)
    owed = [replace(row(e), unannounced_since=seconds(10 - e.seq)) for e in entries[1:]]
    await repo.add_rows([row(entries[0]), *owed])

    assert await repo.unannounced(seconds(8), 10) == [entries[3], entries[2]], "archived by then, oldest first"
    assert await repo.unannounced(seconds(60), 1) == [entries[3]]
    await repo.announced([("rec-0003", 1), ("rec-0002", 1), ("nope", 1)])
    assert await repo.unannounced(seconds(60), 10) == [entries[1]]
    await repo.add_rows([row(e) for e in entries])
    assert await repo.unannounced(seconds(60), 10) == [entries[1]], "a row stored again keeps what it owed"


async def test_a_checkpoint_is_owed_its_announcement_until_kept_announced(repo, trust):
    signer = trust.signers.signer_for("archive")
    tree = MerkleTree(bytes([n]) * 32 for n in range(4))
    first, second, third = (sign_checkpoint(signer, "test", size, tree.root(size), AT) for size in (1, 2, 3))
    assert await repo.add_checkpoint(first)
    assert await repo.add_checkpoint(third, seconds(2))
    assert await repo.add_checkpoint(second, seconds(1))
    assert not await repo.add_checkpoint(sign_checkpoint(signer, "test", 2, tree.root(2), seconds(9)), seconds(9))

    assert await repo.unannounced_checkpoints(seconds(1), 10) == [second]
    assert await repo.unannounced_checkpoints(seconds(60), 10) == [second, third]
    await repo.checkpoints_announced([2])
    assert await repo.unannounced_checkpoints(seconds(60), 10) == [third]
    assert await repo.checkpoints() == [first, second, third], "checkpoints read as they were signed"


async def test_appenders_racing_on_one_log_keep_one_tree(repo, trust):
    first = archive_deps(trust, repo)
    second = replace(first, log=LogState())

    async def append(deps, start: int) -> None:
        for n in range(start, start + 10, 2):
            event = RecordsCompleted(records=[signed_record(trust, n), signed_record(trust, n + 1)])
            await handlers.archive_records(event, deps)

    await asyncio.gather(append(first, 0), append(second, 100))
    stored = await repo.entries()
    assert [e.seq for e in stored] == list(range(20))
    assert all(e.computed_leaf_hash() == e.leaf_hash for e in stored)
    restarted = replace(first, log=LogState())
    await handlers.load_log(restarted)
    assert restarted.log.tree.root() == MerkleTree(bytes.fromhex(e.leaf_hash) for e in stored).root()
    positions = await repo.positions([e.key for e in stored])
    assert {key: p.seq for key, p in positions.items()} == {e.key: e.seq for e in stored}
