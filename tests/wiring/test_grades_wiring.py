"""grades' app on the bus, in memory and on RabbitMQ: routing, contracts, answers, identity look-ups, seals, the
access log, dead letters, metrics."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from faststream.rabbit import RabbitResponse

from services.grades.app import build_app
from services.grades.domain import record_id
from services.grades.repository import InMemoryGradesRepository
from shared.auth import verify_token
from shared.contracts.access import AccessLog, ListGradesAccesses
from shared.contracts.base import Acting
from shared.contracts.grades import (
    AmendRecord,
    AssessmentsRecorded,
    CloseTerm,
    CloseYear,
    ConductRecorded,
    ExplainRecord,
    RecordAmended,
    RecordAssessments,
    RecordConduct,
    RecordExplanation,
    RecordsReady,
    ReopenTerm,
    TermChanged,
)
from shared.contracts.identity import LookupStudents, StudentSnapshot, StudentSnapshots, StudentsRegistered
from shared.contracts.signing import RecordsCompleted, SignedRecord
from shared.crypto.pki import DevPki
from shared.crypto.seal import record_claims, seal_problems
from shared.errors import Refused
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
    operator,
    principal,
    scored,
    service_pki,
    snapshot,
    subject_teacher,
    with_pki,
)
from tests.wiring.conftest import dead_letters, probe

PRINCIPAL = Acting(subject="ht-1", roles=["principal"], school_code=SCHOOL)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> DevPki:
    return service_pki(tmp_path_factory.mktemp("grades-wiring-pki"))


@pytest.fixture
def settings(settings, pki):
    """The wiring settings, with the PKI that holds grades' certificate configured."""
    return with_pki(settings, pki)


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


async def everyone_knows(refs: list[str], purpose: str) -> list[StudentSnapshot]:
    """A stand-in for identity that knows every student."""
    return [snapshot(r) for r in refs]


@pytest.fixture
def repo() -> InMemoryGradesRepository:
    return InMemoryGradesRepository()


@pytest.fixture
def service(settings, repo) -> ServiceApp:
    return build_app(settings, repository=repo, issuer_keys=KEYS)


def registered(*refs: str) -> StudentsRegistered:
    return StudentsRegistered(students=[enrolled(ref) for ref in refs])


def close_term(term: int) -> CloseTerm:
    return principal().signs(CloseTerm(school_code=SCHOOL, school_year=YEAR, term=term))


def close_year() -> CloseYear:
    return principal().signs(CloseYear(school_code=SCHOOL, school_year=YEAR))


def refused(service: ServiceApp, message: type, reason: str) -> float:
    """How many `message`s the edge refused whole for `reason`."""
    queue = service.topology.queue_name(message.ROUTING_KEY)
    return service.registry.get_sample_value("hocba_messages_refused_total", {"queue": queue, "reason": reason}) or 0


async def test_registered_students_are_enrolled(service, repo, wired):
    async with wired(service) as wire:
        await wire.send(registered("s1", "s2"))
        await wire.send(registered("s1"))
    assert set(await repo.enrolments_of(YEAR, ["s1", "s2", "s3"])) == {"s1", "s2"}
    assert service.registry.get_sample_value("hocba_students_enrolled_total") == 2


async def test_assessments_are_stored_announced_and_invalid_ones_answered_not_dead_lettered(service, repo, wired):
    recorded = probe(service, AssessmentsRecorded)
    dead = dead_letters(service, RecordAssessments)
    invalid = scored("s1", "Toán", 1, ["8", "7"], "7", "8")
    entries = [*full_year("s1", skip=frozenset({("Toán", 1)})), invalid]
    command = subject_teacher().signs(RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=entries))
    async with wired(service) as wire:
        await wire.send(registered("s1"))
        await wire.send(command)

    assert len(await repo.assessments(SCHOOL, YEAR)) == 23
    assert [(r.entries, r.source_message_id) for r in recorded] == [(23, command.message_id)]
    assert recorded[0].actor is None and recorded[0].by.subject == "gv-1"
    assert [(r.index, r.code) for r in recorded[0].rejected] == [(23, "regular-count")]
    assert "Toán (140 periods a year) needs 4 regular assessments" in recorded[0].rejected[0].reason
    assert dead == [], "a teacher's mistake is announced and counted, not dead-lettered"
    assert service.registry.get_sample_value("hocba_assessments_recorded_total") == 23
    assert service.registry.get_sample_value("hocba_assessments_rejected_total", {"reason": "regular-count"}) == 1


