"""grades' use cases with an in-memory repository, real actor tokens and a stand-in for identity's look-up."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.grades import handlers
from services.grades.domain import record_id
from services.grades.repository import InMemoryGradesRepository
from shared.auth import Actor, IssuerKey, Unauthenticated, issue_token
from shared.contracts.base import derived_id
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
    ReopenTerm,
    StudentTermConduct,
    TermChanged,
)
from shared.contracts.identity import StudentsRegistered
from shared.errors import Forbidden, InvalidMessage, NotFound, TransientError
from shared.outcome import NOTHING, Outcome
from tests.unit.grades.builders import (
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
    subject_teacher,
    token,
)
from tests.unit.grades.conftest import FakeLookup


def record(entries, school: str = SCHOOL, message_id: str = "cmd-1", actor: str | None = None, reason: str = ""):
    return RecordAssessments(message_id=message_id, school_code=school, school_year=YEAR, entries=entries,
                             actor=actor or subject_teacher(), reason=reason)


def conduct(entries, message_id: str = "hr-1", actor: str | None = None, reason: str = "") -> RecordConduct:
    return RecordConduct(message_id=message_id, school_code=SCHOOL, school_year=YEAR, entries=entries,
                         actor=actor or homeroom_teacher(), reason=reason)


async def store(command, deps) -> Outcome:
    if isinstance(command, RecordConduct):
        return await handlers.record_conduct(command, deps)
    return await handlers.record_assessments(command, deps)


def recorded(outcome: Outcome) -> AssessmentsRecorded | ConductRecorded:
    """What a recording announces, which is also its answer."""
    [event] = outcome.publish
    assert isinstance(event, AssessmentsRecorded | ConductRecorded) and outcome.reply == event
    return event


def term_changed(outcome: Outcome) -> TermChanged:
    [event] = outcome.publish
    assert isinstance(event, TermChanged) and outcome.reply == event
    return event


async def lock(deps, *terms: int) -> None:
    for term in terms:
        await handlers.close_term(
            CloseTerm(message_id=f"close-{term}", school_code=SCHOOL, school_year=YEAR, term=term, actor=principal()),
            deps,
        )


def sample(registry, name: str, labels: dict | None = None) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


# -- enrolment --------------------------------------------------------------------------------


async def test_enrolment_is_stored_once(deps, registry):
    deps = replace(deps, repo=InMemoryGradesRepository())
    event = StudentsRegistered(students=[enrolled("a"), enrolled("b")])
    assert await handlers.enrol_students(event, deps) == NOTHING
    assert await handlers.enrol_students(event, deps) == NOTHING
    assert set(await deps.repo.enrolments_of(YEAR, ["a", "b", "c"])) == {"a", "b"}
    assert sample(registry, "hocba_students_enrolled_total") == 2


# -- recording assessments --------------------------------------------------------------------


async def test_valid_entries_are_stored_and_announced(deps, registry):
    outcome = await store(record(full_year("s1")), deps)
    event = recorded(outcome)
    assert outcome.rejected == [] and event.rejected == []
    assert len(await deps.repo.assessments(SCHOOL, YEAR)) == 24
    assert (event.entries, event.new, event.unchanged) == (24, 24, 0)
    assert event.source_message_id == "cmd-1"
    assert event.message_id == derived_id("cmd-1", "recorded")
    assert sample(registry, "hocba_assessments_recorded_total") == 24


async def test_redelivery_and_the_same_values_again_change_nothing(deps, registry):
    first = recorded(await store(record(full_year("s1")), deps))
    again = recorded(await store(record(full_year("s1")), deps))
    assert again.new == 0 and again.unchanged == 24 and again.message_id == first.message_id
    other = recorded(await store(record(full_year("s1"), message_id="cmd-2"), deps))
    assert (other.new, other.changed, other.unchanged) == (0, 0, 24)
    assert len(await deps.repo.assessments(SCHOOL, YEAR)) == 24
    assert sample(registry, "hocba_assessments_recorded_total") == 24
    assert await deps.repo.changes(SCHOOL, YEAR) == []


async def test_invalid_entries_are_rejected_with_reasons_and_the_rest_is_stored(deps, registry):
    good = scored("s1", "Tin học", 1, ["8", "7"], "7", "8")
    too_few = scored("s1", "Toán", 1, ["8", "7"], "7", "8")
    out_of_range = scored("s2", "Tin học", 1, ["8", "7"], "7", "10.5")
    twice = scored("s1", "Tin học", 1, ["9", "9"], "9", "9")
    outcome = await store(record([good, too_few, out_of_range, twice]), deps)
    event = recorded(outcome)

    assert await deps.repo.assessments(SCHOOL, YEAR) == [good]
    assert event.entries == 1
    assert [(r.index, r.code) for r in event.rejected] == [(1, "regular-count"), (2, "score-range"), (3, "duplicate")]
    assert "final 10.5 is outside 0-10" in event.rejected[1].reason
    [part] = outcome.rejected
    assert (part.field, part.reason, list(part.items)) == ("entries", "invalid", [too_few, out_of_range, twice])
    assert "entry 1 (s1, Toán, term 1): Toán (140 periods" in part.explanation
    assert "entry 3 (s1, Tin học, term 1): the same entry appears twice" in part.explanation
    for code in ("regular-count", "score-range", "duplicate"):
        assert sample(registry, "hocba_assessments_rejected_total", {"reason": code}) == 1


async def test_a_message_without_a_valid_entry_stores_nothing_and_says_why(deps):
    entries = [scored("s1", "Hóa học", 1, ["8", "7"], "7", "8"), commented("s1", "Toán", 2)]
    event = recorded(await store(record(entries, actor=subject_teacher(subjects={"Hóa học", "Toán"})), deps))
    assert event.entries == 0 and [r.code for r in event.rejected] == ["unknown-subject", "score-only"]
    assert await deps.repo.assessments(SCHOOL, YEAR) == []


async def test_entries_for_another_schools_student_are_rejected(deps):
    await deps.repo.enrol([enrolled("x1", school="79000702")])
    outcome = await store(record([commented("s1", "Nghệ thuật", 1), commented("x1", "Nghệ thuật", 1)]), deps)
    assert [(r.index, r.code) for r in recorded(outcome).rejected] == [(1, "wrong-school")]
    [part] = outcome.rejected
    assert [e.student_ref for e in part.items] == ["x1"]


async def test_entries_of_students_not_enrolled_yet_are_retried_not_stored(deps):
    with pytest.raises(TransientError, match="1 student.* not enrolled in 2025-2026 yet: nobody"):
        await store(record([commented("s1", "Nghệ thuật", 1), commented("nobody", "Nghệ thuật", 1)]), deps)
    assert await deps.repo.assessments(SCHOOL, YEAR) == []


async def test_entries_for_a_closed_year_are_rejected(deps, registry):
    await deps.repo.close_year(SCHOOL, YEAR, datetime.now(UTC))
    outcome = await store(record(full_year("s1")), deps)
    event = recorded(outcome)
    assert event.entries == 0 and {r.code for r in event.rejected} == {"year-closed"}
    assert [(p.reason, len(p.items)) for p in outcome.rejected] == [("invalid", 24)]
    assert await deps.repo.assessments(SCHOOL, YEAR) == []
    assert sample(registry, "hocba_assessments_rejected_total", {"reason": "year-closed"}) == 24


# -- authority --------------------------------------------------------------------------------


async def test_a_teacher_enters_only_their_subjects_and_classes(deps, registry):
    teacher = subject_teacher(subjects={"Tin học"}, classes={"6A1"})
    mine = scored("s1", "Tin học", 1, ["8", "7"], "7", "8")
    other_subject = scored("s1", "Công nghệ", 1, ["8", "7"], "7", "8")
    other_class = scored("s3", "Tin học", 1, ["8", "7"], "7", "8")
    outcome = await store(record([mine, other_subject, other_class], actor=teacher), deps)
    event = recorded(outcome)
    assert await deps.repo.assessments(SCHOOL, YEAR) == [mine]
    assert [(r.index, r.code) for r in event.rejected] == [(1, "forbidden"), (2, "forbidden")]
    assert "not assigned to teach Công nghệ in class 6A1" in event.rejected[0].reason
    assert "not assigned to teach Tin học in class 6A2" in event.rejected[1].reason
    [part] = outcome.rejected
    assert (part.field, part.reason, list(part.items)) == ("entries", "forbidden", [other_subject, other_class])
    assert "entry 1 (s1, Công nghệ, term 1): gv-1 is not assigned to teach Công nghệ" in part.explanation
    assert sample(registry, "hocba_assessments_rejected_total", {"reason": "forbidden"}) == 2


async def test_forbidden_and_invalid_entries_are_refused_apart(deps):
    teacher = subject_teacher(subjects={"Toán"})
    theirs = scored("s1", "Tin học", 1, ["8", "7"], "7", "8")
    invalid = scored("s1", "Toán", 1, ["8", "7"], "7", "8")
    outcome = await store(record([invalid, theirs], actor=teacher), deps)
    assert [(p.reason, list(p.items)) for p in outcome.rejected] == [("forbidden", [theirs]), ("invalid", [invalid])]


@pytest.mark.parametrize(
    "actor",
    [
        homeroom_teacher(),  # not a subject teacher
        subject_teacher(school="79000702"),  # another school's teacher
    ],
)
async def test_entries_from_someone_not_assigned_are_all_refused(deps, actor):
    outcome = await store(record(full_year("s1"), actor=actor), deps)
    event = recorded(outcome)
    assert event.new == 0 and {r.code for r in event.rejected} == {"forbidden"}
    assert [(p.reason, len(p.items)) for p in outcome.rejected] == [("forbidden", 24)]


def strangers_token() -> str:
    """A well-formed token from an issuer the school does not use."""
    stranger = IssuerKey.generate("stranger")
    actor = Actor(subject="x", roles=frozenset({"subject_teacher"}), school_code=SCHOOL,
                  expires_at=datetime.now(UTC) + timedelta(hours=1))
    return issue_token(stranger, actor)


@pytest.mark.parametrize(
    ("token", "match"),
    [
        (None, "carries no actor token"),
        ("not-a-token", "actor token rejected"),
        (strangers_token(), "actor token rejected"),
    ],
)
async def test_a_command_without_a_valid_token_is_refused_whole(deps, token, match):
    command = RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=full_year("s1"), actor=token)
    with pytest.raises(Unauthenticated, match=match) as refused:
        await handlers.record_assessments(command, deps)
    assert refused.value.reason == "unauthenticated"
    assert await deps.repo.assessments(SCHOOL, YEAR) == []


async def test_without_configured_issuer_keys_every_actor_is_refused(deps):
    with pytest.raises(Unauthenticated, match="no actor-token issuer keys"):
        await handlers.record_assessments(record(full_year("s1")), replace(deps, issuer_keys=None))


async def test_the_homeroom_teacher_enters_conduct_for_their_class_only(deps, registry):
    outcome = await store(conduct([*homeroom("s1"), *homeroom("s3")]), deps)
    event = recorded(outcome)
    assert event.new == 2
    assert [(r.index, r.code) for r in event.rejected] == [(2, "forbidden"), (3, "forbidden")]
    assert "not the homeroom teacher of class 6A2" in event.rejected[0].reason
    [part] = outcome.rejected
    assert part.reason == "forbidden" and [e.student_ref for e in part.items] == ["s3", "s3"]
    stored = {(h.student_ref, h.term, h.conduct) for h in await deps.repo.homeroom(SCHOOL, YEAR)}
    assert stored == {("s1", 1, "Tốt"), ("s1", 2, "Tốt")}
    assert sample(registry, "hocba_homeroom_entries_recorded_total") == 2
    refused = await store(conduct(homeroom("s1"), message_id="hr-2", actor=subject_teacher()), deps)
    assert {r.code for r in recorded(refused).rejected} == {"forbidden"}


async def test_homeroom_entries_are_validated(deps):
    incomplete = StudentTermConduct(student_ref="s1", term=1, qualities={"Yêu nước": "T"})
    outcome = await store(conduct([incomplete]), deps)
    event = recorded(outcome)
    assert [r.code for r in event.rejected] == ["missing-absences"]
    assert "conduct (Tốt, Khá, Đạt or Chưa đạt) is missing" in event.rejected[0].reason
    assert [(p.reason, list(p.items)) for p in outcome.rejected] == [("invalid", [incomplete])]


# -- terms: locks, reopening, the change log ---------------------------------------------------


async def test_a_closed_term_locks_its_entries(deps, registry):
    await lock(deps, 1)
    event = recorded(await store(record(full_year("s1")), deps))
    assert event.new == 12 and {r.code for r in event.rejected} == {"term-closed"}
    assert all(e.term == 2 for e in await deps.repo.assessments(SCHOOL, YEAR))
    assert sample(registry, "hocba_terms_changed_total", {"action": "close"}) == 1


@pytest.mark.parametrize("actor", [subject_teacher(), homeroom_teacher(), principal("79000702")])
async def test_only_the_schools_principal_or_administrator_closes_a_term(deps, actor):
    with pytest.raises(Forbidden):
        await handlers.close_term(CloseTerm(school_code=SCHOOL, school_year=YEAR, term=1, actor=actor), deps)
    assert not (await deps.repo.term_statuses(SCHOOL, YEAR))[1].closed
    close = CloseTerm(school_code=SCHOOL, school_year=YEAR, term=1, actor=school_admin())
    event = term_changed(await handlers.close_term(close, deps))
    assert event.state == "closed" and event.by == "admin-1"
    assert event.message_id == derived_id(close.message_id, "term", "closed")
    assert (await deps.repo.term_statuses(SCHOOL, YEAR))[1].closed


async def test_reopening_needs_the_principal_and_then_every_change_is_logged(deps, registry):
    await store(record(full_year("s1")), deps)
    await lock(deps, 1)
    reopen = ReopenTerm(message_id="reopen-1", school_code=SCHOOL, school_year=YEAR, term=1,
                        reason="nhập sai điểm Tin học", actor=school_admin())
    with pytest.raises(Forbidden, match="only the principal"):
        await handlers.reopen_term(reopen, deps)
    event = term_changed(await handlers.reopen_term(reopen.model_copy(update={"actor": principal()}), deps))
    assert event.state == "open"
    logged = (await deps.repo.term_log(SCHOOL, YEAR))[-1]
    assert (logged["term"], logged["action"], logged["by"]) == (1, "reopen", "ht-1")
    assert logged["reason"] == "nhập sai điểm Tin học"

    corrected = scored("s1", "Tin học", 1, ["9", "7"], "7", "8")
    without_reason = recorded(await store(record([corrected], message_id="fix-1"), deps))
    assert [r.code for r in without_reason.rejected] == ["reason-required"]
    fixed = recorded(await store(record([corrected], message_id="fix-2", reason="bài 1 là 9, không phải 8"), deps))
    assert (fixed.changed, fixed.new) == (1, 0)
    [change] = await deps.repo.changes(SCHOOL, YEAR)
    assert change["by"] == "gv-1" and change["reason"] == "bài 1 là 9, không phải 8"
    assert change["old"]["regular"] == ["8.0", "8.0"] and change["new"]["regular"] == ["9", "7"]
    assert change["at"] is not None and change["message_id"] == "fix-2"
    assert sample(registry, "hocba_entries_changed_total", {"kind": "subject"}) == 1

    # a late redelivery of the first gradebook does not undo the correction
    late = recorded(await store(record(full_year("s1")), deps))
    assert late.changed == 0
    stored = next(e for e in await deps.repo.assessments(SCHOOL, YEAR) if e.subject == "Tin học" and e.term == 1)
    assert stored == corrected


class StaleReads:
    """The repository as a handler read it just before another message stored the same entries."""

    def __init__(self, repo: InMemoryGradesRepository) -> None:
        self.repo = repo
        self.stale = True

    def __getattr__(self, name: str):
        return getattr(self.repo, name)

    async def stored(self, school_code, school_year, kind, keys):
        if self.stale:
            self.stale = False
            return {}
        return await self.repo.stored(school_code, school_year, kind, keys)


async def test_a_write_that_loses_a_race_is_retried(deps):
    await store(record([commented("s1", "Nghệ thuật", 1, "Đ")], message_id="first"), deps)
    racing = replace(deps, repo=StaleReads(deps.repo))
    command = record([commented("s1", "Nghệ thuật", 1, "CĐ")], message_id="second")
    with pytest.raises(TransientError, match="changed meanwhile"):
        await store(command, racing)
    assert recorded(await store(command, racing)).changed == 1
    assert [e.comment_level for e in await deps.repo.assessments(SCHOOL, YEAR)] == ["CĐ"]


# -- closing the year -------------------------------------------------------------------------


def close(message_id: str = "close-1", actor: str | None = None) -> CloseYear:
    return CloseYear(
        message_id=message_id, school_code=SCHOOL, school_year=YEAR, occurred_at=datetime(2026, 5, 31, tzinfo=UTC),
        actor=actor or principal(),
    )


async def close_year(deps, lookup: FakeLookup, records_per_message: int = 10, command: CloseYear | None = None):
    return await handlers.close_year(
        command or close(), replace(deps, lookup=lookup, records_per_message=records_per_message)
    )


def ready(outcome: Outcome) -> list[RecordsReady]:
    assert all(isinstance(m, RecordsReady) for m in outcome.publish) and outcome.reply is None
    return [m for m in outcome.publish if isinstance(m, RecordsReady)]


async def test_the_year_closes_only_when_both_terms_are_closed(deps):
    await lock(deps, 1)
    with pytest.raises(InvalidMessage, match="term 2 of 2025-2026 is still open"):
        await close_year(deps, FakeLookup({"s1"}))
    assert not await deps.repo.is_closed(SCHOOL, YEAR)


async def test_only_the_principal_closes_the_year(deps):
    await lock(deps, 1, 2)
    with pytest.raises(Forbidden, match="only the principal"):
        await close_year(deps, FakeLookup({"s1"}), command=close(actor=school_admin()))
    assert not await deps.repo.is_closed(SCHOOL, YEAR)


async def test_closing_assembles_stores_and_announces_every_known_students_record(deps, registry):
    await store(record(full_year("s1", "9.0") + full_year("s2", "7.0")), deps)
    await store(conduct([*homeroom("s1"), *homeroom("s2")]), deps)
    await lock(deps, 1, 2)
    lookup = FakeLookup({"s1", "s2", "s3"})
    outcome = await close_year(deps, lookup, records_per_message=2)

    assert await deps.repo.is_closed(SCHOOL, YEAR)
    assert lookup.asked == [["s1", "s2", "s3"]], "one look-up for the whole school"
    assert sample(registry, "hocba_records_assembled_total") == 3
    by_ref = {r.student_ref: r for r in await deps.repo.records(SCHOOL, YEAR, 1)}
    assert by_ref["s1"].record_id == record_id(SCHOOL, YEAR, "s1")
    assert by_ref["s1"].document["learning_result"] == {"term_1": "Tốt", "term_2": "Tốt", "year": "Tốt"}
    assert by_ref["s1"].document["complete"] is True
    assert by_ref["s1"].document["awards"] == ["Học sinh Xuất sắc"]
    assert by_ref["s2"].document["learning_result"]["year"] == "Khá"
    assert by_ref["s3"].document["complete"] is False and len(by_ref["s3"].document["missing"]) == 26
    events = ready(outcome)
    assert [len(e.records) for e in events] == [2, 1]
    assert [r for e in events for r in e.records] == list(await deps.repo.records(SCHOOL, YEAR, 1))
    assert events[0].message_id == derived_id("close-1", "ready", 0, *(r.record_id for r in events[0].records))


async def test_closing_again_stores_nothing_new_and_announces_the_same_records(deps, registry):
    await lock(deps, 1, 2)
    first = ready(await close_year(deps, FakeLookup({"s1", "s2", "s3"}), records_per_message=2))
    again = ready(await close_year(deps, FakeLookup({"s1", "s2", "s3"}), records_per_message=2))
    assert sample(registry, "hocba_records_assembled_total") == 3
    assert len(await deps.repo.records(SCHOOL, YEAR, 1)) == 3
    assert [e.message_id for e in again] == [e.message_id for e in first]
    assert [e.records for e in again] == [e.records for e in first]


async def test_a_closed_year_cannot_be_reopened(deps):
    await lock(deps, 1, 2)
    await close_year(deps, FakeLookup({"s1", "s2", "s3"}))
    with pytest.raises(InvalidMessage, match="a correction is now an amendment"):
        await handlers.reopen_term(
            ReopenTerm(school_code=SCHOOL, school_year=YEAR, term=2, reason="x", actor=principal()), deps
        )


async def test_students_identity_does_not_know_are_left_out_and_counted(deps, registry):
    await lock(deps, 1, 2)
    outcome = await close_year(deps, FakeLookup({"s1", "s3"}))
    assert {r.student_ref for r in await deps.repo.records(SCHOOL, YEAR, 1)} == {"s1", "s3"}
    assert {r.student_ref for e in ready(outcome) for r in e.records} == {"s1", "s3"}
    assert sample(registry, "hocba_records_unassembled_total", {"reason": "unknown-student"}) == 1


async def test_students_of_a_grade_without_rules_are_not_looked_up(deps, registry):
    await deps.repo.enrol([enrolled("g10", grade=10)])
    await lock(deps, 1, 2)
    lookup = FakeLookup({"s1", "s2", "s3", "g10"})
    await close_year(deps, lookup)
    assert lookup.asked == [["s1", "s2", "s3"]]
    assert {r.student_ref for r in await deps.repo.records(SCHOOL, YEAR, 1)} == {"s1", "s2", "s3"}
    assert sample(registry, "hocba_records_unassembled_total", {"reason": "no-rule-set"}) == 1
    assert sample(registry, "hocba_records_unassembled_total", {"reason": "unknown-student"}) == 0


async def test_closing_a_year_without_students_is_not_found(deps):
    deps = replace(deps, repo=InMemoryGradesRepository())
    await lock(deps, 1, 2)
    with pytest.raises(NotFound, match="no student is enrolled"):
        await close_year(deps, FakeLookup(set()))


# -- explaining -------------------------------------------------------------------------------


async def test_a_record_is_explained_to_its_schools_staff_and_operators_only(deps, registry):
    await store(record(full_year("s1", "8.0")), deps)
    await lock(deps, 1, 2)
    await close_year(deps, FakeLookup({"s1", "s2", "s3"}))
    rid = record_id(SCHOOL, YEAR, "s1")
    outcome = await handlers.explain_record(ExplainRecord(record_id=rid, actor=homeroom_teacher()), deps)
    answer = outcome.reply
    assert isinstance(answer, RecordExplanation) and not outcome.publish
    assert answer.student_name == "Nguyễn Văn An" and answer.rule_set == "circular-22-2021/v2"
    assert (answer.record_id, answer.version, answer.school_code, answer.grade) == (rid, 1, SCHOOL, 6)
    assert any(line.about == "learning/year" and line.result == "Tốt" for line in answer.lines)
    assert any("Art. 9.3" in note for note in answer.unconfirmed)
    with pytest.raises(Forbidden, match="not 79000701"):
        await handlers.explain_record(ExplainRecord(record_id=rid, actor=principal("79000702")), deps)
    with pytest.raises(NotFound, match="no record nope"):
        await handlers.explain_record(ExplainRecord(record_id="nope", actor=principal()), deps)
    with pytest.raises(Unauthenticated):
        await handlers.explain_record(ExplainRecord(record_id=rid), deps)
    assert sample(registry, "hocba_records_explained_total", {"outcome": "answered"}) == 1
    assert sample(registry, "hocba_records_explained_total", {"outcome": "refused"}) == 2
    assert sample(registry, "hocba_records_explained_total", {"outcome": "not-found"}) == 1


async def test_an_operator_may_read_any_schools_record(deps):
    await lock(deps, 1, 2)
    await close_year(deps, FakeLookup({"s1"}))
    rid = record_id(SCHOOL, YEAR, "s1")
    outcome = await handlers.explain_record(ExplainRecord(record_id=rid, actor=token({"operator"}, "")), deps)
    assert isinstance(outcome.reply, RecordExplanation) and outcome.reply.record_id == rid
