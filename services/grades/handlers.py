"""grades' use cases: enrol, record subject and homeroom entries, lock terms, close a year, explain a record,
tell who read a student's records.

Each handler takes the message and `Deps` and returns an `Outcome` (shared.outcome): what to
publish, what to answer, and which entries are refused. A message refused whole raises. Every
command and request first verifies its actor token (`require_actor`); the events a command causes
say who acted (`by`), never carry the token. Each record version grades assembles carries its seal
(`Deps.sealer`), and each record explained is kept in the access log.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from services.grades.domain import assemble_record, conduct_problems, enrolled_entry_problems, record_id
from services.grades.domain.authority import (
    authorise_assessment,
    authorise_homeroom_entry,
    authorise_principal,
    authorise_reader,
    authorise_term_close,
)
from services.grades.domain.entries import Entry, EntryProblem
from services.grades.domain.reading import UnreadableRecord, record_from_document
from services.grades.domain.terms import TermStatus, change_of, locked_problem, reason_problem
from services.grades.metrics import GradesMetrics
from services.grades.repository import EntryKey, GradesRepository, Kind, TermAction, Write, entry_key
from services.grades.rulesets import RULE_SETS, RuleSet, rule_set_for
from shared.access import AccessLogStore, AccessRecorder, authorise_access_list
from shared.at_rest import KeyRotation
from shared.auth import Actor, IssuerKeys, require_actor
from shared.contracts.access import AccessLog, ListGradesAccesses
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
from shared.contracts.identity import RegisteredStudent, StudentSnapshot, StudentsRegistered
from shared.contracts.keys import RotateGradesKey
from shared.contracts.record import content_of
from shared.errors import Forbidden, InvalidMessage, NotFound, TransientError
from shared.outcome import NOTHING, Outcome, RejectedPart

log = logging.getLogger("hocba.grades")

#: Identity snapshots of student references, asked for a purpose (identity's look-up, or a stand-in in tests).
Lookup = Callable[[list[str], str], Awaitable[list[StudentSnapshot]]]
#: grades' seal on a record version it assembled (`shared.crypto.seal.seal` over `record_claims`).
Sealer = Callable[[RecordVersion], str]
#: The rule set a grade's records are computed by.
RuleSets = Callable[[int], RuleSet]
#: Publishes a message at once (the bus's publish), for a handler that announces as it goes.
Publish = Callable[[Message], Awaitable[None]]

#: Version of a record as first assembled at the close of the year.
FIRST_VERSION = 1


@dataclass(frozen=True)
class Deps:
    """What grades' handlers need; `app.py` builds it once."""

    repo: GradesRepository
    metrics: GradesMetrics
    #: Public keys of the actor-token issuer, grades as the audience (None: none configured, every actor is refused).
    issuer_keys: IssuerKeys | None
    #: identity's snapshots of the students whose records a closing year assembles.
    lookup: Lookup
    #: Record versions per RecordsReady message when a year closes: the most students assembled at once.
    records_per_message: int
    #: Seals each record version as grades assembles it (the svc-grades certificate).
    sealer: Sealer
    #: Makes (and counts) the access-log entries of every record read.
    access: AccessRecorder
    #: Where those entries are kept, and read back by student.
    access_log: AccessLogStore
    #: The key ring the record documents are sealed under, and its rotation.
    rotation: KeyRotation
    #: Publishes the RecordsReady of a closing year as each group of records is stored.
    publish: Publish
    rule_sets: RuleSets = rule_set_for


async def enrol_students(event: StudentsRegistered, deps: Deps) -> Outcome:
    """Keep each registered student's enrolment; the first one of a student's year stands."""
    deps.metrics.enrolled.inc(await deps.repo.enrol(list(event.students)))
    return NOTHING


# -- entries ----------------------------------------------------------------------------------

E = TypeVar("E", SubjectTermScores, StudentTermConduct)
#: The checks of one entry of an enrolled student under their grade's rule set: its problems.
#: Raises Forbidden when whoever sent the entry may not enter it.
Check = Callable[[RuleSet, RegisteredStudent, E], list[EntryProblem]]

DUPLICATE = EntryProblem("duplicate", "the same entry appears twice in this message")


@dataclass(frozen=True)
class Rejected:
    """Entry `index` of a message, not stored, and why."""

    index: int
    entry: Entry
    code: str
    reason: str
    #: Refused for who sent it (dead-lettered as "forbidden"), not for what it says ("invalid").
    forbidden: bool = False

    def contract(self) -> EntryRejection:
        return EntryRejection(index=self.index, code=self.code, reason=self.reason)