async def test_forbidden_entries_and_commands_without_a_token_are_dead_lettered_with_their_reason(service, repo, wired):
    recorded = probe(service, AssessmentsRecorded)
    dead = dead_letters(service, RecordAssessments)
    mine, theirs = scored("s1", "Tin học", 1, ["8", "7"], "7", "8"), scored("s1", "Công nghệ", 1, ["8", "7"], "7", "8")
    teacher = subject_teacher(subjects={"Tin học"})
    async with wired(service) as wire:
        await wire.send(registered("s1"))
        await wire.send(teacher.signs(RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=[mine, theirs])))
        await wire.send(RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=[theirs]))

    assert await repo.assessments(SCHOOL, YEAR) == [mine]
    assert [(r.entries, [x.code for x in r.rejected]) for r in recorded] == [(1, ["forbidden"])]
    assert [h[REASON_HEADER] for _, h in dead] == ["forbidden", "unauthenticated"]
    assert RecordAssessments.model_validate(dead[0][0]).entries == [theirs]
    assert "not assigned to teach Công nghệ in class 6A1" in dead[0][1][ERROR_HEADER]
    assert RecordAssessments.model_validate(dead[1][0]).entries == [theirs]
    assert service.registry.get_sample_value("hocba_assessments_rejected_total", {"reason": "forbidden"}) == 1
    assert refused(service, RecordAssessments, "unauthenticated") == 1


async def test_recording_and_closing_terms_are_answered_when_asked(service, repo, wired):
    async with wired(service) as wire:
        await wire.send(registered("s1"))
        answer = await wire.request(
            subject_teacher().signs(RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=full_year("s1"))),
            AssessmentsRecorded,
        )
        closed = await wire.request(close_term(1), TermChanged)
    assert (answer.entries, answer.new, answer.rejected) == (24, 24, [])
    assert (closed.term, closed.state, closed.by, closed.actor) == (1, "closed", PRINCIPAL, None)
    assert (await repo.term_statuses(SCHOOL, YEAR))[1].closed


async def test_conduct_and_term_locks_over_the_broker(service, repo, wired):
    conducts = probe(service, ConductRecorded)
    changed = probe(service, TermChanged)
    dead = dead_letters(service, ReopenTerm)
    async with wired(service) as wire:
        await wire.send(registered("s1"))
        await wire.send(
            homeroom_teacher().signs(RecordConduct(school_code=SCHOOL, school_year=YEAR, entries=homeroom("s1")))
        )
        await wire.send(close_term(1))
        await wire.send(subject_teacher().signs(ReopenTerm(school_code=SCHOOL, school_year=YEAR, term=1, reason="x")))
    assert [c.new for c in conducts] == [2]
    assert [(t.term, t.state, t.by) for t in changed] == [(1, "closed", PRINCIPAL)]
    assert (await repo.term_statuses(SCHOOL, YEAR))[1].closed
    [(_, headers)] = dead
    assert headers[REASON_HEADER] == "forbidden" and "only the principal may" in headers[ERROR_HEADER]
    assert refused(service, ReopenTerm, "forbidden") == 1
    assert service.registry.get_sample_value("hocba_terms_changed_total", {"action": "close"}) == 1


async def test_the_year_does_not_close_while_a_term_is_open(service, repo, wired):
    dead = dead_letters(service, CloseYear)
    async with wired(service) as wire:
        await wire.send(registered("s1"))
        await wire.send(close_term(1))
        await wire.send(close_year())
    [(_, headers)] = dead
    assert headers[REASON_HEADER] == "invalid" and "term 2 of 2025-2026 is still open" in headers[ERROR_HEADER]
    assert not await repo.is_closed(SCHOOL, YEAR)


async def test_closing_the_year_asks_identity_and_publishes_sealed_records_in_chunks(service, repo, wired, pki):
    ready = probe(service, RecordsReady)
    refs = [f"s{n:02d}" for n in range(13)]
    asked = identity_replier(service, known=set(refs) - {"s05"})
    async with wired(service) as wire:
        await wire.send(registered(*refs))
        for term in (1, 2):
            await wire.send(close_term(term))
        await wire.send(close_year())

    assert [r.student_refs for r in asked] == [refs[:10], refs[10:]], "one look-up per group of chunk_size classmates"
    identity = KEYS.for_service("identity", services=pki.trust_store)
    assert verify_token(asked[0], identity).is_service("grades"), "grades asks with its own certificate"
    assert asked[0].purpose == f"assembling the {YEAR} academic records of school {SCHOOL} (year closed)"
    assert service.settings.chunk_size == 10
    assert [len(e.records) for e in ready] == [9, 3], "a message per group of settings.chunk_size classmates"
    records = [r for e in ready for r in e.records]
    assert {r.student_ref for r in records} == set(refs) - {"s05"}
    assert {r.record_id for r in records} == {record_id(SCHOOL, YEAR, r) for r in set(refs) - {"s05"}}
    first = next(r for r in records if r.student_ref == "s00")
    assert first.version == 1 and first.document["complete"] is False
    assert first.document["student"]["identity"]["personal_id"] == "079214000123"
    assert await repo.is_closed(SCHOOL, YEAR)
    assert await repo.records(SCHOOL, YEAR, 1) == sorted(records, key=lambda r: r.record_id)
    now = datetime.now(UTC)
    assert all(seal_problems(r.seal, record_claims(r), pki.trust_store(), "svc-grades", now) == [] for r in records)
    assert all(e.by == PRINCIPAL and e.actor is None for e in ready), "who closed the year, never their token"
    assert service.registry.get_sample_value("hocba_records_assembled_total") == 12
    assert service.registry.get_sample_value("hocba_records_unassembled_total", {"reason": "unknown-student"}) == 1


