"""grades' use cases with an in-memory repository, real actor tokens (one for each message), grades' seal from a
development PKI, and a stand-in for identity's look-up."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from hocba.staff import Person
from services.grades import handlers
from services.grades.domain import assemble_record, record_id
from services.grades.repository import InMemoryGradesRepository
from services.grades.rulesets import CIRCULAR_22_2021 as GRADE_6_RULES
from shared.auth import Actor, IssuerKey, Unauthenticated
from shared.contracts.access import AccessLog, ListGradesAccesses
from shared.contracts.base import Acting, derived_id
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
    YearClosed,
)
from shared.contracts.identity import StudentsRegistered
from shared.contracts.record import content_of
from shared.crypto.pki import DevPki
from shared.crypto.seal import record_claims, seal_problems
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
    operator,
    principal,
    school_admin,
    scored,
    snapshot,
    subject_teacher,
)
from tests.unit.grades.conftest import FakeLookup, Published


def record(entries, school: str = SCHOOL, message_id: str = "cmd-1", actor: Person | None = None, reason: str = ""):
    """A subject teacher's entries, sent with their token (`actor`'s when given)."""
    command = RecordAssessments(message_id=message_id, school_code=school, school_year=YEAR, entries=entries,
                                reason=reason)
    return (actor or subject_teacher()).signs(command)


def conduct(entries, message_id: str = "hr-1", actor: Person | None = None, reason: str = "") -> RecordConduct:
    """A homeroom teacher's entries, sent with their token (`actor`'s when given)."""
    command = RecordConduct(message_id=message_id, school_code=SCHOOL, school_year=YEAR, entries=entries, reason=reason)
    return (actor or homeroom_teacher()).signs(command)


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
            principal().signs(CloseTerm(message_id=f"close-{term}", school_code=SCHOOL, school_year=YEAR, term=term)),
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
    assert event.by == Acting(subject="gv-1", roles=["subject_teacher"], school_code=SCHOOL) and event.actor is None
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


async def test_invalid_entries_are_rejected_with_reasons_and_the_rest_is_stored_not_dead_lettered(deps, registry):
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
    assert "Toán (140 periods" in event.rejected[0].reason
    assert "the same entry appears twice" in event.rejected[2].reason
    assert outcome.rejected == [], "a teacher's mistakes are answered and announced, not dead-lettered"
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
    assert outcome.rejected == []


async def test_entries_of_students_not_enrolled_yet_are_retried_not_stored(deps):
    with pytest.raises(TransientError, match="1 student.* not enrolled in 2025-2026 yet: nobody"):
        await store(record([commented("s1", "Nghệ thuật", 1), commented("nobody", "Nghệ thuật", 1)]), deps)
    assert await deps.repo.assessments(SCHOOL, YEAR) == []


async def test_entries_for_a_closed_year_are_rejected(deps, registry):
    await deps.repo.close_year(SCHOOL, YEAR, datetime.now(UTC))
    outcome = await store(record(full_year("s1")), deps)
    event = recorded(outcome)
    assert event.entries == 0 and {r.code for r in event.rejected} == {"year-closed"}
    assert outcome.rejected == []
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


async def test_only_the_entries_their_sender_may_not_enter_are_dead_lettered(deps):
    teacher = subject_teacher(subjects={"Toán"})
    theirs = scored("s1", "Tin học", 1, ["8", "7"], "7", "8")
    invalid = scored("s1", "Toán", 1, ["8", "7"], "7", "8")
    outcome = await store(record([invalid, theirs], actor=teacher), deps)
    assert [(r.index, r.code) for r in recorded(outcome).rejected] == [(0, "regular-count"), (1, "forbidden")]
    assert [(p.reason, list(p.items)) for p in outcome.rejected] == [("forbidden", [theirs])]


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


def strangers_token(command: RecordAssessments) -> str | None:
    """A well-formed token for the command from an issuer the school does not use."""
    stranger = Person(IssuerKey.generate("stranger"), Actor(subject="x", roles=frozenset({"subject_teacher"}),
                                                            school_code=SCHOOL))
    return stranger.signs(command).actor


def lifted_token(command: RecordAssessments) -> str | None:
    """The teacher's token of another command they sent (taken off the broker)."""
    return record([commented("s1", "Nghệ thuật", 1)], message_id="earlier").actor


