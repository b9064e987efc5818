"""grades' use cases: enrol, record subject and homeroom entries, lock terms, close a year, explain a record."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.grades.domain import assemble_record, conduct_problems, enrolled_entry_problems
from services.grades.domain.authority import (
    assessment_refusal,
    close_term_refusal,
    homeroom_refusal,
    principal_refusal,
    reader_refusal,
)
from services.grades.domain.entries import EntryProblem
from services.grades.domain.terms import change_of, locked_problem, reason_problem
from services.grades.metrics import GradesMetrics
from services.grades.repository import EntryKey, GradesRepository, Kind, Write, entry_key
from services.grades.rulesets import RULE_SETS, RuleSet, rule_set_for
from shared.auth import Actor, IssuerKeys, require_actor
from shared.contracts.base import Message, derived_id
from shared.contracts.grades import (
    AssessmentsRecorded,
    CloseTerm,
    CloseYear,
    ConductRecorded,
    EntryRejection,
    ExplainRecord,
    ExplanationLine,
    RecordAssessments,
    RecordConduct,
    RecordExplanation,
    RecordsReady,
    RecordVersion,
    ReopenTerm,
    StudentTermConduct,
    SubjectTermScores,
    TermChanged,
)
from shared.contracts.identity import RegisteredStudent, StudentSnapshots, StudentsRegistered
from shared.errors import Forbidden, InvalidMessage, NotFound, TransientError

log = logging.getLogger("hocba.grades")

#: Identity snapshots of student references (identity's look-up, or a stand-in in tests).
Lookup = Callable[[list[str]], Awaitable[StudentSnapshots]]
RuleSets = Callable[[int], RuleSet]

#: Version of a record as first assembled at the close of the year.
FIRST_VERSION = 1

Entry = SubjectTermScores | StudentTermConduct


def authenticate(command: Message, keys: IssuerKeys | None, metrics: GradesMetrics) -> Actor:
    """The verified actor of a command; a missing, forged or expired token refuses it whole."""
    try:
        return require_actor(command.actor, keys)
    except Forbidden as exc:
        metrics.refused.labels(type(command).__name__, exc.reason).inc()
        raise


def refuse(command: Message, refusal: str | None, metrics: GradesMetrics) -> None:
    if refusal is not None:
        metrics.refused.labels(type(command).__name__, Forbidden.reason).inc()
        raise Forbidden(refusal)


async def enrol_students(event: StudentsRegistered, repo: GradesRepository, metrics: GradesMetrics) -> int:
    """Keep each registered student's enrolment; returns how many were new."""
    new = await repo.enrol(list(event.students))
    metrics.enrolled.inc(new)
    return new


# -- entries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejected:
    index: int
    entry: Entry
    code: str
    reason: str
    #: Refused for who sent it (dead-lettered as "forbidden"), not for what it says ("invalid").
    forbidden: bool = False

    def contract(self) -> EntryRejection:
        return EntryRejection(index=self.index, code=self.code, reason=self.reason)


@dataclass
class RecordingOutcome:
    event: AssessmentsRecorded | ConductRecorded
    rejected: list[Rejected] = field(default_factory=list)
    new: int = 0
    changed: int = 0
    unchanged: int = 0


#: Checks one entry of an enrolled student: (problems, refusal).
Check = Callable[[RuleSet, RegisteredStudent, Entry], tuple[list[EntryProblem], str | None]]


async def record_assessments(
    command: RecordAssessments,
    repo: GradesRepository,
    metrics: GradesMetrics,
    keys: IssuerKeys | None,
    rule_sets: RuleSets = rule_set_for,
) -> RecordingOutcome:
    """Store a subject teacher's entries: only for their classes and subjects, only in open terms."""
    actor = authenticate(command, keys, metrics)

    def check(rule_set: RuleSet, student: RegisteredStudent, entry: Entry) -> tuple[list[EntryProblem], str | None]:
        assert isinstance(entry, SubjectTermScores)
        refusal = assessment_refusal(actor, command.school_code, student.enrolment.class_name, entry.subject)
        return enrolled_entry_problems(rule_set, command.school_code, student, entry), refusal

    return await _record("subject", command, command.entries, actor, check, repo, metrics, rule_sets)


async def record_conduct(
    command: RecordConduct,
    repo: GradesRepository,
    metrics: GradesMetrics,
    keys: IssuerKeys | None,
    rule_sets: RuleSets = rule_set_for,
) -> RecordingOutcome:
    """Store the homeroom teacher's entries (conduct, absences, qualities, comments) for their class."""
    actor = authenticate(command, keys, metrics)

    def check(rule_set: RuleSet, student: RegisteredStudent, entry: Entry) -> tuple[list[EntryProblem], str | None]:
        assert isinstance(entry, StudentTermConduct)
        enrolment = student.enrolment
        refusal = homeroom_refusal(actor, command.school_code, enrolment.class_name)
        if enrolment.school_code != command.school_code:
            return [EntryProblem("wrong-school", f"the student is enrolled in school {enrolment.school_code}")], refusal
        return conduct_problems(rule_set, entry), refusal

    return await _record("homeroom", command, command.entries, actor, check, repo, metrics, rule_sets)


