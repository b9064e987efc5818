"""archive's use cases: admit and append signed versions, issue checkpoints, answer proofs, exports and audits.

Each handler takes the message and `Deps` and returns an `Outcome` (shared.outcome): what to
publish and, for a request, the reply. A message refused whole raises; a requester is then
answered with the error. A checkpoint signed on the way to an answer is announced with it, since
every checkpoint leaves the system.

The broker is not a trust boundary. A version is admitted when its signatures, chains and order
hold, its content comes from grades (grades' seal) or is an amendment its school asked for, and the
time its last signature states is the archive's clock give or take a bounded skew; the archive's
clock at admission is the entry's `archived_at`, the trusted time that a certificate revoked later
for key compromise is judged against. What it announces as archived carries its own seal. Every
request carries an actor token for the archive, and every export or printed copy is in the access log.

Versions archived and checkpoints stored are kept owed an announcement until it is published (`announced`); one a
crash left unpublished is announced again, sealed again, by the archive itself (`reannounce`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.archive import domain
from services.archive.domain import Chunk, Entry, key_of
from services.archive.metrics import ArchiveMetrics
from services.archive.repository import ArchivedRow, ArchiveRepository, Position, StampRow
from shared.access import AccessLogStore, AccessRecorder, authorise_access_list
from shared.at_rest import KeyRotation
from shared.auth import IssuerKeys, require_actor, service_subject
from shared.contracts.access import AccessLog, Action, ListArchiveAccesses
from shared.contracts.archive import (
    ArchivedRecord,
    AuditArchive,
    Checkpoint,
    CheckpointIssued,
    ConsistencyProof,
    ExportRecord,
    InclusionProof,
    IssueCheckpoint,
    ProofReply,
    ProveConsistency,
    ProveInclusion,
    RecordsArchived,
    RenewalProgress,
    RenewTimestamps,
)
from shared.contracts.base import Acting, Message, derived_id, utcnow
from shared.contracts.grades import VersionKey
from shared.contracts.keys import RotateArchiveKey
from shared.contracts.signing import BatchCompleted, RecordsCompleted, SignedRecord
from shared.crypto import timestamps
from shared.crypto.archive_log import check_checkpoint, sign_checkpoint
from shared.crypto.bundle import make_bundle, sign_copy, with_timestamps
from shared.crypto.canonical import sha256_hex
from shared.crypto.certs import TrustStore
from shared.crypto.merkle import MerkleTree
from shared.crypto.record_signatures import ChainCache, check_record
from shared.crypto.seal import archived_claims, record_claims, seal, seal_problems
from shared.crypto.signer import X509Signer
from shared.crypto.timestamps import Timestamp
from shared.errors import InvalidMessage, NotFound, TransientError, Unavailable
from shared.outcome import NOTHING, Outcome, Publish, published_then_kept

logger = logging.getLogger("hocba.archive")

Clock = Callable[[], datetime]

#: Times an append is redone after another appender took the positions it meant to use.
MAX_APPEND_ATTEMPTS = 10
#: How long a batch's checkpoint waits for the batch's records to be archived.
BATCH_WAIT_SECONDS = 300.0
#: How far the time a record's last signature states may be from the archive's clock at admission.
MAX_CLOCK_SKEW = timedelta(minutes=10)
#: Who seals the content of the record versions it assembles.
GRADES = service_subject("grades")
#: An announcement not published this long after its versions were archived (or its checkpoint stored) is taken for
#: lost in a crash and made again.
ANNOUNCE_GRACE_SECONDS = 30.0
#: How often the archive looks for such announcements.
ANNOUNCE_INTERVAL_SECONDS = 10.0
#: Versions (and checkpoints) one step announces again at most; a step that finds this many runs again at once.
ANNOUNCED_PER_STEP = 100


@dataclass(frozen=True)
class Keys:
    """The archive's own signing key, and the trust it checks the signatures it admits against."""

    #: Signs checkpoints and certified copies.
    signer: Callable[[], X509Signer]
    #: The current trust store (anchor and CRL) signatures and grades' seals are checked against; None when the
    #: archive does not verify them itself (HOCBA_ARCHIVE_VERIFY_SIGNATURES=false).
    trust: Callable[[], TrustStore] | None
    #: The current CRL (PEM), attached to exported bundles so that they verify offline.
    crl_pem: Callable[[], str | None] = lambda: None


@dataclass
class LogState:
    """The Merkle tree over the stored leaf hashes, as this process knows it, and its last checkpoint.

    One process appends one chunk at a time (the lock); the tree is rebuilt from storage at start-up
    and whenever another appender is found to have moved the log.
    """

    tree: MerkleTree = field(default_factory=MerkleTree)
    last_checkpoint: Checkpoint | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Set whenever versions are archived: a batch's checkpoint waits on it.
    appended: asyncio.Event = field(default_factory=asyncio.Event)
    loaded: bool = False
    #: The TSA failed the last request: checkpoints wait for `stamp_owed` rather than for the TSA's timeout.
    tsa_failing: bool = False


