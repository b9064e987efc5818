"""signing's repository contract: the in-memory and the MongoDB repository keep the same promises."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from services.signing import domain
from services.signing.domain import COMPLETED, StoredRecord
from services.signing.repository import INDEXES, InMemorySigningRepository, MongoSigningRepository
from shared.contracts.base import Acting
from shared.contracts.grades import RecordVersion
from shared.contracts.signing import RequestSignBatch, Signature
from shared.crypto.vault import Vault
from tests import records
from tests.integration.conftest import service_database

SCHOOL, YEAR = "79000701", "2025-2026"
T0 = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)


@pytest.fixture
async def repo(backend, mongo_client, settings):
    if backend == "in-memory":
        return InMemorySigningRepository()
    return MongoSigningRepository(await service_database(mongo_client, settings, "signing", INDEXES), Vault.ephemeral())


def record(n: int, school_code: str = SCHOOL) -> RecordVersion:
    return records.record_version(
        f"rec-{n:04d}", 1, school_code, YEAR, f"student-{n:04d}", class_name=f"6A{n % 2 + 1}", conduct="Tốt"
    )


def signature(n: int, role: str = "principal") -> Signature:
    return Signature(
        record_id=f"rec-{n:04d}", version=1, role=role, key_id="k", digest="d" * 64, jws="h..s", signed_at=T0
    )


def batch_request(batch_id: str = "batch-1") -> RequestSignBatch:
    return RequestSignBatch(batch_id=batch_id, school_code=SCHOOL, school_year=YEAR, role="principal")


async def test_record_versions_are_stored_once_and_found_by_key(repo):
    stored = [StoredRecord.of(record(n)) for n in range(3)]
    stored[1] = replace(stored[1], seal="grades.seal.value")
    assert await repo.add_records(stored) == 3
    assert await repo.add_records([*stored, StoredRecord.of(record(9, "79000999"))]) == 1
    found = await repo.records([("rec-0001", 1), ("rec-0001", 2), ("nope", 1)])
    assert list(found) == [("rec-0001", 1)] and found[("rec-0001", 1)] == stored[1], "grades' seal is kept with it"


async def test_signatures_are_stored_once_per_role_and_unsigned_records_are_those_a_role_lacks(repo):
    await repo.add_records([StoredRecord.of(record(n)) for n in range(3)])
    all_three = [("rec-0000", 1), ("rec-0001", 1), ("rec-0002", 1)]
    assert await repo.unsigned(SCHOOL, YEAR, "principal") == (all_three, 0)
    assert await repo.unsigned(SCHOOL, YEAR, "homeroom_teacher", "6A2") == ([("rec-0001", 1)], 0)
    assert await repo.add_signatures([(signature(1), SCHOOL, YEAR)]) == 1
    assert await repo.add_signatures([(signature(1), SCHOOL, YEAR), (signature(2), SCHOOL, YEAR)]) == 1
    assert await repo.add_signatures([(signature(1, "homeroom_teacher"), SCHOOL, YEAR)]) == 1
    assert await repo.unsigned(SCHOOL, YEAR, "principal") == ([("rec-0000", 1)], 0)
    assert await repo.unsigned(SCHOOL, YEAR, "school_seal", after="principal") == ([("rec-0001", 1), ("rec-0002", 1)], 1)
    by_key = await repo.signatures([("rec-0001", 1), ("rec-0000", 1)])
    assert set(by_key) == {("rec-0001", 1)} and set(by_key[("rec-0001", 1)]) == {"principal", "homeroom_teacher"}
    assert by_key[("rec-0001", 1)]["principal"] == signature(1)


async def test_a_batch_is_planned_once_counts_each_chunk_once_and_closes_once(repo):
    principal = Acting(subject="ht-79000701", roles=["principal"], school_code=SCHOOL)
    plan = domain.new_batch(batch_request(), "", [(f"r{n:02d}", 1) for n in range(25)], 10, T0)
    batch = replace(plan, requested_by=principal)
    assert await repo.add_batch(batch)
    assert not await repo.add_batch(domain.new_batch(batch_request(), "", [], 10, T0))
    assert await repo.batch("batch-1") == batch
    assert await repo.batch("batch-2") is None

    # Chunk 1 delivered to several coordinators at once, and again later: counted once.
    counted = await asyncio.gather(*[repo.count_chunk("batch-1", 1, 10) for _ in range(8)])
    assert sum(c is not None for c in counted) == 1
    assert await repo.count_chunk("batch-1", 1, 10) is None
    await repo.count_chunk("batch-1", 0, 10)
    last = await repo.count_chunk("batch-1", 2, 5, 5)
    assert last.done_chunks == {0, 1, 2} and last.records_signed == 25 and last.all_chunks_done
    assert last.records_completed == 5

    closed = await asyncio.gather(*[repo.close_batch("batch-1", T0) for _ in range(5)])
    assert closed.count(True) == 1
    stored = await repo.batch("batch-1")
    assert stored.status == COMPLETED and stored.completed_at == T0 and stored.requested_by == principal
