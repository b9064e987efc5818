"""grades as a running service on the MongoDB-wire server and real RabbitMQ.

Storage promises are in test_grades_repository.py; routing, answers and dead letters run against
real RabbitMQ in tests/wiring/test_grades_wiring.py. What is left needs the whole service running:
the broker's redelivery of a message that must wait, and what MongoDB holds after a term end.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from bson import json_util

from services.grades.app import build_app
from services.grades.domain import record_id
from services.grades.repository import MongoGradesRepository
from shared.contracts.grades import (
    AssessmentsRecorded,
    CloseTerm,
    CloseYear,
    ConductRecorded,
    RecordAssessments,
    RecordConduct,
    RecordsReady,
    TermChanged,
)
from shared.contracts.identity import StudentSnapshot, StudentsRegistered
from shared.crypto.seal import record_claims, seal_problems
from shared.crypto.vault import Vault
from tests.support import drain, probing, running
from tests.unit.grades.builders import (
    KEYS,
    SCHOOL,
    YEAR,
    enrolled,
    full_year,
    homeroom,
    homeroom_teacher,
    principal,
    service_pki,
    snapshot,
    subject_teacher,
    with_pki,
)


async def wait_for(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def retried(service, queue: str) -> bool:
    return (service.registry.get_sample_value("hocba_messages_retried_total", {"queue": queue}) or 0) >= 1


async def take(url: str, queue: str, count: int, timeout: float = 30.0) -> list:
    """Exactly `count` messages from `queue`, however they trickle in."""
    taken: list = []
    deadline = time.monotonic() + timeout
    while len(taken) < count and time.monotonic() < deadline:
        taken += await drain(url, queue, timeout=min(2.0, max(deadline - time.monotonic(), 0.1)))
    assert len(taken) == count, f"{len(taken)} of {count} messages arrived on {queue}"
    return taken


async def test_term_end_on_mongodb_and_rabbitmq(mongo_client, settings, tmp_path):
    """Entries that come before their students' enrolment wait for it (redelivered by the broker), the closed
    year's records are stored once, sealed, and announced again when the close is redelivered, and personal data
    is kept in the record documents only."""
    refs = [f"s{n:02d}" for n in range(12)]
    asked: list[list[str]] = []

    async def lookup(wanted: list[str], purpose: str) -> list[StudentSnapshot]:
        asked.append(wanted)
        return [snapshot(r) for r in wanted if r != "s11"]

    pki = service_pki(tmp_path)
    service = build_app(with_pki(settings, pki), mongo=mongo_client, lookup=lookup, issuer_keys=KEYS)
    db = mongo_client[settings.names().database("grades")]
    async with probing(settings, AssessmentsRecorded, RecordsReady) as probes, running(service):
        entries = [e for ref in refs for e in full_year(ref, "8.5")]
        entries = [e for e in entries if not (e.student_ref == "s00" and e.subject == "Toán" and e.term == 1)]
        await service.bus.publish(
            subject_teacher().signs(RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=entries))
        )
        assessments_queue = service.topology.queue_name(RecordAssessments.ROUTING_KEY)
        await wait_for(lambda: retried(service, assessments_queue))
        await service.bus.publish(StudentsRegistered(students=[enrolled(ref) for ref in refs]))

        recorded = await take(settings.amqp_url, probes[AssessmentsRecorded.ROUTING_KEY], 1)
        assert AssessmentsRecorded.model_validate_json(recorded[0].body).entries == len(entries)
        assert await db["assessments"].count_documents({}) == len(entries)
        assert await drain(settings.amqp_url, assessments_queue + ".dlq", 1.0) == [], "nothing was lost on the way"

        conduct = homeroom_teacher().signs(
            RecordConduct(school_code=SCHOOL, school_year=YEAR, entries=[h for r in refs for h in homeroom(r)])
        )
        assert (await service.bus.request(conduct, ConductRecorded)).new == 24
        for term in (1, 2):
            closed = await service.bus.request(
                principal().signs(CloseTerm(school_code=SCHOOL, school_year=YEAR, term=term)), TermChanged
            )
            assert closed.state == "closed"

        close = principal().signs(CloseYear(school_code=SCHOOL, school_year=YEAR))
        await service.bus.publish(close)
        ready = await take(settings.amqp_url, probes[RecordsReady.ROUTING_KEY], 2)
        events = [RecordsReady.model_validate_json(m.body) for m in ready]
        assert sorted(len(e.records) for e in events) == [1, 10], "11 records in chunks of 10"
        published = {r.student_ref: r for e in events for r in e.records}
        assert set(published) == set(refs) - {"s11"}
        assert asked == [refs[:10], refs[10:]], "one look-up per group of chunk_size classmates"
        assert published["s00"].document["complete"] is False
        assert published["s00"].document["missing"] == [{"subject": "Toán", "term": 1}]
        assert published["s01"].document["complete"] is True
        assert published["s01"].document["learning_result"] == {"term_1": "Tốt", "term_2": "Tốt", "year": "Tốt"}
        assert published["s01"].document["promotion"] == {"decision": "Được lên lớp"}
        assert published["s01"].record_id == record_id(SCHOOL, YEAR, "s01")
        stored = await db["records"].find_one({"student_ref": "s01"})
        assert isinstance(stored["document"], bytes), "the record is stored sealed"
        kept = MongoGradesRepository(db, Vault.for_service(settings, "grades"))
        assert await kept.record(published["s01"].record_id, 1) == published["s01"]
        now = datetime.now(UTC)
        for version in published.values():
            assert seal_problems(version.seal, record_claims(version), pki.trust_store(), "svc-grades", now) == []

        # Redelivered (same message id): nothing is stored twice, the same records are announced again.
        await service.bus.publish(close)
        again = await take(settings.amqp_url, probes[RecordsReady.ROUTING_KEY], 2)
        assert sorted(m.message_id for m in again) == sorted(m.message_id for m in ready)
        assert await db["records"].count_documents({}) == 11
        assert service.registry.get_sample_value("hocba_records_assembled_total") == 11

        # Enrolments, entries and terms hold references; the record documents, which name the student, are sealed.
        for collection in ("enrolments", "assessments", "terms", "records"):
            dumped = json_util.dumps([d async for d in db[collection].find()])
            assert "079214000123" not in dumped and "Nguyễn" not in dumped, collection