@dataclass(frozen=True)
class Deps:
    """What archive's handlers need; `app.py` builds it once."""

    repo: ArchiveRepository
    metrics: ArchiveMetrics
    keys: Keys
    #: The archive log's name in its checkpoints.
    log_origin: str
    #: Public keys of the actor-token issuer, with the archive as the audience (None: every request is refused).
    issuer_keys: IssuerKeys | None
    #: Makes and counts the access-log entries of exports and printed copies.
    access: AccessRecorder
    #: Where those entries are kept, and read back by student.
    access_log: AccessLogStore
    #: The key ring the log's documents are sealed under, and its rotation.
    rotation: KeyRotation
    log: LogState = field(default_factory=LogState)
    #: Certificates already parsed from the x5c chains of signatures checked before.
    chains: ChainCache = field(default_factory=ChainCache)
    #: How long a batch's checkpoint waits for the batch's records to be archived.
    batch_wait_seconds: float = BATCH_WAIT_SECONDS
    #: How far the time a record's last signature states may be from `clock` at admission.
    max_clock_skew: timedelta = MAX_CLOCK_SKEW
    clock: Clock = utcnow
    #: After how long an owed announcement is made again, how often that is looked for, and how many at most a step.
    announce_grace_seconds: float = ANNOUNCE_GRACE_SECONDS
    announce_interval_seconds: float = ANNOUNCE_INTERVAL_SECONDS
    announced_per_step: int = ANNOUNCED_PER_STEP
    #: The TSA checkpoints are timestamped by (None: they are not).
    stamping: Stamping | None = None


# --- the log as this process knows it --------------------------------------------------------


async def load_log(deps: Deps) -> None:
    """Rebuild the tree from the stored leaf hashes and take up the last stored checkpoint."""
    async with deps.log.lock:
        await read_log(deps)


async def read_log(deps: Deps) -> None:
    log = deps.log
    log.tree = MerkleTree(await deps.repo.leaf_hashes())
    checkpoints = await deps.repo.checkpoints()
    log.last_checkpoint = checkpoints[-1] if checkpoints else None
    if log.last_checkpoint is not None:
        deps.metrics.checkpoint_seen(log.last_checkpoint)
    log.loaded = True
    deps.metrics.log_entries.set(log.tree.size)


async def loaded_log(deps: Deps) -> LogState:
    """The log state, read from storage first if it has not been yet."""
    if not deps.log.loaded:
        await read_log(deps)
    return deps.log


# --- admitting and appending -----------------------------------------------------------------


async def archive_records(event: RecordsCompleted, deps: Deps) -> Outcome:
    """Admit each version once (signatures, chains, order, where its content comes from, signing time, amendment
    rules); report every version of the chunk, sealed by the archive."""
    chunk = Chunk.of(event.records, event.batch_id)
    known = await deps.repo.positions(chunk.versions)
    new = [signed for key, signed in chunk.versions.items() if key not in known]
    admitted_at = deps.clock()
    check_admission(new, chunk, admitted_at, deps)
    await check_amendments(new, deps)
    positions = await append_new(chunk, admitted_at, deps)
    # The rows, written after the log entries, are what marks a version archived: each is written owed its
    # announcement, in the same insert.
    await deps.repo.add_rows(archived_rows(chunk, positions, owed_since=admitted_at))
    deps.log.appended.set()
    return Outcome(publish=[archived_event(event, chunk, positions, deps.keys.signer())])


def check_admission(new: list[SignedRecord], chunk: Chunk, now: datetime, deps: Deps) -> None:
    """Refuse the chunk (InvalidMessage) when a new version may not enter the archive at `now`; counted by reason."""
    problems: list[str] = []
    for signed in new:
        key = key_of(signed)
        reason, found = admission_problems(signed, chunk.digests[key], now, deps)
        if found:
            deps.metrics.refused.labels(reason).inc()
            problems += found
    if problems:
        raise InvalidMessage("; ".join(problems[:10]))