@dataclass(frozen=True)
class Accepted:
    """Entry `index` of a message: sent by someone who may, valid, once, in an open term (`term`)."""

    index: int
    entry: Entry
    key: EntryKey
    term: TermStatus


async def record_assessments(command: RecordAssessments, deps: Deps) -> Outcome:
    """Store a subject teacher's entries: only for their classes and subjects, only in open terms.

    Announced and answered with AssessmentsRecorded; the refused entries are dead-lettered.
    """
    actor = require_actor(command, deps.issuer_keys)

    def check(rule_set: RuleSet, student: RegisteredStudent, entry: SubjectTermScores) -> list[EntryProblem]:
        authorise_assessment(actor, command.school_code, student.enrolment.class_name, entry.subject)
        return enrolled_entry_problems(rule_set, command.school_code, student, entry)

    return await record_entries(command, command.entries, actor, check, deps)


async def record_conduct(command: RecordConduct, deps: Deps) -> Outcome:
    """Store the homeroom teacher's entries (conduct, absences, qualities, comments) for their class.

    Announced and answered with ConductRecorded; the refused entries are dead-lettered.
    """
    actor = require_actor(command, deps.issuer_keys)

    def check(rule_set: RuleSet, student: RegisteredStudent, entry: StudentTermConduct) -> list[EntryProblem]:
        enrolment = student.enrolment
        authorise_homeroom_entry(actor, command.school_code, enrolment.class_name)
        if enrolment.school_code != command.school_code:
            return [EntryProblem("wrong-school", f"the student is enrolled in school {enrolment.school_code}")]
        return conduct_problems(rule_set, entry)

    return await record_entries(command, command.entries, actor, check, deps)


async def record_entries(
    command: RecordAssessments | RecordConduct, entries: Sequence[E], actor: Actor, check: Check[E], deps: Deps
) -> Outcome:
    """Check every entry, store the new and the changed, and report each rejected one.

    Entries of students not (yet) enrolled make the whole message wait: enrolments arrive on
    another queue, so the message is retried, and dead-lettered only when they never come.
    """
    accepted, rejected = await checked(command, entries, check, deps)
    writes, unreasoned = await writes_for(command, actor, accepted, deps)
    await deps.repo.write(command.school_code, command.school_year, kind_of(command), writes)
    in_order = sorted(rejected + unreasoned, key=lambda r: r.index)
    recorded = recorded_event(command, actor, writes, len(accepted) - len(unreasoned), in_order)
    count_recorded(kind_of(command), recorded, deps.metrics)
    return Outcome(publish=[recorded], reply=recorded, rejected=rejected_parts(in_order))


def kind_of(command: RecordAssessments | RecordConduct) -> Kind:
    return "subject" if isinstance(command, RecordAssessments) else "homeroom"


async def checked(
    command: RecordAssessments | RecordConduct, entries: Sequence[E], check: Check[E], deps: Deps
) -> tuple[list[Accepted], list[Rejected]]:
    """The entries accepted, and those rejected with the first reason that keeps each out."""
    code, year = command.school_code, command.school_year
    accepted: list[Accepted] = []
    if await deps.repo.is_closed(code, year):
        closed = f"{year} is closed in school {code}"
        return accepted, [Rejected(i, entry, "year-closed", closed) for i, entry in enumerate(entries)]
    enrolments = await enrolments_of(year, entries, deps)
    terms = await deps.repo.term_statuses(code, year)
    rejected: list[Rejected] = []
    seen: set[EntryKey] = set()
    for index, entry in enumerate(entries):
        student = enrolments[entry.student_ref]
        try:
            problem = entry_problem(check, deps.rule_sets(student.enrolment.grade), student, entry, terms[entry.term])
        except Forbidden as refused:
            rejected.append(Rejected(index, entry, refused.reason, str(refused), forbidden=True))
            continue
        key = entry_key(entry)
        if problem is None and key in seen:
            problem = DUPLICATE
        if problem is not None:
            rejected.append(Rejected(index, entry, problem.code, problem.message))
        else:
            seen.add(key)
            accepted.append(Accepted(index, entry, key, terms[entry.term]))
    return accepted, rejected


