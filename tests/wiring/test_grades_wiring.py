"""grades' app under FastStream's in-memory broker: routing, contracts, identity look-ups, metrics."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from faststream.rabbit import RabbitResponse, TestRabbitBroker

from services.grades.app import build_app
from services.grades.domain import record_id
from services.grades.repository import InMemoryGradesRepository
from shared.contracts.grades import (
    AssessmentsRecorded,
    CloseTerm,
    CloseYear,
    ConductRecorded,
    ExplainRecord,
    RecordAssessments,
    RecordConduct,
    RecordExplanation,
    RecordsReady,
    TermChanged,
)
from shared.contracts.identity import LookupStudents, StudentSnapshots, StudentsRegistered
from shared.messaging import ERROR_HEADER, REASON_HEADER, quorum_queue, reply
from shared.service import ServiceApp
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
from tests.wiring.conftest import dead_letters, probe, send


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


@pytest.fixture
def service(settings):
    repo = InMemoryGradesRepository()
    return build_app(settings, repository=repo, issuer_keys=KEYS), repo


async def close_terms(repo) -> None:
    for term in (1, 2):
        await repo.set_term(SCHOOL, YEAR, term, True, "ht-1", datetime.now(UTC), "", f"close-{term}")


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
    dead = dead_letters(svc, RecordAssessments)
    await repo.enrol([enrolled("s1")])
    invalid = scored("s1", "Toán", 1, ["8", "7"], "7", "8")
    entries = [*full_year("s1", skip=frozenset({("Toán", 1)})), invalid]
    command = RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=entries, actor=subject_teacher())
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


async def test_forbidden_entries_and_commands_without_a_token_are_dead_lettered_with_their_reason(service):
    svc, repo = service
    recorded = probe(svc, AssessmentsRecorded)
    dead = dead_letters(svc, RecordAssessments)
    await repo.enrol([enrolled("s1")])
    mine, theirs = scored("s1", "Tin học", 1, ["8", "7"], "7", "8"), scored("s1", "Công nghệ", 1, ["8", "7"], "7", "8")
    teacher = subject_teacher(subjects={"Tin học"})
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=[mine, theirs], actor=teacher))
        await send(broker, svc, RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=[theirs]))

    assert await repo.assessments(SCHOOL, YEAR) == [mine]
    assert [(r.entries, [x.code for x in r.rejected]) for r in recorded] == [(1, ["forbidden"])]
    assert [h[REASON_HEADER] for _, h in dead] == ["forbidden", "unauthenticated"]
    assert RecordAssessments.model_validate(dead[0][0]).entries == [theirs]
    assert "not assigned to teach Công nghệ in class 6A1" in dead[0][1][ERROR_HEADER]
    assert svc.registry.get_sample_value("hocba_assessments_rejected_total", {"reason": "forbidden"}) == 1
    assert svc.registry.get_sample_value(
        "hocba_grades_commands_refused_total", {"command": "RecordAssessments", "reason": "unauthenticated"}
    ) == 1


async def test_conduct_and_term_locks_over_the_broker(service):
    svc, repo = service
    conducts = probe(svc, ConductRecorded)
    changed = probe(svc, TermChanged)
    await repo.enrol([enrolled("s1")])
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, RecordConduct(school_code=SCHOOL, school_year=YEAR, entries=homeroom("s1"),
                                              actor=homeroom_teacher()))
        await send(broker, svc, CloseTerm(school_code=SCHOOL, school_year=YEAR, term=1, actor=principal()))
    assert [c.new for c in conducts] == [2]
    assert [(t.term, t.state, t.by) for t in changed] == [(1, "closed", "ht-1")]
    assert (await repo.term_statuses(SCHOOL, YEAR))[1].closed


async def test_closing_the_year_asks_identity_and_publishes_records_in_chunks(service):
    svc, repo = service
    ready = probe(svc, RecordsReady)
    refs = [f"s{n:02d}" for n in range(13)]
    asked = identity_replier(svc, known=set(refs) - {"s05"})
    await repo.enrol([enrolled(ref) for ref in refs])
    await close_terms(repo)
    close = CloseYear(school_code=SCHOOL, school_year=YEAR, actor=principal())
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, close)

    assert [r.student_refs for r in asked] == [refs], "one look-up request for 13 students"
    assert [len(e.records) for e in ready] == [10, 2], "chunks of settings.chunk_size"
    records = [r for e in ready for r in e.records]
    assert {r.student_ref for r in records} == set(refs) - {"s05"}
    assert {r.record_id for r in records} == {record_id(SCHOOL, YEAR, r) for r in set(refs) - {"s05"}}
    first = next(r for r in records if r.student_ref == "s00")
    assert first.version == 1 and first.document["complete"] is False
    assert first.document["student"]["identity"]["personal_id"] == "079214000123"
    assert repo.closed.keys() == {(SCHOOL, YEAR)}
    assert svc.registry.get_sample_value("hocba_records_assembled_total") == 12
    assert svc.registry.get_sample_value("hocba_records_unassembled_total", {"reason": "unknown-student"}) == 1


async def test_a_redelivered_close_publishes_the_same_records_again(settings):
    repo = InMemoryGradesRepository()

    async def lookup(refs: list[str]) -> StudentSnapshots:
        return StudentSnapshots(students=[snapshot(r) for r in refs])

    svc = build_app(settings, repository=repo, lookup=lookup, issuer_keys=KEYS)
    ready = probe(svc, RecordsReady)
    await repo.enrol([enrolled("s1"), enrolled("s2")])
    await close_terms(repo)
    close = CloseYear(school_code=SCHOOL, school_year=YEAR, actor=principal())
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, close)
        await send(broker, svc, close)

    assert len(ready) == 2
    assert ready[0].message_id == ready[1].message_id
    assert ready[0].records == ready[1].records
    assert svc.registry.get_sample_value("hocba_records_assembled_total") == 2


async def test_a_record_is_explained_by_request(settings):
    repo = InMemoryGradesRepository()

    async def lookup(refs: list[str]) -> StudentSnapshots:
        return StudentSnapshots(students=[snapshot(r) for r in refs])

    svc = build_app(settings, repository=repo, lookup=lookup, issuer_keys=KEYS)
    await repo.enrol([enrolled("s1")])
    await close_terms(repo)
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, CloseYear(school_code=SCHOOL, school_year=YEAR, actor=principal()))
        response = await broker.request(
            ExplainRecord(record_id=record_id(SCHOOL, YEAR, "s1"), actor=homeroom_teacher()),
            exchange=svc.bus.exchange,
            routing_key=ExplainRecord.ROUTING_KEY,
        )
        answer = RecordExplanation.model_validate(await response.decode())
    assert answer.found and answer.student_name == "Nguyễn Văn An" and answer.rule_set == "circular-22-2021/v2"
