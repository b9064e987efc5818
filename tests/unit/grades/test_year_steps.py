"""A school's year, step by step, as grades answers each step: closing and reopening a term says what it did (or
that nothing needed doing), closing the year says what it assembled and who was left out and why, a school's records
are listed with where each stands, and every change of a student's entries can be read back.

In-memory repository, real actor tokens (one for each message), grades' seal from a development PKI, and a stand-in
for identity's look-up (`FakeLookup`); the students are s1 and s2 in class 6A1 and s3 in 6A2 (conftest)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from hocba.staff import Person
from services.grades import handlers
from services.grades.domain import record_id
from services.grades.domain.listing import masked, status_of
from shared.auth import Unauthenticated
from shared.contracts.archive import ArchivedRecord, RecordsArchived
from shared.contracts.base import Message, derived_id
from shared.contracts.grades import (
    CloseTerm,
    CloseYear,
    EntryChanges,
    EntryHistory,
    ListRecords,
    RecordAssessments,
    RecordConduct,
    RecordList,
    RecordsReady,
    ReopenTerm,
    TermChanged,
    YearClosed,
    YearClosing,
)
from shared.contracts.signing import RecordsCompleted, SignedRecord
from shared.contracts.sync import Delivery, RecordsDelivered
from shared.errors import Forbidden, InvalidMessage, NotFound
from tests.unit.grades.builders import (
    SCHOOL,
    YEAR,
    enrolled,
    full_year,
    homeroom,
    homeroom_teacher,
    operator,
    own_year,
    person,
    principal,
    school_admin,
    scored,
    subject_teacher,
    upper_enrolled,
)
from tests.unit.grades.conftest import FakeLookup, Published

AT = datetime(2026, 5, 31, 8, 0, tzinfo=UTC)
EVERYONE = {"s1", "s2", "s3"}


def close_term(term: int, message_id: str | None = None, actor: Person | None = None, school: str = SCHOOL):
    command = CloseTerm(message_id=message_id or f"close-{term}", school_code=school, school_year=YEAR, term=term)
    return (actor or principal(school)).signs(command)


def reopen_term(term: int, message_id: str = "reopen-1", reason: str = "nhập sai điểm"):
    return principal().signs(
        ReopenTerm(message_id=message_id, school_code=SCHOOL, school_year=YEAR, term=term, reason=reason)
    )


def answered(outcome) -> TermChanged | YearClosed:
    """What a term or year step announces, which is also its answer."""
    [event] = outcome.publish
    assert outcome.reply == event
    return event


async def lock(deps, *terms: int) -> None:
    for term in terms:
        await handlers.close_term(close_term(term), deps)


async def enter(deps, *refs: str) -> None:
    """Every subject and homeroom entry of the year for these students (6A1's and 6A2's teachers)."""
    for ref in refs:
        class_name = "6A2" if ref == "s3" else "6A1"
        entries = RecordAssessments(
            school_code=SCHOOL, school_year=YEAR, entries=full_year(ref), message_id=f"gb-{ref}"
        )
        await handlers.record_assessments(subject_teacher().signs(entries), deps)
        conduct = RecordConduct(school_code=SCHOOL, school_year=YEAR, entries=homeroom(ref), message_id=f"hr-{ref}")
        await handlers.record_conduct(homeroom_teacher(class_name).signs(conduct), deps)


async def close_year(deps, class_name: str | None = None, message_id: str = "year-1", known=EVERYONE):
    """Close the year (of one class); what it answered, the records it announced, the progress it told."""
    ready, progress = Published(), Published()
    command = CloseYear(message_id=message_id, school_code=SCHOOL, school_year=YEAR, class_name=class_name)
    stepping = replace(deps, lookup=FakeLookup(set(known)), publish=ready, notify=progress)
    closed = answered(await handlers.close_year(principal().signs(command), stepping))
    assert isinstance(closed, YearClosed)
    return closed, [m for m in ready if isinstance(m, RecordsReady)], list(progress)


# -- terms ------------------------------------------------------------------------------------


async def test_closing_a_term_answers_its_state_and_a_second_close_says_it_was_closed_already(deps):
    first = answered(await handlers.close_term(close_term(1), deps))
    assert (first.term, first.state, first.already) == (1, "closed", False)
    assert first.source_message_id == "close-1"
    again = answered(await handlers.close_term(close_term(1, "close-1-again", school_admin()), deps))
    assert (again.state, again.already) == ("closed", True), "nothing changed: the term was closed already"
    assert len(await deps.repo.term_log(SCHOOL, YEAR)) == 1


async def test_a_redelivered_close_is_answered_as_the_close_it_was_not_as_already_closed(deps):
    command = close_term(2)
    await handlers.close_term(command, deps)
    redelivered = answered(await handlers.close_term(command, deps))
    assert (redelivered.state, redelivered.already) == ("closed", False)
    assert redelivered.message_id == derived_id("close-2", "term", "closed"), "the same event as the first delivery"


async def test_reopening_a_term_that_is_not_closed_says_so_and_changes_nothing(deps):
    never_closed = answered(await handlers.reopen_term(reopen_term(1), deps))
    assert (never_closed.state, never_closed.already) == ("open", True)
    await lock(deps, 1)
    reopened = answered(await handlers.reopen_term(reopen_term(1, "reopen-2"), deps))
    assert (reopened.state, reopened.already) == ("open", False)
    assert [e["action"] for e in await deps.repo.term_log(SCHOOL, YEAR)] == ["close", "reopen"]


async def test_a_term_of_a_school_or_year_without_enrolled_students_is_not_found(deps):
    """A mistyped school code or year, or a roster not imported yet: said, not locked silently."""
    with pytest.raises(NotFound, match="no student is enrolled in school 79000799 for 2025-2026"):
        await handlers.close_term(close_term(1, school="79000799"), deps)
    with pytest.raises(NotFound, match="no student is enrolled in school 79000799"):
        command = ReopenTerm(school_code="79000799", school_year=YEAR, term=1, reason="x")
        await handlers.reopen_term(principal("79000799").signs(command), deps)
    assert (await deps.repo.term_log("79000799", YEAR)) == []


async def test_who_may_not_close_a_term_is_refused_before_anything_is_looked_up(deps):
    with pytest.raises(Forbidden, match="acts for school 79000701, not 79000799"):
        await handlers.close_term(close_term(1, school="79000799", actor=principal()), deps)


# -- the year ---------------------------------------------------------------------------------


async def test_closing_the_year_answers_what_it_assembled_and_who_was_left_out_by_reason_and_class(deps):
    await deps.repo.enrol([enrolled("g12", grade=12, class_name="12A1")])  # a grade with no rule set here
    deps = replace(deps, rule_sets=lambda grade: handlers.rule_set_for(6))
    await enter(deps, "s1", "s2")
    await lock(deps, 1, 2)
    closed, ready, _ = await close_year(deps, known={"s1", "s3", "g12"})
    assert (closed.students, closed.assembled, closed.new, closed.already) == (4, 2, 2, False)
    left_out = {(o.reason, o.class_name): (o.count, o.student_refs) for o in closed.unassembled}
    assert left_out == {("no-rule-set", "12A1"): (1, ["g12"]), ("unknown-student", "6A1"): (1, ["s2"])}
    assert {r.student_ref for e in ready for r in e.records} == {"s1", "s3"}
    assert closed.message_id == derived_id("year-1", "closed")
    assert closed.by is not None and closed.by.subject == "ht-1" and closed.actor is None


async def test_closing_the_year_again_says_it_was_closed_and_stores_nothing_twice(deps):
    await lock(deps, 1, 2)
    await close_year(deps)
    again, ready, _ = await close_year(deps, message_id="year-2")
    assert (again.already, again.assembled, again.new) == (True, 3, 0)
    assert {r.student_ref for e in ready for r in e.records} == EVERYONE, "the stored records announced again"


async def test_closing_one_class_assembles_its_records_and_closes_the_year_for_the_whole_school(deps):
    await lock(deps, 1, 2)
    closed, ready, _ = await close_year(deps, class_name="6A2")
    assert (closed.class_name, closed.students, closed.assembled) == ("6A2", 1, 1)
    assert [r.student_ref for e in ready for r in e.records] == ["s3"]
    assert await deps.repo.is_closed(SCHOOL, YEAR), "no entry of any class changes after the year's close"
    rest, ready, _ = await close_year(deps, message_id="year-2")
    assert (rest.already, rest.assembled, rest.new) == (True, 3, 2)


async def test_a_class_without_students_is_not_found_and_the_year_stays_open(deps):
    await lock(deps, 1, 2)
    with pytest.raises(NotFound, match="no student is enrolled in class 6A9 of school 79000701 for 2025-2026"):
        await close_year(deps, class_name="6A9")
    assert not await deps.repo.is_closed(SCHOOL, YEAR)


async def test_a_year_whose_terms_are_open_is_refused_naming_the_open_terms(deps):
    await lock(deps, 2)
    with pytest.raises(InvalidMessage, match="term 1 of 2025-2026 is still open in school 79000701"):
        await close_year(deps)


async def test_the_close_tells_its_progress_after_each_group_of_classmates(deps):
    await lock(deps, 1, 2)
    closed, _, progress = await close_year(replace(deps, records_per_message=1))
    assert all(isinstance(p, YearClosing) and p.source_message_id == "year-1" for p in progress)
    assert [(p.class_name, p.students_done, p.students_total, p.assembled) for p in progress] == [
        ("6A1", 1, 3, 1),
        ("6A1", 2, 3, 2),
        ("6A2", 3, 3, 3),
    ]
    assert len({p.message_id for p in progress}) == 3 and closed.assembled == 3


# -- where records stand, and the list of a school's records ----------------------------------


def test_a_records_status_is_the_furthest_step_announced_for_it():
    assert status_of(True, []) == "assembled"
    assert status_of(False, []) == "incomplete"
    assert status_of(True, ["signed-and-sealed"]) == "signed-and-sealed"
    assert status_of(False, ["archived", "signed-and-sealed"]) == "archived"
    assert status_of(True, ["delivered"]) == "delivered", "the ministry receives only what is archived"


def test_a_personal_id_is_listed_with_its_last_four_digits_only():
    assert masked("079214000123") == "********0123"


async def closed_school(deps) -> dict[str, str]:
    """s1 and s2 with every entry, s3 with none; the year closed. Record ids by student."""
    await enter(deps, "s1", "s2")
    await lock(deps, 1, 2)
    await close_year(deps)
    return {ref: record_id(SCHOOL, YEAR, ref) for ref in sorted(EVERYONE)}


async def listed(deps, reader: Person | None = None, **asked) -> RecordList:
    reader = reader or principal()
    request = ListRecords(school_code=SCHOOL, school_year=YEAR, purpose="rà soát cuối năm", **asked)
    outcome = await handlers.list_records(reader.signs(request), deps)
    assert isinstance(outcome.reply, RecordList) and not outcome.publish
    return outcome.reply


def signed(deps_records, *refs) -> RecordsCompleted:
    return RecordsCompleted(records=[SignedRecord(record=deps_records[r], signatures=[]) for r in refs])


def archived(records, version: int = 1) -> RecordsArchived:
    return RecordsArchived(
        records=[
            ArchivedRecord(
                record_id=r.record_id,
                version=version,
                school_code=r.school_code,
                school_year=r.school_year,
                student_ref=r.student_ref,
                content=r.content,
                seq=n,
                entry_hash="0" * 64,
                digest="0" * 64,
            )
            for n, r in enumerate(records)
        ]
    )


def delivered(rid: str, version: int = 1) -> RecordsDelivered:
    return RecordsDelivered(deliveries=[Delivery(record_id=rid, version=version, receipt_id="r", delivered_at=AT)])


async def test_each_record_is_listed_with_where_it_stands_as_the_later_services_announced_it(deps):
    ids = await closed_school(deps)
    stored = {r.student_ref: r for r in await deps.repo.records(SCHOOL, YEAR, 1)}
    await handlers.note_completed(signed(stored, "s1", "s2"), deps)
    await handlers.note_archived(archived([stored["s1"]]), deps)
    await handlers.note_delivered(delivered(ids["s1"]), deps)
    await handlers.note_delivered(delivered(ids["s1"]), deps)  # a redelivery is noted once
    lines = {line.student_ref: line for line in (await listed(deps)).records}
    assert {ref: (line.status, line.version) for ref, line in lines.items()} == {
        "s1": ("delivered", 1),
        "s2": ("signed-and-sealed", 1),
        "s3": ("incomplete", 1),
    }
    assert (lines["s3"].complete, lines["s3"].missing > 0) == (False, True)
    assert {ref: (line.record_id, line.class_name, line.grade) for ref, line in lines.items()} == {
        ref: (ids[ref], "6A2" if ref == "s3" else "6A1", 6) for ref in EVERYONE
    }
    assert [line.class_name for line in (await listed(deps)).records] == ["6A1", "6A1", "6A2"], "class by class"


async def test_an_amended_version_is_listed_once_its_signing_is_announced(deps):
    """grades assembles version 1; an amendment's version 2 is known from what signing and the archive announce."""
    ids = await closed_school(deps)
    s1 = (await deps.repo.records_of([ids["s1"]], 1))[0]
    await handlers.note_archived(archived([s1], version=1), deps)
    await handlers.note_archived(archived([s1], version=2), deps)
    [line] = (await listed(deps, student_ref="s1")).records
    assert (line.version, line.status) == (2, "archived")


