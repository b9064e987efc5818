"""grades' use cases: enrol, record subject and homeroom entries, lock terms, close a year, explain a record,
tell who read a student's records, list a school's records with where each stands, tell an entry's history, amend
a signed record as its next version.

Each handler takes the message and `Deps` and returns an `Outcome` (shared.outcome): what to
publish, what to answer, and which entries are refused. A message refused whole raises. Every
command and request first verifies its actor token (`require_actor`); the events a command causes
say who acted (`by`), never carry the token. Each record version grades assembles carries its seal
(`Deps.sealer`), and each record explained is kept in the access log.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from services.grades.domain import assemble_record, conduct_problems, enrolled_entry_problems, reassembly, record_id
from services.grades.domain.amendment import (
    Versions,
    amendment_of,
    changed_parts,
    history_reason,
    holds_corrections,
    nothing_changed,
    rejected_corrections,
    supersession_problem,
)
from services.grades.domain.authority import (
    authorise_amendment,
    authorise_assessment,
    authorise_homeroom_entry,
    authorise_principal,
    authorise_reader,
    authorise_reopen,
    authorise_term_close,
    same_school,
)
from services.grades.domain.combination import combination_problems, own_subjects
from services.grades.domain.entries import Entry, EntryProblem
from services.grades.domain.identities import compare_classes
from services.grades.domain.listing import class_order, masked, name_order, sees_names, status_of, summaries
from services.grades.domain.reading import UnreadableRecord, record_from_document
from services.grades.domain.terms import TermStatus, change_of, locked_problem, reason_problem
from services.grades.metrics import GradesMetrics
from services.grades.repository import (
    HOMEROOM,
    EntryKey,
    GradesRepository,
    Kind,
    Revision,
    StatusNote,
    TermAction,
    Write,
    entry_key,
)
from services.grades.rulesets import RULE_SETS, RuleSet, rule_set_for
from shared.access import AccessLogStore, AccessRecorder, authorise_access_list
from shared.at_rest import KeyRotation
from shared.auth import Actor, IssuerKeys, authorise_review, require_actor
from shared.contracts.access import AccessLog, ListGradesAccesses
from shared.contracts.archive import RecordsArchived
from shared.contracts.base import Message, derived_id
from shared.contracts.grades import (
    AmendRecord,
    AssessmentsRecorded,
    CloseTerm,
    CloseYear,
    CompareIdentities,
    ConductRecorded,
    EntryChange,
    EntryChanges,
    EntryHistory,
    EntryRejection,
    ExplainRecord,
    ExplanationLine,
    IdentityComparison,
    KeptSigned,
    LeftOut,
    ListRecords,
    RecordAmended,
    RecordAssessments,
    RecordConduct,
    RecordExplanation,
    RecordLine,
    RecordList,
    RecordsReady,
    RecordStatus,
    RecordVersion,
    ReopenTerm,
    StudentTermConduct,
    SubjectTermScores,
    TermChanged,
    VersionKey,
    YearClosed,
    YearClosing,
)
from shared.contracts.identity import RegisteredStudent, StudentSnapshot, StudentsRegistered
from shared.contracts.keys import RotateGradesKey
from shared.contracts.limits import LOOKUP
from shared.contracts.record import content_of
from shared.contracts.signing import RecordsCompleted
from shared.contracts.sync import RecordsDelivered
from shared.crypto.canonical import sha256_hex
from shared.errors import Forbidden, InvalidMessage, NoAnswer, NotFound, Refused, TransientError, Unavailable
from shared.outcome import NOTHING, Outcome, RejectedPart

log = logging.getLogger("hocba.grades")

#: Identity snapshots of student references, asked for a purpose (identity's look-up, or a stand-in in tests).
Lookup = Callable[[list[str], str], Awaitable[list[StudentSnapshot]]]
#: grades' seal on a record version it assembled (`shared.crypto.seal.seal` over `record_claims`).
Sealer = Callable[[RecordVersion], str]
#: Of a school year's record versions (school code, year, versions), those that carry a signature, each with the
#: roles that signed it (signing's answer to grades' request, or a stand-in in tests). Raises NoAnswer or Refused
#: when signing does not answer.
SignaturesHeld = Callable[[str, str, list[VersionKey]], Awaitable[Mapping[VersionKey, Sequence[str]]]]
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
    #: signing's word on which first versions carry a signature, before a year closed again replaces any.
    signatures_held: SignaturesHeld
    rule_sets: RuleSets = rule_set_for
    #: Publishes the progress of a closing year (YearClosing) as each group is done; None: none is told.
    notify: Publish | None = None


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
    #: Refused for who sent it (dead-lettered as "forbidden"), not for what it says (answered and announced only).
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

    Announced and answered with AssessmentsRecorded, which say why each refused entry was refused; those
    refused for who sent them are dead-lettered too (`rejected_parts`).
    """
    actor = require_actor(command, deps.issuer_keys)

    def check(rule_set: RuleSet, student: RegisteredStudent, entry: SubjectTermScores) -> list[EntryProblem]:
        authorise_assessment(actor, command.school_code, student.enrolment.class_name, entry.subject)
        return enrolled_entry_problems(rule_set, command.school_code, student, entry)

    return await record_entries(command, command.entries, actor, check, deps)


