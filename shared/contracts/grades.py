"""Grades messages: assessment and conduct entries, terms, closing a year, the assembled record."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import Field

from shared.contracts.base import Message, Model, Notification, Reply
from shared.contracts.limits import (
    CODE,
    ID,
    LABEL,
    LINES,
    NAME,
    RATINGS,
    RECORDS,
    REGULAR,
    ROWS,
    SCHOOL_CODE,
    SCHOOL_YEAR,
    SUBJECT,
    TEXT,
    WORDS,
    Sentence,
    SubjectName,
)
from shared.contracts.record import CarriesContent

Term = Literal[1, 2]
CommentLevel = Literal["Đ", "CĐ"]
#: Primary subject levels: Hoàn thành tốt, Hoàn thành, Chưa hoàn thành (Circular 27/2020).
SubjectLevel = Literal["T", "H", "C"]
#: Primary qualities and competencies: Tốt, Đạt, Cần cố gắng.
QualityLevel = Literal["T", "Đ", "C"]
#: Secondary conduct (rèn luyện) per term (Circular 22/2021).
ConductLevel = Literal["Tốt", "Khá", "Đạt", "Chưa đạt"]


class SubjectTermScores(Model):
    """One student's assessments in one subject for one term.

    Secondary score-assessed subjects carry `regular` (ĐĐGtx), `midterm` (ĐĐGgk) and `final`
    (ĐĐGck); secondary comment-assessed subjects carry `comment_level` (Đạt / Chưa đạt).
    Primary subjects carry `level` (term 1: end of term I, term 2: end of year) and
    `midterm_level`; tested primary subjects carry the periodic test in `final` (and, in
    grades 4-5 for Tiếng Việt and Toán, the mid-term test in `midterm`).
    """

    student_ref: str = Field(max_length=ID)
    subject: str = Field(max_length=SUBJECT)
    term: Term
    regular: tuple[Decimal, ...] = Field((), max_length=REGULAR)
    midterm: Decimal | None = None
    final: Decimal | None = None
    comment_level: CommentLevel | None = None
    level: SubjectLevel | None = None
    midterm_level: SubjectLevel | None = None
    #: The subject teacher's comment for the term.
    comment: str = Field("", max_length=WORDS)


class RecordAssessments(Message):
    """Command: store a chunk of assessment entries of one school year, from a subject teacher.

    An entry that replaces a stored one is a change: it is logged with the actor and `reason`
    (required once the term has been reopened). Requested (not just published), it is answered
    with an `AssessmentsRecorded`.
    """

    ROUTING_KEY = "grades.assessments.record.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    entries: list[SubjectTermScores] = Field(min_length=1, max_length=ROWS)
    reason: str = Field("", max_length=WORDS)


class EntryRejection(Model):
    """Why entry `index` of a command was not stored; `code` is short, `reason` in words."""

    index: int
    code: str = Field(max_length=CODE)
    reason: str = Field(max_length=TEXT)


class EntriesRecorded(Notification):
    """What became of a command's entries: how many were stored new, changed or unchanged, and each one rejected."""

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    #: Entries accepted (new, changed or unchanged).
    entries: int
    source_message_id: str = Field(max_length=ID)
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    rejected: list[EntryRejection] = Field(default_factory=list, max_length=ROWS)


class AssessmentsRecorded(EntriesRecorded):
    """Event (and reply): a subject teacher's entries recorded."""

    ROUTING_KEY = "grades.assessments.recorded.v1"


class StudentTermConduct(Model):
    """What the homeroom teacher enters for one student and one term.

    Secondary: `conduct` (rèn luyện) and `absences` (sessions, excused or not). Primary:
    `qualities` and `competencies` (name -> T/Đ/C) and `absences`. Both: `comment`.
    """

    student_ref: str = Field(max_length=ID)
    term: Term
    conduct: ConductLevel | None = None
    absences: int | None = Field(None, ge=0)
    qualities: dict[SubjectName, QualityLevel] = Field(default_factory=dict, max_length=RATINGS)
    competencies: dict[SubjectName, QualityLevel] = Field(default_factory=dict, max_length=RATINGS)
    comment: str = Field("", max_length=WORDS)


