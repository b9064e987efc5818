"""identity against real RabbitMQ and the MongoDB-wire server."""

from __future__ import annotations

from datetime import date

from services.identity.app import build_app
from services.identity.repository import INDEXES, MongoStudentRepository
from shared.contracts.identity import (
    Enrolment,
    StudentsRegistered,
    LookupStudents,
    RegisterStudents,
    StudentIdentity,
    StudentRegistration,
)
from shared.messaging import REASON_HEADER
from shared.mongo import ensure_indexes
from tests.support import drain, probing, running


def registration(personal_id: str) -> StudentRegistration:
    return StudentRegistration(
        identity=StudentIdentity(
            personal_id=personal_id, full_name="Trần Thị Bình", date_of_birth=date(2014, 3, 1), sex="F"
        ),
        enrolment=Enrolment(school_code="79000701", school_year="2025-2026", grade=6, class_name="6A2"),
    )


async def test_repository_keeps_one_student_per_personal_id(mongo_client, settings):
    db = mongo_client[settings.names().database("identity")]
    await ensure_indexes(db, INDEXES)
    repo = MongoStudentRepository(db)
    first = registration("079314000001")
    assert await repo.add_new([("ref-1", first.identity, first.enrolment)]) == 1
    assert await repo.add_new([("ref-2", first.identity, first.enrolment)]) == 0
    assert await repo.refs_by_personal_id(["079314000001"]) == {"079314000001": "ref-1"}
    snapshots = await repo.snapshots(["ref-1", "ref-2"])
    assert list(snapshots) == ["ref-1"] and snapshots["ref-1"].full_name == "Trần Thị Bình"


async def test_registration_and_lookup_over_the_broker(mongo_client, settings):
    service = build_app(settings, mongo=mongo_client)
    async with probing(settings, StudentsRegistered) as probes, running(service):
        await service.bus.publish(
            RegisterStudents(students=[registration("079314000001"), registration("079214000002")])
        )
        queue = service.topology.queue_name(RegisterStudents.ROUTING_KEY) + ".dlq"
        dead = await drain(settings.amqp_url, queue, timeout=10)
        assert len(dead) == 1
        assert dead[0].headers[REASON_HEADER] == "invalid"
        body = RegisterStudents.model_validate_json(dead[0].body)
        assert [s.identity.personal_id for s in body.students] == ["079214000002"]

        registered = await drain(settings.amqp_url, probes[StudentsRegistered.ROUTING_KEY], timeout=10)
        assert len(registered) == 1
        assert len(StudentsRegistered.model_validate_json(registered[0].body).students) == 1

        db = mongo_client[settings.names().database("identity")]
        stored = await db["students"].find_one({"personal_id": "079314000001"})
        reply = await service.bus.request(LookupStudents(student_refs=[stored["_id"]]))
        assert reply["students"][0]["identity"]["personal_id"] == "079314000001"
