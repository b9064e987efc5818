"""Archive messages: record versions appended to the permanent log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, field_serializer

from shared.contracts.base import Message, Model, Reply
from shared.contracts.grades import MAX_SEAL_LENGTH
from shared.contracts.limits import (
    AUDIT,
    CONSISTENCY_PROOF,
    HASH,
    ID,
    INCLUSION_PROOF,
    JWS,
    QR,
    RECORDS,
    SCHOOL_CODE,
    SCHOOL_YEAR,
    TEXT,
    HexHash,
    Sentence,
)
from shared.contracts.record import CarriesContent

#: How every time the archive signs is written (checkpoints' `issued_at`, log entries' `archived_at`): UTC to the
#: millisecond with a `Z`, e.g. 2026-05-20T08:00:00.123Z. What is signed is this string, and every copy of a signed
#: structure (the checkpoint in a bundle, in the ministry's payload, on the archive's HTTP routes) carries it as is.
SIGNED_TIME_FORMAT = "YYYY-MM-DDTHH:MM:SS.mmmZ"


def signed_time(moment: datetime) -> str:
    """A moment as the archive signs it (`SIGNED_TIME_FORMAT`): 2026-05-20T08:00:00.123Z. A time that names no zone
    is taken as UTC; microseconds are cut to milliseconds."""
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ArchivedRecord(CarriesContent):
    record_id: str = Field(max_length=ID)
    version: int
    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    student_ref: str = Field(max_length=ID)
    #: Position in the archive's Merkle log (the leaf index) and the entry's RFC 9162 leaf hash (hex).
    seq: int
    entry_hash: str = Field(max_length=HASH)
    #: SHA-256 of the canonical record document, as signed.
    digest: str = Field(max_length=HASH)
    #: For an amendment: the version this one supersedes.
    supersedes: int | None = None


class RecordsArchived(Message):
    """Record versions appended to the log, under one seal of the archive for the whole announcement."""

    ROUTING_KEY = "archive.record.archived.v3"

    records: list[ArchivedRecord] = Field(min_length=1, max_length=RECORDS)
    #: The archive's seal over every record's fields but its content (`shared.crypto.seal.archived_claims`);
    #: each content is bound through its `digest`.
    seal: str | None = Field(None, max_length=MAX_SEAL_LENGTH)


class Checkpoint(Model):
    """A signed statement of the archive log's size and root hash at a moment (RFC 9162 style).

    Checkpoints leave the system (sync delivers them to the ministry), so the operator cannot
    rewrite history without the difference showing against a checkpoint held elsewhere.
    """

    origin: str = Field(max_length=ID)
    tree_size: int
    root_hash: str = Field(max_length=HASH)
    #: Written as signed (`signed_time`): a copy of the checkpoint states the very string its signature covers.
    issued_at: datetime
    #: Compact JWS (ES256) over the canonical JSON of the fields above.
    signature: str = Field(max_length=JWS)

    @field_serializer("issued_at", when_used="json")
    def _issued_at_as_signed(self, issued_at: datetime) -> str:
        return signed_time(issued_at)


class CheckpointIssued(Message):
    ROUTING_KEY = "archive.checkpoint.issued.v1"

    checkpoint: Checkpoint


# --- requests answered by the archive (request/reply) ----------------------------------------


class ProveInclusion(Message):
    """Request: the inclusion proof of a record version (the latest when `version` is None)."""

    ROUTING_KEY = "archive.proof.inclusion.v1"
    MANDATORY = False

    record_id: str = Field(max_length=ID)
    version: int | None = None
    #: Prove against this tree size (a checkpoint the asker holds); the latest checkpoint by default.
    tree_size: int | None = None


class InclusionProof(Model):
    record_id: str = Field(max_length=ID)
    version: int
    leaf_index: int
    tree_size: int
    leaf_hash: str = Field(max_length=HASH)
    #: RFC 9162 PATH, hex, from the leaf up.
    proof: list[HexHash] = Field(max_length=INCLUSION_PROOF)
    checkpoint: Checkpoint | None = None


class ProveConsistency(Message):
    """Request: the consistency proof from tree size `first` to `second` (the latest checkpoint by default)."""

    ROUTING_KEY = "archive.proof.consistency.v1"
    MANDATORY = False

    first: int = Field(ge=1)
    second: int | None = None


class ConsistencyProof(Model):
    first: int
    second: int
    first_root: str = Field(max_length=HASH)
    second_root: str = Field(max_length=HASH)
    proof: list[HexHash] = Field(max_length=CONSISTENCY_PROOF)
    checkpoint: Checkpoint | None = None


class ProofReply(Reply):
    """What the archive answers a proof or export request with: the answer, or why there is none."""

    inclusion: InclusionProof | None = None
    consistency: ConsistencyProof | None = None
    bundle: dict[str, Any] | None = None
    #: For a certified copy: a compact JWS (ES256) by the archive, small enough for a QR code.
    qr: str | None = Field(None, max_length=QR)


class ExportRecord(Message):
    """Request: the offline verification bundle of a record version (the latest when `version` is None)."""

    ROUTING_KEY = "archive.record.export.v1"
    MANDATORY = False

    record_id: str = Field(max_length=ID)
    version: int | None = None
    #: Also sign a compact payload for the QR code of a printed certified copy.
    certified_copy: bool = False
    #: Why the reader asks, in their words; kept in the access log.
    purpose: str = Field("", max_length=200)


class AuditArchive(Message):
    """Request: recompute the log from the stored entries and compare it with every signed checkpoint."""

    ROUTING_KEY = "archive.log.audit.v1"
    MANDATORY = False


class AuditFinding(Model):
    seq: int | None
    record_id: str | None = Field(None, max_length=ID)
    version: int | None = None
    problem: str = Field(max_length=TEXT)


class AuditReport(Reply):
    entries: int
    checkpoints: int
    ok: bool
    #: What was checked and held, in plain words.
    passed: list[Sentence] = Field(default_factory=list, max_length=AUDIT)
    findings: list[AuditFinding] = Field(default_factory=list, max_length=AUDIT)


class IssueCheckpoint(Message):
    """Request: sign a checkpoint of the log now (an operator's command); answered with it."""

    ROUTING_KEY = "archive.checkpoint.issue.v1"
    MANDATORY = False


class RenewTimestamps(Message):
    """Request (an operator's command): timestamp the checkpoints again before their timestamps weaken.

    A checkpoint is renewed when its latest timestamp's TSA certificate expires before `until`, or its digest is
    weaker than `algorithm`: the new token covers the checkpoint and the previous token (RFC 4998 as the model). One
    with no timestamp yet gets its first. At most `limit` checkpoints are looked at, those of tree size above `after`,
    smallest first; the reply says where to go on from. Asking again changes nothing once every checkpoint is renewed.
    """

    ROUTING_KEY = "archive.timestamps.renew.v1"
    MANDATORY = False

    until: datetime
    algorithm: Literal["sha256", "sha384", "sha512"] = "sha256"
    after: int = Field(0, ge=0)
    limit: int = Field(100, ge=1, le=1000)


class RenewalProgress(Reply):
    """How far a renewal went: checkpoints looked at, renewed and stamped for the first time, and where to go on."""

    examined: int = 0
    renewed: int = 0
    stamped: int = 0
    #: Checkpoints in the log, and how many of them lie above `next_after` (still to look at).
    total: int = 0
    remaining: int = 0
    #: The tree size to ask from next; None once every checkpoint was looked at.
    next_after: int | None = None
    #: When the certificate of the TSA that made the renewals expires (None when nothing was renewed).
    tsa_not_after: datetime | None = None
