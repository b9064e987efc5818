"""Archive messages: record versions appended to the permanent log."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.contracts.base import Message, Model


class ArchivedRecord(Model):
    record_id: str
    version: int
    school_code: str
    school_year: str
    student_ref: str
    #: Position in the archive log and the hash that chains the entry to its predecessor.
    seq: int
    entry_hash: str
    #: SHA-256 of the canonical record document, as signed.
    digest: str
    document: dict[str, Any]


class RecordsArchived(Message):
    ROUTING_KEY = "archive.record.archived.v1"

    records: list[ArchivedRecord] = Field(min_length=1)