@pytest.mark.parametrize(
    ("token", "match"),
    [
        (lambda command: None, "carries no actor token"),
        (lambda command: "not-a-token", "not a compact JWT"),
        (strangers_token, "actor token rejected"),
        (lifted_token, "msg"),
    ],
    ids=["none", "garbage", "stranger", "lifted-from-another-command"],
)
async def test_a_command_without_a_valid_token_is_refused_whole(deps, token, match):
    command = RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=full_year("s1"))
    with pytest.raises(Unauthenticated, match=match) as refused:
        await handlers.record_assessments(command.model_copy(update={"actor": token(command)}), deps)
    assert refused.value.reason == "unauthenticated"
    assert await deps.repo.assessments(SCHOOL, YEAR) == []


async def test_attack_a_teachers_token_seen_on_the_broker_records_nothing_else(deps):
    """Reproduction (issue 9, item 4): tokens rode inside events and were good for any command for 8 hours; a
    teacher's token seen on the broker, put on a command of the attacker's, recorded top marks."""
    earlier = record([commented("s1", "Nghệ thuật", 1)], message_id="earlier")
    announced = recorded(await store(earlier, deps))
    assert announced.actor is None, "the event carries who acted, not their token"
    top_marks = RecordAssessments(
        school_code=SCHOOL, school_year=YEAR, entries=[scored("s2", "Tin học", 1, ["10", "10"], "10", "10")]
    )
    with pytest.raises(Unauthenticated, match="msg"):
        await handlers.record_assessments(top_marks.model_copy(update={"actor": earlier.actor}), deps)
    assert [e.student_ref for e in await deps.repo.assessments(SCHOOL, YEAR)] == ["s1"]


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
    assert outcome.rejected == []


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
        await handlers.close_term(actor.signs(CloseTerm(school_code=SCHOOL, school_year=YEAR, term=1)), deps)
    assert not (await deps.repo.term_statuses(SCHOOL, YEAR))[1].closed
    close = school_admin().signs(CloseTerm(school_code=SCHOOL, school_year=YEAR, term=1))
    event = term_changed(await handlers.close_term(close, deps))
    assert event.state == "closed" and event.by == Acting(subject="admin-1", roles=["school_admin"], school_code=SCHOOL)
    assert event.actor is None, "an event says who acted; it carries no token"
    assert event.message_id == derived_id(close.message_id, "term", "closed")
    assert (await deps.repo.term_statuses(SCHOOL, YEAR))[1].closed


async def test_reopening_needs_the_principal_and_then_every_change_is_logged(deps, registry):
    await store(record(full_year("s1")), deps)
    await lock(deps, 1)
    reopen = ReopenTerm(message_id="reopen-1", school_code=SCHOOL, school_year=YEAR, term=1,
                        reason="nhập sai điểm Tin học")
    with pytest.raises(Forbidden, match="only the principal"):
        await handlers.reopen_term(school_admin().signs(reopen), deps)
    event = term_changed(await handlers.reopen_term(principal().signs(reopen), deps))
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


def close(message_id: str = "close-1", actor: Person | None = None) -> CloseYear:
    command = CloseYear(
        message_id=message_id, school_code=SCHOOL, school_year=YEAR, occurred_at=datetime(2026, 5, 31, tzinfo=UTC)
    )
    return (actor or principal()).signs(command)