async def test_records_are_listed_by_class_by_status_and_for_one_student(deps):
    ids = await closed_school(deps)
    assert {line.student_ref for line in (await listed(deps, class_name="6A1")).records} == {"s1", "s2"}
    assert [line.student_ref for line in (await listed(deps, status="incomplete")).records] == ["s3"]
    assert [line.record_id for line in (await listed(deps, student_ref="s2")).records] == [ids["s2"]]
    assert (await listed(deps, status="delivered")).records == []
    assert (await listed(deps, class_name="6A9")).records == []


async def test_the_principal_and_administrator_see_names_a_teacher_their_classes_an_operator_no_name(deps):
    await closed_school(deps)
    for leader in (principal(), school_admin()):
        assert {line.student_name for line in (await listed(deps, leader)).records} == {"Nguyễn Văn An"}
    by_teacher = {line.student_ref: line.student_name for line in (await listed(deps, homeroom_teacher("6A2"))).records}
    assert by_teacher == {"s1": "", "s2": "", "s3": "Nguyễn Văn An"}
    by_operator = (await listed(deps, operator())).records
    assert {(line.student_name, line.masked_personal_id) for line in by_operator} == {("", "********0123")}


async def test_only_the_schools_staff_and_operators_list_its_records(deps):
    await closed_school(deps)
    with pytest.raises(Forbidden, match="acts for school 79000702, not 79000701"):
        await listed(deps, principal("79000702"))
    with pytest.raises(Unauthenticated):
        await handlers.list_records(ListRecords(school_code=SCHOOL, school_year=YEAR), deps)
    assert await deps.access_log.of("s1", 10) == [], "a refusal reads nothing"