def admission_problems(signed: SignedRecord, digest: str, now: datetime, deps: Deps) -> tuple[str, list[str]]:
    """Why a signed version may not enter the archive at `now`, and under which reason it is counted.

    A signature, chain, order or digest that fails (invalid-signature); a signing time the archive's clock
    does not bear out (signing-time); content neither sealed by grades nor an amendment (not-sealed). The
    chains are judged with `now` as the trusted time: a certificate revoked for key compromise before now
    voids the signature, whatever time it states. `digest` is the SHA-256 of the version's content; the signing
    times are read from the headers the signature check read.
    """
    problems = domain.signature_problems(signed, digest)
    if problems:
        return "invalid-signature", problems
    record = signed.record
    revoked, stated = False, None
    if deps.keys.trust is not None:
        trust = deps.keys.trust()
        check = check_record(
            record, [s.jws for s in signed.signatures], trust, cache=deps.chains, trusted_at=now
        )
        if not check.ok:
            return "invalid-signature", [f"{record.record_id} v{record.version}: {p}" for p in check.problems()]
        revoked, stated = any(s.revoked for s in check.signatures), [s.signed_at for s in check.signatures]
        origin = origin_problems(signed, digest, trust, now, deps.chains)
        if origin:
            return "not-sealed", origin
    skew = deps.max_clock_skew
    return "signing-time", domain.signing_time_problems(signed, now, skew, revoked=revoked, stated_times=stated)


def origin_problems(signed: SignedRecord, digest: str, trust: TrustStore, now: datetime, chains: ChainCache) -> list[str]:
    """Why the version's content is not shown to come from grades (its seal), or from its school (an amendment)."""
    record = signed.record
    name = f"{record.record_id} v{record.version}"
    if record.seal is None:
        if domain.amendment_requester(record):
            return []
        return [f"{name} is not sealed by grades, and is not an amendment its school asked for"]
    problems = seal_problems(record.seal, record_claims(record, digest), trust, GRADES, now, chains)
    return [f"{name} is not sealed by grades: {p}" for p in problems]


async def check_amendments(new: list[SignedRecord], deps: Deps) -> None:
    """Admit a new version of an archived record only as an amendment of its latest version by the issuing school.

    Only a later version, or an amendment, can meet an archived version of its record.
    """
    maybe_amending = [r for r in new if r.record.version > 1]
    archived = await deps.repo.versions({r.record.record_id for r in maybe_amending})
    for signed in maybe_amending:
        others = [a for a in archived[signed.record.record_id] if a.version != signed.record.version]
        domain.check_amendment(signed, others)


async def append_new(chunk: Chunk, admitted_at: datetime, deps: Deps) -> dict[VersionKey, Position]:
    """Append the chunk's versions not in the log yet, admitted at `admitted_at`; returns the log position of every
    one of them."""
    async with deps.log.lock:
        log = await loaded_log(deps)
        positions = await deps.repo.positions(chunk.versions)
        pending = [signed for key, signed in chunk.versions.items() if key not in positions]
        attempts = 0
        while pending:
            if attempts == MAX_APPEND_ATTEMPTS:
                raise TransientError(f"the archive log kept moving; {len(pending)} versions not appended yet")
            attempts += 1
            pending = await append_at_end(pending, chunk, positions, admitted_at, deps)
        deps.metrics.log_entries.set(log.tree.size)
    return positions


async def append_at_end(
    pending: list[SignedRecord],
    chunk: Chunk,
    positions: dict[VersionKey, Position],
    admitted_at: datetime,
    deps: Deps,
) -> list[SignedRecord]:
    """Append `pending` after the last entry this process knows of, note their positions; returns what is left.

    Fewer appended than given means another appender took the next position, or one of these
    versions is in the log already (appended just before a crash, its row unwritten): the tree is
    then rebuilt from storage and the rest looked up in the log.
    """
    log = deps.log
    entries = domain.build_entries(log.tree.size, pending, admitted_at, chunk.batch_id)
    inserted = await deps.repo.append(entries)
    written = entries[:inserted]
    log.tree.extend(bytes.fromhex(e.leaf_hash) for e in written)
    deps.metrics.archived.inc(inserted)
    positions.update({e.key: Position(e.seq, e.leaf_hash, e.archived_at) for e in written})
    if inserted == len(entries):
        return []
    log.tree = MerkleTree(await deps.repo.leaf_hashes())
    rest = pending[inserted:]
    positions.update(await deps.repo.log_positions([key_of(r) for r in rest]))
    return [r for r in rest if key_of(r) not in positions]


def archived_rows(
    chunk: Chunk, positions: Mapping[VersionKey, Position], owed_since: datetime | None = None
) -> list[ArchivedRow]:
    """Where each version of the chunk sits in the log, with what routing and look-ups need, its announcement owed
    since `owed_since`."""
    return [
        ArchivedRow(
            record_id=signed.record.record_id,
            version=signed.record.version,
            seq=positions[key].seq,
            school_code=signed.record.school_code,
            school_year=signed.record.school_year,
            student_ref=signed.record.student_ref,
            archived_at=positions[key].archived_at,
            batch_id=chunk.batch_id,
            supersedes=domain.superseded_version(signed.record),
            leaf_hash=positions[key].leaf_hash,
            unannounced_since=owed_since,
        )
        for key, signed in chunk.versions.items()
    ]