async def test_a_redelivered_close_publishes_the_same_records_again(settings, repo, wired):
    service = build_app(settings, repository=repo, lookup=everyone_knows, issuer_keys=KEYS)
    ready = probe(service, RecordsReady)
    close = close_year()
    async with wired(service) as wire:
        await wire.send(registered("s1", "s2"))
        for term in (1, 2):
            await wire.send(close_term(term))
        await wire.send(close)
        await wire.send(close)

    assert len(ready) == 2
    assert ready[0].message_id == ready[1].message_id
    assert ready[0].records == ready[1].records
    assert service.registry.get_sample_value("hocba_records_assembled_total") == 2


async def test_a_record_is_explained_by_request_to_whoever_may_read_it_and_each_reading_is_logged(
    settings, repo, wired
):
    service = build_app(settings, repository=repo, lookup=everyone_knows, issuer_keys=KEYS)
    rid = record_id(SCHOOL, YEAR, "s1")
    async with wired(service) as wire:
        await wire.send(registered("s1"))
        for term in (1, 2):
            await wire.send(close_term(term))
        await wire.send(close_year())
        asked = homeroom_teacher().signs(ExplainRecord(record_id=rid, purpose="họp phụ huynh"))
        answer = await wire.request(asked, RecordExplanation)
        with pytest.raises(Refused, match="not 79000701") as other_school:
            await wire.request(principal("79000702").signs(ExplainRecord(record_id=rid)), RecordExplanation)
        with pytest.raises(Refused, match="no record nope") as unknown:
            await wire.request(principal().signs(ExplainRecord(record_id="nope")), RecordExplanation)
        log = await wire.request(operator().signs(ListGradesAccesses(student_ref="s1")), AccessLog)
        with pytest.raises(Refused, match="may not see who read") as not_theirs:
            await wire.request(principal("79000702").signs(ListGradesAccesses(student_ref="s1")), AccessLog)

    assert answer.error is None and answer.record_id == rid
    assert answer.student_name == "Nguyễn Văn An" and answer.rule_set == "circular-22-2021/v2"
    assert (other_school.value.reason, unknown.value.reason) == ("forbidden", "not-found")
    explained = {
        outcome: service.registry.get_sample_value("hocba_records_explained_total", {"outcome": outcome})
        for outcome in ("answered", "refused", "not-found")
    }
    assert explained == {"answered": 1, "refused": 1, "not-found": 1}
    assert refused(service, ExplainRecord, "forbidden") == 1
    assert [(e.subject, e.action, e.record_id, e.purpose) for e in log.entries] == [
        ("gvcn-6A1", "explain", rid, "họp phụ huynh")
    ]
    assert not_theirs.value.reason == "forbidden"
    reads = service.registry.get_sample_value("hocba_personal_data_reads_total", {"role": "homeroom_teacher"})
    assert reads == 1


async def test_an_amendment_is_answered_over_the_bus_and_one_refused_is_told_to_the_asker_not_dead_lettered(
    settings, repo, wired
):
    service = build_app(settings, repository=repo, lookup=everyone_knows, issuer_keys=KEYS)
    dead = dead_letters(service, AmendRecord)
    rid = record_id(SCHOOL, YEAR, "s1")
    corrected = scored("s1", "Toán", 2, ["9"] * 4, "9", "9")
    amend = AmendRecord(
        school_code=SCHOOL,
        school_year=YEAR,
        record_id=rid,
        supersedes=1,
        reason_code="grade-correction",
        scores=[corrected],
    )
    async with wired(service) as wire:
        await wire.send(registered("s1"))
        entries = RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=full_year("s1"))
        await wire.request(subject_teacher().signs(entries), AssessmentsRecorded)
        conduct = RecordConduct(school_code=SCHOOL, school_year=YEAR, entries=homeroom("s1"))
        await wire.request(homeroom_teacher().signs(conduct), ConductRecorded)
        for term in (1, 2):
            await wire.request(close_term(term), TermChanged)
        await wire.send(close_year())
        with pytest.raises(Refused, match="v1 is not signed and sealed yet") as not_yet:
            await wire.request(principal().signs(amend), RecordAmended)
        first = await repo.record(rid, 1)
        await wire.send(RecordsCompleted(records=[SignedRecord(record=first, signatures=[])]))
        amended = await wire.request(principal().signs(amend), RecordAmended)
    assert not_yet.value.reason == "not-signed"
    assert (amended.record.record_id, amended.record.version, amended.supersedes, amended.corrected) == (rid, 2, 1, 1)
    assert amended.record == await repo.record(rid, 2), "the content carried as the bytes grades stored"
    assert dead == [], "a refusal is the asker's answer"
    amendments = "hocba_record_amendments_total"
    assert service.registry.get_sample_value(amendments, {"outcome": "amended"}) == 1
    assert service.registry.get_sample_value(amendments, {"outcome": "not-signed"}) == 1