async def close_year(
    deps, lookup: FakeLookup, records_per_message: int = 10, command: CloseYear | None = None
) -> list[RecordsReady]:
    """Close the year; the RecordsReady it published as it went, in order (at the end it announces and answers
    only what the close did)."""
    published = Published()
    outcome = await handlers.close_year(
        command or close(), replace(deps, lookup=lookup, records_per_message=records_per_message, publish=published)
    )
    assert isinstance(outcome.reply, YearClosed) and outcome.publish == [outcome.reply], (
        "the records are announced as each group is stored, not held for the end"
    )
    assert all(isinstance(m, RecordsReady) for m in published)
    return list(published)


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
    events = await close_year(deps, lookup, records_per_message=2)

    assert await deps.repo.is_closed(SCHOOL, YEAR)
    assert lookup.asked == [["s1", "s2"], ["s3"]], "one look-up per class"
    assert lookup.purposes == [f"assembling the {YEAR} academic records of school {SCHOOL} (year closed)"] * 2
    assert sample(registry, "hocba_records_assembled_total") == 3
    by_ref = {r.student_ref: r for r in await deps.repo.records(SCHOOL, YEAR, 1)}
    assert by_ref["s1"].record_id == record_id(SCHOOL, YEAR, "s1")
    assert by_ref["s1"].document["learning_result"] == {"term_1": "Tốt", "term_2": "Tốt", "year": "Tốt"}
    assert by_ref["s1"].document["complete"] is True
    assert by_ref["s1"].document["awards"] == ["Học sinh Xuất sắc"]
    assert by_ref["s2"].document["learning_result"]["year"] == "Khá"
    assert by_ref["s3"].document["complete"] is False and len(by_ref["s3"].document["missing"]) == 26
    assert [len(e.records) for e in events] == [2, 1], "class 6A1, then class 6A2"
    assert [{r.student_ref for r in e.records} for e in events] == [{"s1", "s2"}, {"s3"}]
    assert all([r.record_id for r in e.records] == sorted(r.record_id for r in e.records) for e in events)
    announced = sorted((r for e in events for r in e.records), key=lambda r: r.record_id)
    assert announced == await deps.repo.records(SCHOOL, YEAR, 1), "exactly the stored versions, each once"
    assert events[0].message_id == derived_id("close-1", "ready", 0, *(r.record_id for r in events[0].records))
    principal_acting = Acting(subject="ht-1", roles=["principal"], school_code=SCHOOL)
    assert all(e.by == principal_acting and e.actor is None for e in events), "who closed the year, never a token"


async def test_every_record_grades_assembles_carries_its_seal(deps, pki: DevPki):
    """Whoever relies on a record (signing, the archive, a verifier) sees grades' seal over exactly its content."""
    await store(record(full_year("s1", "9.0")), deps)
    await lock(deps, 1, 2)
    events = await close_year(deps, FakeLookup({"s1", "s2", "s3"}))
    announced = sorted((r for e in events for r in e.records), key=lambda r: r.record_id)
    assert len(announced) == 3
    now = datetime.now(UTC)
    for version in announced:
        assert seal_problems(version.seal, record_claims(version), pki.trust_store(), "svc-grades", now) == []
    assert announced == await deps.repo.records(SCHOOL, YEAR, 1), "the seal is stored with the version"
    [s1] = [r for r in announced if r.student_ref == "s1"]
    forged = s1.model_copy(update={"content": content_of({**s1.document, "awards": ["Học sinh Xuất sắc", "Giải nhất"]})})
    assert seal_problems(forged.seal, record_claims(forged), pki.trust_store(), "svc-grades", now) != []
    assert seal_problems(s1.seal, record_claims(s1), pki.trust_store(), "archive", now) != []


async def test_closing_again_stores_nothing_new_and_announces_the_same_records(deps, registry):
    await lock(deps, 1, 2)
    first = await close_year(deps, FakeLookup({"s1", "s2", "s3"}), records_per_message=2)
    again = await close_year(deps, FakeLookup({"s1", "s2", "s3"}), records_per_message=2)
    assert sample(registry, "hocba_records_assembled_total") == 3
    assert len(await deps.repo.records(SCHOOL, YEAR, 1)) == 3
    assert [e.message_id for e in again] == [e.message_id for e in first]
    assert [e.records for e in again] == [e.records for e in first]


async def test_reopening_a_term_of_a_closed_year_reopens_the_year(deps):
    await lock(deps, 1, 2)
    await close_year(deps, FakeLookup({"s1", "s2", "s3"}))
    await handlers.reopen_term(
        principal().signs(ReopenTerm(school_code=SCHOOL, school_year=YEAR, term=2, reason="x")), deps
    )
    assert not await deps.repo.is_closed(SCHOOL, YEAR)


