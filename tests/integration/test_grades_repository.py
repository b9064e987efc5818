"""grades' repository contract: the in-memory and the MongoDB repository keep the same promises."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.grades.repository import (
    HOMEROOM,
    INDEXES,
    InMemoryGradesRepository,
    MongoGradesRepository,
    StatusNote,
    TermAction,
    Write,
    entry_key,
)
from shared.at_rest import owner_of
from shared.contracts.grades import RecordVersion, StudentTermConduct
from shared.contracts.record import content_of
from shared.crypto.vault import Vault
from shared.errors import TransientError
from tests.integration.conftest import service_database
from tests.unit.grades.builders import SCHOOL, YEAR, enrolled, full_year, homeroom, scored

NOW = datetime(2026, 1, 10, tzinfo=UTC)
LATER = datetime(2026, 1, 12, tzinfo=UTC)


@pytest.fixture
async def repo(backend, mongo_client, settings):
    if backend == "in-memory":
        return InMemoryGradesRepository()
    return MongoGradesRepository(await service_database(mongo_client, settings, "grades", INDEXES), Vault.ephemeral())


def writes(entries, message_id: str = "m1", revision: int = 0, old=None, reason: str = "") -> list[Write]:
    return [Write(entry_key(e), e, message_id, "gv-1", NOW, reason, revision, old) for e in entries]


def by_key(entries):
    return sorted(entries, key=lambda e: entry_key(e))


def closing(term: int, message_id: str, at: datetime = NOW) -> TermAction:
    return TermAction(term, True, "ht-1", at, message_id)


def reopening(term: int, message_id: str, reason: str, at: datetime = LATER) -> TermAction:
    return TermAction(term, False, "ht-1", at, message_id, reason)


def record(rid: str, document: dict, version: int = 1, school_code: str = SCHOOL) -> RecordVersion:
    return RecordVersion(
        record_id=rid, version=version, school_code=school_code, school_year=YEAR, student_ref=rid,
        content=content_of(document),
    )


async def test_enrolments_are_kept_once_per_student_and_year(repo):
    assert await repo.enrol([enrolled("s1"), enrolled("s2", class_name="6A2")]) == 2
    assert await repo.enrol([enrolled("s1", class_name="6A9"), enrolled("s3", school="79000702")]) == 1
    found = await repo.enrolments_of(YEAR, ["s1", "s2", "s3", "nobody"])
    assert set(found) == {"s1", "s2", "s3"}
    assert found["s1"] == enrolled("s1"), "the first enrolment stays"
    assert {s.student_ref for s in await repo.enrolled(SCHOOL, YEAR)} == {"s1", "s2"}
    assert await repo.enrolments_of("2026-2027", ["s1"]) == {}


async def test_entries_are_stored_once_and_come_back_as_the_same_decimals(repo):
    entries = full_year("s1")
    await repo.write(SCHOOL, YEAR, "subject", writes(entries))
    with pytest.raises(TransientError, match="changed meanwhile"):
        await repo.write(SCHOOL, YEAR, "subject", writes(entries[:1], "m2"))  # a second insert loses
    assert by_key(await repo.assessments(SCHOOL, YEAR)) == by_key(entries), "scores come back as the same Decimals"
    assert await repo.assessments("79000702", YEAR) == []
    assert await repo.assessments(SCHOOL, "2026-2027") == []
    found = await repo.stored(SCHOOL, YEAR, "subject", [entry_key(entries[0]), ("s9", "Toán", 1)])
    assert list(found) == [entry_key(entries[0])]
    assert found[entry_key(entries[0])].revision == 1
    assert found[entry_key(entries[0])].message_ids == frozenset({"m1"})
    assert found[entry_key(entries[0])].values == entries[0]


async def test_a_lost_insert_does_not_keep_the_others_from_being_stored(repo):
    first, second = scored("s1", "Tin học", 1, ["8", "7"], "7", "8"), scored("s1", "Tin học", 2, ["8", "7"], "7", "8")
    await repo.write(SCHOOL, YEAR, "subject", writes([first]))
    with pytest.raises(TransientError, match="1 entr"):
        await repo.write(SCHOOL, YEAR, "subject", writes([first, second], "m2"))
    assert by_key(await repo.assessments(SCHOOL, YEAR)) == [first, second]
    assert (await repo.stored(SCHOOL, YEAR, "subject", [entry_key(first)]))[entry_key(first)].message_ids == {"m1"}


async def test_subject_and_homeroom_entries_are_kept_apart(repo):
    subject = full_year("s1")[:2]
    conduct = homeroom("s1")
    await repo.write(SCHOOL, YEAR, "subject", writes(subject))
    await repo.write(SCHOOL, YEAR, "homeroom", [Write(entry_key(h), h, "hr-1", "gvcn", NOW) for h in conduct])
    assert by_key(await repo.assessments(SCHOOL, YEAR)) == by_key(subject)
    assert sorted(await repo.homeroom(SCHOOL, YEAR), key=lambda h: h.term) == conduct
    homeroom_keys = [entry_key(h) for h in conduct]
    found = await repo.stored(SCHOOL, YEAR, "homeroom", [*homeroom_keys, entry_key(subject[0])])
    assert sorted(found) == sorted(homeroom_keys)
    assert isinstance(found[homeroom_keys[0]].values, StudentTermConduct)
    assert await repo.stored(SCHOOL, YEAR, "subject", homeroom_keys) == {}


async def test_a_change_is_applied_once_and_logged_with_who_when_old_new_and_why(repo):
    before = scored("s1", "Tin học", 1, ["8", "7"], "7", "8")
    after = scored("s1", "Tin học", 1, ["9", "7"], "7", "8")
    await repo.write(SCHOOL, YEAR, "subject", writes([before]))
    assert await repo.changes(SCHOOL, YEAR) == []
    await repo.write(SCHOOL, YEAR, "subject", writes([after], "m2", revision=1, old=before, reason="nhập sai"))
    with pytest.raises(TransientError):
        await repo.write(SCHOOL, YEAR, "subject", writes([before], "m3", revision=1, old=after))  # stale revision
    assert await repo.assessments(SCHOOL, YEAR) == [after]
    stored = (await repo.stored(SCHOOL, YEAR, "subject", [entry_key(after)]))[entry_key(after)]
    assert (stored.revision, stored.message_ids) == (2, frozenset({"m1", "m2"}))
    [change] = await repo.changes(SCHOOL, YEAR)
    assert (change["student_ref"], change["subject"], change["term"]) == ("s1", "Tin học", 1)
    assert (change["by"], change["reason"], change["message_id"]) == ("gv-1", "nhập sai", "m2")
    assert change["old"]["regular"] == ["8", "7"] and change["new"]["regular"] == ["9", "7"]
    assert change["at"] == NOW, "the time of the change is kept as a date"
    assert await repo.changes("79000702", YEAR) == []


async def test_terms_close_reopen_and_a_late_redelivery_does_not_close_again(repo):
    assert [s.closed for s in (await repo.term_statuses(SCHOOL, YEAR)).values()] == [False, False]
    assert not await repo.set_term(SCHOOL, YEAR, reopening(1, "reopen-0", "x")), "an open term is not reopened"
    assert await repo.set_term(SCHOOL, YEAR, closing(1, "close-1"))
    assert not await repo.set_term(SCHOOL, YEAR, closing(1, "close-1"))
    assert not await repo.set_term(SCHOOL, YEAR, closing(1, "close-1b")), "a closed term is not closed again"
    assert (await repo.term_statuses(SCHOOL, YEAR))[1].closed
    assert not (await repo.term_statuses(SCHOOL, YEAR))[2].closed
    assert await repo.set_term(SCHOOL, YEAR, reopening(1, "reopen-1", "sửa điểm"))
    status = (await repo.term_statuses(SCHOOL, YEAR))[1]
    assert not status.closed and status.reopened
    assert not await repo.set_term(SCHOOL, YEAR, closing(1, "close-1")), "an old close does not lock again"
    assert await repo.set_term(SCHOOL, YEAR, closing(1, "close-2", LATER))
    status = (await repo.term_statuses(SCHOOL, YEAR))[1]
    assert status.closed and status.reopened
    assert not (await repo.term_statuses("79000702", YEAR))[1].closed


async def test_each_close_and_reopen_is_logged_with_who_when_and_why(repo):
    await repo.set_term(SCHOOL, YEAR, closing(2, "close-2"))
    await repo.set_term(SCHOOL, YEAR, closing(1, "close-1"))
    await repo.set_term(SCHOOL, YEAR, reopening(1, "reopen-1", "nhập sai điểm Tin học"))
    await repo.set_term(SCHOOL, YEAR, closing(1, "close-1"))  # a late redelivery: not logged
    log = await repo.term_log(SCHOOL, YEAR)
    assert [(e["term"], e["action"], e["message_id"]) for e in log] == [
        (1, "close", "close-1"),
        (1, "reopen", "reopen-1"),
        (2, "close", "close-2"),
    ]
    assert (log[1]["by"], log[1]["at"], log[1]["reason"]) == ("ht-1", LATER, "nhập sai điểm Tin học")
    assert await repo.term_log("79000702", YEAR) == []


async def test_a_year_is_closed_once(repo):
    assert not await repo.is_closed(SCHOOL, YEAR)
    assert await repo.close_year(SCHOOL, YEAR, NOW) and not await repo.close_year(SCHOOL, YEAR, LATER)
    assert await repo.is_closed(SCHOOL, YEAR) and not await repo.is_closed("79000702", YEAR)
    assert not await repo.is_closed(SCHOOL, "2026-2027")
    assert [s.closed for s in (await repo.term_statuses(SCHOOL, YEAR)).values()] == [False, False]


async def test_a_year_reopened_is_closed_again_once(repo):
    assert not await repo.reopen_year(SCHOOL, YEAR, NOW), "a year never closed is not reopened"
    await repo.close_year(SCHOOL, YEAR, NOW)
    assert await repo.reopen_year(SCHOOL, YEAR, LATER) and not await repo.reopen_year(SCHOOL, YEAR, LATER)
    assert not await repo.is_closed(SCHOOL, YEAR)
    assert await repo.close_year(SCHOOL, YEAR, LATER) and not await repo.close_year(SCHOOL, YEAR, LATER)
    assert await repo.is_closed(SCHOOL, YEAR)


async def test_a_version_replaced_while_kept_as_it_was_keeps_the_history_of_its_replacements(repo):
    first = record("r1", {"complete": False}).model_copy(update={"seal": "seal-1"})
    await repo.add_records([first, record("r2", {"complete": True})])
    again = record("r1", {"complete": True}).model_copy(update={"seal": "seal-2"})
    note = {"at": LATER, "by": "ht-1", "message_id": "year-2", "replaced_digest": "d" * 64}
    assert await repo.replace_record(first, again, note)
    assert not await repo.replace_record(first, again, note), "no longer kept as it was"
    assert await repo.record("r1", 1) == again
    assert await repo.records_of(["r1"], 1) == [again]
    [noted] = await repo.replacements("r1", 1)
    assert (noted["by"], noted["message_id"], noted["replaced_digest"]) == ("ht-1", "year-2", "d" * 64)
    assert await repo.replacements("r2", 1) == []


async def test_record_versions_are_stored_once_and_come_back_unchanged(repo):
    document = {
        "record_id": "r1",
        "version": 1,
        "subjects": [{"name": "Toán", "term_1": None, "year": {"average": "7.3"}}],
        "learning_result": {"term_1": "Khá", "term_2": None, "year": None},
        "complete": False,
        "missing": [{"subject": "Toán", "term": 2}],
    }
    records = [record(rid, document) for rid in ("r2", "r1", "r3")]
    assert await repo.add_records(records) == 3
    assert await repo.add_records([records[0].model_copy(update={"content": content_of({})}), record("r9", {}, 1, "79000702")]) == 1
    stored = await repo.records(SCHOOL, YEAR, 1)
    assert [r.record_id for r in stored] == ["r1", "r2", "r3"]
    assert stored[1] == records[0]
    assert stored[0].content == content_of(document), "the very bytes grades wrote"
    assert stored[0].document == document, "types and nulls survive"
    assert await repo.records(SCHOOL, YEAR, 2) == []


async def test_a_record_is_found_at_its_version_or_the_latest(repo):
    await repo.add_records([record("r1", {"v": 1}), record("r1", {"v": 2}, version=2), record("r2", {"v": 1})])
    assert (await repo.record("r1", None)).document == {"v": 2}
    assert (await repo.record("r1", 1)).document == {"v": 1}
    assert await repo.record("r1", 3) is None
    assert await repo.record("nope", None) is None
    assert [r.record_id for r in await repo.records(SCHOOL, YEAR, 2)] == ["r1"]


async def test_the_entries_of_some_students_in_a_year_come_in_one_read(repo):
    s1, s2, s3 = full_year("s1", "9.0"), full_year("s2", "7.0"), full_year("s3")
    await repo.write(SCHOOL, YEAR, "subject", writes(s1 + s2 + s3))
    await repo.write(SCHOOL, YEAR, "homeroom", writes(homeroom("s1") + homeroom("s3")))
    await repo.write(SCHOOL, "2024-2025", "subject", writes(full_year("s1", "5.0")))
    subjects = sorted({e.subject for e in s1})
    found = await repo.entries_of(YEAR, ["s1", "s2", "nobody"], subjects)
    assert by_key(found) == by_key(s1 + s2 + homeroom("s1")), "both kinds, these students, this year only"
    maths = await repo.entries_of(YEAR, ["s1"], ["Toán"])
    assert by_key(maths) == by_key([e for e in s1 if e.subject == "Toán"] + homeroom("s1")), "only the subjects asked"
    assert await repo.entries_of(YEAR, [], subjects) == []


async def test_the_stored_versions_of_some_records_come_in_one_read(repo):
    await repo.add_records([record("r1", {"v": 1}), record("r1", {"v": 2}, version=2), record("r2", {"v": 1})])
    await repo.add_records([record("r3", {"v": 1})])
    found = await repo.records_of(["r3", "r1", "r9"], 1)
    assert [(r.record_id, r.document) for r in found] == [("r1", {"v": 1}), ("r3", {"v": 1})]
    assert [r.record_id for r in await repo.records_of(["r1", "r2"], 2)] == ["r1"]
    assert await repo.records_of([], 1) == []


async def test_the_schools_a_student_is_enrolled_at_any_year(repo):
    moved = enrolled("s1", school="79000702")
    next_year = moved.model_copy(update={"enrolment": moved.enrolment.model_copy(update={"school_year": "2026-2027"})})
    await repo.enrol([enrolled("s1"), enrolled("s2", school="79000702"), next_year])
    assert await repo.schools_of("s1") == {SCHOOL, "79000702"}
    assert await repo.schools_of("s2") == {"79000702"}
    assert await repo.schools_of("nobody") == set()


async def test_a_record_version_keeps_its_seal(repo):
    sealed = record("r1", {"student_ref": "r1"}).model_copy(update={"seal": "header..signature"})
    assert await repo.add_records([sealed]) == 1
    assert await repo.record("r1", 1) == sealed
    assert await repo.records(SCHOOL, YEAR, 1) == [sealed]


async def test_grades_keeps_a_student_by_reference_only_and_the_record_that_names_them_sealed(mongo_client, settings):
    db = await service_database(mongo_client, settings, "grades", INDEXES)
    repo = MongoGradesRepository(db, Vault.ephemeral())
    await repo.enrol([enrolled("s1")])
    await repo.write(SCHOOL, YEAR, "subject", writes(full_year("s1")))
    await repo.write(SCHOOL, YEAR, "homeroom", writes(homeroom("s1"), message_id="m2"))
    await repo.set_term(SCHOOL, YEAR, closing(1, "c1"))
    identity = {"personal_id": "079214000123", "full_name": "Nguyễn Văn An", "date_of_birth": "2014-09-05"}
    await repo.add_records([record("rec-1", {"student": {"identity": identity}, "class_name": "6A1"})])

    stored = {name: [doc async for doc in db[name].find()] for name in await db.list_collection_names()}
    assert {"enrolments", "assessments", "terms", "records"} <= set(stored)
    everything = json.dumps(stored, default=repr, ensure_ascii=False)
    for value in identity.values():
        assert value not in everything, "nothing of the student's identity is stored in clear"
    for name in ("enrolments", "assessments"):
        assert {doc["student_ref"] for doc in stored[name]} == {"s1"}, f"{name} name the student by reference"
    assert (await repo.record("rec-1", 1)).document["student"]["identity"] == identity


async def test_a_record_stored_by_an_earlier_release_is_read_as_its_canonical_bytes(mongo_client, settings):
    """An earlier release kept the document as plain JSON in the order grades wrote it: read back, it is the
    record's canonical bytes, so a version published again is sealed and signed over the same bytes as any other."""
    db = await service_database(mongo_client, settings, "grades", INDEXES)
    repo = MongoGradesRepository(db, Vault.ephemeral())
    document = {"version": 1, "record_id": "rec-old", "subjects": [{"year": {"average": "7.3"}, "name": "Toán"}]}
    earlier = record("rec-old", document)
    stored = {**earlier.model_dump(mode="json", exclude={"content"}), **repo.sealed.sealed(owner_of(earlier.key), document)}
    await db["records"].insert_one(stored)
    assert json.loads(repo.sealed.opened_bytes(stored)) == document
    assert repo.sealed.opened_bytes(stored) != content_of(document), "kept in the order it was written"
    assert (await repo.record("rec-old", 1)).content == content_of(document)


