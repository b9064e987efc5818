"""grades' use cases with an in-memory repository and a stand-in for identity's look-up."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from services.grades import handlers
from services.grades.domain import record_id
from services.grades.metrics import GradesMetrics
from services.grades.repository import InMemoryGradesRepository
from services.grades.router import identity_lookup
from shared.contracts.base import derived_id
from shared.contracts.grades import CloseYear, RecordAssessments
from shared.contracts.identity import LookupStudents, StudentSnapshots, StudentsRegistered
from shared.errors import InvalidMessage, NotFound, TransientError
from tests.unit.grades.builders import SCHOOL, YEAR, commented, enrolled, full_year, scored, snapshot


class FakeLookup:
    """Identity as far as these tests need it: knows some students, remembers what it was asked."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.asked: list[list[str]] = []

    async def __call__(self, refs: list[str]) -> StudentSnapshots:
        self.asked.append(list(refs))
        return StudentSnapshots(
            students=[snapshot(r) for r in refs if r in self.known], missing=[r for r in refs if r not in self.known]
        )


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry) -> GradesMetrics:
    return GradesMetrics(registry)


@pytest.fixture
async def repo() -> InMemoryGradesRepository:
    repo = InMemoryGradesRepository()
    await repo.enrol([enrolled("s1"), enrolled("s2"), enrolled("s3", class_name="6A2")])
    return repo


def record(entries, school: str = SCHOOL, message_id: str = "cmd-1") -> RecordAssessments:
    return RecordAssessments(message_id=message_id, school_code=school, school_year=YEAR, entries=entries)


# -- enrolment --------------------------------------------------------------------------------


async def test_enrolment_is_stored_once(metrics, registry):
    repo = InMemoryGradesRepository()
    event = StudentsRegistered(students=[enrolled("a"), enrolled("b")])
    assert await handlers.enrol_students(event, repo, metrics) == 2
    assert await handlers.enrol_students(event, repo, metrics) == 0
    assert set(await repo.enrolments_of(YEAR, ["a", "b", "c"])) == {"a", "b"}
    assert registry.get_sample_value("hocba_students_enrolled_total") == 2


# -- recording assessments --------------------------------------------------------------------


async def test_valid_entries_are_stored_and_announced(repo, metrics, registry):
    command = record(full_year("s1"))
    outcome = await handlers.record_assessments(command, repo, metrics)
    assert outcome.rejected == [] and outcome.new == 24
    assert len(await repo.assessments(SCHOOL, YEAR)) == 24
    assert outcome.event.entries == 24
    assert outcome.event.source_message_id == "cmd-1"
    assert outcome.event.message_id == derived_id("cmd-1", "recorded")
    assert registry.get_sample_value("hocba_assessments_recorded_total") == 24


async def test_redelivery_stores_nothing_twice_and_announces_the_same(repo, metrics, registry):
    first = await handlers.record_assessments(record(full_year("s1")), repo, metrics)
    again = await handlers.record_assessments(record(full_year("s1")), repo, metrics)
    assert again.new == 0 and again.event == first.event.model_copy(update={"occurred_at": again.event.occurred_at})
    assert len(await repo.assessments(SCHOOL, YEAR)) == 24
    assert registry.get_sample_value("hocba_assessments_recorded_total") == 24


async def test_invalid_entries_are_rejected_with_reasons_and_the_rest_is_stored(repo, metrics, registry):
    good = scored("s1", "Tin học", 1, ["8", "7"], "7", "8")
    too_few = scored("s1", "Toán", 1, ["8", "7"], "7", "8")
    out_of_range = scored("s2", "Tin học", 1, ["8", "7"], "7", "10.5")
    twice = scored("s1", "Tin học", 1, ["9", "9"], "9", "9")
    outcome = await handlers.record_assessments(record([good, too_few, out_of_range, twice]), repo, metrics)

    assert await repo.assessments(SCHOOL, YEAR) == [good]
    assert outcome.event.entries == 1
    assert [(r.index, r.code) for r in outcome.rejected] == [(1, "regular-count"), (2, "score-range"), (3, "duplicate")]
    assert outcome.rejected[1].entry == out_of_range
    assert "final 10.5 is outside 0-10" in outcome.rejected[1].reason
    assert "entry 1 (s1, Toán, term 1): Toán (140 periods" in handlers.describe(outcome.rejected)
    for code in ("regular-count", "score-range", "duplicate"):
        assert registry.get_sample_value("hocba_assessments_rejected_total", {"reason": code}) == 1


async def test_a_message_without_a_valid_entry_is_invalid(repo, metrics, registry):
    with pytest.raises(InvalidMessage, match="no valid entry: entry 0 .*Hóa học"):
        await handlers.record_assessments(
            record([scored("s1", "Hóa học", 1, ["8", "7"], "7", "8"), commented("s1", "Toán", 2)]), repo, metrics
        )
    assert await repo.assessments(SCHOOL, YEAR) == []
    assert registry.get_sample_value("hocba_assessments_rejected_total", {"reason": "unknown-subject"}) == 1
    assert registry.get_sample_value("hocba_assessments_rejected_total", {"reason": "score-only"}) == 1


async def test_entries_for_another_schools_student_are_rejected(repo, metrics):
    await repo.enrol([enrolled("x1", school="79000702")])
    outcome = await handlers.record_assessments(
        record([commented("s1", "Nghệ thuật", 1), commented("x1", "Nghệ thuật", 1)]), repo, metrics
    )
    assert [(r.entry.student_ref, r.code) for r in outcome.rejected] == [("x1", "wrong-school")]


