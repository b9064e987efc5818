"""identity's use cases: register a roster chunk, look students up, rotate the data key, tell who read a student.

Each handler takes the message and `Deps` and returns an `Outcome` (shared.outcome): what to
publish, the reply, and which rows of a roster are refused. A message refused whole raises.
Every handler first verifies the message's actor token and who the actor is allowed to be; every
student a look-up or a find reads is kept in the access log before the answer leaves. Nothing a
handler says (reasons, dead-letter explanations, log lines) carries a personal ID, a name, a date
of birth or a guardian: it names fields, rules and references.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from uuid import uuid4

from services.identity import domain
from services.identity.metrics import IdentityMetrics
from services.identity.repository import StudentRepository
from shared.access import AccessLogStore, AccessRecorder, authorise_access_list
from shared.at_rest import KeyRotation
from shared.auth import Actor, IssuerKeys, require_actor
from shared.contracts.access import AccessLog, ListIdentityAccesses
from shared.contracts.base import derived_id, utcnow
from shared.contracts.identity import (
    FindStudents,
    LookupStudents,
    RegisteredStudent,
    RegisterStudents,
    RegistrationReport,
    RotateIdentityKey,
    RowRejection,
    StudentMatches,
    StudentRegistration,
    StudentSnapshot,
    StudentSnapshots,
    StudentsRegistered,
)
from shared.errors import Forbidden, TransientError
from shared.outcome import Outcome, RejectedPart

log = logging.getLogger("hocba.identity")

Clock = Callable[[], datetime]

@dataclass(frozen=True)
class Deps:
    """What identity's handlers need; `app.py` builds it once."""

    repo: StudentRepository
    metrics: IdentityMetrics
    #: Public keys of the actor-token issuer, with identity as the audience and the PKI that vouches for
    #: services (None: every actor is refused).
    issuer_keys: IssuerKeys | None
    #: The key ring the repository seals personal data under, and its rotation.
    rotation: KeyRotation
    #: Makes (and counts) the access-log entries of every student read.
    access: AccessRecorder
    #: Where those entries are kept, and read back by student.
    access_log: AccessLogStore
    clock: Clock = utcnow


# --- registering a roster --------------------------------------------------------------------


@dataclass(frozen=True)
class RowRejected:
    """A roster row that is not registered, and why."""

    index: int
    registration: StudentRegistration
    code: str
    reason: str
    #: Why it is refused: for who sent it ("forbidden", dead-lettered), or for what it says ("invalid", answered only).
    part: str = "invalid"


@dataclass(frozen=True)
class Matched:
    """The valid rows held against the students registered already."""

    new: list[StudentRegistration]
    #: (student ref, row) of rows naming a registered student with the same identity.
    known: list[tuple[str, StudentRegistration]]
    conflicts: list[RowRejected]
    #: Known rows whose enrolment was stored already, and those whose enrolment is added now.
    unchanged: int
    enrolled: int


async def register_students(command: RegisterStudents, deps: Deps) -> Outcome:
    """Register the valid rows of a school's roster; say for every row what became of it.

    A row whose personal ID is registered already is unchanged when the identity is the same and the
    student is enrolled at the row's school (its enrolment is added if new); otherwise it is a conflict,
    and the school is told so, never how (`domain.conflicts`). The report says why each rejected row was
    rejected, and the rows its sender may not register are dead-lettered too; the rest goes on.
    """
    actor = require_actor(command, deps.issuer_keys)
    domain.authorise_registration(actor)
    valid, rejected = screen_rows(command.students, actor, deps.clock().date())
    matched = await match_registered(valid, deps.repo)
    newcomers = [(uuid4().hex, registration) for registration in matched.new]
    await store_new(newcomers, command.occurred_at, deps.repo)
    rejected = sorted([*rejected, *matched.conflicts], key=lambda r: r.index)
    deps.metrics.registered.inc(len(newcomers))
    for row in rejected:
        deps.metrics.rejected.labels(row.code).inc()
    if rejected:
        # The reasons name rules and fields, never a value (`domain.personal_id_problems`).
        log.info("%s: %d roster row(s) rejected: %s", actor.subject, len(rejected), describe(rejected))
    students = [RegisteredStudent(student_ref=ref, enrolment=r.enrolment) for ref, r in [*matched.known, *newcomers]]
    report = RegistrationReport(
        source_message_id=command.message_id,
        new=len(newcomers),
        unchanged=matched.unchanged,
        enrolled=matched.enrolled,
        rejected=[RowRejection(index=r.index, code=r.code, reason=r.reason) for r in rejected],
    )
    registered = StudentsRegistered(
        message_id=derived_id(command.message_id, "registered"), by=actor.acting(), students=students
    )
    return Outcome(publish=[registered] if students else [], reply=report, rejected=rejected_parts(rejected))