async def enrolments_of(school_year: str, entries: Sequence[Entry], deps: Deps) -> dict[str, RegisteredStudent]:
    """The enrolment of every student the entries are about; the message waits (is retried) until all are known."""
    refs = sorted({e.student_ref for e in entries})
    enrolments = await deps.repo.enrolments_of(school_year, refs)
    if unknown := [ref for ref in refs if ref not in enrolments]:
        raise TransientError(f"{len(unknown)} student(s) not enrolled in {school_year} yet: {', '.join(unknown[:10])}")
    return enrolments


def entry_problem(
    check: Check[E], rule_set: RuleSet, student: RegisteredStudent, entry: E, term: TermStatus
) -> EntryProblem | None:
    """What keeps an entry out, if anything: its problems (all of them named), else its term's lock.

    Raises Forbidden when whoever sent the entry may not enter it.
    """
    if problems := check(rule_set, student, entry):
        return EntryProblem(problems[0].code, "; ".join(p.message for p in problems))
    return locked_problem(term)


async def writes_for(
    command: RecordAssessments | RecordConduct, actor: Actor, accepted: list[Accepted], deps: Deps
) -> tuple[list[Write], list[Rejected]]:
    """What the accepted entries write (new entries and changes), and the changes refused for want of a reason.

    An entry equal to the stored one, or one this message already set, writes nothing.
    """
    stored = await deps.repo.stored(command.school_code, command.school_year, kind_of(command), [a.key for a in accepted])
    writes: list[Write] = []
    unreasoned: list[Rejected] = []
    for item in accepted:
        before = stored.get(item.key)
        change = change_of(before, item.entry, command.message_id)
        if problem := reason_problem(item.term, change, command.reason):
            unreasoned.append(Rejected(item.index, item.entry, problem.code, problem.message))
        elif change != "unchanged":
            writes.append(
                Write(
                    item.key,
                    item.entry,
                    command.message_id,
                    actor.subject,
                    command.occurred_at,
                    command.reason,
                    revision=before.revision if before else 0,
                    old=before.values if before else None,
                )
            )
    return writes, unreasoned


def recorded_event(
    command: RecordAssessments | RecordConduct, actor: Actor, writes: list[Write], taken: int, rejected: list[Rejected]
) -> AssessmentsRecorded | ConductRecorded:
    """What became of the message's entries: `taken` accepted (new, changed or unchanged), the rest rejected."""
    new = sum(1 for w in writes if w.revision == 0)
    event = AssessmentsRecorded if isinstance(command, RecordAssessments) else ConductRecorded
    return event(
        message_id=derived_id(command.message_id, "recorded"),
        by=actor.acting(),
        school_code=command.school_code,
        school_year=command.school_year,
        entries=taken,
        source_message_id=command.message_id,
        new=new,
        changed=len(writes) - new,
        unchanged=taken - len(writes),
        rejected=[r.contract() for r in rejected],
    )


def count_recorded(kind: Kind, recorded: AssessmentsRecorded | ConductRecorded, metrics: GradesMetrics) -> None:
    (metrics.recorded if kind == "subject" else metrics.homeroom_recorded).inc(recorded.new)
    metrics.changed.labels(kind).inc(recorded.changed)
    for rejection in recorded.rejected:
        metrics.rejected.labels(rejection.code).inc()


def rejected_parts(rejected: list[Rejected]) -> list[RejectedPart]:
    """The rejected entries, for the dead-letter queue: those their sender may not enter, then the invalid ones."""
    parts = []
    for reason, forbidden in ((Forbidden.reason, True), (InvalidMessage.reason, False)):
        if part := [r for r in rejected if r.forbidden is forbidden]:
            parts.append(RejectedPart("entries", [r.entry for r in part], reason, describe(part)))
    return parts


def describe(rejected: list[Rejected]) -> str:
    """The rejected entries in words: which entry, about what, and why."""

    def what(entry: Entry) -> str:
        subject = entry.subject if isinstance(entry, SubjectTermScores) else "homeroom"
        return f"{entry.student_ref}, {subject}, term {entry.term}"

    return "; ".join(f"entry {r.index} ({what(r.entry)}): {r.reason}" for r in rejected)


# -- terms ------------------------------------------------------------------------------------


async def close_term(command: CloseTerm, deps: Deps) -> Outcome:
    """Lock a term's entries (the principal or the school administrator); announced and answered with TermChanged."""
    actor = require_actor(command, deps.issuer_keys)
    authorise_term_close(actor, command.school_code)
    if await deps.repo.is_closed(command.school_code, command.school_year):
        raise InvalidMessage(f"{command.school_year} is closed in school {command.school_code}")
    action = TermAction(command.term, True, actor.subject, command.occurred_at, command.message_id)
    if await deps.repo.set_term(command.school_code, command.school_year, action):
        deps.metrics.terms.labels("close").inc()
    return announced(term_changed(command, "closed", actor))


