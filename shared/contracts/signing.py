"""Signing messages: the one-click batch request, work chunks, signatures and batch progress."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.contracts.base import Message, Model, Notification, new_id
from shared.contracts.grades import RecordKey, RecordVersion

Role = Literal["homeroom_teacher", "principal", "school_seal"]


class RequestSignBatch(Message):
    """Command: sign every record of a school year that still lacks `role`'s signature."""

    ROUTING_KEY = "signing.batch.requested.v1"

    batch_id: str = Field(default_factory=new_id)
    school_code: str
    school_year: str
    role: Role = "principal"


class SignWork(Message):
    """One chunk of a batch on the work queue that the signing workers compete for."""

    ROUTING_KEY = "signing.work.v1"

    batch_id: str
    chunk_no: int = Field(ge=0)
    role: Role
    records: list[RecordKey] = Field(min_length=1)


class Signature(Model):
    record_id: str
    version: int
    role: Role
    algorithm: Literal["ES256"] = "ES256"
    key_id: str
    #: SHA-256 (hex) of the RFC 8785 canonical JSON of the record document.
    digest: str
    #: Compact JWS with detached payload.
    jws: str
    signed_at: datetime


class SignedRecord(Model):
    record: RecordVersion
    signatures: list[Signature]


class ChunkSigned(Message):
    """A worker finished one chunk; the batch coordinator counts it once."""

    ROUTING_KEY = "signing.chunk.signed.v1"

    batch_id: str
    chunk_no: int
    signed: int
    worker: str


class RecordsCompleted(Message):
    """Event: record versions that now carry every required signature."""

    ROUTING_KEY = "signing.record.completed.v1"

    records: list[SignedRecord] = Field(min_length=1)


class BatchProgress(Notification):
    ROUTING_KEY = "signing.batch.progress.v1"

    batch_id: str
    school_code: str
    school_year: str
    chunks_done: int
    chunks_total: int
    records_signed: int
    records_total: int


class BatchCompleted(Notification):
    ROUTING_KEY = "signing.batch.completed.v1"

    batch_id: str
    school_code: str
    school_year: str
    records_signed: int
    records_total: int


class RecordsReceived(Notification):
    """Signing stored a chunk of record versions; they now await signature."""

    ROUTING_KEY = "signing.records.received.v1"

    school_code: str
    school_year: str
    count: int
    source_message_id: str