def archived_event(
    event: RecordsCompleted, chunk: Chunk, positions: Mapping[VersionKey, Position], signer: X509Signer
) -> RecordsArchived:
    """Every version of the chunk with its place in the log, under one seal of the archive; the id derives from
    the event's, so repeats match."""
    records = [
        ArchivedRecord(
            record_id=signed.record.record_id,
            version=signed.record.version,
            school_code=signed.record.school_code,
            school_year=signed.record.school_year,
            student_ref=signed.record.student_ref,
            seq=positions[key].seq,
            entry_hash=positions[key].leaf_hash,
            digest=chunk.digests[key],
            content=signed.record.content,
            supersedes=domain.superseded_version(signed.record),
        )
        for key, signed in chunk.versions.items()
    ]
    return RecordsArchived(
        message_id=derived_id(event.message_id, "archived"),
        by=event.by,
        records=records,
        seal=seal(signer, archived_claims(records)),
    )


# --- checkpoints -----------------------------------------------------------------------------


async def new_checkpoint(deps: Deps, *, even_if_empty: bool = False) -> Checkpoint | None:
    """Sign and store a checkpoint of the tree as it is, if it grew since the last one; None when it did not.

    An empty log gets one only when asked `even_if_empty` (an operator's or a requester's need). The checkpoint is
    timestamped at once unless the TSA failed the last time (then `stamp_owed` stamps it once the TSA is back).
    """
    checkpoint = await signed_checkpoint(deps, even_if_empty=even_if_empty)
    if checkpoint is not None and checkpoint.tree_size and deps.stamping is not None and not deps.log.tsa_failing:
        await stamp_checkpoint(deps, deps.stamping, checkpoint)
    return checkpoint


async def signed_checkpoint(deps: Deps, *, even_if_empty: bool = False) -> Checkpoint | None:
    """`new_checkpoint` but for its timestamp."""
    async with deps.log.lock:
        log = await loaded_log(deps)
        size = log.tree.size
        if log.last_checkpoint is not None and log.last_checkpoint.tree_size == size:
            return None
        if size == 0 and not even_if_empty:
            return None
        now = deps.clock()
        checkpoint = sign_checkpoint(deps.keys.signer(), deps.log_origin, size, log.tree.root(size), now)
        # Stored owed its announcement, but for an empty log's, which is never announced.
        if not await deps.repo.add_checkpoint(checkpoint, now if size else None):
            # Issued already (by a redelivered request before a crash): the stored one stands.
            stored = [c for c in await deps.repo.checkpoints() if c.tree_size == size]
            checkpoint = stored[0] if stored else checkpoint
        log.last_checkpoint = checkpoint
        deps.metrics.checkpoints.inc()
        deps.metrics.checkpoint_seen(checkpoint)
        return checkpoint


def checkpoint_event(checkpoint: Checkpoint, by: Acting | None = None) -> CheckpointIssued:
    """The event for a checkpoint; its id derives from origin and size, so a repeat is recognised."""
    return CheckpointIssued(
        message_id=derived_id(checkpoint.origin, "checkpoint", checkpoint.tree_size), by=by, checkpoint=checkpoint
    )


async def issue_checkpoint(command: IssueCheckpoint, deps: Deps) -> Outcome:
    """An operator's request: a checkpoint of the log now (the last one when the log has not grown).

    Answered with it, and announced again unless the log is empty: a repeat (same id) is harmless.
    Refused unless an operator asks.
    """
    actor = require_actor(command, deps.issuer_keys)
    domain.authorise_operator(actor, "issue a checkpoint")
    checkpoint = await new_checkpoint(deps, even_if_empty=True) or deps.log.last_checkpoint
    announce = [checkpoint_event(checkpoint, actor.acting())] if checkpoint is not None and checkpoint.tree_size else []
    stated = {"checkpoint": checkpoint.model_dump(mode="json")} if checkpoint is not None else None
    return Outcome(publish=announce, reply=ProofReply(bundle=stated))


async def scheduled_checkpoint(deps: Deps) -> Outcome:
    """A checkpoint every interval while the log grows, so the ministry holds a recent root."""
    checkpoint = await new_checkpoint(deps)
    return Outcome(publish=[checkpoint_event(checkpoint)]) if checkpoint is not None else NOTHING