async def reopen_term(command: ReopenTerm, deps: Deps) -> Outcome:
    """Unlock a closed term for corrections: the principal's confirmation, with the reason logged.

    Announced and answered with TermChanged.
    """
    actor = require_actor(command, deps.issuer_keys)
    authorise_principal(actor, command.school_code, "reopen a term")
    if await deps.repo.is_closed(command.school_code, command.school_year):
        raise InvalidMessage(
            f"{command.school_year} is closed in school {command.school_code}: a correction is now an amendment"
        )
    action = TermAction(command.term, False, actor.subject, command.occurred_at, command.message_id, command.reason)
    if await deps.repo.set_term(command.school_code, command.school_year, action):
        deps.metrics.terms.labels("reopen").inc()
    return announced(term_changed(command, "open", actor))


def term_changed(command: CloseTerm | ReopenTerm, state: Literal["open", "closed"], actor: Actor) -> TermChanged:
    return TermChanged(
        message_id=derived_id(command.message_id, "term", state),
        by=actor.acting(),
        school_code=command.school_code,
        school_year=command.school_year,
        term=command.term,
        state=state,
        source_message_id=command.message_id,
    )


def announced(event: TermChanged) -> Outcome:
    """Published for whoever follows the school's terms, and the answer to whoever asked."""
    return Outcome(publish=[event], reply=event)


# -- the year ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class YearEntries:
    """A school year's entries, by student: subject entries and homeroom entries."""

    subjects: dict[str, list[SubjectTermScores]]
    homeroom: dict[str, list[StudentTermConduct]]

    @classmethod
    def of(cls, entries: Sequence[Entry]) -> YearEntries:
        subjects: dict[str, list[SubjectTermScores]] = defaultdict(list)
        homeroom: dict[str, list[StudentTermConduct]] = defaultdict(list)
        for entry in entries:
            if isinstance(entry, SubjectTermScores):
                subjects[entry.student_ref].append(entry)
            else:
                homeroom[entry.student_ref].append(entry)
        return cls(subjects, homeroom)


@dataclass
class Closing:
    """One close of a school's year as it goes, a group of classmates at a time: what it announced and left out."""

    command: CloseYear
    actor: Actor
    #: RecordsReady messages announced so far: the next one's number in its derived id.
    announced: int = 0
    assembled: int = 0
    new: int = 0
    unassembled: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def purpose(self) -> str:
        return lookup_purpose(self.command)

    def ready(self, records: list[RecordVersion]) -> RecordsReady:
        """The next RecordsReady: its id derives from the command, its number and the records it carries."""
        command = self.command
        message = RecordsReady(
            message_id=derived_id(command.message_id, "ready", self.announced, *(r.record_id for r in records)),
            by=self.actor.acting(),
            school_code=command.school_code,
            school_year=command.school_year,
            records=records,
        )
        self.announced += 1
        return message


async def close_year(command: CloseYear, deps: Deps) -> Outcome:
    """Close the year (the principal, both terms closed), assemble every record and announce them.

    A school's records are assembled, stored and announced a group of classmates at a time (a class, or
    `records_per_message` of its students), each group let go before the next, so a school of any size
    is closed in the memory of one class. Redelivered, it assembles again, stores nothing twice and
    announces the same stored records again under the same ids, so a failure between storing and
    publishing loses nothing.
    """
    actor = require_actor(command, deps.issuer_keys)
    authorise_principal(actor, command.school_code, "close the year")
    students = await students_of_closing_year(command, deps)
    await deps.repo.close_year(command.school_code, command.school_year, command.occurred_at)
    closing = Closing(command, actor)
    for group in classmates(students, deps.records_per_message):
        await close_group(closing, group, deps)
    count_unassembled(command, closing.unassembled, deps.metrics)
    log.info(
        "%s %s closed: %d record(s) assembled, %d new, %d message(s) of records ready",
        command.school_code, command.school_year, closing.assembled, closing.new, closing.announced,
    )
    return NOTHING