async def test_each_student_listed_is_kept_in_the_access_log_with_the_record_and_the_purpose(deps, registry):
    ids = await closed_school(deps)
    await listed(deps, operator(), class_name="6A2")
    [entry] = await deps.access_log.of("s3", 10)
    assert (entry.subject, entry.action, entry.record_id, entry.purpose) == (
        "operator-1",
        "list",
        ids["s3"],
        "rà soát cuối năm",
    )
    assert await deps.access_log.of("s1", 10) == [], "only the students listed"


async def summed(deps, reader: Person | None = None, **asked) -> RecordList:
    return await listed(deps, reader, summary=True, **asked)


def reads(registry) -> float:
    """Personal-data reads counted so far, whoever read."""
    return sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "hocba_personal_data_reads"
        for sample in metric.samples
        if sample.name == "hocba_personal_data_reads_total"
    )


async def test_a_summary_counts_each_class_as_the_full_listing_does_and_names_no_student(deps):
    ids = await closed_school(deps)
    stored = {r.student_ref: r for r in await deps.repo.records(SCHOOL, YEAR, 1)}
    await handlers.note_completed(signed(stored, "s1", "s2"), deps)
    await handlers.note_archived(archived([stored["s1"]]), deps)
    await handlers.note_delivered(delivered(ids["s1"]), deps)
    summary = await summed(deps)
    assert summary.records == [], "no line a record"
    assert [c.model_dump() for c in summary.classes] == [
        {"class_name": "6A1", "records": 2, "incomplete": 0, "signed_and_sealed": 2, "archived": 1, "delivered": 1},
        {"class_name": "6A2", "records": 1, "incomplete": 1, "signed_and_sealed": 0, "archived": 0, "delivered": 0},
    ], "a delivered record was archived, signed and sealed before: it counts in each"
    lines = (await listed(deps)).records
    for counted in summary.classes:
        of_class = [line for line in lines if line.class_name == counted.class_name]
        assert counted.records == len(of_class)
        assert counted.incomplete == sum(not line.complete for line in of_class)
        assert counted.delivered == sum(line.status == "delivered" for line in of_class)
    assert "s1" not in summary.model_dump_json() and "Nguyễn" not in summary.model_dump_json()