def screen_rows(
    rows: Sequence[StudentRegistration], actor: Actor, today: date
) -> tuple[list[tuple[int, StudentRegistration]], list[RowRejected]]:
    """The rows that may be registered (with their index), and those refused before any look-up.

    A row is refused when it enrols at another school than the actor's, when its identity breaks
    the rules, or when its personal ID was on an earlier row of the same roster.
    """
    valid: list[tuple[int, StudentRegistration]] = []
    rejected: list[RowRejected] = []
    first_row: dict[str, int] = {}
    for index, registration in enumerate(rows):
        ident = registration.identity
        try:
            domain.authorise_enrolment(actor, registration.enrolment)
        except Forbidden as exc:
            rejected.append(RowRejected(index, registration, exc.reason, str(exc), part="forbidden"))
            continue
        if problems := domain.identity_problems(ident, today):
            rejected.append(RowRejected(index, registration, problems[0].code, "; ".join(p.message for p in problems)))
        elif ident.personal_id in first_row:
            reason = f"duplicate: the same personal ID as row {first_row[ident.personal_id]} of this roster"
            rejected.append(RowRejected(index, registration, "duplicate", reason))
        else:
            first_row[ident.personal_id] = index
            valid.append((index, registration))
    return valid, rejected


async def match_registered(valid: list[tuple[int, StudentRegistration]], repo: StudentRepository) -> Matched:
    """Sort the valid rows into new students, known ones (adding a new enrolment) and conflicts (`domain.conflicts`)."""
    existing = await repo.find([r.identity.personal_id for _, r in valid])
    new: list[StudentRegistration] = []
    known: list[tuple[str, StudentRegistration]] = []
    conflicts: list[RowRejected] = []
    enrolled = 0
    for index, registration in valid:
        stored = existing.get(registration.identity.personal_id)
        if stored is None:
            new.append(registration)
        elif domain.conflicts(stored.identity, stored.enrolments, registration):
            conflicts.append(RowRejected(index, registration, "conflict", domain.CONFLICT))
        else:
            known.append((stored.ref, registration))
            new_enrolment = registration.enrolment not in stored.enrolments
            if new_enrolment and await repo.add_enrolment(stored.ref, registration.enrolment):
                enrolled += 1
    return Matched(new, known, conflicts, unchanged=len(known) - enrolled, enrolled=enrolled)


async def store_new(newcomers: list[tuple[str, StudentRegistration]], at: datetime, repo: StudentRepository) -> None:
    """Store the new students; when another message registered some of them meanwhile, try the roster again."""
    inserted = await repo.add_new([(ref, r.identity, r.enrolment) for ref, r in newcomers], at)
    if lost := [r for _, r in newcomers if r.identity.personal_id not in inserted]:
        raise TransientError(f"{len(lost)} student(s) were registered concurrently; the roster is tried again")