async def record_conduct(command: RecordConduct, deps: Deps) -> Outcome:
    """Store the homeroom teacher's entries (conduct, absences, qualities, comments) for their class.

    Announced and answered with ConductRecorded, which say why each refused entry was refused; those
    refused for who sent them are dead-lettered too (`rejected_parts`).
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

    A message sent with another school's token is refused for who sent it before anything else is looked at: every
    entry is rejected as forbidden (and dead-lettered so), whether the year is closed or its students enrolled.
    """
    accepted: list[Accepted] = []
    try:
        same_school(actor, command.school_code)
    except Forbidden as foreign:
        rejected = [Rejected(i, e, foreign.reason, str(foreign), forbidden=True) for i, e in enumerate(entries)]
    else:
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
    """The rejected entries for the dead-letter queue: those their sender may not enter.

    An entry refused for what it says (a score out of range, a subject not taught in the grade, a closed
    term) is a teacher's mistake to correct, not a message to look into: the answer and the announcement
    (`recorded_event`) say why, and `hocba_assessments_rejected_total` counts it by code; it is not
    dead-lettered, so the dead-letter alerts stay for messages that could not be handled.
    """
    if part := [r for r in rejected if r.forbidden]:
        return [RejectedPart("entries", [r.entry for r in part], Forbidden.reason, describe(part))]
    return []


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
    await known_school(command.school_code, command.school_year, deps)
    action = TermAction(command.term, True, actor.subject, command.occurred_at, command.message_id)
    changed = await deps.repo.set_term(command.school_code, command.school_year, action)
    if changed:
        deps.metrics.terms.labels("close").inc()
    return announced(term_changed(command, "closed", actor, already=not changed and not await acted(command, deps)))


async def reopen_term(command: ReopenTerm, deps: Deps) -> Outcome:
    """Unlock a closed term for corrections: the principal's confirmation, with the reason logged.

    After the year's close it reopens the year too (`authorise_reopen` says who may): its entries are then
    taken as in any reopened term, and closing the term and the year again assembles the records nobody has
    signed and sealed yet (`close_year`); those signed and sealed stay as they are, and are amended.
    Announced and answered with TermChanged.
    """
    actor = require_actor(command, deps.issuer_keys)
    code, year = command.school_code, command.school_year
    year_closed = await deps.repo.is_closed(code, year)
    authorise_reopen(actor, code, year_closed)
    await known_school(code, year, deps)
    action = TermAction(command.term, False, actor.subject, command.occurred_at, command.message_id, command.reason)
    changed = await deps.repo.set_term(code, year, action)
    if year_closed:  # after the term: a delivery cut short between the two finds the year closed, and reopens it
        await deps.repo.reopen_year(code, year, command.occurred_at)
        log.info("%s %s reopened by %s with term %d: %s", code, year, actor.subject, command.term, command.reason)
    if changed:
        deps.metrics.terms.labels("reopen").inc()
    return announced(term_changed(command, "open", actor, already=not changed and not await acted(command, deps)))


async def known_school(school_code: str, school_year: str, deps: Deps) -> None:
    """A school's terms are closed and reopened once its students are enrolled: NotFound for a school (or year)
    grades has no student of, which is a mistyped code or year, or a roster not imported yet."""
    if not await deps.repo.has_enrolments(school_code, school_year):
        raise NotFound(f"no student is enrolled in school {school_code} for {school_year}")