async def checkpoint_after_batch(event: BatchCompleted, deps: Deps) -> Outcome:
    """Once a batch's completed records are all in the log, sign a checkpoint that covers them.

    When nothing new was signed, the last checkpoint is announced again: a repeat (same id) is
    harmless, a lost one is not. A batch that completed no record (a homeroom teacher's) brings a
    checkpoint only when the log grew meanwhile.
    """
    if event.records_completed:
        await batch_archived(event, deps)
    issued = await new_checkpoint(deps)
    if issued is None and not event.records_completed:
        return NOTHING
    checkpoint = issued or deps.log.last_checkpoint
    return Outcome(publish=[checkpoint_event(checkpoint)]) if checkpoint is not None else NOTHING


async def batch_archived(event: BatchCompleted, deps: Deps) -> None:
    """Wait, for at most `deps.batch_wait_seconds`, until the batch's completed records are in the log.

    The completed records of a batch reach the archive before the batch's completion is published,
    but on another queue.
    """
    deadline = time.monotonic() + deps.batch_wait_seconds
    while await deps.repo.count_batch(event.batch_id) < event.records_completed:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            logger.warning("batch %s: checkpoint issued before all its records were archived", event.batch_id)
            return
        deps.log.appended.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(deps.log.appended.wait(), timeout=min(remaining, 1.0))


@dataclass(frozen=True)
class Covering:
    """The checkpoint an answer is given against, and its announcement when it was signed for this answer."""

    checkpoint: Checkpoint
    announce: list[Message]


async def checkpoint_covering(entries: int, deps: Deps) -> Covering:
    """The latest checkpoint, signed first if it does not cover `entries` entries yet."""
    log = await loaded_log(deps)
    if log.last_checkpoint is not None and log.last_checkpoint.tree_size >= entries:
        return Covering(log.last_checkpoint, [])
    issued = await new_checkpoint(deps, even_if_empty=True)
    if issued is not None:
        return Covering(issued, [checkpoint_event(issued)])
    # The tree has not grown since the last checkpoint, which was announced when it was signed.
    assert log.last_checkpoint is not None
    return Covering(log.last_checkpoint, [])


# --- timestamps --------------------------------------------------------------------------------
#
# Every checkpoint is timestamped by an RFC 3161 TSA (HOCBA_TSA_URL), so the time it was signed rests on more than the
# archive's own clock and key. A TSA that is down stops nothing: the checkpoint is kept owed its timestamp, and
# `stamp_owed` (a loop) asks again until it has one. `renew_timestamps` chains a new token over the old before the
# old one's TSA certificate expires or its digest weakens (shared.crypto.timestamps; RFC 4998 as the model).


@dataclass(frozen=True)
class Stamping:
    """The TSA the archive timestamps its checkpoints with, and how a token it sends is checked before it is kept."""

    #: A token over the bytes under that digest algorithm (`request_timestamp` towards HOCBA_TSA_URL);
    #: `TsaUnavailable` when the TSA does not give one.
    request: Callable[[bytes, str], Awaitable[bytes]]
    #: What a token over the bytes states, its TSA chaining to the anchors; `TimestampInvalid` when it does not.
    verify: Callable[[bytes, bytes], Awaitable[Timestamp]]
    #: Checkpoints stamped at most per step of the loop; a step that finds this many runs again at once.
    per_step: int = 100


async def stamp_owed(deps: Deps) -> Outcome:
    """Timestamp the checkpoints that wait for their first timestamp, oldest first, until the TSA fails.

    Run every few seconds; counts what waits and for how long (an alert fires when it is too long).
    """
    if deps.stamping is None:
        return NOTHING
    owed = await deps.repo.unstamped_checkpoints(deps.clock(), deps.stamping.per_step)
    deps.metrics.unstamped(len(owed), owed[0].issued_at if owed else None)
    stamped = 0
    for checkpoint in owed:
        if not await stamp_checkpoint(deps, deps.stamping, checkpoint):
            break
        stamped += 1
    deps.metrics.unstamped(len(owed) - stamped, owed[stamped].issued_at if stamped < len(owed) else None)
    return Outcome(again=stamped == deps.stamping.per_step)


async def stamp_checkpoint(deps: Deps, stamping: Stamping, checkpoint: Checkpoint) -> bool:
    """The checkpoint's first timestamp, kept; False when the TSA did not give a good one (it is asked again later)."""
    subject = timestamps.checkpoint_bytes(checkpoint.model_dump(mode="json"))
    try:
        row = await new_stamp(stamping, checkpoint.tree_size, 0, subject, timestamps.DEFAULT_HASH)
    except timestamps.TimestampError as exc:
        deps.log.tsa_failing = True
        deps.metrics.timestamps.labels("tsa-unavailable").inc()
        logger.warning("checkpoint %d waits for its timestamp: %s", checkpoint.tree_size, exc)
        return False
    deps.log.tsa_failing = False
    if await deps.repo.add_timestamp(row):
        deps.metrics.timestamps.labels("stamped").inc()
    return True


