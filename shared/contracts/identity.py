"""Identity messages: registering a roster, the registered event, and identity look-ups."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field

from shared.contracts.base import Message, Model, Reply
from shared.contracts.keys import DataKeyRotationProgress, RotateDataKey
from shared.contracts.limits import (
    CHOICES,
    CODE,
    ID,
    LOOKUP,
    NAME,
    PERSONAL_ID,
    PLACE,
    ROWS,
    SCHOOL_CODE,
    SCHOOL_STUDENTS,
    SCHOOL_YEAR,
    TEXT,
    Identifier,
    PersonalId,
    SubjectName,
)

Sex = Literal["M", "F"]


class StudentIdentity(Model):
    """Who a student is; personal data that identity keeps encrypted at rest."""

    personal_id: str = Field(max_length=PERSONAL_ID)
    full_name: str = Field(max_length=NAME)
    date_of_birth: date
    sex: Sex
    place_of_birth: str = Field("", max_length=PLACE)
    ethnicity: str = Field("", max_length=CODE)
    guardian_name: str = Field("", max_length=NAME)


class Enrolment(Model):
    """A student's place in a school year. In grades 10-12 it also holds the student's own choices (2018
    programme): their electives, and the subjects their learning topics (chuyên đề học tập) are tied to;
    grades checks them against its rule set. Empty below grade 10, and in messages of earlier releases."""

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR, pattern=r"^\d{4}-\d{4}$")
    grade: int = Field(ge=1, le=12)
    class_name: str = Field(max_length=CODE)
    electives: tuple[SubjectName, ...] = Field((), max_length=CHOICES)
    learning_topics: tuple[SubjectName, ...] = Field((), max_length=CHOICES)


class StudentRegistration(Model):
    identity: StudentIdentity
    enrolment: Enrolment


class RegisterStudents(Message):
    """Command: register (or confirm) a chunk of a school's roster."""

    ROUTING_KEY = "identity.students.register.v1"

    students: list[StudentRegistration] = Field(min_length=1, max_length=ROWS)


class RegisteredStudent(Model):
    """What other services may know of a student: an opaque reference and the enrolment."""

    student_ref: str = Field(max_length=ID)
    enrolment: Enrolment


class StudentsRegistered(Message):
    ROUTING_KEY = "identity.student.registered.v1"

    students: list[RegisteredStudent] = Field(max_length=ROWS)


class LookupStudents(Message):
    """Request: the identity snapshots of these student references (answered by reply)."""

    ROUTING_KEY = "identity.students.lookup.v1"

    student_refs: list[Identifier] = Field(min_length=1, max_length=LOOKUP)
    #: Why the reader asks, in their words; kept in the access log.
    purpose: str = Field("", max_length=200)


class StudentSnapshot(Model):
    student_ref: str = Field(max_length=ID)
    identity: StudentIdentity


class StudentSnapshots(Reply):
    """Reply to LookupStudents; `missing` lists references identity does not know."""

    students: list[StudentSnapshot] = Field(max_length=SCHOOL_STUDENTS)
    missing: list[Identifier] = Field(default_factory=list, max_length=SCHOOL_STUDENTS)


class RowRejection(Model):
    """Why row `index` of a RegisterStudents was not registered."""

    index: int
    code: str = Field(max_length=CODE)
    reason: str = Field(max_length=TEXT)


class RegistrationReport(Reply):
    """Reply to a requested RegisterStudents: what became of each row.

    `new`: registered now; `unchanged`: already registered with the same identity and
    enrolment; `enrolled`: already registered, this enrolment added.
    """

    source_message_id: str = Field(max_length=ID)
    new: int = 0
    unchanged: int = 0
    enrolled: int = 0
    rejected: list[RowRejection] = Field(default_factory=list, max_length=ROWS)


class FindStudents(Message):
    """Request: the identity snapshots of these personal IDs, as far as the actor may see them.

    A school's staff see their school's students; the department's operators see all.
    Answered with `StudentMatches`.
    """

    ROUTING_KEY = "identity.students.find.v1"

    personal_ids: list[PersonalId] = Field(min_length=1, max_length=LOOKUP)
    #: Why the reader asks, in their words; kept in the access log.
    purpose: str = Field("", max_length=200)


class StudentMatches(Reply):
    students: list[StudentSnapshot] = Field(default_factory=list, max_length=LOOKUP)
    #: Personal IDs with no student the actor may see.
    missing: list[PersonalId] = Field(default_factory=list, max_length=LOOKUP)
    #: The enrolments of the students found that the actor may see (a school's staff: at their school), one a
    #: school year and class: what an import checks its rows' school year and class against.
    enrolments: list[RegisteredStudent] = Field(default_factory=list, max_length=SCHOOL_STUDENTS)


class RotateIdentityKey(RotateDataKey):
    """Command (operator): add a new data key, make it current, re-encrypt every student under it."""

    ROUTING_KEY = "identity.keys.rotate.v1"


class KeyRotationProgress(DataKeyRotationProgress):
    ROUTING_KEY = "identity.keys.rotation.v1"