class RecordConduct(Message):
    """Command: the homeroom teacher's entries for students of their class."""

    ROUTING_KEY = "grades.conduct.record.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    entries: list[StudentTermConduct] = Field(min_length=1, max_length=ROWS)
    reason: str = Field("", max_length=WORDS)


class ConductRecorded(EntriesRecorded):
    """Event (and reply): the homeroom teacher's entries recorded."""

    ROUTING_KEY = "grades.conduct.recorded.v1"


class CloseTerm(Message):
    """Command (principal or school administrator): lock a term's entries."""

    ROUTING_KEY = "grades.term.close.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    term: Term


class ReopenTerm(Message):
    """Command (principal only): unlock a closed term for corrections, saying why."""

    ROUTING_KEY = "grades.term.reopen.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    term: Term
    reason: str = Field(min_length=1, max_length=WORDS)


class TermChanged(Notification):
    """A term was closed or reopened (or a repeated command found it so already)."""

    ROUTING_KEY = "grades.term.changed.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    term: Term
    state: Literal["open", "closed"]
    source_message_id: str = Field(max_length=ID)


class CloseYear(Message):
    """Command (principal): close the school year and assemble every student's record.

    Both terms must be closed first: a record is assembled only from locked entries.
    """

    ROUTING_KEY = "grades.year.close.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)


#: A seal carries its producer's certificate chain; this is ample for it.
MAX_SEAL_LENGTH = 8_000

#: (record_id, version): one record version, as services key it in memory and in storage.
VersionKey = tuple[str, int]


class RecordKey(Model):
    """One record version, as messages name it."""

    record_id: str = Field(max_length=ID)
    version: int = Field(ge=1)


class RecordVersion(CarriesContent):
    """One version of one student's year record.

    `content` is the record itself: its document's RFC 8785 canonical bytes, exactly as grades wrote
    them (`shared.contracts.record`), which is what gets sealed, signed and archived. The other fields
    repeat what routing and storage need.
    """

    record_id: str = Field(max_length=ID)
    version: int = Field(ge=1)
    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    student_ref: str = Field(max_length=ID)
    #: grades' seal over this version (`shared.crypto.seal.record_claims`): where its content comes from.
    seal: str | None = Field(None, max_length=MAX_SEAL_LENGTH)

    @property
    def key(self) -> VersionKey:
        return (self.record_id, self.version)


class RecordsReady(Message):
    """Event: assembled record versions, ready to be signed."""

    ROUTING_KEY = "grades.record.ready.v2"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    records: list[RecordVersion] = Field(min_length=1, max_length=RECORDS)


class ExplainRecord(Message):
    """Request: how a record's results were computed (answered with `RecordExplanation`)."""

    ROUTING_KEY = "grades.record.explain.v1"

    record_id: str = Field(max_length=ID)
    #: None: the latest version.
    version: int | None = None
    #: Why the reader asks, in their words; kept in the access log.
    purpose: str = Field("", max_length=200)


class ExplanationLine(Model):
    """One computed result: what it is about, its value, the clause that decided it, the inputs."""

    about: str = Field(max_length=LABEL)
    result: Any
    clause: str = Field(max_length=LABEL)
    rule: str = Field(max_length=LABEL)
    inputs: dict[str, Any]
    text: str = Field(max_length=TEXT)


class RecordExplanation(Reply):
    record_id: str = Field(max_length=ID)
    version: int = 0
    school_code: str = Field("", max_length=SCHOOL_CODE)
    school_year: str = Field("", max_length=SCHOOL_YEAR)
    grade: int = 0
    class_name: str = Field("", max_length=CODE)
    student_name: str = Field("", max_length=NAME)
    rule_set: str = Field("", max_length=CODE)
    unconfirmed: list[Sentence] = Field(default_factory=list, max_length=LINES)
    lines: list[ExplanationLine] = Field(default_factory=list, max_length=LINES)
