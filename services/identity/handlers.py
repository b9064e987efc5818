"""identity's use cases: register a roster chunk, look students up, rotate the data key."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from uuid import uuid4

from services.identity.domain import differences, identity_problems
from services.identity.metrics import IdentityMetrics
from services.identity.repository import StudentRepository
from services.identity.vault import Vault
from shared.auth import Actor, IssuerKeys, require_actor
from shared.contracts.base import Message, derived_id
from shared.contracts.identity import (
    FindStudents,
    KeyRotationProgress,
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

log = logging.getLogger("hocba.identity")

#: Students re-encrypted per step of a key rotation (one progress event each).
ROTATION_STEP = 200


def authenticate(command: Message, keys: IssuerKeys | None, metrics: IdentityMetrics) -> Actor:
    try:
        return require_actor(command.actor, keys)
    except Forbidden as exc:
        metrics.refused.labels(type(command).__name__, exc.reason).inc()
        raise


def refuse(command: Message, refusal: str | None, metrics: IdentityMetrics) -> None:
    if refusal is not None:
        metrics.refused.labels(type(command).__name__, Forbidden.reason).inc()
        raise Forbidden(refusal)


@dataclass(frozen=True)
class Rejected:
    index: int
    registration: StudentRegistration
    code: str
    reason: str
    forbidden: bool = False


@dataclass
class RegistrationOutcome:
    event: StudentsRegistered | None
    report: RegistrationReport
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def new(self) -> int:
        return self.report.new


def register_refusal(actor: Actor) -> str | None:
    if actor.has("school_admin") or actor.has("principal"):
        return None
    return f"{actor.subject} may not register students: the school administrator or the principal does"


async def register_students(
    command: RegisterStudents,
    repo: StudentRepository,
    metrics: IdentityMetrics,
    keys: IssuerKeys | None,
    today: date | None = None,
) -> RegistrationOutcome:
    """Register the valid rows of a school's roster; say for every row what became of it.

    A row whose personal ID is registered already is unchanged when the identity is the same
    (its enrolment is added if new), and rejected as a conflict when it differs.
    """
    actor = authenticate(command, keys, metrics)
    refuse(command, register_refusal(actor), metrics)
    today = today or datetime.now(UTC).date()
    rejected: list[Rejected] = []
    valid: list[tuple[int, StudentRegistration]] = []
    first_row: dict[str, int] = {}
    for index, registration in enumerate(command.students):
        ident, school = registration.identity, registration.enrolment.school_code
        if school != actor.school_code:
            reason = f"{actor.subject} registers for school {actor.school_code}, not {school}"
            rejected.append(Rejected(index, registration, "forbidden", reason, forbidden=True))
        elif problems := identity_problems(ident, today):
            rejected.append(Rejected(index, registration, problems[0].code, "; ".join(p.message for p in problems)))
        elif ident.personal_id in first_row:
            reason = f"duplicate: the same personal ID as row {first_row[ident.personal_id]} of this roster"
            rejected.append(Rejected(index, registration, "duplicate", reason))
        else:
            first_row[ident.personal_id] = index
            valid.append((index, registration))

    existing = await repo.find([r.identity.personal_id for _, r in valid])
    new_rows: list[tuple[str, StudentRegistration]] = []
    accepted: list[tuple[str, StudentRegistration]] = []
    unchanged = enrolled = 0
    for index, registration in valid:
        stored = existing.get(registration.identity.personal_id)
        if stored is None:
            new_rows.append((uuid4().hex, registration))
        elif changed := differences(stored.identity, registration.identity):
            reason = f"conflict: already registered with a different {', '.join(changed)}"
            rejected.append(Rejected(index, registration, "conflict", reason))
        else:
            accepted.append((stored.ref, registration))
            if registration.enrolment in stored.enrolments:
                unchanged += 1
            elif await repo.add_enrolment(stored.ref, registration.enrolment):
                enrolled += 1
            else:
                unchanged += 1
    inserted = await repo.add_new([(ref, r.identity, r.enrolment) for ref, r in new_rows], command.occurred_at)
    if lost := [r for _, r in new_rows if r.identity.personal_id not in inserted]:
        # Registered meanwhile by another message: try again, they are then known.
        raise TransientError(f"{len(lost)} student(s) were registered concurrently; the roster is tried again")
    accepted += new_rows
    metrics.registered.inc(len(new_rows))
    for item in rejected:
        metrics.rejected.labels(item.code).inc()
    rejected.sort(key=lambda r: r.index)
    students = [RegisteredStudent(student_ref=ref, enrolment=r.enrolment) for ref, r in accepted]
    event = (
        StudentsRegistered(
            message_id=derived_id(command.message_id, "registered"), actor=command.actor, students=students
        )
        if students
        else None
    )
    report = RegistrationReport(
        source_message_id=command.message_id,
        new=len(new_rows),
        unchanged=unchanged,
        enrolled=enrolled,
        rejected=[RowRejection(index=r.index, code=r.code, reason=r.reason) for r in rejected],
    )
    return RegistrationOutcome(event=event, report=report, rejected=rejected)


async def lookup_students(
    request: LookupStudents, repo: StudentRepository, metrics: IdentityMetrics
) -> StudentSnapshots:
    """Snapshots by opaque reference, for the services that assemble records."""
    found = await repo.snapshots(request.student_refs)
    metrics.lookups.inc(len(found))
    return StudentSnapshots(
        students=[StudentSnapshot(student_ref=ref, identity=found[ref]) for ref in request.student_refs if ref in found],
        missing=[ref for ref in request.student_refs if ref not in found],
    )


async def find_students(
    request: FindStudents, repo: StudentRepository, metrics: IdentityMetrics, keys: IssuerKeys | None
) -> StudentMatches:
    """Snapshots by personal ID for a person: their school's students, or all for an operator."""
    try:
        actor = authenticate(request, keys, metrics)
    except Forbidden as exc:
        return StudentMatches(missing=list(request.personal_ids), error=str(exc))
    found = await repo.find(list(request.personal_ids))
    visible = {
        pid: s
        for pid, s in found.items()
        if actor.has("operator") or any(e.school_code == actor.school_code for e in s.enrolments)
    }
    metrics.found.labels("found").inc(len(visible))
    metrics.found.labels("missing").inc(len(request.personal_ids) - len(visible))
    log.info("%s looked up %d personal ID(s), %d visible", actor.subject, len(request.personal_ids), len(visible))
    return StudentMatches(
        students=[StudentSnapshot(student_ref=s.ref, identity=s.identity) for s in visible.values()],
        missing=[pid for pid in request.personal_ids if pid not in visible],
    )