async def new_stamp(stamping: Stamping, tree_size: int, index: int, covered: bytes, algorithm: str) -> StampRow:
    """A token over `covered` from the TSA, checked (a token the archive cannot verify is never kept)."""
    token = await stamping.request(covered, algorithm)
    try:
        stated = await stamping.verify(token, covered)
    except timestamps.TimestampInvalid as exc:
        raise timestamps.TsaUnavailable(f"the TSA's token does not verify: {exc}") from None
    return StampRow(
        tree_size=tree_size,
        index=index,
        token=token,
        gen_time=stated.gen_time,
        tsa=stated.tsa,
        hash_algorithm=stated.hash_algorithm,
        tsa_not_after=stated.certificate_not_after,
    )


async def renew_timestamps(command: RenewTimestamps, deps: Deps) -> Outcome:
    """An operator's renewal of the checkpoints' timestamps, `command.limit` checkpoints a request (operators only).

    Each checkpoint whose latest token falls due (`domain.renewal_reason`) gets a token over the checkpoint and that
    token; one with none gets its first. Refused, renewing nothing, when the TSA's own certificate would not outlive
    `until`: a renewal by it would be due again at once.
    """
    domain.authorise_operator(require_actor(command, deps.issuer_keys), "renew the checkpoints' timestamps")
    if deps.stamping is None:
        raise Unavailable("the archive has no TSA configured (HOCBA_TSA_URL)", reason="no-tsa")
    batch = await deps.repo.checkpoints_after(command.after, command.limit)
    progress = RenewalProgress(examined=len(batch))
    for checkpoint in batch:
        chain = await deps.repo.timestamps(checkpoint.tree_size)
        latest = chain[-1] if chain else None
        reason = domain.renewal_reason(
            latest.tsa_not_after if latest else None,
            latest.hash_algorithm if latest else None,
            command.until,
            command.algorithm,
        )
        if reason is None:
            continue
        subject = timestamps.checkpoint_bytes(checkpoint.model_dump(mode="json"))
        covered = timestamps.renewal_data(subject, latest.token, command.algorithm) if latest else subject
        try:
            row = await new_stamp(deps.stamping, checkpoint.tree_size, len(chain), covered, command.algorithm)
        except timestamps.TsaUnavailable as exc:
            raise Unavailable(
                f"checkpoint {checkpoint.tree_size} is not renewed: {exc}", reason="tsa-unavailable"
            ) from None
        if row.tsa_not_after <= command.until:
            raise InvalidMessage(
                f"the TSA's certificate expires {row.tsa_not_after:%Y-%m-%d}, before {command.until:%Y-%m-%d}: "
                "renew the TSA's certificate (or use another TSA) first; nothing was renewed with it"
            )
        await deps.repo.add_timestamp(row)
        deps.metrics.timestamps.labels("renewed" if latest else "stamped").inc()
        progress = progress.model_copy(
            update={
                "renewed": progress.renewed + (latest is not None),
                "stamped": progress.stamped + (latest is None),
                "tsa_not_after": row.tsa_not_after,
            }
        )
    last = batch[-1].tree_size if batch else command.after
    remaining = await deps.repo.count_checkpoints_after(last)
    total = await deps.repo.count_checkpoints_after(0)
    return Outcome(
        reply=progress.model_copy(
            update={"total": total, "remaining": remaining, "next_after": last if remaining else None}
        )
    )


# --- announcing -------------------------------------------------------------------------------
#
# Versions are appended to the log, their rows written owed an announcement (in the same insert), then announced; only
# once the announcement is published are the rows kept announced. A checkpoint is stored owed its announcement the
# same way. A crash, or a broker gone, anywhere between leaves them found by `reannounce`, which announces them again
# under a new seal. An announcement made twice changes nothing for those who follow them: sync takes each version
# and checkpoint into its outbox once, grades notes each status once.


async def announced(deps: Deps, publish: Publish, outcome: Outcome) -> Outcome:
    """Publish what `outcome` announces, then keep its versions and checkpoints announced; what else it holds (a
    reply, a refusal) is left to the edge."""

    async def kept(messages: Sequence[Message]) -> None:
        versions, sizes = announced_keys(messages)
        if versions:
            await deps.repo.announced(versions)
        if sizes:
            await deps.repo.checkpoints_announced(sizes)

    return await published_then_kept(outcome, publish, kept)


async def announcing(step: Callable[[Deps], Awaitable[Outcome]], deps: Deps, publish: Publish) -> Outcome:
    """A background step whose announcements are published, then kept announced (`announced`)."""
    return await announced(deps, publish, await step(deps))


