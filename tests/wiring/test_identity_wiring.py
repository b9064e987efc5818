"""identity's app under FastStream's in-memory broker: routing, contracts, replies, dead letters, metrics."""

from __future__ import annotations

from datetime import date

import pytest
from faststream.rabbit import TestRabbitBroker

from services.identity.app import build_app
from services.identity.repository import InMemoryStudentRepository
from shared.contracts.identity import (
    Enrolment,
    FindStudents,
    KeyRotationProgress,
    LookupStudents,
    RegisterStudents,
    RegistrationReport,
    RotateIdentityKey,
    StudentIdentity,
    StudentMatches,
    StudentRegistration,
    StudentsRegistered,
)
from shared.messaging import ERROR_HEADER, REASON_HEADER
from tests.unit.grades.builders import KEYS, school_admin, token
from tests.wiring.conftest import dead_letters, probe, send


def registration(personal_id: str, sex: str = "M", school: str = "79000701") -> StudentRegistration:
    return StudentRegistration(
        identity=StudentIdentity(
            personal_id=personal_id, full_name="Nguyễn Văn An", date_of_birth=date(2014, 9, 5), sex=sex
        ),
        enrolment=Enrolment(school_code=school, school_year="2025-2026", grade=6, class_name="6A1"),
    )


@pytest.fixture
def service(settings):
    repo = InMemoryStudentRepository()
    return build_app(settings, repository=repo, issuer_keys=KEYS), repo


async def test_register_publishes_refs_not_personal_ids(service):
    svc, repo = service
    seen = probe(svc, StudentsRegistered)
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, RegisterStudents(students=[registration("079214000123"), registration("079214000124")],
                                                 actor=school_admin()))
    assert len(repo.docs) == 2
    assert len(seen) == 1, "StudentsRegistered was not published once"
    event = seen[0]
    assert {s.student_ref for s in event.students} == set(repo.docs)
    assert "079214000123" not in event.model_dump_json()


async def test_invalid_and_forbidden_rows_are_dead_lettered_with_reasons_and_counted(service):
    svc, repo = service
    dead = dead_letters(svc, RegisterStudents)
    rows = [registration("079214000123"), registration("079314000999"), registration("079214000125", school="79000999")]
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, RegisterStudents(students=rows, actor=school_admin()))
        await send(broker, svc, RegisterStudents(students=rows))
    assert [i.personal_id for i, _ in repo.by_ref.values()] == ["079214000123"]
    assert [h[REASON_HEADER] for _, h in dead] == ["forbidden", "invalid", "unauthenticated"]
    assert "row 1: digit 4 is '3'" in dead[1][1][ERROR_HEADER]
    assert svc.registry.get_sample_value("hocba_students_rejected_total", {"reason": "century-sex"}) == 1
    assert svc.registry.get_sample_value("hocba_students_rejected_total", {"reason": "forbidden"}) == 1


async def test_a_requested_registration_is_answered_with_its_report(service):
    svc, _ = service
    dead_letters(svc, RegisterStudents)
    async with TestRabbitBroker(svc.broker) as broker:
        command = RegisterStudents(students=[registration("079214000123"), registration("079314000999")], actor=school_admin())
        response = await broker.request(command, exchange=svc.bus.exchange, routing_key=RegisterStudents.ROUTING_KEY)
        report = RegistrationReport.model_validate(await response.decode())
    assert report.source_message_id == command.message_id
    assert report.new == 1 and [(r.index, r.code) for r in report.rejected] == [(1, "century-sex")]


async def test_lookups_by_ref_and_by_personal_id(service):
    svc, repo = service
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, RegisterStudents(students=[registration("079214000123")], actor=school_admin()))
        ref = next(iter(repo.docs))
        response = await broker.request(
            LookupStudents(student_refs=[ref, "unknown"]), exchange=svc.bus.exchange, routing_key=LookupStudents.ROUTING_KEY
        )
        body = await response.decode()
        found = await broker.request(
            FindStudents(personal_ids=["079214000123", "079214000999"], actor=school_admin()),
            exchange=svc.bus.exchange,
            routing_key=FindStudents.ROUTING_KEY,
        )
        matches = StudentMatches.model_validate(await found.decode())
    assert body["students"][0]["identity"]["personal_id"] == "079214000123"
    assert body["missing"] == ["unknown"]
    assert [s.student_ref for s in matches.students] == [ref] and matches.missing == ["079214000999"]


async def test_a_key_rotation_reports_progress(service):
    svc, repo = service
    progress = probe(svc, KeyRotationProgress)
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, RegisterStudents(students=[registration("079214000123")], actor=school_admin()))
        await send(broker, svc, RotateIdentityKey(actor=token({"operator"}, "")))
    assert [(p.done, p.total, p.finished) for p in progress] == [(0, 1, False), (1, 1, False), (1, 1, True)]
    assert {d["key_id"] for d in repo.docs.values()} == {progress[-1].key_id}
    assert svc.registry.get_sample_value("hocba_identity_keys") == 2
