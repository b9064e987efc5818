"""Identity messages: registering a roster, the registered event, and identity look-ups."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field

from shared.contracts.base import Message, Model, Notification, Reply

Sex = Literal["M", "F"]


class StudentIdentity(Model):
    """Who a student is; personal data that identity keeps encrypted at rest."""

    personal_id: str
    full_name: str
    date_of_birth: date
    sex: Sex
    place_of_birth: str = ""
    ethnicity: str = ""
    guardian_name: str = ""


class Enrolment(Model):
    school_code: str
    school_year: str = Field(pattern=r"^\d{4}-\d{4}$")
    grade: int = Field(ge=1, le=12)
    class_name: str


class StudentRegistration(Model):
    identity: StudentIdentity
    enrolment: Enrolment


class RegisterStudents(Message):
    """Command: register (or confirm) a chunk of a school's roster."""

    ROUTING_KEY = "identity.students.register.v1"

    students: list[StudentRegistration] = Field(min_length=1)


class RegisteredStudent(Model):
    """What other services may know of a student: an opaque reference and the enrolment."""

    student_ref: str
    enrolment: Enrolment


class StudentsRegistered(Message):
    ROUTING_KEY = "identity.student.registered.v1"

    students: list[RegisteredStudent]


class LookupStudents(Message):
    """Request: the identity snapshots of these student references (answered by reply)."""

    ROUTING_KEY = "identity.students.lookup.v1"

    student_refs: list[str] = Field(min_length=1, max_length=1000)


class StudentSnapshot(Model):
    student_ref: str
    identity: StudentIdentity


class StudentSnapshots(Reply):
    """Reply to LookupStudents; `missing` lists references identity does not know."""

    students: list[StudentSnapshot]
    missing: list[str] = []


class RowRejection(Model):
    """Why row `index` of a RegisterStudents was not registered."""

    index: int
    code: str
    reason: str


class RegistrationReport(Reply):
    """Reply to a requested RegisterStudents: what became of each row.

    `new`: registered now; `unchanged`: already registered with the same identity and
    enrolment; `enrolled`: already registered, this enrolment added.
    """

    source_message_id: str
    new: int = 0
    unchanged: int = 0
    enrolled: int = 0
    rejected: list[RowRejection] = []


class FindStudents(Message):
    """Request: the identity snapshots of these personal IDs, as far as the actor may see them.

    A school's staff see their school's students; the department's operators see all.
    Answered with `StudentMatches`.
    """

    ROUTING_KEY = "identity.students.find.v1"

    personal_ids: list[str] = Field(min_length=1, max_length=1000)


class StudentMatches(Reply):
    students: list[StudentSnapshot] = []
    #: Personal IDs with no student the actor may see.
    missing: list[str] = []


class RotateIdentityKey(Message):
    """Command (operator): add a new data key, make it current, re-encrypt every student under it."""

    ROUTING_KEY = "identity.keys.rotate.v1"


class KeyRotationProgress(Notification):
    ROUTING_KEY = "identity.keys.rotation.v1"

    source_message_id: str
    key_id: str
    done: int
    total: int
    finished: bool = False