# -- where records stand, and an entry's history ----------------------------------------------


async def test_whether_a_school_has_students_enrolled_that_year(repo):
    await repo.enrol([enrolled("s1")])
    assert await repo.has_enrolments(SCHOOL, YEAR)
    assert not await repo.has_enrolments("79000702", YEAR)
    assert not await repo.has_enrolments(SCHOOL, "2026-2027")


async def test_each_step_a_record_version_reached_is_kept_once_and_read_by_record(repo):
    notes = [StatusNote("r1", 1, "signed-and-sealed", NOW), StatusNote("r1", 1, "archived", LATER)]
    assert await repo.note_statuses(notes) == 2
    assert await repo.note_statuses([notes[1], StatusNote("r1", 2, "archived", LATER)]) == 1, (
        "a redelivery adds nothing"
    )
    await repo.note_statuses([StatusNote("r2", 1, "delivered", LATER)])
    assert await repo.statuses_of(["r1", "nope"]) == {
        ("r1", 1): {"signed-and-sealed", "archived"},
        ("r1", 2): {"archived"},
    }
    assert await repo.statuses_of([]) == {}


async def test_an_entrys_history_is_its_first_recording_then_each_change_in_order(repo):
    first = scored("s1", "Toán", 1, ["8", "7", "6", "5"], "7", "8")
    await repo.write(SCHOOL, YEAR, "subject", writes([first], "m1"))
    second = scored("s1", "Toán", 1, ["9", "7", "6", "5"], "7", "8")
    await repo.write(SCHOOL, YEAR, "subject", [Write(entry_key(second), second, "m2", "gv-2", LATER, "sai", 1, first)])
    await repo.write(SCHOOL, YEAR, "homeroom", writes(homeroom("s1"), "m3"))
    await repo.write(SCHOOL, YEAR, "subject", writes([scored("s2", "Toán", 1, ["8"] * 4, "7", "8")], "m4"))

    toan = await repo.entry_history(YEAR, "s1", ["Toán"])
    assert [(r.subject, r.term, r.revision, r.by, r.message_id, r.reason) for r in toan] == [
        ("Toán", 1, 1, "gv-1", "m1", ""),
        ("Toán", 1, 2, "gv-2", "m2", "sai"),
    ]
    assert toan[0].old is None and toan[0].new["regular"] == ["8", "7", "6", "5"]
    assert (toan[1].old["regular"], toan[1].new["regular"]) == (["8", "7", "6", "5"], ["9", "7", "6", "5"])
    assert [r.at for r in toan] == [NOW, LATER]
    everything = await repo.entry_history(YEAR, "s1", ["Toán", HOMEROOM])
    assert [(r.kind, r.term) for r in everything if r.kind == "homeroom"] == [("homeroom", 1), ("homeroom", 2)]
    assert {r.message_id for r in everything} == {"m1", "m2", "m3"}, "s1's entries only"
    assert await repo.entry_history("2026-2027", "s1", ["Toán"]) == []


