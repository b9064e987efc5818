"""archive's use cases: admit and append signed versions, issue checkpoints, answer proofs, exports and audits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from services.archive import domain
from services.archive.domain import Entry, Key, SupersededNotArchived
from services.archive.metrics import ArchiveMetrics
from services.archive.repository import ArchivedRow, ArchiveRepository, Position
from shared.contracts.archive import (
    ArchivedRecord,
    AuditReport,
    Checkpoint,
    CheckpointIssued,
    ConsistencyProof,
    ExportRecord,
    InclusionProof,
    ProofReply,
    ProveConsistency,
    ProveInclusion,
    RecordsArchived,
)
from shared.contracts.base import derived_id, utcnow
from shared.contracts.signing import BatchCompleted, RecordsCompleted, SignedRecord
from shared.crypto.archive_log import check_checkpoint, sign_checkpoint
from shared.crypto.bundle import make_bundle, sign_copy
from shared.crypto.canonical import canonical_json, sha256_hex
from shared.crypto.certs import TrustStore
from shared.crypto.merkle import MerkleTree
from shared.crypto.record_signatures import ChainCache, check_record
from shared.crypto.signer import X509Signer
from shared.errors import InvalidMessage, TransientError

log = logging.getLogger("hocba.archive")

Clock = Callable[[], datetime]

#: Times an append is redone after another appender took the positions it meant to use.
MAX_APPEND_ATTEMPTS = 10
#: How long a batch's checkpoint waits for the batch's records to be archived.
BATCH_WAIT_SECONDS = 300.0


@dataclass
class Keys:
    """The archive's signing key (for checkpoints and certified copies) and the trust it checks signatures with."""

    signer: Callable[[], X509Signer]
    #: The current trust store; None when the archive does not verify signatures itself.
    trust: Callable[[], TrustStore] | None
    origin: str
    crl_pem: Callable[[], str | None] = lambda: None


@dataclass
class LogState:
    """The Merkle tree over the stored leaf hashes, as this process knows it, and its last checkpoint.

    One process appends one chunk at a time (the lock); the tree is rebuilt from storage at start-up
    and whenever another appender is found to have moved the log.
    """

    tree: MerkleTree = field(default_factory=MerkleTree)
    last: Checkpoint | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    appended: asyncio.Event = field(default_factory=asyncio.Event)
    chains: ChainCache = field(default_factory=ChainCache)
    loaded: bool = False

    async def load(self, repo: ArchiveRepository, metrics: ArchiveMetrics) -> None:
        self.tree = MerkleTree(await repo.leaf_hashes())
        checkpoints = await repo.checkpoints()
        self.last = checkpoints[-1] if checkpoints else None
        if self.last is not None:
            metrics.checkpoint_seen(self.last)
        self.loaded = True
        metrics.log_entries.set(self.tree.size)

    async def ensure_loaded(self, repo: ArchiveRepository, metrics: ArchiveMetrics) -> None:
        if not self.loaded:
            await self.load(repo, metrics)


# --- admitting and appending -----------------------------------------------------------------


def admission_problems(signed: SignedRecord, keys: Keys, chains: ChainCache, payload: bytes) -> list[str]:
    """Why a signed version may not enter the archive: a signature, chain, order or digest that fails."""
    problems = domain.signature_problems(signed, sha256_hex(payload))
    if problems or keys.trust is None:
        return problems
    record = signed.record
    check = check_record(
        record.record_id,
        record.version,
        record.school_code,
        record.document,
        [s.jws for s in signed.signatures],
        keys.trust(),
        cache=chains,
        payload=payload,
    )
    return [f"{record.record_id} v{record.version}: {p}" for p in check.problems()]


async def append_new(
    records: list[SignedRecord],
    repo: ArchiveRepository,
    state: LogState,
    metrics: ArchiveMetrics,
    clock: Clock,
    batch_id: str | None = None,
    documents: dict[Key, bytes] | None = None,
) -> dict[Key, Position]:
    """Append the versions not in the log yet; returns the log position of every one of `records`."""
    keys = [domain.key_of(r) for r in records]
    async with state.lock:
        await state.ensure_loaded(repo, metrics)
        positions = await repo.positions(keys)
        pending = [r for r in records if domain.key_of(r) not in positions]
        attempts = 0
        while pending:
            if attempts == MAX_APPEND_ATTEMPTS:
                raise TransientError(f"the archive log kept moving; {len(pending)} versions not appended yet")
            attempts += 1
            entries = domain.build_entries(state.tree.size, pending, clock(), batch_id, documents)
            inserted = await repo.append(entries)
            written = entries[:inserted]
            state.tree.extend(bytes.fromhex(e.leaf_hash) for e in written)
            metrics.archived.inc(inserted)
            positions.update({e.key: Position(e.seq, e.leaf_hash, e.archived_at) for e in written})
            if inserted < len(entries):
                # Another appender took the next position, or one of these versions is in the log
                # already (appended just before a crash, its row unwritten): look again.
                state.tree = MerkleTree(await repo.leaf_hashes())
                rest = pending[inserted:]
                positions.update(await repo.log_positions([domain.key_of(r) for r in rest]))
                pending = [r for r in rest if domain.key_of(r) not in positions]
            else:
                pending = []
        metrics.log_entries.set(state.tree.size)
    return positions


