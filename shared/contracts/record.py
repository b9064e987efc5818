"""A year record as services carry it: the exact bytes that are signed, and a typed reading of them.

grades writes a record version's document once, as its RFC 8785 canonical JSON (`canonical_json`).
Those bytes are what grades seals, every signature covers, the archive's leaf commits to and the
digest names; signing, the archive and sync store them as they are, carry them in messages (base64
in the JSON body) and hash them, and none of them writes the document again. A reader who needs a
field of the document asks `RecordDocument` for it instead of walking a dict.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any, Literal, Self

from pydantic import Field, PlainSerializer, PlainValidator, WithJsonSchema

from shared.contracts.base import Model
from shared.contracts.identity import StudentSnapshot
from shared.contracts.limits import CODE, ID, LINES, SCHOOL_CODE, SCHOOL_YEAR, TEXT
from shared.crypto.canonical import canonical_json

#: A record document's canonical bytes are a few kilobytes; this leaves room for a long amendment note and comments.
MAX_RECORD_BYTES = 64_000


def _canonical_bytes(value: object) -> bytes:
    """The bytes a message carries as standard base64 text (bytes given in Python are taken as they are)."""
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    elif isinstance(value, str):
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the record's content is not standard base64") from None
    else:
        raise ValueError("the record's content must be base64 text")
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError(f"the record's content has {len(data)} bytes, more than {MAX_RECORD_BYTES}")
    return data


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


#: A record document's canonical bytes: base64 text in a message's JSON, bytes in Python and in storage.
CanonicalBytes = Annotated[
    bytes,
    PlainValidator(_canonical_bytes),
    PlainSerializer(_base64, return_type=str, when_used="json"),
    WithJsonSchema({
        "type": "string",
        "contentEncoding": "base64",
        "contentMediaType": "application/json",
        "maxLength": (MAX_RECORD_BYTES + 2) // 3 * 4,
        "description": "The record document's RFC 8785 canonical JSON, base64.",
    }),
]


def content_of(document: dict[str, Any]) -> bytes:
    """A record document's canonical bytes: the one place a service writes a document it made."""
    return canonical_json(document)


class SchoolNamed(Model):
    code: str = Field(max_length=SCHOOL_CODE)


#: Why an archived record version is replaced by a new one (an amendment's reason code).
AmendmentReason = Literal[
    "grade-correction", "identity-correction", "conduct-correction", "clerical-error", "appeal-decision"
]


class Amendment(Model):
    """What an amended version states about itself, under its signatures (signing writes it in)."""

    supersedes: int = Field(ge=1)
    reason: str = Field("", max_length=CODE)
    note: str = Field("", max_length=TEXT)
    #: The subject of whoever at the school asked for it.
    requested_by: str = Field("", max_length=ID)


class RecordDocument(Model):
    """The fields of a record document that services and tools read; the rest is kept, not modelled here.

    A message part that carries a record reads it as `fields` (`CarriesContent`); a document missing one
    of the named fields is not a record this release wrote, and is refused as such.
    """

    record_id: str = Field(max_length=ID)
    version: int = Field(ge=1)
    rule_set: str = Field(max_length=CODE)
    regulation: str = Field("", max_length=TEXT)
    school: SchoolNamed
    school_year: str = Field(max_length=SCHOOL_YEAR)
    grade: int = Field(ge=1, le=12)
    class_name: str = Field(max_length=CODE)
    student: StudentSnapshot
    #: Every entry the record needs is present; `missing` names those that are not.
    complete: bool
    missing: list[dict[str, Any]] = Field(default_factory=list, max_length=LINES)
    amendment: Amendment | None = None


def document_of(content: bytes) -> dict[str, Any]:
    """The whole document as JSON values, for a reader that shows or sends all of it."""
    found = json.loads(content)
    if not isinstance(found, dict):
        raise ValueError("a record's content is a JSON object")
    return found


#: What `CarriesContent` reads from `content` and keeps.
_READ_FROM_CONTENT = ("document", "fields")


class CarriesContent(Model):
    """A message part that carries a record version's content, and reads it (once, when asked)."""

    content: CanonicalBytes

    @cached_property
    def document(self) -> dict[str, Any]:
        """The document as JSON values, for a reader that needs all of it."""
        return document_of(self.content)

    @cached_property
    def fields(self) -> RecordDocument:
        """The document's named fields."""
        return RecordDocument.model_validate(self.document)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; one given other content reads that content, not what this one read."""
        copied = super().model_copy(update=update, deep=deep)
        if update and "content" in update:
            for name in _READ_FROM_CONTENT:
                copied.__dict__.pop(name, None)
        return copied