async def _record(
    kind: Kind,
    command: RecordAssessments | RecordConduct,
    entries: Sequence[Entry],
    actor: Actor,
    check: Check,
    repo: GradesRepository,
    metrics: GradesMetrics,
    rule_sets: RuleSets,
) -> RecordingOutcome:
    """Check every entry, store the new and the changed, and report each rejected one.

    Entries of students not (yet) enrolled make the whole message wait: enrolments arrive on
    another queue, so the message is retried, and dead-lettered only when they never come.
    """
    code, year = command.school_code, command.school_year
    rejected: list[Rejected] = []
    accepted: list[tuple[int, Entry, EntryKey]] = []
    statuses = {}
    if await repo.is_closed(code, year):
        rejected = [Rejected(i, e, "year-closed", f"{year} is closed in school {code}") for i, e in enumerate(entries)]
    else:
        refs = sorted({e.student_ref for e in entries})
        enrolments = await repo.enrolments_of(year, refs)
        if unknown := [ref for ref in refs if ref not in enrolments]:
            raise TransientError(f"{len(unknown)} student(s) not enrolled in {year} yet: {', '.join(unknown[:10])}")
        statuses = await repo.term_statuses(code, year)
        seen: set[EntryKey] = set()
        for index, entry in enumerate(entries):
            student = enrolments[entry.student_ref]
            key = entry_key(kind, entry)
            problems, refusal = check(rule_sets(student.enrolment.grade), student, entry)
            if refusal is not None:
                rejected.append(Rejected(index, entry, "forbidden", refusal, forbidden=True))
            elif problems:
                rejected.append(Rejected(index, entry, problems[0].code, "; ".join(p.message for p in problems)))
            elif locked := locked_problem(statuses[entry.term]):
                rejected.append(Rejected(index, entry, locked.code, locked.message))
            elif key in seen:
                rejected.append(Rejected(index, entry, "duplicate", "the same entry appears twice in this message"))
            else:
                seen.add(key)
                accepted.append((index, entry, key))

    stored = await repo.stored(code, year, kind, [key for _, _, key in accepted])
    writes: list[Write] = []
    unchanged = 0
    for index, entry, key in accepted:
        before = stored.get(key)
        change = change_of(before, entry, command.message_id)
        if problem := reason_problem(statuses[entry.term], change, command.reason):
            rejected.append(Rejected(index, entry, problem.code, problem.message))
        elif change == "unchanged":
            unchanged += 1
        else:
            writes.append(
                Write(key, entry, command.message_id, actor.subject, command.occurred_at, command.reason,
                      revision=before.revision if before else 0, old=before.values if before else None)  # type: ignore[arg-type]
            )
    await repo.write(code, year, kind, writes)

    new = sum(1 for w in writes if w.revision == 0)
    changed = len(writes) - new
    (metrics.recorded if kind == "subject" else metrics.homeroom_recorded).inc(new)
    metrics.changed.labels(kind).inc(changed)
    for item in rejected:
        metrics.rejected.labels(item.code).inc()
    rejected.sort(key=lambda r: r.index)
    event_type = AssessmentsRecorded if kind == "subject" else ConductRecorded
    event = event_type(
        message_id=derived_id(command.message_id, "recorded"),
        actor=command.actor,
        school_code=code,
        school_year=year,
        entries=new + changed + unchanged,
        source_message_id=command.message_id,
        new=new,
        changed=changed,
        unchanged=unchanged,
        rejected=[r.contract() for r in rejected],
    )
    return RecordingOutcome(event=event, rejected=rejected, new=new, changed=changed, unchanged=unchanged)


def describe(rejected: list[Rejected]) -> str:
    def what(entry: Entry) -> str:
        subject = entry.subject if isinstance(entry, SubjectTermScores) else "homeroom"
        return f"{entry.student_ref}, {subject}, term {entry.term}"

    return "; ".join(f"entry {r.index} ({what(r.entry)}): {r.reason}" for r in rejected)


# -- terms ------------------------------------------------------------------------------------


async def close_term(
    command: CloseTerm, repo: GradesRepository, metrics: GradesMetrics, keys: IssuerKeys | None
) -> TermChanged:
    """Lock a term's entries (the principal or the school administrator)."""
    actor = authenticate(command, keys, metrics)
    refuse(command, close_term_refusal(actor, command.school_code), metrics)
    if await repo.is_closed(command.school_code, command.school_year):
        raise InvalidMessage(f"{command.school_year} is closed in school {command.school_code}")
    if await repo.set_term(command.school_code, command.school_year, command.term, True, actor.subject,
                           command.occurred_at, "", command.message_id):
        metrics.terms.labels("close").inc()
    return _term_changed(command, "closed", actor)


