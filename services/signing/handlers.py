"""signing's use cases: receive records, plan a batch, sign a chunk, count chunks to the batch's end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from services.signing import domain
from services.signing.domain import Batch, Key, StoredRecord
from services.signing.metrics import SigningMetrics
from services.signing.repository import SigningRepository
from shared.contracts.base import Message, derived_id, utcnow
from shared.contracts.grades import RecordsReady, RecordVersion
from shared.contracts.signing import (
    BatchCompleted,
    BatchProgress,
    ChunkSigned,
    RecordsCompleted,
    RecordsReceived,
    RequestSignBatch,
    Role,
    Signature,
    SignedRecord,
    SignWork,
)
from shared.crypto.canonical import canonical_json, digest, sha256_hex
from shared.crypto.jws import EcSigner, sign_detached
from shared.errors import InvalidMessage, NotFound

Clock = Callable[[], datetime]


# --- receiving records -----------------------------------------------------------------------


@dataclass(frozen=True)
class Conflict:
    record: RecordVersion
    reason: str


@dataclass
class ReceiveOutcome:
    event: RecordsReceived | None
    conflicts: list[Conflict] = field(default_factory=list)
    new: int = 0


async def receive_records(event: RecordsReady, repo: SigningRepository) -> ReceiveOutcome:
    """Keep each record version with its digest; a version seen before with other content is a conflict."""
    scope = (event.school_code, event.school_year)
    strays = [r.record_id for r in event.records if (r.school_code, r.school_year) != scope]
    if strays:
        raise InvalidMessage(f"records {strays[:5]} belong to another school or year than the message")
    incoming: dict[Key, StoredRecord] = {}
    conflicts: list[Conflict] = []
    for record in event.records:
        stored = StoredRecord(record, digest(record.document))
        first = incoming.setdefault(stored.key, stored)
        if first.digest != stored.digest:
            reason = f"{record.record_id} v{record.version} appears twice with different content"
            conflicts.append(Conflict(record, reason))
    new = await repo.add_records(list(incoming.values()))
    if new < len(incoming):
        known = await repo.records(incoming)
        for key, stored in list(incoming.items()):
            if known[key].digest != stored.digest:
                conflicts.append(
                    Conflict(stored.record, f"{key[0]} v{key[1]} was received before with different content")
                )
                del incoming[key]
    accepted = len(incoming)
    received = RecordsReceived(
        message_id=derived_id(event.message_id, "received"),
        actor=event.actor,
        school_code=event.school_code,
        school_year=event.school_year,
        count=accepted,
        source_message_id=event.message_id,
    )
    return ReceiveOutcome(event=received if accepted else None, conflicts=conflicts, new=new)


# --- planning a batch ------------------------------------------------------------------------


def work_messages(batch: Batch, actor: str | None = None) -> list[Message]:
    """What a batch's plan publishes: one SignWork per chunk, or BatchCompleted when there are none.

    The ids derive from the batch id, the key of the plan, so re-publishing the plan repeats them.
    """
    if not batch.chunks:
        return [completed_event(batch)]
    return [
        SignWork(
            message_id=derived_id(batch.batch_id, "work", chunk_no),
            actor=actor,
            batch_id=batch.batch_id,
            chunk_no=chunk_no,
            role=batch.role,
            records=[{"record_id": rid, "version": version} for rid, version in chunk],
        )
        for chunk_no, chunk in enumerate(batch.chunks)
    ]


def completed_event(batch: Batch) -> BatchCompleted:
    return BatchCompleted(
        message_id=derived_id(batch.batch_id, "completed"),
        batch_id=batch.batch_id,
        school_code=batch.school_code,
        school_year=batch.school_year,
        records_signed=batch.records_signed,
        records_total=batch.records_total,
    )


async def plan_batch(
    command: RequestSignBatch,
    repo: SigningRepository,
    chunk_size: int,
    metrics: SigningMetrics,
    clock: Clock = utcnow,
) -> list[Message]:
    """Plan the batch once; a redelivered request re-publishes the stored plan (workers are idempotent)."""
    unsigned = await repo.unsigned(command.school_code, command.school_year, command.role)
    batch = domain.new_batch(
        command.batch_id, command.school_code, command.school_year, command.role, unsigned, chunk_size, clock()
    )
    if await repo.add_batch(batch):
        if not batch.chunks:
            metrics.batches.labels("empty").inc()
    else:
        stored = await repo.batch(command.batch_id)
        if stored is None:
            raise NotFound(f"batch {command.batch_id} vanished after it was created")
        if (stored.school_code, stored.school_year, stored.role) != (
            command.school_code,
            command.school_year,
            command.role,
        ):
            raise InvalidMessage(f"batch id {command.batch_id} is already used for another school year or role")
        batch = stored
    return work_messages(batch, command.actor)


# --- signing a chunk -------------------------------------------------------------------------


@dataclass
class ChunkOutcome:
    completed: RecordsCompleted | None
    chunk: ChunkSigned
    new_signatures: int


def sign_record(
    record: StoredRecord, role: Role, present: dict[Role, Signature], signer: EcSigner, signed_at: datetime
) -> Signature:
    """ES256 over the canonical document, detached; the header binds record, version, role and chain."""
    payload = canonical_json(record.record.document)
    if sha256_hex(payload) != record.digest:
        raise InvalidMessage(f"{record.record.record_id} v{record.record.version} no longer matches its digest")
    header = domain.signature_header(
        record, role, signed_at, signer.public_jwk(), domain.prev_digest(role, present)
    )
    return Signature(
        record_id=record.record.record_id,
        version=record.record.version,
        role=role,
        key_id=signer.key_id,
        digest=record.digest,
        jws=sign_detached(signer, payload, header),
        signed_at=signed_at,
    )


async def sign_chunk(
    work: SignWork,
    repo: SigningRepository,
    signer: EcSigner,
    metrics: SigningMetrics,
    clock: Clock = utcnow,
) -> ChunkOutcome:
    """Sign the chunk's records that lack `role`; report those now complete and the chunk as done."""
    keys = list(dict.fromkeys((k.record_id, k.version) for k in work.records))
    records = await repo.records(keys)
    missing = [f"{rid} v{version}" for rid, version in keys if (rid, version) not in records]
    if missing:
        raise NotFound(f"unknown record versions: {', '.join(missing[:5])}")
    present = await repo.signatures(keys)
    signed_at = domain.whole_milliseconds(clock())
    fresh = [
        sign_record(records[key], work.role, present.get(key, {}), signer, signed_at)
        for key in keys
        if domain.may_sign(work.role, present.get(key, {}))
    ]
    new = await repo.add_signatures([(s, *records[(s.record_id, s.version)].scope) for s in fresh])
    metrics.records_signed.labels(work.role).inc(new)
    if fresh:
        # Another worker may have signed some of these first: the stored signatures are the ones that count.
        present = await repo.signatures(keys)
    complete = [
        SignedRecord(record=records[key].record, signatures=domain.in_role_order(present[key]))
        for key in keys
        if domain.is_complete(present.get(key, {}))
    ]
    completed = (
        RecordsCompleted(message_id=derived_id(work.message_id, "completed"), actor=work.actor, records=complete)
        if complete
        else None
    )
    chunk = ChunkSigned(
        message_id=derived_id(work.message_id, "chunk-signed"),
        batch_id=work.batch_id,
        chunk_no=work.chunk_no,
        signed=sum(1 for key in keys if work.role in present.get(key, {})),
        worker=signer.key_id,
    )
    return ChunkOutcome(completed=completed, chunk=chunk, new_signatures=new)