async def reannounce(deps: Deps) -> Outcome:
    """Versions archived and checkpoints stored more than `announce_grace_seconds` ago whose announcement is still owed
    (a crash, or a broker gone, came between): announced again, the versions under a new seal, up to
    `announced_per_step` of each a step.

    Run at start and every `announce_interval_seconds`; a step that found as many as it may runs again at once.
    """
    before = deps.clock() - timedelta(seconds=deps.announce_grace_seconds)
    entries = await deps.repo.unannounced(before, deps.announced_per_step)
    checkpoints = await deps.repo.unannounced_checkpoints(before, deps.announced_per_step)
    if not entries and not checkpoints:
        return NOTHING
    logger.warning(
        "announcing again %d archived versions and %d checkpoints stored but never announced (a crash or a lost broker "
        "came between)", len(entries), len(checkpoints),
    )
    announce: list[Message] = [reannouncement(entries, deps.keys.signer())] if entries else []
    announce += [checkpoint_event(c) for c in checkpoints]
    again = deps.announced_per_step in (len(entries), len(checkpoints))
    return Outcome(publish=announce, again=again)


def reannouncement(entries: list[Entry], signer: X509Signer) -> RecordsArchived:
    """Archived versions announced again from their log entries, under one new seal of the archive; the id derives
    from the versions, so a repeat of the same step matches."""
    records = [
        ArchivedRecord(
            record_id=e.record_id,
            version=e.version,
            school_code=e.school_code,
            school_year=e.school_year,
            student_ref=e.student_ref,
            seq=e.seq,
            entry_hash=e.leaf_hash,
            digest=sha256_hex(e.content),
            content=e.content,
            supersedes=e.supersedes,
        )
        for e in entries
    ]
    keys = [f"{e.record_id}:{e.version}" for e in entries]
    return RecordsArchived(
        message_id=derived_id("archive.reannounce", *keys), records=records, seal=seal(signer, archived_claims(records))
    )


def announced_keys(messages: Iterable[Message]) -> tuple[list[VersionKey], list[int]]:
    """The versions and the checkpoints' tree sizes whose announcements `messages` are."""
    versions: list[VersionKey] = []
    sizes: list[int] = []
    for message in messages:
        if isinstance(message, RecordsArchived):
            versions += [(r.record_id, r.version) for r in message.records]
        elif isinstance(message, CheckpointIssued):
            sizes.append(message.checkpoint.tree_size)
    return versions, sizes


# --- proofs, exports, audits -----------------------------------------------------------------


async def archived_entry(record_id: str, version: int | None, deps: Deps) -> Entry:
    """The log entry of a version (the latest when `version` is None); NotFound when it is not archived."""
    entry = await deps.repo.entry(record_id, version)
    if entry is None:
        raise NotFound(f"{record_id} v{version or 'latest'} is not archived")
    return entry


async def prove_inclusion(request: ProveInclusion, deps: Deps) -> Outcome:
    """The inclusion proof of a version in the latest checkpoint's tree (signed first if needed) or a given size.

    Refused unless an operator or the staff of the record's school asks (Forbidden), when the version is not
    archived (NotFound), or not in a tree of the size asked (InvalidMessage).
    """
    actor = require_actor(request, deps.issuer_keys)
    entry = await archived_entry(request.record_id, request.version, deps)
    domain.authorise_inclusion_proof(actor, entry.school_code)
    covering = await checkpoint_covering(entry.seq + 1, deps)
    checkpoint, tree = covering.checkpoint, deps.log.tree
    size = request.tree_size or checkpoint.tree_size
    if not entry.seq < size <= tree.size:
        no_proof = InvalidMessage(f"entry {entry.seq} is not in a tree of {size} entries (the log has {tree.size})")
        return Outcome(publish=covering.announce, refused=no_proof)
    proof = InclusionProof(
        record_id=entry.record_id,
        version=entry.version,
        leaf_index=entry.seq,
        tree_size=size,
        leaf_hash=entry.leaf_hash,
        proof=[p.hex() for p in tree.inclusion_proof(entry.seq, size)],
        checkpoint=checkpoint if size == checkpoint.tree_size else None,
    )
    return Outcome(publish=covering.announce, reply=ProofReply(inclusion=proof))


async def prove_consistency(request: ProveConsistency, deps: Deps) -> Outcome:
    """The consistency proof from tree size `first` to `second` (the latest checkpoint's by default).

    Public, as on the archive's HTTP routes: hashes only, asked without a token (sync asks for the proofs it sends the
    ministry with each checkpoint, and holds no key to sign a token). Refused (InvalidMessage) when the log has no
    such sizes.
    """
    log = await loaded_log(deps)
    checkpoint = log.last_checkpoint
    second = request.second or (checkpoint.tree_size if checkpoint else log.tree.size)
    proof = await consistency_between(request.first, second, deps)
    return Outcome(reply=ProofReply(consistency=proof))