async def students_of_closing_year(command: CloseYear, deps: Deps) -> list[RegisteredStudent]:
    """The students enrolled in the year; refused while a term is open, not found when there are none."""
    code, year = command.school_code, command.school_year
    terms = await deps.repo.term_statuses(code, year)
    if open_terms := [str(t) for t, status in terms.items() if not status.closed]:
        raise InvalidMessage(
            f"term {' and '.join(open_terms)} of {year} is still open in school {code}: close it first (CloseTerm)"
        )
    students = await deps.repo.enrolled(code, year)
    if not students:
        raise NotFound(f"no student is enrolled in school {code} for {year}")
    return students


def classmates(students: list[RegisteredStudent], most: int) -> Iterator[list[RegisteredStudent]]:
    """The students class by class (classes and students in name order), at most `most` to a group."""
    by_class: dict[str, list[RegisteredStudent]] = defaultdict(list)
    for student in students:
        by_class[student.enrolment.class_name].append(student)
    for class_name in sorted(by_class):
        members = sorted(by_class[class_name], key=lambda s: s.student_ref)
        for start in range(0, len(members), most):
            yield members[start : start + most]


async def close_group(closing: Closing, students: list[RegisteredStudent], deps: Deps) -> None:
    """Assemble, seal and store the group's records, and announce the stored ones in one RecordsReady.

    One identity look-up, one read of the entries and one insert for the group, whatever its size. Only
    when some record was not new (a redelivery, a student identity no longer knows) are the stored
    versions read back, so what is announced is always what is stored.
    """
    ruled = ruled_students(closing, students, deps.rule_sets)
    if not ruled:
        return
    records = await assembled_records(closing, ruled, deps)
    new = await deps.repo.add_records(records) if records else 0
    closing.assembled, closing.new = closing.assembled + len(records), closing.new + new
    deps.metrics.assembled.inc(new)
    if new < len(ruled):
        code, year = closing.command.school_code, closing.command.school_year
        records = await deps.repo.records_of([record_id(code, year, s.student_ref) for s in ruled], FIRST_VERSION)
    if records:
        await deps.publish(closing.ready(sorted(records, key=lambda r: r.record_id)))


def ruled_students(closing: Closing, students: list[RegisteredStudent], rule_sets: RuleSets) -> list[RegisteredStudent]:
    """The students whose grade a rule set covers; the others are left out (and not looked up)."""
    ruled = [s for s in students if rule_sets(s.enrolment.grade).subjects(s.enrolment.grade) is not None]
    if len(ruled) < len(students):
        covered = {s.student_ref for s in ruled}
        closing.unassembled["no-rule-set"] += [s.student_ref for s in students if s.student_ref not in covered]
    return ruled


async def assembled_records(closing: Closing, students: list[RegisteredStudent], deps: Deps) -> list[RecordVersion]:
    """Each student's first record version, sealed; those identity does not know are left out."""
    snapshots = await snapshots_of(students, deps.lookup, closing.purpose)
    known = [s for s in students if s.student_ref in snapshots]
    if unknown := [s.student_ref for s in students if s.student_ref not in snapshots]:
        closing.unassembled["unknown-student"] += unknown
    if not known:
        return []
    refs, subjects = [s.student_ref for s in known], subjects_of(known, deps.rule_sets)
    entries = YearEntries.of(await deps.repo.entries_of(closing.command.school_year, refs, subjects))
    return [
        sealed(first_version(s, snapshots[s.student_ref], entries, deps.rule_sets(s.enrolment.grade)), deps.sealer)
        for s in known
    ]


def subjects_of(students: list[RegisteredStudent], rule_sets: RuleSets) -> list[str]:
    """The subjects of the students' grades: the only entries their records are assembled from."""
    grades = {s.enrolment.grade for s in students}
    return sorted({rule.name for grade in grades for rule in rule_sets(grade).subjects(grade) or ()})


def lookup_purpose(command: CloseYear) -> str:
    """Why grades asks identity for the students of a closing year, as identity's access log keeps it."""
    return f"assembling the {command.school_year} academic records of school {command.school_code} (year closed)"


async def snapshots_of(students: list[RegisteredStudent], lookup: Lookup, purpose: str) -> dict[str, StudentSnapshot]:
    """identity's snapshot of each student it knows, asked once for them all."""
    if not students:
        return {}
    found = await lookup([s.student_ref for s in students], purpose)
    return {s.student_ref: s for s in found}


def sealed(record: RecordVersion, sealer: Sealer) -> RecordVersion:
    """The record version with grades' seal on it: where its content comes from, for whoever relies on it."""
    return record.model_copy(update={"seal": sealer(record)})