# -- amended versions -------------------------------------------------------------------------


async def test_an_amended_version_is_stored_once_and_found_by_the_amendment_that_made_it(repo):
    await repo.add_records([record("r1", {"v": 1}), record("r2", {"v": 1})])
    amended = record("r1", {"v": 2}, version=2).model_copy(update={"seal": "header..signature"})
    assert await repo.add_amended(amended, "amend-1")
    assert not await repo.add_amended(amended, "amend-1"), "stored once"
    assert not await repo.add_amended(record("r1", {"v": "2b"}, version=2), "amend-2"), "the version is taken"
    assert await repo.amended_by("amend-1") == amended
    assert await repo.amended_by("amend-2") is None and await repo.amended_by("nope") is None
    assert await repo.record("r1", None) == amended, "the latest version"
    assert await repo.records(SCHOOL, YEAR, 1) == [record("r1", {"v": 1}), record("r2", {"v": 1})]


async def test_the_amended_versions_of_some_records_come_in_one_read(repo):
    await repo.add_records([record("r1", {"v": 1}), record("r2", {"v": 1}), record("r3", {"v": 1})])
    await repo.add_amended(record("r1", {"v": 2}, version=2), "amend-1")
    await repo.add_amended(record("r1", {"v": 3}, version=3), "amend-2")
    await repo.add_amended(record("r3", {"v": 2}, version=2), "amend-3")
    assert await repo.amended_versions(["r1", "r2", "r9"]) == [("r1", 2), ("r1", 3)]
    assert await repo.amended_versions([]) == []


