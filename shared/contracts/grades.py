"""Grades messages: assessment entries, closing a year, and the assembled year record."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import Field

from shared.contracts.base import Message, Model, Notification

Term = Literal[1, 2]
CommentLevel = Literal["Đ", "CĐ"]


class SubjectTermScores(Model):
    """One student's assessments in one subject for one term.

    Score-assessed subjects carry `regular` (ĐĐGtx), `midterm` (ĐĐGgk) and `final` (ĐĐGck);
    comment-assessed subjects carry `comment_level` (Đạt / Chưa đạt).
    """

    student_ref: str
    subject: str
    term: Term
    regular: tuple[Decimal, ...] = ()
    midterm: Decimal | None = None
    final: Decimal | None = None
    comment_level: CommentLevel | None = None


class RecordAssessments(Message):
    """Command: store a chunk of assessment entries of one school year."""

    ROUTING_KEY = "grades.assessments.record.v1"

    school_code: str
    school_year: str
    entries: list[SubjectTermScores] = Field(min_length=1)


class AssessmentsRecorded(Notification):
    ROUTING_KEY = "grades.assessments.recorded.v1"

    school_code: str
    school_year: str
    entries: int
    source_message_id: str


class CloseYear(Message):
    """Command: close the school year and assemble every student's record."""

    ROUTING_KEY = "grades.year.close.v1"

    school_code: str
    school_year: str


class RecordKey(Model):
    record_id: str
    version: int = Field(ge=1)


class RecordVersion(Model):
    """One version of one student's year record.

    `document` is the record itself (JSON values only); its RFC 8785 canonical form is what
    gets signed and archived. The other fields repeat what routing and storage need.
    """

    record_id: str
    version: int = Field(ge=1)
    school_code: str
    school_year: str
    student_ref: str
    document: dict[str, Any]

    @property
    def key(self) -> RecordKey:
        return RecordKey(record_id=self.record_id, version=self.version)


class RecordsReady(Message):
    """Event: assembled record versions, ready to be signed."""

    ROUTING_KEY = "grades.record.ready.v1"

    school_code: str
    school_year: str
    records: list[RecordVersion] = Field(min_length=1)
