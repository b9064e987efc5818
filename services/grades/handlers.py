"""grades' use cases: enrol students, record assessments, close a year and assemble its records."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.grades.domain import assemble_record, enrolled_entry_problems
from services.grades.metrics import GradesMetrics
from services.grades.repository import GradesRepository
from services.grades.rulesets import CURRENT, RuleSet
from shared.contracts.base import derived_id
from shared.contracts.grades import (
    AssessmentsRecorded,
    CloseYear,
    RecordAssessments,
    RecordsReady,
    RecordVersion,
    SubjectTermScores,
)
from shared.contracts.identity import RegisteredStudent, StudentSnapshots, StudentsRegistered
from shared.errors import InvalidMessage, NotFound, TransientError

log = logging.getLogger("hocba.grades")

#: Identity snapshots of student references (identity's look-up, or a stand-in in tests).
Lookup = Callable[[list[str]], Awaitable[StudentSnapshots]]

#: Version of a record as first assembled at the close of the year.
FIRST_VERSION = 1


async def enrol_students(event: StudentsRegistered, repo: GradesRepository, metrics: GradesMetrics) -> int:
    """Keep each registered student's enrolment; returns how many were new."""
    new = await repo.enrol(list(event.students))
    metrics.enrolled.inc(new)
    return new


@dataclass(frozen=True)
class Rejected:
    index: int
    entry: SubjectTermScores
    code: str
    reason: str


@dataclass
class RecordingOutcome:
    event: AssessmentsRecorded
    rejected: list[Rejected] = field(default_factory=list)
    new: int = 0


async def record_assessments(
    command: RecordAssessments,
    repo: GradesRepository,
    metrics: GradesMetrics,
    rule_set: RuleSet = CURRENT,
) -> RecordingOutcome:
    """Store the valid entries and report the invalid ones; a message with none valid is invalid.

    Entries of students not (yet) enrolled make the whole message wait: enrolments arrive on
    another queue, so the message is retried, and dead-lettered only when they never come.
    """
    if await repo.is_closed(command.school_code, command.school_year):
        count_rejected([Rejected(i, e, "year-closed", "") for i, e in enumerate(command.entries)], metrics)
        raise InvalidMessage(f"{command.school_year} is closed in school {command.school_code}")
    refs = sorted({e.student_ref for e in command.entries})
    enrolments = await repo.enrolments_of(command.school_year, refs)
    if unknown := [ref for ref in refs if ref not in enrolments]:
        raise TransientError(
            f"{len(unknown)} student(s) not enrolled in {command.school_year} yet: {', '.join(unknown[:10])}"
        )

    valid: list[SubjectTermScores] = []
    rejected = []
    seen: set[tuple[str, str, int]] = set()
    for index, entry in enumerate(command.entries):
        key = (entry.student_ref, entry.subject, entry.term)
        problems = enrolled_entry_problems(rule_set, command.school_code, enrolments[entry.student_ref], entry)
        if problems:
            rejected.append(Rejected(index, entry, problems[0].code, "; ".join(p.message for p in problems)))
        elif key in seen:
            rejected.append(Rejected(index, entry, "duplicate", "subject and term appear twice for the student"))
        else:
            seen.add(key)
            valid.append(entry)
    count_rejected(rejected, metrics)
    if not valid:
        raise InvalidMessage("no valid entry: " + describe(rejected))

    new = await repo.add_assessments(command.school_code, command.school_year, valid)
    metrics.recorded.inc(new)
    event = AssessmentsRecorded(
        message_id=derived_id(command.message_id, "recorded"),
        actor=command.actor,
        school_code=command.school_code,
        school_year=command.school_year,
        entries=len(valid),
        source_message_id=command.message_id,
    )
    return RecordingOutcome(event=event, rejected=rejected, new=new)


def count_rejected(rejected: list[Rejected], metrics: GradesMetrics) -> None:
    for item in rejected:
        metrics.rejected.labels(item.code).inc()


def describe(rejected: list[Rejected]) -> str:
    return "; ".join(
        f"entry {r.index} ({r.entry.student_ref}, {r.entry.subject}, term {r.entry.term}): {r.reason}"
        for r in rejected
    )


@dataclass
class ClosingOutcome:
    events: list[RecordsReady]
    assembled: int = 0
    new: int = 0
    #: reason -> student refs whose record could not be assembled.
    unassembled: dict[str, list[str]] = field(default_factory=dict)


async def close_year(
    command: CloseYear,
    repo: GradesRepository,
    lookup: Lookup,
    metrics: GradesMetrics,
    chunk_size: int,
    rule_set: RuleSet = CURRENT,
) -> ClosingOutcome:
    """Close the year, assemble every enrolled student's record and announce the stored records.

    Redelivered, it assembles again, stores nothing twice and announces the same records again,
    so a failure between storing and publishing loses nothing.
    """
    code, year = command.school_code, command.school_year
    students = await repo.enrolled(code, year)
    if not students:
        raise NotFound(f"no student is enrolled in school {code} for {year}")
    await repo.close_year(code, year, command.occurred_at)
    entries = entries_by_student(await repo.assessments(code, year))

    unassembled: dict[str, list[str]] = defaultdict(list)
    assemblable: list[RegisteredStudent] = []
    for student in sorted(students, key=lambda s: s.student_ref):
        if rule_set.subjects(student.enrolment.grade) is None:
            unassembled["no-rule-set"].append(student.student_ref)
        else:
            assemblable.append(student)
    snapshots = await lookup([s.student_ref for s in assemblable]) if assemblable else StudentSnapshots(students=[])
    known = {s.student_ref: s for s in snapshots.students}

    records = []
    for student in assemblable:
        snapshot = known.get(student.student_ref)
        if snapshot is None:
            unassembled["unknown-student"].append(student.student_ref)
            continue
        record = assemble_record(rule_set, student, snapshot, entries.get(student.student_ref, []), FIRST_VERSION)
        records.append(
            RecordVersion(
                record_id=record.record_id,
                version=record.version,
                school_code=code,
                school_year=year,
                student_ref=student.student_ref,
                document=record.document(),
            )
        )
    new = await repo.add_records(records)
    metrics.assembled.inc(new)
    for reason, refs in unassembled.items():
        metrics.unassembled.labels(reason).inc(len(refs))
        log.warning(
            "%s %s: %d record(s) not assembled (%s): %s", code, year, len(refs), reason, ", ".join(refs[:20])
        )

    stored = await repo.records(code, year, FIRST_VERSION)
    events = [
        RecordsReady(
            message_id=derived_id(command.message_id, "ready", n, *(r.record_id for r in chunk)),
            actor=command.actor,
            school_code=code,
            school_year=year,
            records=chunk,
        )
        for n, chunk in enumerate(chunked(stored, chunk_size))
    ]
    log.info("%s %s closed: %d record(s) assembled, %d new, %d ready", code, year, len(records), new, len(stored))
    return ClosingOutcome(events=events, assembled=len(records), new=new, unassembled=dict(unassembled))


def entries_by_student(entries: list[SubjectTermScores]) -> dict[str, list[SubjectTermScores]]:
    grouped: dict[str, list[SubjectTermScores]] = defaultdict(list)
    for entry in entries:
        grouped[entry.student_ref].append(entry)
    return grouped


def chunked(items: list[RecordVersion], size: int) -> list[list[RecordVersion]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
