"""identity's use cases: register a roster chunk, look students up."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import uuid4

from services.identity.domain import personal_id_problems
from services.identity.metrics import IdentityMetrics
from services.identity.repository import StudentRepository
from shared.contracts.base import derived_id
from shared.contracts.identity import (
    LookupStudents,
    RegisteredStudent,
    RegisterStudents,
    StudentRegistration,
    StudentSnapshot,
    StudentSnapshots,
    StudentsRegistered,
)


@dataclass(frozen=True)
class Rejected:
    index: int
    registration: StudentRegistration
    reason: str


@dataclass
class RegistrationOutcome:
    event: StudentsRegistered | None
    rejected: list[Rejected] = field(default_factory=list)
    new: int = 0


async def register_students(
    command: RegisterStudents, repo: StudentRepository, metrics: IdentityMetrics
) -> RegistrationOutcome:
    """Store the valid students (new ones get a fresh opaque ref) and report the invalid ones."""
    valid: list[StudentRegistration] = []
    rejected: list[Rejected] = []
    seen: set[str] = set()
    for index, registration in enumerate(command.students):
        ident = registration.identity
        problems = personal_id_problems(ident.personal_id, ident.date_of_birth, ident.sex)
        if ident.personal_id in seen:
            rejected.append(Rejected(index, registration, "duplicate: personal ID appears twice in this roster"))
        elif problems:
            rejected.append(Rejected(index, registration, "; ".join(p.message for p in problems)))
        else:
            seen.add(ident.personal_id)
            valid.append(registration)
    for item in rejected:
        metrics.rejected.labels(item.reason.split(":")[0].split(" ")[0]).inc()

    new = await repo.add_new([(uuid4().hex, r.identity, r.enrolment) for r in valid])
    metrics.registered.inc(new)
    refs = await repo.refs_by_personal_id([r.identity.personal_id for r in valid])
    students = [
        RegisteredStudent(student_ref=refs[r.identity.personal_id], enrolment=r.enrolment)
        for r in valid
    ]
    event = (
        StudentsRegistered(
            message_id=derived_id(command.message_id, "registered"),
            actor=command.actor,
            students=students,
        )
        if students
        else None
    )
    return RegistrationOutcome(event=event, rejected=rejected, new=new)


async def lookup_students(
    request: LookupStudents, repo: StudentRepository, metrics: IdentityMetrics
) -> StudentSnapshots:
    found = await repo.snapshots(request.student_refs)
    metrics.lookups.inc(len(found))
    return StudentSnapshots(
        students=[StudentSnapshot(student_ref=ref, identity=found[ref]) for ref in request.student_refs if ref in found],
        missing=[ref for ref in request.student_refs if ref not in found],
    )
