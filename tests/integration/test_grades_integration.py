"""grades against real RabbitMQ and the MongoDB-wire server."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import pytest
from bson import json_util

from services.grades.app import build_app
from services.grades.domain import record_id
from services.grades.repository import INDEXES, MongoGradesRepository, Write, entry_key, record_version
from shared.contracts.grades import (
    AssessmentsRecorded,
    CloseTerm,
    CloseYear,
    ExplainRecord,
    RecordAssessments,
    RecordConduct,
    RecordExplanation,
    RecordsReady,
    RecordVersion,
    ReopenTerm,
    TermChanged,
)
from shared.contracts.identity import StudentSnapshots, StudentsRegistered
from shared.messaging import ERROR_HEADER, REASON_HEADER
from shared.mongo import ensure_indexes
from tests.support import drain, probing, running
from shared.errors import TransientError
from tests.unit.grades.builders import (
    KEYS,
    SCHOOL,
    YEAR,
    enrolled,
    full_year,
    homeroom,
    homeroom_teacher,
    principal,
    scored,
    snapshot,
    subject_teacher,
)

NOW = datetime(2026, 1, 10, tzinfo=UTC)


def writes(entries, message_id: str = "m1", revision: int = 0, old=None, reason: str = "") -> list[Write]:
    kind = "subject"
    return [Write(entry_key(kind, e), e, message_id, "gv-1", NOW, reason, revision, old) for e in entries]


async def repository(mongo_client, settings) -> MongoGradesRepository:
    db = mongo_client[settings.names().database("grades")]
    await ensure_indexes(db, INDEXES)
    return MongoGradesRepository(db)


async def test_enrolments_are_kept_once_per_student_and_year(mongo_client, settings):
    repo = await repository(mongo_client, settings)
    assert await repo.enrol([enrolled("s1"), enrolled("s2", class_name="6A2")]) == 2
    assert await repo.enrol([enrolled("s1", class_name="6A9"), enrolled("s3", school="79000702")]) == 1
    found = await repo.enrolments_of(YEAR, ["s1", "s2", "s3", "nobody"])
    assert set(found) == {"s1", "s2", "s3"}
    assert found["s1"] == enrolled("s1"), "the first enrolment stays"
    assert {s.student_ref for s in await repo.enrolled(SCHOOL, YEAR)} == {"s1", "s2"}
    assert await repo.enrolments_of("2026-2027", ["s1"]) == {}


async def test_entries_are_stored_once_and_come_back_as_the_same_decimals(mongo_client, settings):
    repo = await repository(mongo_client, settings)
    entries = full_year("s1")
    await repo.write(SCHOOL, YEAR, "subject", writes(entries))
    with pytest.raises(TransientError, match="changed meanwhile"):
        await repo.write(SCHOOL, YEAR, "subject", writes(entries[:1], "m2"))  # a second insert loses
    stored = await repo.assessments(SCHOOL, YEAR)
    key = lambda e: (e.student_ref, e.subject, e.term)  # noqa: E731
    assert sorted(stored, key=key) == sorted(entries, key=key), "scores come back as the same Decimals"
    assert await repo.assessments("79000702", YEAR) == []
    found = await repo.stored(SCHOOL, YEAR, "subject", [entry_key("subject", entries[0]), ("s9", "Toán", 1)])
    assert list(found) == [entry_key("subject", entries[0])]
    assert found[entry_key("subject", entries[0])].revision == 1
    assert found[entry_key("subject", entries[0])].message_ids == frozenset({"m1"})


async def test_a_change_is_applied_once_and_logged_with_who_when_old_new_and_why(mongo_client, settings):
    repo = await repository(mongo_client, settings)
    before = scored("s1", "Tin học", 1, ["8", "7"], "7", "8")
    after = scored("s1", "Tin học", 1, ["9", "7"], "7", "8")
    await repo.write(SCHOOL, YEAR, "subject", writes([before]))
    await repo.write(SCHOOL, YEAR, "subject", writes([after], "m2", revision=1, old=before, reason="nhập sai"))
    with pytest.raises(TransientError):
        await repo.write(SCHOOL, YEAR, "subject", writes([before], "m3", revision=1, old=after))  # stale revision
    assert await repo.assessments(SCHOOL, YEAR) == [after]
    [change] = await repo.changes(SCHOOL, YEAR)
    assert (change["by"], change["reason"], change["message_id"]) == ("gv-1", "nhập sai", "m2")
    assert change["old"]["regular"] == ["8", "7"] and change["new"]["regular"] == ["9", "7"]
    assert change["at"] == NOW, "the time of the change is kept as a date"


async def test_terms_close_reopen_and_a_late_redelivery_does_not_close_again(mongo_client, settings):
    repo = await repository(mongo_client, settings)
    assert [s.closed for s in (await repo.term_statuses(SCHOOL, YEAR)).values()] == [False, False]
    assert await repo.set_term(SCHOOL, YEAR, 1, True, "ht-1", NOW, "", "close-1")
    assert not await repo.set_term(SCHOOL, YEAR, 1, True, "ht-1", NOW, "", "close-1")
    assert (await repo.term_statuses(SCHOOL, YEAR))[1].closed
    assert await repo.set_term(SCHOOL, YEAR, 1, False, "ht-1", NOW, "sửa điểm", "reopen-1")
    status = (await repo.term_statuses(SCHOOL, YEAR))[1]
    assert not status.closed and status.reopened
    assert not await repo.set_term(SCHOOL, YEAR, 1, True, "ht-1", NOW, "", "close-1"), "an old close does not lock again"
    assert await repo.set_term(SCHOOL, YEAR, 1, True, "ht-1", NOW, "", "close-2")
    assert await repo.close_year(SCHOOL, YEAR, NOW) and not await repo.close_year(SCHOOL, YEAR, NOW)
    assert await repo.is_closed(SCHOOL, YEAR) and not await repo.is_closed("79000702", YEAR)


async def test_record_versions_are_stored_once_and_come_back_unchanged(mongo_client, settings):
    repo = await repository(mongo_client, settings)
    document = {
        "record_id": "r1",
        "version": 1,
        "subjects": [{"name": "Toán", "term_1": None, "year": {"average": "7.3"}}],
        "learning_result": {"term_1": "Khá", "term_2": None, "year": None},
        "complete": False,
        "missing": [{"subject": "Toán", "term": 2}],
    }
    records = [
        RecordVersion(
            record_id=rid, version=1, school_code=SCHOOL, school_year=YEAR, student_ref=rid, document=document
        )
        for rid in ("r2", "r1", "r3")
    ]
    assert await repo.add_records(records) == 3
    assert await repo.add_records([records[0].model_copy(update={"document": {}})]) == 0
    stored = await repo.records(SCHOOL, YEAR, 1)
    assert [r.record_id for r in stored] == ["r1", "r2", "r3"]
    assert json.dumps(stored[0].document) == json.dumps(document), "types, nulls and key order survive"
    assert await repo.records(SCHOOL, YEAR, 2) == []


async def wait_for(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_term_end_over_the_broker(mongo_client, settings):
    refs = [f"s{n:02d}" for n in range(12)]
    asked: list[list[str]] = []

    async def lookup(wanted: list[str]) -> StudentSnapshots:
        asked.append(wanted)
        return StudentSnapshots(students=[snapshot(r) for r in wanted if r != "s11"], missing=["s11"])

    service = build_app(settings, mongo=mongo_client, lookup=lookup, issuer_keys=KEYS)
    db = mongo_client[settings.names().database("grades")]
    async with probing(settings, AssessmentsRecorded, RecordsReady, TermChanged) as probes, running(service):
        invalid = scored("s00", "Toán", 1, ["8", "7"], "7", "8")
        entries = [e for ref in refs for e in full_year(ref, "8.5")]
        entries = [e for e in entries if not (e.student_ref == "s00" and e.subject == "Toán" and e.term == 1)]
        command = RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=[*entries, invalid], actor=subject_teacher())
        # Entries that arrive before their students' enrolment wait for it (retried), then are stored.
        await service.bus.publish(command)
        assessments_queue = service.topology.queue_name(RecordAssessments.ROUTING_KEY)
        await wait_for(lambda: _retried(service, assessments_queue))
        await service.bus.publish(StudentsRegistered(students=[enrolled(ref) for ref in refs]))

        dead = await drain(settings.amqp_url, assessments_queue + ".dlq", 15)
        assert len(dead) == 1
        assert dead[0].headers[REASON_HEADER] == "invalid"
        assert "needs 4 regular assessments per term, got 2" in dead[0].headers[ERROR_HEADER]
        assert RecordAssessments.model_validate_json(dead[0].body).entries == [invalid]

        recorded = await drain(settings.amqp_url, probes[AssessmentsRecorded.ROUTING_KEY], 15)
        assert [AssessmentsRecorded.model_validate_json(m.body).entries for m in recorded] == [len(entries)]
        assert await db["assessments"].count_documents({}) == len(entries)

        # the homeroom teacher's entries, by request: answered with what was stored
        conduct = RecordConduct(school_code=SCHOOL, school_year=YEAR, entries=[h for r in refs for h in homeroom(r)],
                                actor=homeroom_teacher())
        reply = await service.bus.request(conduct)
        assert reply["new"] == 24 and reply["rejected"] == []

        # the year cannot close while a term is open; closing terms is answered too
        await service.bus.publish(CloseYear(school_code=SCHOOL, school_year=YEAR, actor=principal()))
        refused = await drain(settings.amqp_url, service.topology.queue_name(CloseYear.ROUTING_KEY) + ".dlq", 15)
        assert "is still open" in refused[0].headers[ERROR_HEADER]
        for term in (1, 2):
            closed = TermChanged.model_validate(await service.bus.request(
                CloseTerm(school_code=SCHOOL, school_year=YEAR, term=term, actor=principal())))
            assert closed.state == "closed"
        await service.bus.publish(ReopenTerm(school_code=SCHOOL, school_year=YEAR, term=2, reason="x", actor=subject_teacher()))
        forbidden = await drain(settings.amqp_url, service.topology.queue_name(ReopenTerm.ROUTING_KEY) + ".dlq", 15)
        assert forbidden[0].headers[REASON_HEADER] == "forbidden"

        close = CloseYear(school_code=SCHOOL, school_year=YEAR, actor=principal())
        await service.bus.publish(close)
        ready = await take(settings.amqp_url, probes[RecordsReady.ROUTING_KEY], 2)
        events = [RecordsReady.model_validate_json(m.body) for m in ready]
        assert sorted(len(e.records) for e in events) == [1, 10], "11 records in chunks of 10"
        published = {r.student_ref: r for e in events for r in e.records}
        assert set(published) == set(refs) - {"s11"}
        assert asked == [refs]
        assert published["s00"].document["complete"] is False
        assert published["s00"].document["missing"] == [{"subject": "Toán", "term": 1}]
        assert published["s01"].document["complete"] is True
        assert published["s01"].document["learning_result"] == {"term_1": "Tốt", "term_2": "Tốt", "year": "Tốt"}
        assert published["s01"].document["promotion"] == {"decision": "Được lên lớp"}
        assert published["s01"].record_id == record_id(SCHOOL, YEAR, "s01")

        stored = await db["records"].find_one({"student_ref": "s01"}, {"_id": 0})
        assert record_version(stored) == published["s01"]

        explained = RecordExplanation.model_validate(await service.bus.request(
            ExplainRecord(record_id=published["s01"].record_id, actor=homeroom_teacher())))
        assert explained.found and any(line.about == "conduct/year" for line in explained.lines)

        # Redelivered (same message id): nothing is stored twice, the same records are announced again.
        await service.bus.publish(close)
        again = await take(settings.amqp_url, probes[RecordsReady.ROUTING_KEY], 2)
        assert sorted(m.message_id for m in again) == sorted(m.message_id for m in ready)
        assert await db["records"].count_documents({}) == 11
        assert service.registry.get_sample_value("hocba_records_assembled_total") == 11

        # The year is closed: late entries are rejected and dead-lettered.
        await service.bus.publish(
            RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=[invalid], actor=subject_teacher())
        )
        late = await drain(settings.amqp_url, assessments_queue + ".dlq", 15)
        assert len(late) == 1 and "2025-2026 is closed" in late[0].headers[ERROR_HEADER]

        # Only the record documents hold the student's personal ID; everything else holds references.
        for collection in ("enrolments", "assessments", "terms"):
            dumped = json_util.dumps([d async for d in db[collection].find()])
            assert "079214000123" not in dumped and "Nguyễn" not in dumped, collection
        assert "079214000123" in json_util.dumps(await db["records"].find_one())


async def _retried(service, queue: str) -> bool:
    return (service.registry.get_sample_value("hocba_messages_retried_total", {"queue": queue}) or 0) >= 1


async def take(url: str, queue: str, count: int, timeout: float = 30.0) -> list:
    """Exactly `count` messages from `queue`, however they trickle in."""
    taken: list = []
    deadline = time.monotonic() + timeout
    while len(taken) < count and time.monotonic() < deadline:
        taken += await drain(url, queue, timeout=min(2.0, max(deadline - time.monotonic(), 0.1)))
    assert len(taken) == count, f"{len(taken)} of {count} messages arrived on {queue}"
    return taken
