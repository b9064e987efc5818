"""grades' use cases with an in-memory repository, real actor tokens and a stand-in for identity's look-up."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from services.grades import handlers
from services.grades.domain import record_id
from services.grades.metrics import GradesMetrics
from services.grades.repository import InMemoryGradesRepository
from services.grades.router import identity_lookup
from shared.auth import IssuerKey, Unauthenticated
from shared.contracts.base import derived_id
from shared.contracts.grades import CloseTerm, CloseYear, ExplainRecord, RecordAssessments, RecordConduct, ReopenTerm
from shared.contracts.identity import LookupStudents, StudentSnapshots, StudentsRegistered
from shared.errors import Forbidden, InvalidMessage, NotFound, TransientError
from tests.unit.grades.builders import (
    KEYS,
    SCHOOL,
    YEAR,
    commented,
    enrolled,
    full_year,
    homeroom,
    homeroom_teacher,
    principal,
    school_admin,
    scored,
    snapshot,
    subject_teacher,
)


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


def record(entries, school: str = SCHOOL, message_id: str = "cmd-1", actor: str | None = None, reason: str = ""):
    return RecordAssessments(message_id=message_id, school_code=school, school_year=YEAR, entries=entries,
                             actor=actor or subject_teacher(), reason=reason)


def conduct(entries, message_id: str = "hr-1", actor: str | None = None, reason: str = "") -> RecordConduct:
    return RecordConduct(message_id=message_id, school_code=SCHOOL, school_year=YEAR, entries=entries,
                         actor=actor or homeroom_teacher(), reason=reason)


async def store(command, repo, metrics):
    if isinstance(command, RecordConduct):
        return await handlers.record_conduct(command, repo, metrics, KEYS)
    return await handlers.record_assessments(command, repo, metrics, KEYS)


async def lock(repo, metrics, *terms: int) -> None:
    for term in terms:
        await handlers.close_term(CloseTerm(message_id=f"close-{term}", school_code=SCHOOL, school_year=YEAR, term=term,
                                            actor=principal()), repo, metrics, KEYS)


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
    outcome = await store(record(full_year("s1")), repo, metrics)
    assert outcome.rejected == [] and outcome.new == 24
    assert len(await repo.assessments(SCHOOL, YEAR)) == 24
    assert (outcome.event.entries, outcome.event.new, outcome.event.unchanged) == (24, 24, 0)
    assert outcome.event.source_message_id == "cmd-1"
    assert outcome.event.message_id == derived_id("cmd-1", "recorded")
    assert registry.get_sample_value("hocba_assessments_recorded_total") == 24


async def test_redelivery_and_the_same_values_again_change_nothing(repo, metrics, registry):
    first = await store(record(full_year("s1")), repo, metrics)
    again = await store(record(full_year("s1")), repo, metrics)
    assert again.new == 0 and again.unchanged == 24 and again.event.message_id == first.event.message_id
    other = await store(record(full_year("s1"), message_id="cmd-2"), repo, metrics)
    assert (other.new, other.changed, other.unchanged) == (0, 0, 24)
    assert len(await repo.assessments(SCHOOL, YEAR)) == 24
    assert registry.get_sample_value("hocba_assessments_recorded_total") == 24
    assert await repo.changes(SCHOOL, YEAR) == []


async def test_invalid_entries_are_rejected_with_reasons_and_the_rest_is_stored(repo, metrics, registry):
    good = scored("s1", "Tin học", 1, ["8", "7"], "7", "8")
    too_few = scored("s1", "Toán", 1, ["8", "7"], "7", "8")
    out_of_range = scored("s2", "Tin học", 1, ["8", "7"], "7", "10.5")
    twice = scored("s1", "Tin học", 1, ["9", "9"], "9", "9")
    outcome = await store(record([good, too_few, out_of_range, twice]), repo, metrics)

    assert await repo.assessments(SCHOOL, YEAR) == [good]
    assert outcome.event.entries == 1
    assert [(r.index, r.code) for r in outcome.rejected] == [(1, "regular-count"), (2, "score-range"), (3, "duplicate")]
    assert [(r.index, r.code) for r in outcome.event.rejected] == [(1, "regular-count"), (2, "score-range"), (3, "duplicate")]
    assert "final 10.5 is outside 0-10" in outcome.rejected[1].reason
    assert "entry 1 (s1, Toán, term 1): Toán (140 periods" in handlers.describe(outcome.rejected)
    for code in ("regular-count", "score-range", "duplicate"):
        assert registry.get_sample_value("hocba_assessments_rejected_total", {"reason": code}) == 1


async def test_a_message_without_a_valid_entry_stores_nothing_and_says_why(repo, metrics, registry):
    entries = [scored("s1", "Hóa học", 1, ["8", "7"], "7", "8"), commented("s1", "Toán", 2)]
    outcome = await store(record(entries, actor=subject_teacher(subjects={"Hóa học", "Toán"})), repo, metrics)
    assert outcome.event.entries == 0 and [r.code for r in outcome.rejected] == ["unknown-subject", "score-only"]
    assert await repo.assessments(SCHOOL, YEAR) == []


async def test_entries_for_another_schools_student_are_rejected(repo, metrics):
    await repo.enrol([enrolled("x1", school="79000702")])
    outcome = await store(record([commented("s1", "Nghệ thuật", 1), commented("x1", "Nghệ thuật", 1)]), repo, metrics)
    assert [(r.entry.student_ref, r.code) for r in outcome.rejected] == [("x1", "wrong-school")]


async def test_entries_of_students_not_enrolled_yet_are_retried_not_stored(repo, metrics):
    with pytest.raises(TransientError, match="1 student.* not enrolled in 2025-2026 yet: nobody"):
        await store(record([commented("s1", "Nghệ thuật", 1), commented("nobody", "Nghệ thuật", 1)]), repo, metrics)
    assert await repo.assessments(SCHOOL, YEAR) == []


async def test_entries_for_a_closed_year_are_rejected(repo, metrics, registry):
    await repo.close_year(SCHOOL, YEAR, datetime.now(UTC))
    outcome = await store(record(full_year("s1")), repo, metrics)
    assert outcome.event.entries == 0 and {r.code for r in outcome.rejected} == {"year-closed"}
    assert await repo.assessments(SCHOOL, YEAR) == []
    assert registry.get_sample_value("hocba_assessments_rejected_total", {"reason": "year-closed"}) == 24


# -- authority --------------------------------------------------------------------------------


async def test_a_teacher_enters_only_their_subjects_and_classes(repo, metrics, registry):
    teacher = subject_teacher(subjects={"Tin học"}, classes={"6A1"})
    mine = scored("s1", "Tin học", 1, ["8", "7"], "7", "8")
    other_subject = scored("s1", "Công nghệ", 1, ["8", "7"], "7", "8")
    other_class = scored("s3", "Tin học", 1, ["8", "7"], "7", "8")
    outcome = await store(record([mine, other_subject, other_class], actor=teacher), repo, metrics)
    assert await repo.assessments(SCHOOL, YEAR) == [mine]
    assert [(r.index, r.code, r.forbidden) for r in outcome.rejected] == [(1, "forbidden", True), (2, "forbidden", True)]
    assert "not assigned to teach Công nghệ in class 6A1" in outcome.rejected[0].reason
    assert "not assigned to teach Tin học in class 6A2" in outcome.rejected[1].reason
    assert registry.get_sample_value("hocba_assessments_rejected_total", {"reason": "forbidden"}) == 2


@pytest.mark.parametrize(
    "actor",
    [
        homeroom_teacher(),  # not a subject teacher
        subject_teacher(school="79000702"),  # another school's teacher
    ],
)
async def test_entries_from_someone_not_assigned_are_all_refused(repo, metrics, actor):
    outcome = await store(record(full_year("s1"), actor=actor), repo, metrics)
    assert outcome.new == 0 and {r.code for r in outcome.rejected} == {"forbidden"}


@pytest.mark.parametrize(
    ("token", "match"),
    [
        (None, "carries no actor token"),
        ("not-a-token", "actor token rejected"),
        ("forged", "actor token rejected"),
    ],
)
async def test_a_command_without_a_valid_token_is_refused_whole(repo, metrics, registry, token, match):
    if token == "forged":
        from tests.unit.grades.builders import Actor, issue_token  # noqa: PLC0415 - a stranger's key
        from datetime import timedelta  # noqa: PLC0415

        stranger = IssuerKey.generate("stranger")
        token = issue_token(stranger, Actor(subject="x", roles=frozenset({"subject_teacher"}), school_code=SCHOOL,
                                            expires_at=datetime.now(UTC) + timedelta(hours=1)))
    command = RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=full_year("s1"), actor=token)
    with pytest.raises(Unauthenticated, match=match):
        await handlers.record_assessments(command, repo, metrics, KEYS)
    assert await repo.assessments(SCHOOL, YEAR) == []
    assert registry.get_sample_value(
        "hocba_grades_commands_refused_total", {"command": "RecordAssessments", "reason": "unauthenticated"}
    ) == 1


async def test_without_configured_issuer_keys_every_actor_is_refused(repo, metrics):
    with pytest.raises(Unauthenticated, match="no actor-token issuer keys"):
        await handlers.record_assessments(record(full_year("s1")), repo, metrics, None)


async def test_the_homeroom_teacher_enters_conduct_for_their_class_only(repo, metrics, registry):
    outcome = await store(conduct([*homeroom("s1"), *homeroom("s3")]), repo, metrics)
    assert outcome.new == 2
    assert [(r.entry.student_ref, r.code) for r in outcome.rejected] == [("s3", "forbidden"), ("s3", "forbidden")]
    assert "not the homeroom teacher of class 6A2" in outcome.rejected[0].reason
    assert {(h.student_ref, h.term, h.conduct) for h in await repo.homeroom(SCHOOL, YEAR)} == {("s1", 1, "Tốt"), ("s1", 2, "Tốt")}
    assert registry.get_sample_value("hocba_homeroom_entries_recorded_total") == 2
    refused = await store(conduct(homeroom("s1"), message_id="hr-2", actor=subject_teacher()), repo, metrics)
    assert {r.code for r in refused.rejected} == {"forbidden"}


async def test_homeroom_entries_are_validated(repo, metrics):
    from shared.contracts.grades import StudentTermConduct  # noqa: PLC0415

    incomplete = StudentTermConduct(student_ref="s1", term=1, qualities={"Yêu nước": "T"})
    outcome = await store(conduct([incomplete]), repo, metrics)
    assert [r.code for r in outcome.rejected] == ["missing-absences"]
    assert "conduct (Tốt, Khá, Đạt or Chưa đạt) is missing" in outcome.rejected[0].reason


# -- terms: locks, reopening, the change log ---------------------------------------------------


async def test_a_closed_term_locks_its_entries(repo, metrics, registry):
    await lock(repo, metrics, 1)
    outcome = await store(record(full_year("s1")), repo, metrics)
    assert outcome.new == 12 and {r.code for r in outcome.rejected} == {"term-closed"}
    assert all(e.term == 2 for e in await repo.assessments(SCHOOL, YEAR))
    assert registry.get_sample_value("hocba_terms_changed_total", {"action": "close"}) == 1


@pytest.mark.parametrize("actor", [subject_teacher(), homeroom_teacher(), principal("79000702")])
async def test_only_the_schools_principal_or_administrator_closes_a_term(repo, metrics, actor):
    with pytest.raises(Forbidden):
        await handlers.close_term(CloseTerm(school_code=SCHOOL, school_year=YEAR, term=1, actor=actor), repo, metrics, KEYS)
    event = await handlers.close_term(CloseTerm(school_code=SCHOOL, school_year=YEAR, term=1, actor=school_admin()),
                                      repo, metrics, KEYS)
    assert event.state == "closed" and event.by == "admin-1"


async def test_reopening_needs_the_principal_and_then_every_change_is_logged(repo, metrics, registry):
    await store(record(full_year("s1")), repo, metrics)
    await lock(repo, metrics, 1)
    reopen = ReopenTerm(message_id="reopen-1", school_code=SCHOOL, school_year=YEAR, term=1,
                        reason="nhập sai điểm Tin học", actor=school_admin())
    with pytest.raises(Forbidden, match="only the principal"):
        await handlers.reopen_term(reopen, repo, metrics, KEYS)
    event = await handlers.reopen_term(reopen.model_copy(update={"actor": principal()}), repo, metrics, KEYS)
    assert event.state == "open"
    assert repo.terms[(SCHOOL, YEAR, 1)]["history"][-1]["reason"] == "nhập sai điểm Tin học"

    corrected = scored("s1", "Tin học", 1, ["9", "7"], "7", "8")
    without_reason = await store(record([corrected], message_id="fix-1"), repo, metrics)
    assert [r.code for r in without_reason.rejected] == ["reason-required"]
    fixed = await store(record([corrected], message_id="fix-2", reason="bài 1 là 9, không phải 8"), repo, metrics)
    assert (fixed.changed, fixed.new) == (1, 0)
    [change] = await repo.changes(SCHOOL, YEAR)
    assert change["by"] == "gv-1" and change["reason"] == "bài 1 là 9, không phải 8"
    assert change["old"]["regular"] == ["8.0", "8.0"] and change["new"]["regular"] == ["9", "7"]
    assert change["at"] is not None and change["message_id"] == "fix-2"
    assert registry.get_sample_value("hocba_entries_changed_total", {"kind": "subject"}) == 1

    # a late redelivery of the first gradebook does not undo the correction
    late = await store(record(full_year("s1")), repo, metrics)
    assert late.changed == 0
    stored = next(e for e in await repo.assessments(SCHOOL, YEAR) if e.subject == "Tin học" and e.term == 1)
    assert stored == corrected


async def test_a_write_that_loses_a_race_is_retried(repo, metrics):
    repo.lose_next_write = True
    with pytest.raises(TransientError, match="changed meanwhile"):
        await store(record([commented("s1", "Nghệ thuật", 1)]), repo, metrics)
    assert (await store(record([commented("s1", "Nghệ thuật", 1)]), repo, metrics)).new == 1


# -- closing the year -------------------------------------------------------------------------


def close(message_id: str = "close-1", actor: str | None = None) -> CloseYear:
    return CloseYear(
        message_id=message_id, school_code=SCHOOL, school_year=YEAR, occurred_at=datetime(2026, 5, 31, tzinfo=UTC),
        actor=actor or principal(),
    )


async def close_year(repo, metrics, lookup, chunk_size=10, command=None):
    return await handlers.close_year(command or close(), repo, lookup, metrics, chunk_size, KEYS)


async def test_the_year_closes_only_when_both_terms_are_closed(repo, metrics):
    await lock(repo, metrics, 1)
    with pytest.raises(InvalidMessage, match="term 2 of 2025-2026 is still open"):
        await close_year(repo, metrics, FakeLookup({"s1"}))
    assert repo.closed == {}


async def test_only_the_principal_closes_the_year(repo, metrics):
    await lock(repo, metrics, 1, 2)
    with pytest.raises(Forbidden, match="only the principal"):
        await close_year(repo, metrics, FakeLookup({"s1"}), command=close(actor=school_admin()))


async def test_closing_assembles_stores_and_announces_every_known_students_record(repo, metrics, registry):
    await store(record(full_year("s1", "9.0") + full_year("s2", "7.0")), repo, metrics)
    await store(conduct([*homeroom("s1"), *homeroom("s2")]), repo, metrics)
    await lock(repo, metrics, 1, 2)
    lookup = FakeLookup({"s1", "s2", "s3"})
    outcome = await close_year(repo, metrics, lookup, chunk_size=2)

    assert repo.closed == {(SCHOOL, YEAR): datetime(2026, 5, 31, tzinfo=UTC)}
    assert lookup.asked == [["s1", "s2", "s3"]], "one look-up for the whole school"
    assert outcome.assembled == 3 and outcome.new == 3
    assert registry.get_sample_value("hocba_records_assembled_total") == 3
    by_ref = {r.student_ref: r for r in await repo.records(SCHOOL, YEAR, 1)}
    assert by_ref["s1"].record_id == record_id(SCHOOL, YEAR, "s1")
    assert by_ref["s1"].document["learning_result"] == {"term_1": "Tốt", "term_2": "Tốt", "year": "Tốt"}
    assert by_ref["s1"].document["complete"] is True
    assert by_ref["s1"].document["awards"] == ["Học sinh Xuất sắc"]
    assert by_ref["s2"].document["learning_result"]["year"] == "Khá"
    assert by_ref["s3"].document["complete"] is False and len(by_ref["s3"].document["missing"]) == 26
    assert [len(e.records) for e in outcome.events] == [2, 1]


async def test_closing_again_stores_nothing_new_and_announces_the_same_records(repo, metrics, registry):
    await lock(repo, metrics, 1, 2)
    first = await close_year(repo, metrics, FakeLookup({"s1", "s2", "s3"}), chunk_size=2)
    again = await close_year(repo, metrics, FakeLookup({"s1", "s2", "s3"}), chunk_size=2)
    assert again.new == 0
    assert registry.get_sample_value("hocba_records_assembled_total") == 3
    assert [e.message_id for e in again.events] == [e.message_id for e in first.events]
    assert [e.records for e in again.events] == [e.records for e in first.events]


async def test_a_closed_year_cannot_be_reopened(repo, metrics):
    await lock(repo, metrics, 1, 2)
    await close_year(repo, metrics, FakeLookup({"s1", "s2", "s3"}))
    with pytest.raises(InvalidMessage, match="a correction is now an amendment"):
        await handlers.reopen_term(ReopenTerm(school_code=SCHOOL, school_year=YEAR, term=2, reason="x", actor=principal()),
                                   repo, metrics, KEYS)


async def test_students_identity_does_not_know_are_left_out_and_counted(repo, metrics, registry):
    await lock(repo, metrics, 1, 2)
    outcome = await close_year(repo, metrics, FakeLookup({"s1", "s3"}))
    assert outcome.unassembled == {"unknown-student": ["s2"]}
    assert registry.get_sample_value("hocba_records_unassembled_total", {"reason": "unknown-student"}) == 1


async def test_students_of_a_grade_without_rules_are_not_looked_up(repo, metrics):
    await repo.enrol([enrolled("g10", grade=10)])
    await lock(repo, metrics, 1, 2)
    lookup = FakeLookup({"s1", "s2", "s3", "g10"})
    outcome = await close_year(repo, metrics, lookup)
    assert lookup.asked == [["s1", "s2", "s3"]]
    assert outcome.unassembled == {"no-rule-set": ["g10"]}


async def test_closing_a_year_without_students_is_not_found(metrics):
    repo = InMemoryGradesRepository()
    await lock(repo, metrics, 1, 2)
    with pytest.raises(NotFound, match="no student is enrolled"):
        await close_year(repo, metrics, FakeLookup(set()))


# -- explaining -------------------------------------------------------------------------------


async def test_a_record_is_explained_to_its_schools_staff_and_operators_only(repo, metrics, registry):
    await store(record(full_year("s1", "8.0")), repo, metrics)
    await lock(repo, metrics, 1, 2)
    await close_year(repo, metrics, FakeLookup({"s1", "s2", "s3"}))
    rid = record_id(SCHOOL, YEAR, "s1")
    answer = await handlers.explain_record(ExplainRecord(record_id=rid, actor=homeroom_teacher()), repo, metrics, KEYS)
    assert answer.found and answer.student_name == "Nguyễn Văn An" and answer.rule_set == "circular-22-2021/v2"
    assert any(line.about == "learning/year" and line.result == "Tốt" for line in answer.lines)
    assert any("Art. 9.3" in note for note in answer.unconfirmed)
    other = await handlers.explain_record(ExplainRecord(record_id=rid, actor=principal("79000702")), repo, metrics, KEYS)
    assert not other.found and "not 79000701" in other.error
    missing = await handlers.explain_record(ExplainRecord(record_id="nope", actor=principal()), repo, metrics, KEYS)
    assert not missing.found and missing.error == "no record nope"
    assert registry.get_sample_value("hocba_records_explained_total", {"outcome": "refused"}) == 1


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
    assert len(found.missing) == 120