Progress = Callable[[KeyRotationProgress], Awaitable[None]]


async def rotate_key(
    command: RotateIdentityKey,
    repo: StudentRepository,
    vault: Vault,
    metrics: IdentityMetrics,
    keys: IssuerKeys | None,
    progress: Progress,
    step: int = ROTATION_STEP,
) -> KeyRotationProgress:
    """Add a key, make it current, re-encrypt every student under it, step by step.

    Look-ups keep working throughout: each document names the key it is under, and the old keys
    stay in the ring. Redelivered, the same key id is derived and the work resumes where it was.
    """
    actor = authenticate(command, keys, metrics)
    refuse(command, None if actor.has("operator") else f"{actor.subject} may not rotate keys: operators do", metrics)
    key_id = "k-" + derived_id(command.message_id, "key")[:12]
    vault.add_key(key_id)
    metrics.keys.set(len(vault.cipher.ring.keys))
    total = await repo.count_not_under(key_id)
    done = 0

    def event(finished: bool) -> KeyRotationProgress:
        return KeyRotationProgress(
            message_id=derived_id(command.message_id, "rotation", done, finished),
            actor=command.actor,
            source_message_id=command.message_id,
            key_id=key_id,
            done=done,
            total=total,
            finished=finished,
        )

    await progress(event(False))
    while changed := await repo.reencrypt(step):
        done += changed
        metrics.reencrypted.inc(changed)
        await progress(event(False))
    metrics.key_rotations.inc()
    log.info("key rotation to %s finished: %d student(s) re-encrypted", key_id, done)
    return event(True)