async def test_a_summary_is_filtered_like_the_listing(deps):
    await closed_school(deps)
    [one_class] = (await summed(deps, class_name="6A2")).classes
    assert (one_class.class_name, one_class.records) == ("6A2", 1)
    [incomplete] = (await summed(deps, status="incomplete")).classes
    assert (incomplete.class_name, incomplete.records, incomplete.incomplete) == ("6A2", 1, 1)
    assert (await summed(deps, class_name="6A9")).classes == []


async def test_a_summary_of_a_school_logs_no_access_and_counts_no_personal_data_read(deps, registry):
    await closed_school(deps)
    before = reads(registry)
    for reader in (principal(), operator(), homeroom_teacher("6A1")):
        await summed(deps, reader)
    assert all([await deps.access_log.of(ref, 10) == [] for ref in EVERYONE]), "nothing kept in the access log"
    assert reads(registry) == before, "no personal-data read counted"
    await listed(deps)
    assert reads(registry) == before + 3, "the full listing still reads each student listed"


async def test_a_summary_is_read_by_the_same_readers_as_the_listing_and_names_no_student(deps):
    await closed_school(deps)
    with pytest.raises(Forbidden, match="acts for school 79000702, not 79000701"):
        await summed(deps, principal("79000702"))
    with pytest.raises(Unauthenticated):
        await handlers.list_records(ListRecords(school_code=SCHOOL, school_year=YEAR, summary=True), deps)
    with pytest.raises(InvalidMessage, match="a summary counts a school's records and names no student"):
        await summed(deps, student_ref="s1")


