"""identity's app under FastStream's in-memory broker: routing, contracts, replies, metrics."""

from __future__ import annotations

from datetime import date

import pytest
from faststream.rabbit import TestRabbitBroker

from services.identity.app import build_app
from services.identity.repository import InMemoryStudentRepository
from tests.wiring.conftest import probe, send
from shared.contracts.identity import (
    Enrolment,
    LookupStudents,
    RegisterStudents,
    StudentIdentity,
    StudentRegistration,
    StudentsRegistered,
)


def registration(personal_id: str, sex: str = "M") -> StudentRegistration:
    return StudentRegistration(
        identity=StudentIdentity(
            personal_id=personal_id, full_name="Nguyễn Văn An", date_of_birth=date(2014, 9, 5), sex=sex
        ),
        enrolment=Enrolment(school_code="79000701", school_year="2025-2026", grade=6, class_name="6A1"),
    )


@pytest.fixture
def service(settings):
    repo = InMemoryStudentRepository()
    return build_app(settings, repository=repo), repo


async def test_register_publishes_refs_not_personal_ids(service):
    svc, repo = service
    seen = probe(svc, StudentsRegistered)
    async with TestRabbitBroker(svc.broker) as broker:
        await send(
            broker, svc, RegisterStudents(students=[registration("079214000123"), registration("079214000124")])
        )
    assert len(repo.by_ref) == 2
    assert len(seen) == 1, "StudentsRegistered was not published once"
    event = seen[0]
    assert {s.student_ref for s in event.students} == set(repo.by_ref)
    assert "079214000123" not in event.model_dump_json()


async def test_invalid_rows_are_left_out_and_counted(service):
    svc, repo = service
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, RegisterStudents(students=[registration("079214000123"), registration("079314000999")]))
    assert [i.personal_id for i, _ in repo.by_ref.values()] == ["079214000123"]
    rejected = svc.registry.get_sample_value("hocba_students_rejected_total", {"reason": "digit"})
    assert rejected == 1


async def test_lookup_replies_with_snapshots_and_missing(service):
    svc, repo = service
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, RegisterStudents(students=[registration("079214000123")]))
        ref = next(iter(repo.by_ref))
        response = await broker.request(
            LookupStudents(student_refs=[ref, "unknown"]),
            exchange=svc.bus.exchange,
            routing_key=LookupStudents.ROUTING_KEY,
        )
        body = await response.decode()
    assert body["students"][0]["identity"]["personal_id"] == "079214000123"
    assert body["missing"] == ["unknown"]