async def reopen_term(
    command: ReopenTerm, repo: GradesRepository, metrics: GradesMetrics, keys: IssuerKeys | None
) -> TermChanged:
    """Unlock a closed term for corrections: the principal's confirmation, with the reason logged."""
    actor = authenticate(command, keys, metrics)
    refuse(command, principal_refusal(actor, command.school_code, "reopen a term"), metrics)
    if await repo.is_closed(command.school_code, command.school_year):
        raise InvalidMessage(
            f"{command.school_year} is closed in school {command.school_code}: a correction is now an amendment"
        )
    if await repo.set_term(command.school_code, command.school_year, command.term, False, actor.subject,
                           command.occurred_at, command.reason, command.message_id):
        metrics.terms.labels("reopen").inc()
    return _term_changed(command, "open", actor)


def _term_changed(command: CloseTerm | ReopenTerm, state: str, actor: Actor) -> TermChanged:
    return TermChanged(
        message_id=derived_id(command.message_id, "term", state),
        actor=command.actor,
        school_code=command.school_code,
        school_year=command.school_year,
        term=command.term,
        state=state,  # type: ignore[arg-type]
        source_message_id=command.message_id,
        by=actor.subject,
    )


# -- the year ---------------------------------------------------------------------------------


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
    keys: IssuerKeys | None,
    rule_sets: RuleSets = rule_set_for,
) -> ClosingOutcome:
    """Close the year (the principal, both terms closed), assemble every record and announce them.

    Redelivered, it assembles again, stores nothing twice and announces the same records again,
    so a failure between storing and publishing loses nothing.
    """
    actor = authenticate(command, keys, metrics)
    code, year = command.school_code, command.school_year
    refuse(command, principal_refusal(actor, code, "close the year"), metrics)
    statuses = await repo.term_statuses(code, year)
    if open_terms := [str(t) for t, s in statuses.items() if not s.closed]:
        raise InvalidMessage(
            f"term {' and '.join(open_terms)} of {year} is still open in school {code}: close it first (CloseTerm)"
        )
    students = await repo.enrolled(code, year)
    if not students:
        raise NotFound(f"no student is enrolled in school {code} for {year}")
    await repo.close_year(code, year, command.occurred_at)
    entries = by_student(await repo.assessments(code, year))
    homeroom = by_student(await repo.homeroom(code, year))

    unassembled: dict[str, list[str]] = defaultdict(list)
    assemblable: list[RegisteredStudent] = []
    for student in sorted(students, key=lambda s: s.student_ref):
        if rule_sets(student.enrolment.grade).subjects(student.enrolment.grade) is None:
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
        ref = student.student_ref
        record = assemble_record(
            rule_sets(student.enrolment.grade), student, snapshot, entries.get(ref, []), homeroom.get(ref, []),
            FIRST_VERSION,
        )
        records.append(
            RecordVersion(
                record_id=record.record_id,
                version=record.version,
                school_code=code,
                school_year=year,
                student_ref=ref,
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


def by_student(entries: Sequence[Any]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for entry in entries:
        grouped[entry.student_ref].append(entry)
    return grouped


def chunked(items: list[RecordVersion], size: int) -> list[list[RecordVersion]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


# -- explaining a record ----------------------------------------------------------------------


async def explain_record(
    request: ExplainRecord, repo: GradesRepository, metrics: GradesMetrics, keys: IssuerKeys | None
) -> RecordExplanation:
    """Every computed result of a record with its rule, clause, inputs and words; refusals are answered too."""
    not_found = RecordExplanation(found=False, record_id=request.record_id)
    try:
        actor = authenticate(request, keys, metrics)
    except Forbidden as exc:
        metrics.explained.labels("refused").inc()
        return not_found.model_copy(update={"error": str(exc)})
    record = await repo.record(request.record_id, request.version)
    if record is None:
        metrics.explained.labels("not-found").inc()
        return not_found.model_copy(update={"error": f"no record {request.record_id}"})
    if refusal := reader_refusal(actor, record.school_code):
        metrics.explained.labels("refused").inc()
        return not_found.model_copy(update={"error": refusal})
    doc = record.document
    rule_set = RULE_SETS.get(doc.get("rule_set", ""))
    metrics.explained.labels("answered").inc()
    return RecordExplanation(
        found=True,
        record_id=record.record_id,
        version=record.version,
        school_code=record.school_code,
        school_year=record.school_year,
        grade=doc.get("grade", 0),
        class_name=doc.get("class_name", ""),
        student_name=doc.get("student", {}).get("identity", {}).get("full_name", ""),
        rule_set=doc.get("rule_set", ""),
        unconfirmed=rule_set.unconfirmed(doc.get("grade")) if rule_set else [],
        lines=[ExplanationLine.model_validate(e) for e in doc.get("explanations", [])],
    )
