"""Who saw a student: every read of personal data or of a record is logged by the service that answers it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.contracts.base import Message, Model, Reply
from shared.contracts.limits import CODE, ID, LABEL, LISTING, ROLES, ShortCode

#: What a reader did: looked a student up by reference or personal ID, had a record explained,
#: exported a record's bundle, printed a certified copy, listed a school's records, read a student's entry history,
#: reviewed a class's records beside the identity register, or opened a printed copy's address on the public
#: verification page (`verify`, by the anonymous `public` reader: whoever holds the paper copy).
Action = Literal["lookup", "find", "explain", "export", "print", "list", "history", "review", "verify"]


class AccessEntry(Model):
    """One read: when, by whom (subject, roles, school), what (the student, the record), and why."""

    at: datetime
    service: str = Field(max_length=CODE)
    subject: str = Field(max_length=LABEL)
    roles: list[ShortCode] = Field(default_factory=list, max_length=ROLES)
    school_code: str = Field("", max_length=CODE)
    action: Action
    student_ref: str = Field("", max_length=ID)
    record_id: str = Field("", max_length=ID)
    purpose: str = Field("", max_length=LABEL)


class ListAccesses(Message):
    """Request (operator, or the principal or school administrator of the student's school): who read a student."""

    student_ref: str = Field(min_length=1, max_length=64)
    limit: int = Field(1000, ge=1, le=10_000)


class ListIdentityAccesses(ListAccesses):
    ROUTING_KEY = "identity.access.list.v1"


class ListGradesAccesses(ListAccesses):
    ROUTING_KEY = "grades.access.list.v1"


class ListArchiveAccesses(ListAccesses):
    ROUTING_KEY = "archive.access.list.v1"


class AccessLog(Reply):
    """Reply to a ListAccesses: the reads of the student this service answered, oldest first."""

    entries: list[AccessEntry] = Field(default_factory=list, max_length=LISTING)
