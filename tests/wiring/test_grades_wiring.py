"""grades' app under FastStream's in-memory broker: routing, contracts, identity look-ups, metrics."""

from __future__ import annotations

from typing import Any

import pytest
from faststream.rabbit import RabbitQueue, RabbitResponse, TestRabbitBroker
from faststream.rabbit.annotations import RabbitMessage

from services.grades.app import build_app
from services.grades.domain import record_id
from services.grades.repository import InMemoryGradesRepository
from shared.contracts.grades import AssessmentsRecorded, CloseYear, RecordAssessments, RecordsReady
from shared.contracts.identity import LookupStudents, StudentSnapshots, StudentsRegistered
from shared.messaging import ERROR_HEADER, REASON_HEADER, quorum_queue, reply
from shared.service import ServiceApp
from tests.unit.grades.builders import SCHOOL, YEAR, enrolled, full_year, scored, snapshot
from tests.wiring.conftest import probe, send


def identity_replier(service: ServiceApp, known: set[str]) -> list[LookupStudents]:
    """Answer LookupStudents on the same broker as identity would; returns the requests seen."""
    asked: list[LookupStudents] = []
    names = service.settings.names()
    queue = quorum_queue(names, names.queue("identity", LookupStudents.ROUTING_KEY), LookupStudents.ROUTING_KEY, 3)

    @service.broker.subscriber(queue, exchange=service.bus.exchange)
    async def answer(request: LookupStudents) -> RabbitResponse:
        asked.append(request)
        refs = request.student_refs
        found = [snapshot(r) for r in refs if r in known]
        return reply(StudentSnapshots(students=found, missing=[r for r in refs if r not in known]))

    return asked


def dead_letters(service: ServiceApp, routing_key: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Collect what the service dead-letters from its queue for `routing_key`: (body, headers)."""
    received: list[tuple[dict[str, Any], dict[str, Any]]] = []
    queue = service.topology.queue_name(routing_key)

    @service.broker.subscriber(RabbitQueue(f"{queue}.dlq", routing_key=queue), exchange=service.bus.dlx)
    async def collect(body: dict[str, Any], message: RabbitMessage) -> None:
        received.append((body, dict(message.headers)))

    return received


@pytest.fixture
def service(settings):
    repo = InMemoryGradesRepository()
    return build_app(settings, repository=repo), repo


async def test_registered_students_are_enrolled(service):
    svc, repo = service
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, StudentsRegistered(students=[enrolled("s1"), enrolled("s2")]))
        await send(broker, svc, StudentsRegistered(students=[enrolled("s1")]))
    assert set(await repo.enrolments_of(YEAR, ["s1", "s2"])) == {"s1", "s2"}
    assert svc.registry.get_sample_value("hocba_students_enrolled_total") == 2


async def test_assessments_are_stored_announced_and_invalid_ones_dead_lettered(service):
    svc, repo = service
    recorded = probe(svc, AssessmentsRecorded)
    dead = dead_letters(svc, RecordAssessments.ROUTING_KEY)
    await repo.enrol([enrolled("s1")])
    invalid = scored("s1", "Toán", 1, ["8", "7"], "7", "8")
    entries = [*full_year("s1", skip=frozenset({("Toán", 1)})), invalid]
    command = RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=entries)
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, command)

    assert len(await repo.assessments(SCHOOL, YEAR)) == 23
    assert len(recorded) == 1 and recorded[0].entries == 23 and recorded[0].source_message_id == command.message_id
    assert len(dead) == 1, "the invalid entry was not dead-lettered"
    body, headers = dead[0]
    assert RecordAssessments.model_validate(body).entries == [invalid]
    assert headers[REASON_HEADER] == "invalid"
    assert "Toán (140 periods a year) needs 4 regular assessments" in headers[ERROR_HEADER]
    assert svc.registry.get_sample_value("hocba_assessments_recorded_total") == 23
    assert svc.registry.get_sample_value("hocba_assessments_rejected_total", {"reason": "regular-count"}) == 1


async def test_a_message_without_valid_entries_is_dead_lettered_whole(service):
    svc, repo = service
    recorded = probe(svc, AssessmentsRecorded)
    dead = dead_letters(svc, RecordAssessments.ROUTING_KEY)
    await repo.enrol([enrolled("s1")])
    command = RecordAssessments(
        school_code=SCHOOL, school_year=YEAR, entries=[scored("s1", "Tin học", 1, ["8", "7"], "7", "7.25")]
    )
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, command)

    assert await repo.assessments(SCHOOL, YEAR) == []
    assert recorded == []
    assert len(dead) == 1
    body, headers = dead[0]
    assert body["message_id"] == command.message_id, "the original message is dead-lettered"
    assert headers[REASON_HEADER] == "invalid"
    assert "final 7.25 has more than one decimal" in headers[ERROR_HEADER]
    assert svc.registry.get_sample_value("hocba_assessments_rejected_total", {"reason": "score-precision"}) == 1


async def test_closing_the_year_asks_identity_and_publishes_records_in_chunks(service):
    svc, repo = service
    ready = probe(svc, RecordsReady)
    refs = [f"s{n:02d}" for n in range(13)]
    asked = identity_replier(svc, known=set(refs) - {"s05"})
    await repo.enrol([enrolled(ref) for ref in refs])
    await repo.add_assessments(SCHOOL, YEAR, full_year("s00", "9.0"))
    close = CloseYear(school_code=SCHOOL, school_year=YEAR)
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, close)

    assert [r.student_refs for r in asked] == [refs], "one look-up request for 13 students"
    assert [len(e.records) for e in ready] == [10, 2], "chunks of settings.chunk_size"
    records = [r for e in ready for r in e.records]
    assert {r.student_ref for r in records} == set(refs) - {"s05"}
    assert {r.record_id for r in records} == {record_id(SCHOOL, YEAR, r) for r in set(refs) - {"s05"}}
    first = next(r for r in records if r.student_ref == "s00")
    assert first.version == 1 and first.document["complete"] is True
    assert first.document["learning_result"]["year"] == "Tốt"
    assert first.document["student"]["identity"]["personal_id"] == "079214000123"
    assert repo.closed.keys() == {(SCHOOL, YEAR)}
    assert svc.registry.get_sample_value("hocba_records_assembled_total") == 12
    assert svc.registry.get_sample_value("hocba_records_unassembled_total", {"reason": "unknown-student"}) == 1


async def test_a_redelivered_close_publishes_the_same_records_again(settings):
    repo = InMemoryGradesRepository()

    async def lookup(refs: list[str]) -> StudentSnapshots:
        return StudentSnapshots(students=[snapshot(r) for r in refs])

    svc = build_app(settings, repository=repo, lookup=lookup)
    ready = probe(svc, RecordsReady)
    await repo.enrol([enrolled("s1"), enrolled("s2")])
    close = CloseYear(school_code=SCHOOL, school_year=YEAR)
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, close)
        await send(broker, svc, close)

    assert len(ready) == 2
    assert ready[0].message_id == ready[1].message_id
    assert ready[0].records == ready[1].records
    assert svc.registry.get_sample_value("hocba_records_assembled_total") == 2