async def test_an_entry_changed_or_recorded_by_an_amendment_names_the_message_in_its_history(repo):
    toan = scored("s1", "Toán", 2, ["8"] * 4, "8", "8")
    await repo.write(SCHOOL, YEAR, "subject", writes([toan], "m1"))
    corrected = scored("s1", "Toán", 2, ["8"] * 4, "8", "9.5")
    by_amendment = "grades.record.amend.v1"
    change = Write(entry_key(corrected), corrected, "amend-1", "ht-1", LATER, "amendment", 1, toan, by_amendment)
    added = scored("s1", "Tin học", 2, ["8"] * 2, "8", "8")
    new = Write(entry_key(added), added, "amend-1", "ht-1", LATER, "amendment", message=by_amendment)
    await repo.write(SCHOOL, YEAR, "subject", [change, new])
    history = await repo.entry_history(YEAR, "s1", ["Tin học", "Toán"])
    assert [(r.subject, r.revision, r.message_id, r.message) for r in history] == [
        ("Tin học", 1, "amend-1", by_amendment),
        ("Toán", 1, "m1", ""),
        ("Toán", 2, "amend-1", by_amendment),
    ], "an entry recorded by the message that records its kind names none"
    stored = await repo.stored(SCHOOL, YEAR, "subject", [entry_key(corrected)])
    assert "amend-1" in stored[entry_key(corrected)].message_ids, "a redelivered amendment finds its change written"