async def archive_records(
    event: RecordsCompleted,
    repo: ArchiveRepository,
    state: LogState,
    metrics: ArchiveMetrics,
    keys: Keys,
    clock: Clock = utcnow,
) -> RecordsArchived:
    """Admit each version once (signatures, chains, order and amendment rules); report every version of the chunk."""
    by_key: dict[Key, SignedRecord] = {}
    for signed in event.records:
        by_key.setdefault(domain.key_of(signed), signed)
    unique = list(by_key.values())
    known = await repo.positions(by_key)
    new = [r for r in unique if domain.key_of(r) not in known]
    # Each document's canonical bytes once: for its signatures, its digest and its leaf.
    documents = {domain.key_of(r): canonical_json(r.record.document) for r in unique}
    problems = [p for signed in new for p in admission_problems(signed, keys, state.chains, documents[domain.key_of(signed)])]
    if problems:
        metrics.refused.labels("invalid-signature").inc(len(new))
        raise InvalidMessage("; ".join(problems[:10]))
    # Only a later version, or an amendment, can meet an archived version of its record.
    maybe_amending = [r for r in new if r.record.version > 1 or domain.superseded_version(r.record.document)]
    archived = await repo.versions({r.record.record_id for r in maybe_amending})
    for signed in maybe_amending:
        others = [a for a in archived[signed.record.record_id] if a.version != signed.record.version]
        try:
            domain.amendment_problem(signed, others)
        except SupersededNotArchived as exc:
            raise TransientError(f"{exc}; the amendment waits for it") from None
    positions = await append_new(unique, repo, state, metrics, clock, event.batch_id, documents)
    await repo.add_rows(
        [
            ArchivedRow(
                record_id=r.record.record_id,
                version=r.record.version,
                seq=positions[domain.key_of(r)].seq,
                school_code=r.record.school_code,
                school_year=r.record.school_year,
                student_ref=r.record.student_ref,
                archived_at=positions[domain.key_of(r)].archived_at,
                batch_id=event.batch_id,
                supersedes=domain.superseded_version(r.record.document),
                leaf_hash=positions[domain.key_of(r)].leaf_hash,
            )
            for r in unique
        ]
    )
    state.appended.set()
    return RecordsArchived(
        message_id=derived_id(event.message_id, "archived"),
        actor=event.actor,
        records=[
            ArchivedRecord(
                record_id=r.record.record_id,
                version=r.record.version,
                school_code=r.record.school_code,
                school_year=r.record.school_year,
                student_ref=r.record.student_ref,
                seq=positions[domain.key_of(r)].seq,
                entry_hash=positions[domain.key_of(r)].leaf_hash,
                digest=sha256_hex(documents[domain.key_of(r)]),
                document=r.record.document,
                supersedes=domain.superseded_version(r.record.document),
            )
            for r in unique
        ],
    )


# --- checkpoints -----------------------------------------------------------------------------


async def issue_checkpoint(
    repo: ArchiveRepository,
    state: LogState,
    metrics: ArchiveMetrics,
    keys: Keys,
    clock: Clock = utcnow,
    *,
    force: bool = False,
) -> Checkpoint | None:
    """Sign a checkpoint of the tree as it is, if it grew since the last one (or `force`)."""
    async with state.lock:
        await state.ensure_loaded(repo, metrics)
        size = state.tree.size
        if state.last is not None and state.last.tree_size == size:
            return state.last if force else None
        if size == 0 and not force:
            return None
        checkpoint = sign_checkpoint(keys.signer(), keys.origin, size, state.tree.root(size), clock())
        if not await repo.add_checkpoint(checkpoint):
            # Issued already (by a redelivered request before a crash): the stored one stands.
            stored = [c for c in await repo.checkpoints() if c.tree_size == size]
            checkpoint = stored[0] if stored else checkpoint
        state.last = checkpoint
        metrics.checkpoints.inc()
        metrics.checkpoint_seen(checkpoint)
        return checkpoint


def checkpoint_event(checkpoint: Checkpoint) -> CheckpointIssued:
    """The event for a checkpoint; its id derives from origin and size, so a repeat is recognised."""
    return CheckpointIssued(
        message_id=derived_id(checkpoint.origin, "checkpoint", checkpoint.tree_size), checkpoint=checkpoint
    )


async def checkpoint_after_batch(
    event: BatchCompleted,
    repo: ArchiveRepository,
    state: LogState,
    metrics: ArchiveMetrics,
    keys: Keys,
    clock: Clock = utcnow,
    wait_seconds: float = BATCH_WAIT_SECONDS,
) -> Checkpoint | None:
    """Once a batch's completed records are all in the log, sign a checkpoint that covers them.

    The completed records of a batch reach the archive before the batch's completion is published,
    but on another queue; this waits (bounded) until they are appended.
    """
    if event.records_completed:
        deadline = time.monotonic() + wait_seconds
        while await repo.count_batch(event.batch_id) < event.records_completed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("batch %s: checkpoint issued before all its records were archived", event.batch_id)
                break
            state.appended.clear()
            try:
                await asyncio.wait_for(state.appended.wait(), timeout=min(remaining, 1.0))
            except TimeoutError:
                pass
    issued = await issue_checkpoint(repo, state, metrics, keys, clock)
    if issued is None and not event.records_completed:
        return None  # a homeroom teacher's batch archives nothing
    # Published again when nothing new was issued: a repeat (same id) is harmless, a lost one is not.
    return issued or state.last