async def test_students_identity_does_not_know_are_left_out_and_counted(deps, registry):
    await lock(deps, 1, 2)
    events = await close_year(deps, FakeLookup({"s1", "s3"}))
    assert {r.student_ref for r in await deps.repo.records(SCHOOL, YEAR, 1)} == {"s1", "s3"}
    assert {r.student_ref for e in events for r in e.records} == {"s1", "s3"}
    assert sample(registry, "hocba_records_unassembled_total", {"reason": "unknown-student"}) == 1


async def test_students_of_a_grade_without_rules_are_not_looked_up(deps, registry):
    # grade 10 under a rule set with no table for it (grades 6-9 only)
    deps = replace(deps, rule_sets=lambda grade: GRADE_6_RULES)
    await deps.repo.enrol([enrolled("g10", grade=10)])
    await lock(deps, 1, 2)
    lookup = FakeLookup({"s1", "s2", "s3", "g10"})
    await close_year(deps, lookup)
    assert lookup.asked == [["s1", "s2"], ["s3"]]
    assert {r.student_ref for r in await deps.repo.records(SCHOOL, YEAR, 1)} == {"s1", "s2", "s3"}
    assert sample(registry, "hocba_records_unassembled_total", {"reason": "no-rule-set"}) == 1
    assert sample(registry, "hocba_records_unassembled_total", {"reason": "unknown-student"}) == 0


async def test_closing_a_year_without_students_is_not_found(deps):
    deps = replace(deps, repo=InMemoryGradesRepository())
    with pytest.raises(NotFound, match="no student is enrolled"):
        await close_year(deps, FakeLookup(set()))


# -- explaining and the access log -------------------------------------------------------------


async def closed_year(deps) -> str:
    """A closed year with s1's record assembled; its record id."""
    await store(record(full_year("s1", "8.0")), deps)
    await lock(deps, 1, 2)
    await close_year(deps, FakeLookup({"s1", "s2", "s3"}))
    return record_id(SCHOOL, YEAR, "s1")


async def test_a_record_is_explained_to_its_schools_staff_and_operators_only(deps, registry):
    rid = await closed_year(deps)
    outcome = await handlers.explain_record(homeroom_teacher().signs(ExplainRecord(record_id=rid)), deps)
    answer = outcome.reply
    assert isinstance(answer, RecordExplanation) and not outcome.publish
    assert answer.student_name == "Nguyễn Văn An" and answer.rule_set == "circular-22-2021/v2"
    assert (answer.record_id, answer.version, answer.school_code, answer.grade) == (rid, 1, SCHOOL, 6)
    assert any(line.about == "learning/year" and line.result == "Tốt" for line in answer.lines)
    assert any("Art. 9.3" in note for note in answer.unconfirmed)
    assert "explanations" not in (await deps.repo.record(rid, 1)).document, "the lines are computed, not kept"
    assembled = assemble_record(GRADE_6_RULES, enrolled("s1"), snapshot("s1"), full_year("s1", "8.0"))
    assert [line.model_dump() for line in answer.lines] == [
        {"about": e.about, "result": e.result, "clause": e.clause, "rule": e.rule, "inputs": e.inputs, "text": e.text}
        for e in assembled.explanations()
    ]
    [toan] = [line for line in answer.lines if line.about == "subjects/Toán/term_1/average"]
    assert toan.text.startswith("Toán term I average 8.0 = (8 + 8 + 8 + 8 + 2×8 + 3×8) / (4 + 5) = 8, rounded half up")
    with pytest.raises(Forbidden, match="not 79000701"):
        await handlers.explain_record(principal("79000702").signs(ExplainRecord(record_id=rid)), deps)
    with pytest.raises(NotFound, match="no record nope"):
        await handlers.explain_record(principal().signs(ExplainRecord(record_id="nope")), deps)
    with pytest.raises(Unauthenticated):
        await handlers.explain_record(ExplainRecord(record_id=rid), deps)
    assert sample(registry, "hocba_records_explained_total", {"outcome": "answered"}) == 1
    assert sample(registry, "hocba_records_explained_total", {"outcome": "refused"}) == 2
    assert sample(registry, "hocba_records_explained_total", {"outcome": "not-found"}) == 1