# --- counting chunks -------------------------------------------------------------------------


async def count_chunk(
    event: ChunkSigned, repo: SigningRepository, metrics: SigningMetrics, clock: Clock = utcnow
) -> list[Message]:
    """Count the chunk once; when it was the last, close the batch exactly once."""
    batch = await repo.batch(event.batch_id)
    if batch is None:
        raise NotFound(f"unknown batch {event.batch_id}")
    if not 0 <= event.chunk_no < batch.chunks_total:
        raise InvalidMessage(f"batch {event.batch_id} has no chunk {event.chunk_no}")
    counted = await repo.count_chunk(event.batch_id, event.chunk_no, event.signed)
    batch = counted if counted is not None else batch
    out: list[Message] = []
    if counted is not None:
        metrics.chunks.inc()
        out.append(
            BatchProgress(
                message_id=derived_id(event.message_id, "progress"),
                batch_id=batch.batch_id,
                school_code=batch.school_code,
                school_year=batch.school_year,
                chunks_done=len(batch.done_chunks),
                chunks_total=batch.chunks_total,
                records_signed=batch.records_signed,
                records_total=batch.records_total,
            )
        )
    # Checked on redelivery too: a crash after counting the last chunk must not leave the batch open.
    if batch.all_chunks_done and batch.status == domain.OPEN:
        completed_at = clock()
        if await repo.close_batch(batch.batch_id, completed_at):
            metrics.batches.labels("completed").inc()
            metrics.batch_duration.observe(max(0.0, (completed_at - batch.started_at).total_seconds()))
            out.append(completed_event(batch))
    return out