async def test_the_listing_says_which_terms_of_the_year_are_closed(deps):
    assert (await summed(deps)).terms_closed == []
    await lock(deps, 1)
    assert (await summed(deps)).terms_closed == [1]
    await lock(deps, 2)
    assert (await listed(deps)).terms_closed == [1, 2]
    await handlers.reopen_term(reopen_term(2), deps)
    assert (await summed(deps)).terms_closed == [1], "a reopened term is no longer closed"


# -- the history of a student's entries -------------------------------------------------------


async def history(deps, reader: Person | None = None, ref: str = "s1", **asked) -> EntryChanges:
    reader = reader or principal()
    request = EntryHistory(school_code=SCHOOL, school_year=YEAR, student_ref=ref, purpose="phúc khảo", **asked)
    outcome = await handlers.entry_history(reader.signs(request), deps)
    assert isinstance(outcome.reply, EntryChanges)
    return outcome.reply


async def corrected_tin_hoc(deps) -> None:
    """s1's year entered, term 1 closed and reopened, Tin học term 1 corrected with a reason."""
    await enter(deps, "s1")
    await lock(deps, 1)
    await handlers.reopen_term(reopen_term(1), deps)
    fix = RecordAssessments(
        message_id="fix-1",
        school_code=SCHOOL,
        school_year=YEAR,
        reason="bài 1 là 9, không phải 8",
        entries=[scored("s1", "Tin học", 1, ["9", "7"], "7", "8")],
        occurred_at=AT,
    )
    await handlers.record_assessments(subject_teacher().signs(fix), deps)