async def test_explanations_an_earlier_release_kept_in_the_document_are_not_what_is_answered(deps):
    rid = await closed_year(deps)
    kept = await deps.repo.record(rid, 1)
    stale = {"about": "learning/year", "result": "Chưa đạt", "rule_set": "circular-22-2021/v2", "rule": "learning-level",
             "clause": "Circular 22/2021 Art. 9", "inputs": {}, "text": "a sentence kept from before"}
    earlier = kept.model_copy(update={"content": content_of({**kept.document, "explanations": [stale]})})
    lines = handlers.explanation(earlier).lines
    assert lines == handlers.explanation(kept).lines and len(lines) > 1
    assert [line.result for line in lines if line.about == "learning/year"] == ["Tốt"]


async def test_a_record_computed_by_a_rule_set_this_release_does_not_hold_is_not_explained_and_counted(deps, registry):
    retired = replace(GRADE_6_RULES, version="v0")
    rid = await closed_year(replace(deps, rule_sets=lambda grade: retired))
    refused = "computed by rule set 'circular-22-2021/v0', which this release does not hold"
    with pytest.raises(InvalidMessage, match=refused) as raised:
        await handlers.explain_record(principal().signs(ExplainRecord(record_id=rid)), deps)
    assert raised.value.reason == "unreadable-record"
    assert sample(registry, "hocba_records_explained_total", {"outcome": "unreadable"}) == 1
    assert await deps.access_log.of("s1", 10) == [], "nothing was read out"


async def test_an_operator_may_read_any_schools_record(deps):
    rid = await closed_year(deps)
    outcome = await handlers.explain_record(operator().signs(ExplainRecord(record_id=rid)), deps)
    assert isinstance(outcome.reply, RecordExplanation) and outcome.reply.record_id == rid


async def test_each_record_explained_is_logged_with_who_which_record_and_why(deps, registry):
    rid = await closed_year(deps)
    asked = homeroom_teacher().signs(ExplainRecord(record_id=rid, purpose="họp phụ huynh cuối năm"))
    await handlers.explain_record(asked, deps)
    with pytest.raises(Forbidden):
        await handlers.explain_record(principal("79000702").signs(ExplainRecord(record_id=rid)), deps)
    [entry] = await deps.access_log.of("s1", 10)
    assert (entry.service, entry.subject, entry.roles, entry.school_code) == (
        "grades", "gvcn-6A1", ["homeroom_teacher"], SCHOOL
    )
    assert (entry.action, entry.student_ref, entry.record_id, entry.purpose) == (
        "explain", "s1", rid, "họp phụ huynh cuối năm"
    )
    assert sample(registry, "hocba_personal_data_reads_total", {"role": "homeroom_teacher"}) == 1
    assert sample(registry, "hocba_personal_data_reads_total", {"role": "principal"}) == 0, "a refusal reads nothing"


async def test_who_read_a_student_is_told_to_operators_and_the_students_school_leaders(deps):
    rid = await closed_year(deps)
    await handlers.explain_record(homeroom_teacher().signs(ExplainRecord(record_id=rid, purpose="a")), deps)
    await handlers.explain_record(operator().signs(ExplainRecord(record_id=rid, purpose="b")), deps)
    for reader in (operator(), principal(), school_admin()):
        outcome = await handlers.list_accesses(reader.signs(ListGradesAccesses(student_ref="s1")), deps)
        assert isinstance(outcome.reply, AccessLog)
        assert [(e.subject, e.purpose) for e in outcome.reply.entries] == [("gvcn-6A1", "a"), ("operator-1", "b")]
    limited = await handlers.list_accesses(operator().signs(ListGradesAccesses(student_ref="s1", limit=1)), deps)
    assert [e.purpose for e in limited.reply.entries] == ["a"]
    for reader in (principal("79000702"), homeroom_teacher(), subject_teacher()):
        with pytest.raises(Forbidden, match="may not see who read"):
            await handlers.list_accesses(reader.signs(ListGradesAccesses(student_ref="s1")), deps)
    with pytest.raises(Unauthenticated):
        await handlers.list_accesses(ListGradesAccesses(student_ref="s1"), deps)