def first_version(
    student: RegisteredStudent, snapshot: StudentSnapshot, entries: YearEntries, rule_set: RuleSet
) -> RecordVersion:
    """The student's year record as first assembled, computed by their grade's rule set."""
    ref = student.student_ref
    record = assemble_record(
        rule_set, student, snapshot, entries.subjects.get(ref, []), entries.homeroom.get(ref, []), FIRST_VERSION
    )
    return RecordVersion(
        record_id=record.record_id,
        version=record.version,
        school_code=student.enrolment.school_code,
        school_year=student.enrolment.school_year,
        student_ref=ref,
        content=content_of(record.document()),
    )


def count_unassembled(command: CloseYear, unassembled: dict[str, list[str]], metrics: GradesMetrics) -> None:
    for reason, refs in unassembled.items():
        metrics.unassembled.labels(reason).inc(len(refs))
        log.warning(
            "%s %s: %d record(s) not assembled (%s): %s",
            command.school_code, command.school_year, len(refs), reason, ", ".join(refs[:20]),
        )


# -- explaining a record ----------------------------------------------------------------------


async def explain_record(request: ExplainRecord, deps: Deps) -> Outcome:
    """Every computed result of a record with its rule, clause, inputs and words, for its school's staff and operators.

    The results are explained again from the stored document (`explanation`). An unknown record is NotFound;
    an actor who may not read it is Forbidden; a document that cannot be explained again is InvalidMessage;
    each is counted. A record explained is kept in the access log (who, which student and record, why) before
    the answer leaves.
    """
    try:
        actor, record = await readable_record(request, deps)
        answer = explanation(record)
    except Forbidden:
        deps.metrics.explained.labels("refused").inc()
        raise
    except NotFound:
        deps.metrics.explained.labels("not-found").inc()
        raise
    except InvalidMessage:
        deps.metrics.explained.labels("unreadable").inc()
        raise
    read = deps.access.entries(actor, "explain", [record.student_ref], request.purpose, record.record_id)
    await deps.access_log.add(read)
    deps.metrics.explained.labels("answered").inc()
    return Outcome(reply=answer)


async def readable_record(request: ExplainRecord, deps: Deps) -> tuple[Actor, RecordVersion]:
    """Who asks, and the record asked for, once they are known to be one who may read it."""
    actor = require_actor(request, deps.issuer_keys)
    record = await deps.repo.record(request.record_id, request.version)
    if record is None:
        raise NotFound(f"no record {request.record_id}")
    authorise_reader(actor, record.school_code)
    return actor, record


def explanation(record: RecordVersion) -> RecordExplanation:
    """The record's results explained again from its document, by the rule set the document names.

    The document keeps the entries and the results, not how one follows from the other: its entries are read
    back and computed again, and they must give the very document stored, so what is explained is what was
    decided when the record was signed. A document that cannot be read so is InvalidMessage, saying why.
    """
    try:
        year_record = record_from_document(record.document, RULE_SETS)
    except UnreadableRecord as unreadable:
        raise InvalidMessage(f"cannot explain: {unreadable}", reason="unreadable-record") from unreadable
    rule_set, enrolment = year_record.rule_set, year_record.student.enrolment
    return RecordExplanation(
        record_id=record.record_id,
        version=record.version,
        school_code=record.school_code,
        school_year=record.school_year,
        grade=enrolment.grade,
        class_name=enrolment.class_name,
        student_name=year_record.snapshot.identity.full_name,
        rule_set=rule_set.key,
        unconfirmed=rule_set.unconfirmed(enrolment.grade),
        lines=[ExplanationLine.model_validate(e.document(rule_set.key)) for e in year_record.explanations()],
    )


# -- who read a student's records -------------------------------------------------------------


async def list_accesses(request: ListGradesAccesses, deps: Deps) -> Outcome:
    """Who had a student's records explained, oldest first: for operators, and for the principal or
    administrator of a school the student is enrolled at."""
    actor = require_actor(request, deps.issuer_keys)
    authorise_access_list(actor, await deps.repo.schools_of(request.student_ref))
    return Outcome(reply=AccessLog(entries=await deps.access_log.of(request.student_ref, request.limit)))


# -- the data key -----------------------------------------------------------------------------


async def rotate_key(command: RotateGradesKey, deps: Deps) -> Outcome:
    """Add a data key, make it current and re-encrypt every record version under it, step by step (`KeyRotation`)."""
    return await deps.rotation.rotate(command)
