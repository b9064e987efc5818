"""signing's repository contract: the in-memory and the MongoDB repository keep the same promises."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.signing import domain, repository
from services.signing.domain import COMPLETED, StoredRecord
from services.signing.repository import INDEXES, InMemorySigningRepository, MongoSigningRepository
from shared.contracts.base import Acting
from shared.contracts.grades import RecordVersion
from shared.contracts.signing import ClassWaiting, RequestSignBatch, Signature
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


async def test_a_version_is_replaced_only_while_it_is_kept_as_it_was(repo):
    kept = incomplete_record(0, {"subject": "Toán", "term": 1})
    await repo.add_records([kept])
    complete = StoredRecord.of(record(0))
    assert complete.key == kept.key and complete.digest != kept.digest
    assert await repo.replace_record(kept, complete)
    assert not await repo.replace_record(kept, complete), "another delivery replaced it first"
    found = (await repo.records([kept.key]))[kept.key]
    assert found.digest == complete.digest and found.complete
    [held] = await repo.held(SCHOOL, YEAR)
    assert (held.digest, held.incomplete) == (complete.digest, False)


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


@pytest.mark.parametrize("by_id", [200, 1], ids=["a class's, by id", "a school's, by the role's scope"])
async def test_the_versions_a_role_signed_are_found_in_one_read(repo, monkeypatch, by_id):
    monkeypatch.setattr(repository, "BY_ID", by_id)
    await repo.add_records([StoredRecord.of(record(n)) for n in range(3)])
    homeroom = [(signature(n, "homeroom_teacher"), SCHOOL, YEAR) for n in (0, 1)]
    await repo.add_signatures([*homeroom, (signature(2), SCHOOL, YEAR)])
    await repo.add_signatures([(signature(9, "homeroom_teacher"), "79000999", YEAR)])  # another school's
    asked = [("rec-0000", 1), ("rec-0002", 1), ("rec-0001", 2), ("rec-0009", 2)]
    assert await repo.signed_by("homeroom_teacher", SCHOOL, YEAR, asked) == {("rec-0000", 1)}
    assert await repo.signed_by("principal", SCHOOL, YEAR, asked) == {("rec-0002", 1)}
    assert await repo.signed_by("homeroom_teacher", SCHOOL, YEAR, []) == set()


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


async def test_open_batches_are_found_and_one_process_takes_a_stalled_one(repo):
    """What the re-driving loop and a second click rely on: the open batches (without their plans), when each last
    moved, and a claim that only one of several processes wins."""
    first = domain.new_batch(batch_request("batch-1"), "", [(f"r{n:02d}", 1) for n in range(25)], 10, T0)
    assert await repo.add_batch(first)
    assert await repo.add_batch(domain.new_batch(batch_request("batch-2"), "", [], 10, T0)), "complete at once"
    [found] = await repo.open_batches()
    assert (found.batch_id, found.chunks, found.chunks_total, found.progressed_at) == ("batch-1", (), 3, T0)

    counted_at = T0 + timedelta(minutes=1)
    await repo.count_chunk("batch-1", 0, 10, 0, counted_at)
    [moved] = await repo.open_batches()
    assert moved.progressed_at == counted_at and moved.unfinished_chunks == (1, 2)
    assert not await repo.moved("batch-1", T0, T0 + timedelta(minutes=5)), "it moved since"
    later = T0 + timedelta(minutes=5)
    claims = await asyncio.gather(*[repo.moved("batch-1", counted_at, later) for _ in range(5)])
    assert claims.count(True) == 1, "one process takes it"
    assert (await repo.batch("batch-1")).progressed_at == later
    await repo.close_batch("batch-1", later)
    assert await repo.open_batches() == []
    assert not await repo.moved("batch-1", None, later), "a closed batch is not taken"


@pytest.fixture
async def mongo_repo(mongo_client, settings) -> MongoSigningRepository:
    """The MongoDB repository alone: for what MongoDB itself holds."""
    return MongoSigningRepository(await service_database(mongo_client, settings, "signing", INDEXES), Vault.ephemeral())


def incomplete_record(n: int, *missing: dict) -> StoredRecord:
    version = records.record_version(
        f"rec-{n:04d}", 1, SCHOOL, YEAR, f"student-{n:04d}", class_name="6A1", complete=False, missing=list(missing)
    )
    return StoredRecord.of(version)


async def test_held_versions_say_whether_they_are_complete_without_their_bytes(repo):
    incomplete = incomplete_record(0, {"subject": "Toán", "term": 1}, {"entry": "homeroom", "term": 2})
    await repo.add_records([incomplete, StoredRecord.of(record(1)), StoredRecord.of(record(2))])
    held = {h.record_id: h for h in await repo.held(SCHOOL, YEAR)}
    assert sorted(held) == ["rec-0000", "rec-0001", "rec-0002"]
    assert held["rec-0000"].incomplete
    assert [(m.subject, m.entry, m.term) for m in held["rec-0000"].missing] == [("Toán", "", 1), ("", "homeroom", 2)]
    assert not held["rec-0001"].incomplete and held["rec-0001"].digest == StoredRecord.of(record(1)).digest
    assert sorted(h.record_id for h in await repo.held(SCHOOL, YEAR, "6A1")) == ["rec-0000", "rec-0002"]
    [kept] = (await repo.records([("rec-0000", 1)])).values()
    assert (kept.complete, kept.missing) == (False, held["rec-0000"].missing)


async def test_a_row_stored_before_completeness_was_kept_is_read_from_its_document(mongo_repo, mongo_client, settings):
    """Record versions an earlier release stored have no `complete` beside their bytes: their documents say it."""
    await mongo_repo.add_records([incomplete_record(0, {"subject": "Toán", "term": 1}), StoredRecord.of(record(2))])
    db = mongo_client[settings.names().database("signing")]
    await db["records"].update_many({}, {"$unset": {"complete": "", "missing": ""}})
    assert await db["records"].count_documents({"complete": {"$exists": True}}) == 0
    held = {h.record_id: h for h in await mongo_repo.held(SCHOOL, YEAR)}
    assert held["rec-0000"].incomplete and [m.subject for m in held["rec-0000"].missing] == ["Toán"]
    assert not held["rec-0002"].incomplete
    [kept] = (await mongo_repo.records([("rec-0000", 1)])).values()
    assert not kept.complete


def review(class_name: str, at: datetime, *versions: tuple[str, int, str]) -> domain.Review:
    teacher = Acting(subject=f"gvcn-{class_name}", roles=["homeroom_teacher"], school_code=SCHOOL)
    return domain.Review(f"review-{class_name}-{at:%H%M}", SCHOOL, YEAR, class_name, versions, teacher, at)


async def test_confirmations_are_kept_once_and_read_by_school_or_class_latest_first(repo):
    first = review("6A1", T0, ("rec-0000", 1, "a" * 64), ("rec-0002", 1, "b" * 64))
    later = review("6A1", T0.replace(hour=9), ("rec-0000", 2, "c" * 64), ("rec-0002", 1, "b" * 64))
    other = review("6A2", T0, ("rec-0001", 1, "d" * 64))
    for confirmation in (first, later, other):
        assert await repo.add_review(confirmation)
    assert not await repo.add_review(first), "a confirmation's id is kept once"
    assert await repo.reviews(SCHOOL, YEAR, "6A1") == [later, first]
    assert await repo.reviews(SCHOOL, YEAR) == [later, first, other]
    assert await repo.reviews(SCHOOL, "2024-2025") == []
    assert await repo.review(later.review_id) == later and await repo.review("nope") is None
    assert await repo.latest_reviews(SCHOOL, YEAR, ["6A1", "6A2", "6A3"]) == {"6A1": later, "6A2": other}
    assert await repo.latest_reviews(SCHOOL, YEAR, ["6A2"]) == {"6A2": other}
    assert await repo.latest_reviews(SCHOOL, "2024-2025", ["6A1"]) == {} == await repo.latest_reviews(SCHOOL, YEAR, [])


async def test_a_confirmation_keeps_its_digests_as_binary_and_its_time_as_a_date(mongo_repo, mongo_client, settings):
    await mongo_repo.add_review(review("6A1", T0, ("rec-0000", 1, "a" * 64)))
    db = mongo_client[settings.names().database("signing")]
    doc = await db["reviews"].find_one({"class_name": "6A1"})
    assert doc["records"][0]["digest"] == bytes.fromhex("a" * 64) and len(doc["fingerprint"]) == 32
    assert doc["confirmed_at"] == T0


async def test_a_batch_keeps_what_it_held_back(repo):
    held_back = domain.Held("rec-0000", 1, "6A1", "a" * 64, complete=False).refusal()
    waiting = ClassWaiting(class_name="6A2", records=3, code="not-reviewed", reason="class 6A2 has not been reviewed")
    plan = domain.new_batch(batch_request("held-back"), "ht", [("rec-0001", 1)], 10, T0)
    assert await repo.add_batch(replace(plan, refused=(held_back,), classes_waiting=(waiting,)))
    stored = await repo.batch("held-back")
    assert (stored.refused, stored.classes_waiting) == ((held_back,), (waiting,))
    counted = await repo.count_chunk("held-back", 0, 1)
    assert (counted.refused, counted.classes_waiting) == ((held_back,), (waiting,)), "the batch's end announces them"


async def test_a_batch_names_at_its_end_the_classes_its_chunks_held_back(repo):
    """A chunk that left records unsigned (their class's review no longer saw them as held) says so once; the batch's
    count returns them with the classes its plan named, one entry a class."""
    planned = ClassWaiting(class_name="6A2", records=3, code="not-reviewed", reason="class 6A2 has not been reviewed")
    changed = ClassWaiting(class_name="6A1", records=1, code="changed-since-review", reason="class 6A1 changed")
    plan = domain.new_batch(batch_request("held-in-chunks"), "ht", [("rec-0000", 1), ("rec-0002", 1)], 1, T0)
    assert await repo.add_batch(replace(plan, classes_waiting=(planned,)))
    await repo.hold_back("held-in-chunks", 1, (changed,))
    await repo.hold_back("held-in-chunks", 1, (changed,))  # the chunk signed again says the same
    await repo.hold_back("held-in-chunks", 0, (changed,))
    assert (await repo.batch("held-in-chunks")).waiting == (planned, replace_records(changed, 2))
    await repo.count_chunk("held-in-chunks", 0, 0)
    counted = await repo.count_chunk("held-in-chunks", 1, 0)
    assert counted.waiting == (planned, replace_records(changed, 2)) and counted.classes_waiting == (planned,)


def replace_records(waiting: ClassWaiting, records: int) -> ClassWaiting:
    return waiting.model_copy(update={"records": records})


async def test_a_completing_signature_is_stored_owed_to_the_archive_until_its_version_is_announced(repo):
    early, late = T0, T0.replace(minute=5)
    await repo.add_signatures([(signature(n, "principal"), SCHOOL, YEAR) for n in range(4)], "batch-1")
    assert await repo.unannounced(late, 10) == [], "only the signature that completes a version owes anything"
    seals = [
        (signature(n, "school_seal").model_copy(update={"signed_at": late if n < 2 else early}), SCHOOL, YEAR)
        for n in range(4)
    ]
    assert await repo.add_signatures(seals, "batch-1") == 4
    assert await repo.add_signatures(seals, "batch-2") == 0, "stored once: the first batch's mark stands"

    owed = await repo.unannounced(late, 3)
    assert [o.key for o in owed] == [("rec-0002", 1), ("rec-0003", 1), ("rec-0000", 1)], "oldest first, up to the limit"
    assert {o.batch_id for o in owed} == {"batch-1"}
    assert [o.key for o in await repo.unannounced(early, 10)] == [("rec-0002", 1), ("rec-0003", 1)]

    await repo.announced([("rec-0002", 1), ("rec-0000", 1), ("rec-0009", 1)])
    assert [o.key for o in await repo.unannounced(late, 10)] == [("rec-0003", 1), ("rec-0001", 1)]
    await repo.announced([("rec-0003", 1), ("rec-0001", 1)])
    assert await repo.unannounced(late, 10) == []
    assert len((await repo.signatures([("rec-0001", 1)]))[("rec-0001", 1)]) == 2, "the signatures themselves stay"
