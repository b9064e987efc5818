"""Archive messages: record versions appended to the permanent log."""

from __future__ import annotations

from datetime import datetime
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


class Checkpoint(Model):
    """A signed statement of the archive log's size and root hash at a moment (RFC 9162 style).

    Checkpoints leave the system (sync delivers them to the ministry), so the operator cannot
    rewrite history without the difference showing against a checkpoint held elsewhere.
    """

    origin: str
    tree_size: int
    root_hash: str
    issued_at: datetime
    #: Compact JWS (ES256) over the canonical JSON of the fields above.
    signature: str


class CheckpointIssued(Message):
    ROUTING_KEY = "archive.checkpoint.issued.v1"

    checkpoint: Checkpoint