async def test_entries_of_students_not_enrolled_yet_are_retried_not_stored(repo, metrics):
    with pytest.raises(TransientError, match="1 student.* not enrolled in 2025-2026 yet: nobody"):
        await handlers.record_assessments(
            record([commented("s1", "Nghệ thuật", 1), commented("nobody", "Nghệ thuật", 1)]), repo, metrics
        )
    assert await repo.assessments(SCHOOL, YEAR) == []


async def test_entries_for_a_closed_year_are_invalid(repo, metrics, registry):
    await repo.close_year(SCHOOL, YEAR, datetime.now(UTC))
    with pytest.raises(InvalidMessage, match="2025-2026 is closed"):
        await handlers.record_assessments(record(full_year("s1")), repo, metrics)
    assert await repo.assessments(SCHOOL, YEAR) == []
    assert registry.get_sample_value("hocba_assessments_rejected_total", {"reason": "year-closed"}) == 24


# -- closing the year -------------------------------------------------------------------------


def close(message_id: str = "close-1") -> CloseYear:
    return CloseYear(
        message_id=message_id, school_code=SCHOOL, school_year=YEAR, occurred_at=datetime(2026, 5, 31, tzinfo=UTC)
    )


async def test_closing_assembles_stores_and_announces_every_known_students_record(repo, metrics, registry):
    await handlers.record_assessments(record(full_year("s1", "9.0") + full_year("s2", "7.0")), repo, metrics)
    lookup = FakeLookup({"s1", "s2", "s3"})
    outcome = await handlers.close_year(close(), repo, lookup, metrics, chunk_size=2)

    assert repo.closed == {(SCHOOL, YEAR): datetime(2026, 5, 31, tzinfo=UTC)}
    assert lookup.asked == [["s1", "s2", "s3"]], "one look-up for the whole school"
    assert outcome.assembled == 3 and outcome.new == 3
    assert registry.get_sample_value("hocba_records_assembled_total") == 3
    stored = await repo.records(SCHOOL, YEAR, 1)
    by_ref = {r.student_ref: r for r in stored}
    assert by_ref["s1"].record_id == record_id(SCHOOL, YEAR, "s1")
    assert by_ref["s1"].document["learning_result"] == {"term_1": "Tốt", "term_2": "Tốt", "year": "Tốt"}
    assert by_ref["s2"].document["learning_result"]["year"] == "Khá"
    assert by_ref["s3"].document["complete"] is False and len(by_ref["s3"].document["missing"]) == 24
    assert by_ref["s3"].document["class_name"] == "6A2"

    assert [len(e.records) for e in outcome.events] == [2, 1]
    assert [r for e in outcome.events for r in e.records] == stored
    assert len({e.message_id for e in outcome.events}) == 2
    assert all(e.school_code == SCHOOL and e.school_year == YEAR for e in outcome.events)


async def test_closing_again_stores_nothing_new_and_announces_the_same_records(repo, metrics, registry):
    await handlers.record_assessments(record(full_year("s1")), repo, metrics)
    first = await handlers.close_year(close(), repo, FakeLookup({"s1", "s2", "s3"}), metrics, chunk_size=2)
    again = await handlers.close_year(close(), repo, FakeLookup({"s1", "s2", "s3"}), metrics, chunk_size=2)
    assert again.new == 0
    assert registry.get_sample_value("hocba_records_assembled_total") == 3
    assert [e.message_id for e in again.events] == [e.message_id for e in first.events]
    assert [e.records for e in again.events] == [e.records for e in first.events]


async def test_students_identity_does_not_know_are_left_out_and_counted(repo, metrics, registry):
    outcome = await handlers.close_year(close(), repo, FakeLookup({"s1", "s3"}), metrics, chunk_size=10)
    assert outcome.unassembled == {"unknown-student": ["s2"]}
    assert [r.student_ref for r in await repo.records(SCHOOL, YEAR, 1)] == sorted(
        ["s1", "s3"], key=lambda ref: record_id(SCHOOL, YEAR, ref)
    )
    assert registry.get_sample_value("hocba_records_unassembled_total", {"reason": "unknown-student"}) == 1


async def test_students_of_a_grade_without_rules_are_not_looked_up(repo, metrics, registry):
    await repo.enrol([enrolled("g7", grade=7)])
    lookup = FakeLookup({"s1", "s2", "s3", "g7"})
    outcome = await handlers.close_year(close(), repo, lookup, metrics, chunk_size=10)
    assert lookup.asked == [["s1", "s2", "s3"]]
    assert outcome.unassembled == {"no-rule-set": ["g7"]}
    assert outcome.assembled == 3


async def test_closing_a_year_without_students_is_not_found(metrics):
    repo = InMemoryGradesRepository()
    with pytest.raises(NotFound, match="no student is enrolled"):
        await handlers.close_year(close(), repo, FakeLookup(set()), metrics, chunk_size=10)
    assert repo.closed == {}


# -- identity look-up by request --------------------------------------------------------------


class FakeBus:
    def __init__(self) -> None:
        self.requests: list[LookupStudents] = []

    async def request(self, message: LookupStudents) -> dict:
        self.requests.append(message)
        known = [r for r in message.student_refs if not r.endswith("7")]
        return StudentSnapshots(
            students=[snapshot(r) for r in known], missing=[r for r in message.student_refs if r not in known]
        ).model_dump(mode="json")


async def test_identity_is_asked_in_chunks_of_at_most_500_refs():
    bus = FakeBus()
    refs = [f"s{n:04d}" for n in range(1201)]
    found = await identity_lookup(bus)(refs)  # type: ignore[arg-type]
    assert [len(r.student_refs) for r in bus.requests] == [500, 500, 201]
    assert [s.student_ref for s in found.students] + found.missing == [r for r in refs if not r.endswith("7")] + [
        r for r in refs if r.endswith("7")
    ]
    assert len(found.missing) == 120