# --- proofs, exports, audits -----------------------------------------------------------------


async def latest_checkpoint(
    repo: ArchiveRepository, state: LogState, metrics: ArchiveMetrics, keys: Keys, covering: int, clock: Clock = utcnow
) -> Checkpoint:
    """The latest checkpoint, issuing one first if it does not cover `covering` entries."""
    await state.ensure_loaded(repo, metrics)
    if state.last is None or state.last.tree_size < covering:
        checkpoint = await issue_checkpoint(repo, state, metrics, keys, clock, force=True)
        assert checkpoint is not None
        return checkpoint
    return state.last


async def prove_inclusion(
    request: ProveInclusion, repo: ArchiveRepository, state: LogState, metrics: ArchiveMetrics, keys: Keys
) -> ProofReply:
    entry = await repo.entry(request.record_id, request.version)
    if entry is None:
        return ProofReply(error=f"{request.record_id} v{request.version or 'latest'} is not archived")
    checkpoint = await latest_checkpoint(repo, state, metrics, keys, entry.seq + 1)
    size = request.tree_size or checkpoint.tree_size
    if not entry.seq < size <= state.tree.size:
        return ProofReply(error=f"entry {entry.seq} is not in a tree of {size} entries (the log has {state.tree.size})")
    return ProofReply(
        inclusion=InclusionProof(
            record_id=entry.record_id,
            version=entry.version,
            leaf_index=entry.seq,
            tree_size=size,
            leaf_hash=entry.leaf_hash,
            proof=[p.hex() for p in state.tree.inclusion_proof(entry.seq, size)],
            checkpoint=checkpoint if size == checkpoint.tree_size else None,
        )
    )


async def prove_consistency(
    request: ProveConsistency, repo: ArchiveRepository, state: LogState, metrics: ArchiveMetrics, keys: Keys
) -> ProofReply:
    await state.ensure_loaded(repo, metrics)
    checkpoint = state.last
    second = request.second or (checkpoint.tree_size if checkpoint else state.tree.size)
    if not 0 < request.first <= second <= state.tree.size:
        return ProofReply(error=f"no consistency proof from {request.first} to {second} (the log has {state.tree.size})")
    return ProofReply(
        consistency=ConsistencyProof(
            first=request.first,
            second=second,
            first_root=state.tree.root(request.first).hex(),
            second_root=state.tree.root(second).hex(),
            proof=[p.hex() for p in state.tree.consistency_proof(request.first, second)],
            checkpoint=checkpoint if checkpoint and checkpoint.tree_size == second else None,
        )
    )


async def export_record(
    request: ExportRecord,
    repo: ArchiveRepository,
    state: LogState,
    metrics: ArchiveMetrics,
    keys: Keys,
    clock: Clock = utcnow,
) -> ProofReply:
    """The verification bundle of a version (and, for a certified copy, the signed QR payload)."""
    entry = await repo.entry(request.record_id, request.version)
    if entry is None:
        return ProofReply(error=f"{request.record_id} v{request.version or 'latest'} is not archived")
    checkpoint = await latest_checkpoint(repo, state, metrics, keys, entry.seq + 1, clock)
    versions = sorted(v.version for v in (await repo.versions([entry.record_id]))[entry.record_id])
    bundle = make_bundle(
        record={
            "record_id": entry.record_id,
            "version": entry.version,
            "school_code": entry.school_code,
            "school_year": entry.school_year,
            "student_ref": entry.student_ref,
            "document": entry.document,
        },
        signatures=entry.signatures,
        seq=entry.seq,
        archived_at=entry.archived_at,
        leaf_hash=bytes.fromhex(entry.leaf_hash),
        proof=state.tree.inclusion_proof(entry.seq, checkpoint.tree_size),
        checkpoint=checkpoint,
        status={
            "versions": versions,
            "superseded_by": next((v for v in versions if v > entry.version), None),
            "supersedes": entry.supersedes,
        },
        crl_pem=keys.crl_pem(),
    )
    qr = sign_copy(keys.signer(), bundle, clock()) if request.certified_copy else None
    metrics.exports.inc()
    return ProofReply(bundle=bundle, qr=qr)


async def audit_log(repo: ArchiveRepository, keys: Keys) -> AuditReport:
    """Recompute the tree from the stored entries and hold it against every stored, signed checkpoint."""
    entries: list[Entry] = await repo.entries()
    checkpoints = await repo.checkpoints()
    trust = keys.trust() if keys.trust is not None else None
    return domain.audit(entries, checkpoints, lambda c: check_checkpoint(c, trust).failed)