async def test_every_change_of_an_entry_says_who_when_old_and_new_values_why_and_which_message(deps):
    await corrected_tin_hoc(deps)
    changes = (await history(deps, subject="Tin học")).changes
    assert [(c.term, c.action, c.revision) for c in changes] == [
        (1, "recorded", 1),
        (1, "changed", 2),
        (2, "recorded", 1),
    ]
    recorded, changed, _ = changes
    assert (recorded.by, recorded.message_id, recorded.old) == ("gv-1", "gb-s1", None)
    assert recorded.new["regular"] == ["8.0", "8.0"]
    assert (changed.by, changed.at, changed.reason, changed.message_id) == (
        "gv-1",
        AT,
        "bài 1 là 9, không phải 8",
        "fix-1",
    )
    assert (changed.old["regular"], changed.new["regular"]) == (["8.0", "8.0"], ["9", "7"])
    assert changed.message == RecordAssessments.ROUTING_KEY and changed.kind == "subject"


async def test_the_whole_history_holds_every_subject_and_the_homeroom_entries(deps):
    await corrected_tin_hoc(deps)
    changes = (await history(deps)).changes
    homeroom_entries = [c for c in changes if c.kind == "homeroom"]
    assert [(c.subject, c.term, c.message) for c in homeroom_entries] == [
        ("", 1, RecordConduct.ROUTING_KEY),
        ("", 2, RecordConduct.ROUTING_KEY),
    ]
    assert homeroom_entries[0].by == "gvcn-6A1" and homeroom_entries[0].new["conduct"] == "Tốt"
    assert len([c for c in changes if c.kind == "subject"]) == len(full_year("s1")) + 1, "each entry, and the change"


async def test_a_history_is_read_by_the_schools_staff_and_operators_and_kept_in_the_access_log(deps):
    await corrected_tin_hoc(deps)
    await history(deps, operator(), subject="Toán")
    [entry] = await deps.access_log.of("s1", 10)
    assert (entry.subject, entry.action, entry.purpose) == ("operator-1", "history", "phúc khảo")
    with pytest.raises(Forbidden):
        await history(deps, principal("79000702"))


async def test_a_student_not_enrolled_at_the_school_that_year_has_no_history_there(deps):
    await deps.repo.enrol([enrolled("x1", school="79000702")])
    with pytest.raises(NotFound, match="student x1 is not enrolled in school 79000701 for 2025-2026"):
        await history(deps, ref="x1")
    with pytest.raises(NotFound, match="student nobody is not enrolled"):
        await history(deps, ref="nobody")


async def test_a_teacher_of_the_school_reads_a_history_too(deps):
    await enter(deps, "s1")
    reader = person({"subject_teacher"}, subject="gv-2", classes=frozenset({"6A1"}), subjects=frozenset({"Toán"}))
    assert len((await history(deps, reader, subject="Toán")).changes) == 2


def test_the_messages_these_steps_announce_are_notifications_nobody_has_to_receive():
    for announced in (TermChanged, YearClosing, YearClosed):
        assert issubclass(announced, Message) and announced.MANDATORY is False


async def test_a_grade_10_students_history_holds_their_electives_entries(deps):
    student = upper_enrolled("u1")
    await deps.repo.enrol([student])
    entries = own_year(student)
    teacher = person(
        {"subject_teacher"},
        subject="gv-10",
        classes=frozenset({"10A1"}),
        subjects=frozenset(e.subject for e in entries),
    )
    command = RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=entries, message_id="gb-u1")
    recorded = (await handlers.record_assessments(teacher.signs(command), deps)).reply
    assert recorded.rejected == [] and recorded.new == len(entries)
    subjects = {c.subject for c in (await history(deps, ref="u1")).changes}
    assert {"Vật lí", "Hóa học", "Sinh học", "Tin học"} <= subjects, "the electives are the student's own entries"
    assert subjects == {e.subject for e in entries}