async def acted(command: CloseTerm | ReopenTerm, deps: Deps) -> bool:
    """Whether this very command (an earlier delivery of it) closed or reopened the term."""
    log_ = await deps.repo.term_log(command.school_code, command.school_year)
    return any(e["term"] == command.term and e["message_id"] == command.message_id for e in log_)


def term_changed(
    command: CloseTerm | ReopenTerm, state: Literal["open", "closed"], actor: Actor, already: bool = False
) -> TermChanged:
    """The term's state after the command; `already` when another command had made it so and this one changed nothing."""
    return TermChanged(
        message_id=derived_id(command.message_id, "term", state),
        by=actor.acting(),
        school_code=command.school_code,
        school_year=command.school_year,
        term=command.term,
        state=state,
        source_message_id=command.message_id,
        already=already,
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
    #: Students of the close (enrolled in its scope), and of them those done so far (assembled or left out).
    students: int = 0
    done: int = 0
    #: Groups done so far: the next progress announcement's number in its derived id.
    groups: int = 0
    #: First versions assembled again with other content and kept as they are, because a role signed them.
    kept_signed: list[KeptSigned] = field(default_factory=list)

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
    first = await deps.repo.close_year(command.school_code, command.school_year, command.occurred_at)
    closing = Closing(command, actor, students=len(students))
    for group in classmates(students, deps.records_per_message):
        await close_group(closing, group, deps)
        await tell_progress(closing, group, deps)
    count_unassembled(command, closing.unassembled, deps.metrics)
    log.info(
        "%s %s closed: %d record(s) assembled, %d new, %d message(s) of records ready",
        command.school_code, command.school_year, closing.assembled, closing.new, closing.announced,
    )
    closed = year_closed(closing, students, already=not first)
    return Outcome(publish=[closed], reply=closed)


async def students_of_closing_year(command: CloseYear, deps: Deps) -> list[RegisteredStudent]:
    """The students enrolled in the year (in the command's class, when it names one); not found when there are
    none, refused while a term is open."""
    code, year = command.school_code, command.school_year
    students = await deps.repo.enrolled(code, year)
    if not students:
        raise NotFound(f"no student is enrolled in school {code} for {year}")
    if command.class_name is not None:
        students = [s for s in students if s.enrolment.class_name == command.class_name]
        if not students:
            raise NotFound(f"no student is enrolled in class {command.class_name} of school {code} for {year}")
    terms = await deps.repo.term_statuses(code, year)
    if open_terms := [str(t) for t, status in terms.items() if not status.closed]:
        raise InvalidMessage(
            f"term {' and '.join(open_terms)} of {year} is still open in school {code}: close it first (CloseTerm)"
        )
    return students


async def tell_progress(closing: Closing, group: list[RegisteredStudent], deps: Deps) -> None:
    """Count the group done, and tell whoever follows the close (YearClosing), when anyone is to be told."""
    closing.done += len(group)
    closing.groups += 1
    if deps.notify is None:
        return
    command = closing.command
    await deps.notify(
        YearClosing(
            message_id=derived_id(command.message_id, "closing", closing.groups),
            by=closing.actor.acting(),
            school_code=command.school_code,
            school_year=command.school_year,
            source_message_id=command.message_id,
            class_name=group[0].enrolment.class_name,
            students_done=closing.done,
            students_total=closing.students,
            assembled=closing.assembled,
        )
    )


def year_closed(closing: Closing, students: list[RegisteredStudent], already: bool) -> YearClosed:
    """What the close did: records assembled and stored, and the students left out, by reason and class."""
    command = closing.command
    class_of = {s.student_ref: s.enrolment.class_name for s in students}
    left_out: dict[tuple[str, str], list[str]] = defaultdict(list)
    for reason, refs in closing.unassembled.items():
        for ref in refs:
            left_out[(reason, class_of.get(ref, ""))].append(ref)
    return YearClosed(
        message_id=derived_id(command.message_id, "closed"),
        by=closing.actor.acting(),
        school_code=command.school_code,
        school_year=command.school_year,
        class_name=command.class_name,
        source_message_id=command.message_id,
        already=already,
        students=closing.students,
        assembled=closing.assembled,
        new=closing.new,
        unassembled=[
            LeftOut(reason=reason, class_name=class_name, count=len(refs), student_refs=sorted(refs)[:LOOKUP])
            for (reason, class_name), refs in sorted(left_out.items())
        ],
        kept_signed=sorted(closing.kept_signed, key=lambda k: (k.class_name, k.record_id)),
    )


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
        kept = await deps.repo.records_of([record_id(code, year, s.student_ref) for s in ruled], FIRST_VERSION)
        classes = {s.student_ref: s.enrolment.class_name for s in ruled}
        records = await replace_unsigned(closing, records, kept, classes, deps) if new < len(records) else kept
    if records:
        await deps.publish(closing.ready(sorted(records, key=lambda r: r.record_id)))


async def replace_unsigned(
    closing: Closing,
    records: list[RecordVersion],
    kept: list[RecordVersion],
    classes: Mapping[str, str],
    deps: Deps,
) -> list[RecordVersion]:
    """The stored first versions `kept`, with those assembled now (`records`) with other content in the place of the
    ones that carry no signature (`reassembly.replaces`: the year closed again after a term was reopened), each
    replacement stored and noted in the version's history.

    signing is asked once which of the changed versions not yet signed and sealed carry a signature (its homeroom
    teacher's, say); those stay as they are and are reported (`Closing.kept_signed`, by class from `classes`). Without
    signing's answer nothing is replaced: the close is refused (Unavailable), saying why.
    """
    assembled = {r.record_id: r for r in records}
    changed = [k for k in kept if k.record_id in assembled and assembled[k.record_id].content != k.content]
    if not changed:
        return kept
    reached = await deps.repo.statuses_of([k.record_id for k in changed])
    unsealed = [k for k in changed if not reassembly.signed_and_sealed(reached.get(k.key, set()))]
    signed = await signatures_held(closing, unsealed, classes, deps)
    command, replaced = closing.command, {}
    for before in changed:
        record, roles = assembled[before.record_id], signed.get(before.key, ())
        if not reassembly.replaces(before, record, reached.get(before.key, set()), roles):
            if reassembly.kept_as_signed(before, record, roles):
                class_name, signers = classes.get(before.student_ref, ""), list(roles)
                closing.kept_signed.append(
                    KeptSigned(record_id=before.record_id, version=before.version, class_name=class_name, roles=signers)
                )
            continue
        note = {
            "at": command.occurred_at,
            "by": closing.actor.subject,
            "message_id": command.message_id,
            "replaced_digest": sha256_hex(before.content),
        }
        if not await deps.repo.replace_record(before, record, note):
            raise TransientError(f"{record.record_id} v{record.version} changed while the year was closed again")
        replaced[record.record_id] = record
    if replaced:
        log.info(
            "%s %s: %d first version(s) nobody had signed assembled again and replaced",
            command.school_code, command.school_year, len(replaced),
        )
    if held := len(unsealed) - len(replaced):
        log.info(
            "%s %s: %d first version(s) assembled again with other content kept as signed (to be amended)",
            command.school_code, command.school_year, held,
        )
    return [replaced.get(k.record_id, k) for k in kept]


async def signatures_held(
    closing: Closing, versions: list[RecordVersion], classes: Mapping[str, str], deps: Deps
) -> Mapping[VersionKey, Sequence[str]]:
    """Which of `versions` carry a signature, and whose, as signing holds them: asked once for them all (not at all
    for none). Refused (Unavailable) when signing does not answer: a version is never replaced without its word."""
    if not versions:
        return {}
    command = closing.command
    try:
        return await deps.signatures_held(command.school_code, command.school_year, [v.key for v in versions])
    except (NoAnswer, Refused) as exc:
        of = ", ".join(sorted({classes.get(v.student_ref, "") for v in versions}))
        raise Unavailable(
            f"signing did not say which of {len(versions)} record(s) of class {of} "
            f"assembled again with other content carry a signature ({exc}); none was replaced, since a signed one "
            "must stay as it is. The year is closed and the records announced so far stand: close the year again "
            "once signing answers (nothing is stored twice)"
        ) from None


def ruled_students(closing: Closing, students: list[RegisteredStudent], rule_sets: RuleSets) -> list[RegisteredStudent]:
    """The students whose grade a rule set covers, with a combination their grade allows (grades 10-12); the
    others are left out (and not looked up)."""
    ruled = []
    for student in students:
        rule_set, enrolment = rule_sets(student.enrolment.grade), student.enrolment
        if rule_set.subjects(enrolment.grade) is None:
            closing.unassembled["no-rule-set"].append(student.student_ref)
        elif combination_problems(rule_set, enrolment):
            closing.unassembled["combination"].append(student.student_ref)
        else:
            ruled.append(student)
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
    """The students' own subjects (their grades' tables, and their electives): the only entries their records are
    assembled from."""
    enrolments = {s.enrolment for s in students}
    return sorted({rule.name for e in enrolments for rule in own_subjects(rule_sets(e.grade), e) or ()})


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
    return record_version(student, snapshot, entries, rule_set, FIRST_VERSION)


def record_version(
    student: RegisteredStudent,
    snapshot: StudentSnapshot,
    entries: YearEntries,
    rule_set: RuleSet,
    version: int,
    amendment: Mapping[str, Any] | None = None,
) -> RecordVersion:
    """The student's year record at `version`, assembled from their entries by their grade's rule set: at the
    year's close (version 1), and again for each amendment, whose document then says what it supersedes and why."""
    ref = student.student_ref
    record = assemble_record(
        rule_set, student, snapshot, entries.subjects.get(ref, []), entries.homeroom.get(ref, []), version
    )
    if amendment is not None:
        record = replace(record, amendment=amendment)
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


# -- where records stand ----------------------------------------------------------------------


async def note_completed(event: RecordsCompleted, deps: Deps) -> Outcome:
    """Signing announced record versions carrying every signature (homeroom teacher, principal, school seal)."""
    return await note_statuses(
        [(r.record.record_id, r.record.version) for r in event.records], "signed-and-sealed", event, deps
    )


async def note_archived(event: RecordsArchived, deps: Deps) -> Outcome:
    """The archive announced record versions appended to its log."""
    return await note_statuses([(r.record_id, r.version) for r in event.records], "archived", event, deps)


async def note_delivered(event: RecordsDelivered, deps: Deps) -> Outcome:
    """Sync announced record versions the ministry acknowledged."""
    return await note_statuses([(d.record_id, d.version) for d in event.deliveries], "delivered", event, deps)


async def note_statuses(keys: list[VersionKey], status: RecordStatus, event: Message, deps: Deps) -> Outcome:
    """Keep that these record versions reached `status` (once each, whatever the redeliveries), for listings.

    Only where a record stands is kept, not what it holds: the version's content and signatures stay with the
    services that announced it. The announcements come from the only broker users allowed to publish them.
    """
    await deps.repo.note_statuses([StatusNote(rid, version, status, event.occurred_at) for rid, version in keys])
    return NOTHING


# -- listing a school's records ---------------------------------------------------------------


async def list_records(request: ListRecords, deps: Deps) -> Outcome:
    """A school year's records, one line each (its class, the student as the reader may see them, its latest
    version and where it stands), for the school's staff and operators; filtered by class, status, student. The
    answer says which of the year's terms are closed.

    Each student listed is kept in the access log (who, which student and record, why) before the answer leaves.
    A summary (`summary`) counts the records per class instead and names no student: it reads no one's personal
    data, so nothing is kept in the access log and no read is counted.
    """
    actor = require_actor(request, deps.issuer_keys)
    authorise_reader(actor, request.school_code)
    code, year = request.school_code, request.school_year
    if request.summary and request.student_ref is not None:
        raise InvalidMessage(
            "a summary counts a school's records and names no student: ask for one student's record without `summary`"
        )
    if request.student_ref is not None:
        stored = await deps.repo.records_of([record_id(code, year, request.student_ref)], FIRST_VERSION)
    else:
        stored = await deps.repo.records(code, year, FIRST_VERSION)
    if request.class_name is not None:
        stored = [r for r in stored if r.fields.class_name == request.class_name]
    ids = [r.record_id for r in stored]
    statuses = await deps.repo.statuses_of(ids)
    for amended in await deps.repo.amended_versions(ids):  # assembled by grades, perhaps not signed yet
        statuses.setdefault(amended, set())
    closed = [term for term, lock in sorted((await deps.repo.term_statuses(code, year)).items()) if lock.closed]
    if request.summary:
        standing = [(r.fields.class_name, r.fields.complete, latest_standing(r, statuses)[1]) for r in stored]
        counted = summaries(row for row in standing if request.status in (None, row[2]))
        return Outcome(reply=RecordList(school_code=code, school_year=year, classes=counted, terms_closed=closed))
    lines = [record_line(r, statuses, actor) for r in stored]
    if request.status is not None:
        lines = [line for line in lines if line.status == request.status]
    lines.sort(
        key=lambda line: (class_order(line.class_name), name_order(line.student_name), line.masked_personal_id, line.record_id)
    )
    read = [
        entry
        for line in lines
        for entry in deps.access.entries(actor, "list", [line.student_ref], request.purpose, line.record_id)
    ]
    await deps.access_log.add(read)
    return Outcome(reply=RecordList(school_code=code, school_year=year, records=lines, terms_closed=closed))


def latest_standing(record: RecordVersion, statuses: dict[VersionKey, set[str]]) -> tuple[int, RecordStatus]:
    """A record's latest version known (grades assembles the first at the year's close and each amendment's since;
    signing, the archive and sync announce the later steps of each) and the furthest step that version reached."""
    version = max([record.version, *(v for rid, v in statuses if rid == record.record_id)])
    return version, status_of(record.fields.complete, statuses.get((record.record_id, version), set()))


def record_line(record: RecordVersion, statuses: dict[VersionKey, set[str]], actor: Actor) -> RecordLine:
    """One record as listed: its latest version known and where it stands (`latest_standing`), the student as the
    reader may see them."""
    fields = record.fields
    version, status = latest_standing(record, statuses)
    shown = sees_names(actor, record.school_code, fields.class_name)
    return RecordLine(
        record_id=record.record_id,
        version=version,
        status=status,
        grade=fields.grade,
        class_name=fields.class_name,
        student_ref=record.student_ref,
        student_name=fields.student.identity.full_name if shown else "",
        masked_personal_id=masked(fields.student.identity.personal_id),
        complete=fields.complete,
        missing=len(fields.missing),
    )


# -- an entry's history -----------------------------------------------------------------------

#: The message that records each kind of entry, as a history names it.
RECORDED_BY: dict[Kind, str] = {"subject": RecordAssessments.ROUTING_KEY, "homeroom": RecordConduct.ROUTING_KEY}


async def entry_history(request: EntryHistory, deps: Deps) -> Outcome:
    """Every revision of one student's entries in a school year (or of one subject's), entry by entry: who, when,
    the values before and after, why, and the message; for the school's staff and operators, kept in the access log.
    """
    actor = require_actor(request, deps.issuer_keys)
    authorise_reader(actor, request.school_code)
    code, year, ref = request.school_code, request.school_year, request.student_ref
    student = (await deps.repo.enrolments_of(year, [ref])).get(ref)
    if student is None or student.enrolment.school_code != code:
        raise NotFound(f"student {ref} is not enrolled in school {code} for {year}")
    grade = student.enrolment.grade
    subjects = [request.subject] if request.subject else [*every_subject(deps.rule_sets, grade), HOMEROOM]
    revisions = await deps.repo.entry_history(year, ref, subjects)
    await deps.access_log.add(deps.access.entries(actor, "history", [ref], request.purpose))
    changes = [entry_change(r) for r in revisions]
    return Outcome(reply=EntryChanges(school_code=code, school_year=year, student_ref=ref, changes=changes))


def every_subject(rule_sets: RuleSets, grade: int) -> list[str]:
    """Every subject a student of the grade may have entries in: the grade's table and its electives."""
    rule_set = rule_sets(grade)
    choices = rule_set.choices(grade)
    electives = choices.electives if choices is not None else ()
    return sorted({rule.name for rule in (*(rule_set.subjects(grade) or ()), *electives)})


def entry_change(revision: Revision) -> EntryChange:
    homeroom = revision.kind == "homeroom"
    return EntryChange(
        subject="" if homeroom else revision.subject,
        term=revision.term,
        kind=revision.kind,
        action="recorded" if revision.old is None else "changed",
        revision=revision.revision,
        at=revision.at,
        by=revision.by,
        old=revision.old,
        new=revision.new,
        reason=revision.reason,
        message_id=revision.message_id,
        message=revision.message or RECORDED_BY[revision.kind],
    )


# -- a class's records beside identity's register ---------------------------------------------


async def compare_identities(request: CompareIdentities, deps: Deps) -> Outcome:
    """A school year's classes (or one class) beside identity's register today, for the review before signing
    (`domain.identities`): each class's students without a record, unknown to the register now, with an incomplete
    record, or whose record's identity fields differ from the register's.

    grades asks identity on its own behalf, saying whose review it is for; each student shown is kept in the
    access log (who, which student and record, why) before the answer leaves. When identity does not answer, the
    reader is told so (Unavailable).
    """
    actor = require_actor(request, deps.issuer_keys)
    code, year, class_name = request.school_code, request.school_year, request.class_name
    authorise_review(actor, code, class_name)
    enrolled = [s for s in await deps.repo.enrolled(code, year) if class_name in (None, s.enrolment.class_name)]
    stored = await deps.repo.records(code, year, FIRST_VERSION)
    records = [r for r in stored if class_name in (None, r.fields.class_name)]
    refs = sorted({s.student_ref for s in enrolled} | {r.student_ref for r in records})
    why = f"review of {f'class {class_name}' if class_name else 'every class'} of {code} {year} by {actor.subject}"
    try:
        register = {s.student_ref: s.identity for s in await deps.lookup(refs, why)} if refs else {}
    except NoAnswer as exc:
        raise Unavailable(f"identity did not answer; the records cannot be set against its register: {exc}") from None
    classes = compare_classes(enrolled, records, register)
    shown = [(f.student_ref, f.record_id or "") for c in classes for f in c.findings]
    read = [entry for ref, rid in shown for entry in deps.access.entries(actor, "review", [ref], request.purpose, rid)]
    await deps.access_log.add(read)
    return Outcome(reply=IdentityComparison(school_code=code, school_year=year, classes=classes))


# -- amending a signed record -----------------------------------------------------------------


async def amend_record(command: AmendRecord, deps: Deps) -> Outcome:
    """Correct entries of a signed record and assemble it again as its next version, for the issuing school's
    principal or records administrator; answered with `RecordAmended` (`domain.amendment`).

    The new version claims its number first (stored under a unique key, with this message's id), then the
    corrections are written with their history (who, when, old and new values, the amendment's reason, this
    message): redelivered, the message finds the version it made, writes what is not written yet, and is answered
    the same. Corrections that break an entry's rules are answered each with why, and nothing is stored; a version
    that is not the latest, or not signed yet, or an amendment that changes nothing, is refused.
    """
    actor = require_actor(command, deps.issuer_keys)
    made = await deps.repo.amended_by(command.message_id)
    latest = made or await deps.repo.record(command.record_id, None)
    if latest is None:
        raise NotFound(f"no record {command.record_id}: check the record id (`hocba records list` shows them)")
    authorise_amendment(actor, latest.school_code, latest.record_id)
    student = await record_student(command, latest, deps)
    rule_set = deps.rule_sets(student.enrolment.grade)
    if made is None:
        if refused := supersession_problem(await versions_of(latest, deps), command.supersedes):
            deps.metrics.amendments.labels(refused.reason).inc()
            raise refused
        if rejected := rejected_corrections(rule_set, command.school_code, student, command.scores, command.conduct):
            deps.metrics.amendments.labels("corrections-rejected").inc()
            return Outcome(
                reply=RecordAmended(supersedes=command.supersedes, reason_code=command.reason_code, rejected=rejected)
            )
        made = await new_version(command, actor, latest, student, rule_set, deps)
    elif not made_by(command, made):
        raise InvalidMessage(
            f"message {command.message_id} made record {made.record_id} v{made.version} with other corrections: "
            "a new amendment is a new message",
            reason="other-amendment",
        )
    superseded = await deps.repo.record(made.record_id, made.version - 1)
    corrected = await write_corrections(command, actor, deps)
    changed = changed_parts(superseded.document if superseded else {}, made.document)
    return Outcome(
        reply=RecordAmended(
            record=made,
            supersedes=made.version - 1,
            reason_code=command.reason_code,
            changed=changed,
            corrected=corrected,
        )
    )


async def record_student(command: AmendRecord, record: RecordVersion, deps: Deps) -> RegisteredStudent:
    """The record's student as enrolled, once the amendment names the record's school and year."""
    if (record.school_code, record.school_year) != (command.school_code, command.school_year):
        raise InvalidMessage(
            f"record {record.record_id} is a record of school {record.school_code} for {record.school_year}, "
            f"not of school {command.school_code} for {command.school_year}",
            reason="other-record",
        )
    student = (await deps.repo.enrolments_of(record.school_year, [record.student_ref])).get(record.student_ref)
    if student is None:
        raise InvalidMessage(f"record {record.record_id}: its student is not enrolled in {record.school_year}")
    return student


async def versions_of(latest: RecordVersion, deps: Deps) -> Versions:
    """What grades knows of the record's versions: the latest it holds, and the steps each version reached."""
    noted = await deps.repo.statuses_of([latest.record_id])
    reached = {version: frozenset(steps) for (rid, version), steps in noted.items() if rid == latest.record_id}
    return Versions(latest.record_id, latest.version, reached)


async def corrected_entries(command: AmendRecord, student: RegisteredStudent, deps: Deps) -> YearEntries:
    """The student's stored entries of the year, each corrected one in its place."""
    subjects = subjects_of([student], deps.rule_sets)
    stored = await deps.repo.entries_of(student.enrolment.school_year, [student.student_ref], subjects)
    corrections: list[Entry] = [*command.scores, *command.conduct]
    by_key = {entry_key(e): e for e in stored} | {entry_key(e): e for e in corrections}
    return YearEntries.of(list(by_key.values()))


async def new_version(
    command: AmendRecord, actor: Actor, latest: RecordVersion, student: RegisteredStudent, rule_set: RuleSet, deps: Deps
) -> RecordVersion:
    """The record assembled again, as at the year's close, from the stored entries with the corrections in their
    place and the student as identity has them now; sealed and stored as the version after `latest`.

    Refused when it would not differ from `latest`, or when another amendment took its number meanwhile (the
    message is then tried again, and refused as not superseding the latest version).
    """
    entries = await corrected_entries(command, student, deps)
    purpose = f"amending record {latest.record_id} of school {latest.school_code} ({command.reason_code})"
    try:
        snapshot = (await snapshots_of([student], deps.lookup, purpose)).get(student.student_ref)
    except NoAnswer as exc:
        raise Unavailable(f"identity did not answer; the record cannot be assembled again now: {exc}") from None
    if snapshot is None:
        raise InvalidMessage(
            f"identity does not know the student of record {latest.record_id}", reason="unknown-student"
        )
    amendment = amendment_of(latest.version, command.reason_code, command.note, actor.subject)
    version = latest.version + 1
    assembled = record_version(student, snapshot, entries, rule_set, version, amendment)
    if not changed_parts(latest.document, assembled.document):
        deps.metrics.amendments.labels("nothing-changed").inc()
        raise nothing_changed(latest.record_id, latest.version)
    made = sealed(assembled, deps.sealer)
    if await deps.repo.add_amended(made, command.message_id):
        deps.metrics.amendments.labels("amended").inc()
        return made
    if (again := await deps.repo.amended_by(command.message_id)) is not None:
        return again
    raise TransientError(f"record {latest.record_id} v{version} was made meanwhile by another amendment")


def made_by(command: AmendRecord, made: RecordVersion) -> bool:
    """Whether `made` (the version this message's id made) holds this message's corrections: a redelivery of the
    same amendment, not another message under its id. Read from the version's own document, so a redelivery that
    comes after a later amendment is still known for what it is."""
    try:
        record = record_from_document(made.document, RULE_SETS)
    except UnreadableRecord as unreadable:
        raise InvalidMessage(
            f"record {made.record_id} v{made.version}: {unreadable}", reason="unreadable-record"
        ) from None
    return holds_corrections(record, [*command.scores, *command.conduct])


async def write_corrections(command: AmendRecord, actor: Actor, deps: Deps) -> int:
    """Write the amendment's corrections as changes of the stored entries (or as entries, where none was stored),
    each with the amendment's reason and this message; those this message wrote before are not written again.
    Returns how many corrections this message changed or added (now or before)."""
    code, year = command.school_code, command.school_year
    reason = history_reason(command.supersedes, command.reason_code, command.note)
    corrected = 0
    parts: tuple[tuple[Kind, Sequence[Entry]], ...] = (("subject", command.scores), ("homeroom", command.conduct))
    for kind, entries in parts:
        stored = await deps.repo.stored(code, year, kind, [entry_key(e) for e in entries])
        writes = []
        for entry in entries:
            before = stored.get(entry_key(entry))
            if before is not None and command.message_id in before.message_ids:
                corrected += 1
            elif change_of(before, entry, command.message_id) != "unchanged":
                corrected += 1
                writes.append(
                    Write(
                        entry_key(entry),
                        entry,
                        command.message_id,
                        actor.subject,
                        command.occurred_at,
                        reason,
                        revision=before.revision if before else 0,
                        old=before.values if before else None,
                        message=AmendRecord.ROUTING_KEY,
                    )
                )
        await deps.repo.write(code, year, kind, writes)
        deps.metrics.changed.labels(kind).inc(sum(1 for w in writes if w.revision))
    return corrected