def rejected_parts(rejected: list[RowRejected]) -> list[RejectedPart]:
    """The refused rows to dead-letter: those the sender may not register.

    A row refused for what it says (a personal ID that breaks its rules, a conflict, a duplicate) is the
    school's mistake to correct: the report says why and `hocba_students_rejected_total` counts it by code;
    it is not dead-lettered, so the dead-letter alerts stay for messages that could not be handled.
    """
    if rows := [r for r in rejected if r.part == "forbidden"]:
        return [RejectedPart("students", [r.registration for r in rows], "forbidden", describe(rows))]
    return []


def describe(rejected: list[RowRejected]) -> str:
    """The rejected rows in words: "row 2: <reason>; row 5: <reason>"."""
    return "; ".join(f"row {r.index}: {r.reason}" for r in rejected)


# --- look-ups --------------------------------------------------------------------------------


async def lookup_students(request: LookupStudents, deps: Deps) -> Outcome:
    """Snapshots by opaque reference, for grades alone (asking on its own behalf) as it assembles records.

    Every student answered is in the access log, with the purpose grades gave.
    """
    actor = require_actor(request, deps.issuer_keys)
    domain.authorise_lookup(actor)
    found = await deps.repo.snapshots(request.student_refs)
    answered = [ref for ref in dict.fromkeys(request.student_refs) if ref in found]
    await deps.access_log.add(deps.access.entries(actor, "lookup", answered, purpose=request.purpose))
    deps.metrics.lookups.inc(len(found))
    snapshots = StudentSnapshots(
        students=[StudentSnapshot(student_ref=ref, identity=found[ref]) for ref in answered],
        missing=[ref for ref in request.student_refs if ref not in found],
    )
    return Outcome(reply=snapshots)


async def find_students(request: FindStudents, deps: Deps) -> Outcome:
    """Snapshots by personal ID for a person: their school's students, or all for an operator, with the
    enrolments the person may see (their school's, or all).

    Every student shown is in the access log, with the purpose the reader gave.
    """
    actor = require_actor(request, deps.issuer_keys)
    domain.authorise_find(actor)
    found = await deps.repo.find(list(request.personal_ids))
    visible = {pid: s for pid, s in found.items() if domain.may_see(actor, s.enrolments)}
    shown = list(dict.fromkeys(s.ref for s in visible.values()))
    await deps.access_log.add(deps.access.entries(actor, "find", shown, purpose=request.purpose))
    deps.metrics.found.labels("found").inc(len(visible))
    deps.metrics.found.labels("missing").inc(len(request.personal_ids) - len(visible))
    log.info("%s looked up %d personal ID(s), %d visible", actor.subject, len(request.personal_ids), len(visible))
    matches = StudentMatches(
        students=[StudentSnapshot(student_ref=s.ref, identity=s.identity) for s in visible.values()],
        missing=[pid for pid in request.personal_ids if pid not in visible],
        enrolments=[
            RegisteredStudent(student_ref=s.ref, enrolment=e)
            for s in visible.values()
            for e in s.enrolments
            if domain.may_see(actor, [e])
        ],
    )
    return Outcome(reply=matches)


async def list_accesses(request: ListIdentityAccesses, deps: Deps) -> Outcome:
    """Who read a student here (found, looked up), oldest first: for operators, and for the principal or
    administrator of a school the student is enrolled at."""
    actor = require_actor(request, deps.issuer_keys)
    authorise_access_list(actor, [e.school_code for e in await deps.repo.enrolments(request.student_ref)])
    return Outcome(reply=AccessLog(entries=await deps.access_log.of(request.student_ref, request.limit)))


# --- key rotation ----------------------------------------------------------------------------


async def rotate_key(command: RotateIdentityKey, deps: Deps) -> Outcome:
    """Add a data key, make it current and re-encrypt every student under it, step by step (`KeyRotation`).

    Look-ups keep working throughout: each document names the key it is under, and the old keys
    stay in the ring.
    """
    return await deps.rotation.rotate(command)