async def consistency_between(first: int, second: int, deps: Deps) -> ConsistencyProof:
    """The RFC 9162 proof that the log's first `second` entries extend its first `first`, with both roots; the log is
    read again first when another process has grown it past what this one knows. InvalidMessage when it has not."""
    log = await grown_to(second, deps)
    tree = log.tree
    if not 0 < first <= second <= tree.size:
        raise InvalidMessage(f"no consistency proof from {first} to {second} (the log has {tree.size})")
    checkpoint = log.last_checkpoint
    return ConsistencyProof(
        first=first,
        second=second,
        first_root=tree.root(first).hex(),
        second_root=tree.root(second).hex(),
        proof=[p.hex() for p in tree.consistency_proof(first, second)],
        checkpoint=checkpoint if checkpoint and checkpoint.tree_size == second else None,
    )


async def grown_to(size: int, deps: Deps) -> LogState:
    """The log state, read again from storage when it knows fewer than `size` entries (another appender's)."""
    log = await loaded_log(deps)
    if log.tree.size < size:
        async with log.lock:
            if log.tree.size < size:
                await read_log(deps)
    return deps.log


async def export_record(request: ExportRecord, deps: Deps) -> Outcome:
    """The verification bundle of a version (and, for a certified copy, the signed QR payload), in the access log.

    Refused unless an operator, or the principal or records administrator of the record's school, asks
    (Forbidden); refused (NotFound) when the version is not archived. The read is logged as an export, or a
    print for a certified copy, with the purpose the reader gave.
    """
    actor = require_actor(request, deps.issuer_keys)
    entry = await archived_entry(request.record_id, request.version, deps)
    domain.authorise_export(actor, entry.school_code)
    covering = await checkpoint_covering(entry.seq + 1, deps)
    bundle = await verification_bundle(entry, covering.checkpoint, deps)
    qr = sign_copy(deps.keys.signer(), bundle, deps.clock()) if request.certified_copy else None
    action: Action = "print" if request.certified_copy else "export"
    read = deps.access.entries(actor, action, [entry.student_ref], purpose=request.purpose, record_id=entry.record_id)
    await deps.access_log.add(read)
    deps.metrics.exports.inc()
    return Outcome(publish=covering.announce, reply=ProofReply(bundle=bundle, qr=qr))


async def verification_bundle(entry: Entry, checkpoint: Checkpoint, deps: Deps) -> dict[str, Any]:
    """Everything needed to verify the version offline: record, signatures, proof, checkpoint, status, CRL."""
    versions = sorted(v.version for v in (await deps.repo.versions([entry.record_id]))[entry.record_id])
    status = {
        "versions": versions,
        "superseded_by": next((v for v in versions if v > entry.version), None),
        "supersedes": entry.supersedes,
    }
    proof = deps.log.tree.inclusion_proof(entry.seq, checkpoint.tree_size)
    stamps = [row.token for row in await deps.repo.timestamps(checkpoint.tree_size)]
    bundle = make_bundle(entry, bytes.fromhex(entry.leaf_hash), proof, checkpoint, status, deps.keys.crl_pem())
    return with_timestamps(bundle, stamps)


async def audit_log(request: AuditArchive, deps: Deps) -> Outcome:
    """Recompute the tree from the stored entries and hold it against every stored, signed checkpoint (operators)."""
    domain.authorise_operator(require_actor(request, deps.issuer_keys), "audit the archive")
    entries = await deps.repo.entries()
    checkpoints = await deps.repo.checkpoints()
    trust = deps.keys.trust() if deps.keys.trust is not None else None
    return Outcome(reply=domain.audit(entries, checkpoints, lambda c: check_checkpoint(c, trust).failed))


async def list_accesses(request: ListArchiveAccesses, deps: Deps) -> Outcome:
    """Who exported or printed a student's records, oldest first: for an operator, or the principal or records
    administrator of a school whose records of the student the archive holds."""
    actor = require_actor(request, deps.issuer_keys)
    authorise_access_list(actor, await deps.repo.schools_of(request.student_ref))
    return Outcome(reply=AccessLog(entries=await deps.access_log.of(request.student_ref, request.limit)))


# --- the data key ----------------------------------------------------------------------------


async def rotate_key(command: RotateArchiveKey, deps: Deps) -> Outcome:
    """Add a data key, make it current and re-encrypt every log entry's document under it, step by step
    (`KeyRotation`). The bytes each entry holds, which its leaf commits to, do not change."""
    return await deps.rotation.rotate(command)
