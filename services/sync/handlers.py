"""sync's use cases: take archived records and checkpoints into the outbox, deliver what is due, answer operators.

Only what the archive vouches for enters the outbox: an archived record version whose announcement's
archive seal verifies against the PKI and whose document matches its digest, a checkpoint whose archive signature
verifies. Anything else is refused and never reaches the ministry. Operators' requests carry an
operator's actor token for sync; the archive's events carry none.

Each handler takes the message and `Deps` and returns an `Outcome` (shared.outcome): the deliveries
to announce, or the answer to an operator's request. The relay's step, `deliver_due`, has the same
shape without a message. A request that is refused, or that cannot be answered now, raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import uuid4

from services.sync import domain
from services.sync.domain import (
    CHECKPOINT,
    DIFFERENCES,
    KINDS,
    PARKED,
    PENDING,
    RECORD,
    SENDING,
    Acknowledged,
    Answer,
    Attempt,
    Circuit,
    DeliveryPolicy,
    Failure,
    Held,
    OutboxEntry,
    Receipt,
    Reconciliation,
    after_failure,
    checkpoint_key,
    checkpoint_problems,
    consistency_links,
    new_checkpoint_entry,
    new_entry,
    receipt_from,
    record_key,
    refusal_reason,
    vouched_for,
    with_consistency,
)
from services.sync.metrics import SyncMetrics
from services.sync.repository import OutboxRepository
from shared.at_rest import KeyRotation
from shared.auth import IssuerKeys, require_actor
from shared.contracts.archive import CheckpointIssued, RecordsArchived
from shared.contracts.base import Message, derived_id, utcnow
from shared.contracts.keys import RotateSyncKey
from shared.contracts.sync import (
    CheckpointDelivered,
    Delivery,
    Difference,
    GetSyncStatus,
    LastCheckpoint,
    OutboxCount,
    ParkedEntry,
    Reconcile,
    ReconcileReport,
    RecordsDelivered,
    RetryOutcome,
    RetryParked,
    SyncStatus,
)
from shared.crypto.certs import TrustStore
from shared.errors import HocbaError, InvalidMessage, Refused, Unavailable
from shared.outcome import Outcome, Publish, RejectedPart, published_then_kept

log = logging.getLogger("hocba.sync")

Clock = Callable[[], datetime]


class MinistryApi(Protocol):
    """The ministry as the use cases see it: entries delivered (in batches where it takes them), and its
    listings of acknowledgements."""

    async def deliver(self, items: list[tuple[str, str, dict[str, Any]]]) -> list[Attempt]:
        """Send each (kind, idempotency key, payload); one answer per item, in order. HTTP trouble comes back
        as Attempts, not an exception."""

    def acknowledgements(self, kind: str) -> AsyncIterator[Acknowledged]:
        """Every acknowledgement the ministry lists for `kind`, in key order; `Unavailable` when it cannot."""


class ArchiveLog(Protocol):
    """The archive's log as sync asks it: the consistency proofs that go with checkpoints to the ministry."""

    async def consistency(self, first: int, second: int) -> list[str]:
        """The RFC 9162 consistency proof (hex hashes) from tree size `first` to `second`. `Refused` when the archive
        gives none (its log has no such sizes); any other error when it cannot be asked now."""


@dataclass(frozen=True)
class Deps:
    """What sync's handlers need; `app.py` builds it once."""

    repo: OutboxRepository
    ministry: MinistryApi
    metrics: SyncMetrics
    #: Public keys of the actor-token issuer, with sync as the audience (None: every operator's request is refused).
    issuer_keys: IssuerKeys | None
    #: The PKI's trust anchor and CRL: the archive's seals and checkpoint signatures are checked against it.
    trust: Callable[[], TrustStore]
    #: Due entries one step of the relay delivers at most; a step that finds this many runs again at once.
    deliveries_per_step: int
    #: The key ring the ministry payloads are sealed under, and its rotation.
    rotation: KeyRotation
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    clock: Clock = utcnow
    #: A number in [0, 1) that spreads the retries of many entries (see `domain.backoff_seconds`).
    jitter: Callable[[], float] = random.random
    #: Where the consistency proofs sent with checkpoints come from (None: checkpoints go without one).
    archive: ArchiveLog | None = None
    #: How the ministry has been answering this sync's requests: the back-off and the circuit breaker follow it.
    endpoint: Endpoint = field(default_factory=lambda: Endpoint())


@dataclass
class Endpoint:
    """The ministry's endpoint as this sync has found it lately (`domain.Circuit`), kept between rounds."""

    circuit: Circuit = field(default_factory=Circuit)

    def observe(self, attempts: list[Attempt], now: datetime, policy: DeliveryPolicy, metrics: SyncMetrics) -> bool:
        """Take in a round's answers from the ministry; True when they closed an open circuit (the ministry is back)."""
        before = self.circuit
        self.circuit = before.after_round(attempts, now, policy)
        metrics.circuit_open.set(1 if self.circuit.is_open else 0)
        if self.circuit.is_open and not before.is_open:
            log.warning(
                "every request to the ministry failed %d rounds in a row; sending only a probe every %.0fs until it answers",
                self.circuit.failed_rounds, policy.probe_seconds,
            )
        return before.is_open and not self.circuit.is_open


@dataclass(frozen=True)
class Round:
    """One round of delivery: how many entries it claimed, and the receipts it was first to record."""

    claimed: int
    receipts: list[Receipt]
    #: The ministry answered again after the circuit was open: every waiting entry is due now.
    resumed: bool = False


# --- taking entries in, and delivering them ---------------------------------------------------


async def accept_archived(event: RecordsArchived, deps: Deps) -> Outcome:
    """Put each archived record version the archive vouches for in the outbox once, then deliver this chunk's due entries.

    Versions without a good archive seal (the seal covers the whole event), or whose document is not the
    one its digest names, are refused (dead-lettered as an invalid part, by record id and why) and never
    delivered; the rest of the event goes on. A redelivered event finds its entries already there (delivered, or held
    by another sender) and delivers, and announces, nothing new.
    """
    now = deps.clock()
    vouched = vouched_for(event, deps.trust(), now)
    rejected: list[RejectedPart] = []
    if vouched.refused:
        explanation = f"not vouched for by the archive: {vouched.explanation()}"
        log.warning("refused %d of %d archived record versions, %s", len(vouched.refused), len(event.records), explanation)
        rejected.append(RejectedPart("records", [r for r, _ in vouched.refused], "invalid", explanation))
    entries = {e.key: e for e in (new_entry(r, now) for r in vouched.records)}
    if not entries:
        return Outcome(rejected=rejected)
    await deps.repo.add_new(list(entries.values()))
    done = await deliver(deps, list(entries), limit=len(entries))
    return Outcome(publish=delivered_events(derived_id(event.message_id, "delivered"), done.receipts), rejected=rejected)


async def accept_checkpoint(event: CheckpointIssued, deps: Deps) -> Outcome:
    """Put an archive checkpoint in the outbox once (one entry per origin and tree size), then deliver it.

    Refused (InvalidMessage), and never delivered, unless the archive's certificate from the PKI signed it.
    """
    checkpoint = event.checkpoint
    problems = checkpoint_problems(checkpoint, deps.trust())
    if problems:
        raise InvalidMessage(
            f"checkpoint {checkpoint.origin} of size {checkpoint.tree_size} is not vouched for by the archive: "
            + "; ".join(problems)
        )
    entry = new_checkpoint_entry(checkpoint, deps.clock())
    await deps.repo.add_new([entry])
    done = await deliver(deps, [entry.key], limit=1)
    return Outcome(publish=delivered_events(derived_id(event.message_id, "delivered"), done.receipts))


async def deliver_due(deps: Deps) -> Outcome:
    """The relay's step: deliver up to `deliveries_per_step` entries whose time has come (or whose lease ran out).

    A step that claimed as many as it may says more may be waiting (`again`), and runs again at once.
    """
    done = await deliver(deps, None, limit=deps.deliveries_per_step)
    keys = sorted(r.key for r in done.receipts)
    return Outcome(
        publish=delivered_events(derived_id("sync.relay", *keys), done.receipts),
        again=done.claimed >= deps.deliveries_per_step or done.resumed,
    )


async def deliver(deps: Deps, keys: list[str] | None, limit: int) -> Round:
    """Claim entries, send them concurrently (the ministry bounds how many at once), record each answer.

    While the circuit is open a round sends one entry as a probe, when one is due, else nothing. A round cancelled or
    failing after it claimed hands its entries back at once (`release`) rather than leaving them to the lease.
    """
    now = deps.clock()
    circuit = deps.endpoint.circuit
    allowed = circuit.allowance(limit, now)
    if not allowed:
        await refresh_gauges(deps)
        return Round(0, [])
    deps.endpoint.circuit = circuit.probing(now, deps.policy)
    lease = Lease(uuid4().hex, [now + timedelta(seconds=deps.policy.lease_seconds)])
    try:
        chosen = keys if keys is None else keys[:allowed]
        claimed = await deps.repo.claim(chosen, now, lease.until, lease.claim, allowed)
        if claimed:
            async with renewed(deps, lease):
                receipts, failures, resumed = await send_claimed(deps, claimed)
                newly = set(await deps.repo.record_answers(lease.claim, receipts, failures))
    except BaseException:
        await release(deps, lease)
        raise
    if not claimed:
        await refresh_gauges(deps)
        return Round(0, [])
    # A receipt for an entry another sender took meanwhile is that sender's to record and announce.
    receipts = [r for r in receipts if r.key in newly]
    count_answers(deps.metrics, claimed, receipts, failures)
    if resumed:
        due = await deps.repo.due_now(deps.clock())
        log.info("the ministry answers again; %d waiting entries are due now", due)
    await refresh_gauges(deps)
    return Round(len(claimed), receipts, resumed)


@dataclass
class Lease:
    """A round's claim on the entries it took, and the ends of its lease its entries may hold: one, and while a
    renewal is being written (or after one failed part way) also the ends it is moving them from."""

    claim: str
    untils: list[datetime]

    @property
    def until(self) -> datetime:
        return self.untils[-1]


@contextlib.asynccontextmanager
async def renewed(deps: Deps, lease: Lease) -> AsyncIterator[None]:
    """The round's lease renewed every `renew_seconds` while the round runs, so a long round keeps its entries and a
    killed sender's entries are due again within one short lease."""

    async def renewing() -> None:
        while True:
            await asyncio.sleep(deps.policy.renew_seconds)
            until = deps.clock() + timedelta(seconds=deps.policy.lease_seconds)
            held, lease.untils = lease.untils, [*lease.untils, until]
            try:
                for before in held:
                    await deps.repo.renew(lease.claim, before, until)
            except Exception as exc:  # noqa: BLE001 - the next renewal, or the lease, takes over
                log.warning("a delivery round could not renew its lease: %s: %s", type(exc).__name__, exc)
            else:
                lease.untils = [until]

    task = asyncio.create_task(renewing())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def release(deps: Deps, lease: Lease) -> None:
    """Hand back what an interrupted round still holds, shielded from a further cancellation; the lease remains the
    fallback when the outbox cannot be reached either."""

    async def released_all() -> list[str]:
        # A renewal cut short may have reached some entries: each end the lease may hold is looked up.
        released: list[str] = []
        for until in lease.untils:
            released += await deps.repo.release(lease.claim, until, deps.clock())
        return released

    try:
        released = await asyncio.shield(released_all())
    except Exception as exc:  # noqa: BLE001 - the round's own error is the one to raise
        log.warning("a delivery round was interrupted and its entries wait for their lease to end: %s: %s", type(exc).__name__, exc)
    else:
        if released:
            log.warning("a delivery round was interrupted; its %d entries are due again now", len(released))


async def send_claimed(deps: Deps, claimed: list[OutboxEntry]) -> tuple[list[Receipt], list[Failure], bool]:
    """Send the claimed entries to the ministry together; each answer is a receipt, or a failure to retry or park.

    Also says whether the answers closed an open circuit. A failure's back-off follows the endpoint as the answers
    left it (`domain.after_failure`).
    """
    attempts, resumed = await sent(deps, claimed)
    done = deps.clock()
    circuit = deps.endpoint.circuit
    receipts: list[Receipt] = []
    failures: list[Failure] = []
    for entry, attempt in zip(claimed, attempts, strict=True):
        if attempt.seconds > 0 and attempt.counts_request:
            deps.metrics.delivery_seconds.observe(attempt.seconds)
        if entry.kind == CHECKPOINT and attempt.answer is Answer.PARK:
            deps.metrics.checkpoints_refused.labels(refusal_reason(attempt.reason)).inc()
        if attempt.answer is Answer.DELIVERED and attempt.receipt is not None:
            receipts.append(receipt_from(entry, attempt.receipt, done))
        else:
            failures.append(after_failure(entry, attempt, done, deps.jitter(), deps.policy, circuit))
    return receipts, failures, resumed


async def sent(deps: Deps, claimed: list[OutboxEntry]) -> tuple[list[Attempt], bool]:
    """The ministry's answer for each claimed entry (or why it was not sent); an unexpected error while sending is a
    failed attempt of every entry sent, so none is left claimed. The answers of the requests actually sent go to
    the circuit (`Endpoint.observe`); True when they closed it."""
    payloads, unsent = await outgoing(deps, claimed)
    sending = [e for e in claimed if e.key not in unsent]
    try:
        attempts = await deps.ministry.deliver([(e.kind, e.key, payloads[e.key]) for e in sending]) if sending else []
    except (Exception, asyncio.CancelledError) as exc:
        if cancelled_here():
            raise
        attempts = [Attempt(Answer.RETRY, 0.0, error=f"{type(exc).__name__}: {exc}")] * len(sending)
    if len(attempts) != len(sending):
        attempts = [Attempt(Answer.RETRY, 0.0, error="the ministry client answered another number of entries")] * len(sending)
    resumed = deps.endpoint.observe(attempts, deps.clock(), deps.policy, deps.metrics)
    answered = {e.key: a for e, a in zip(sending, attempts, strict=True)}
    return [unsent.get(e.key) or answered[e.key] for e in claimed], resumed


def cancelled_here() -> bool:
    """Whether this task itself is being cancelled (stopping, or its message's connection lost), rather than only a
    request it awaited (an answer future cancelled when the broker connection dropped): only the first ends a round."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def outgoing(deps: Deps, claimed: list[OutboxEntry]) -> tuple[dict[str, dict[str, Any]], dict[str, Attempt]]:
    """What to send for each claimed entry: its payload, and for a checkpoint the archive's consistency proof that
    links it with the latest checkpoint the ministry holds (`consistency_links`). A checkpoint whose proof the archive
    refuses is not sent and parks (the log no longer has those sizes); one whose proof cannot be had now waits."""
    payloads = {e.key: e.payload for e in claimed}
    checkpoints = [e for e in claimed if e.kind == CHECKPOINT]
    if not checkpoints or deps.archive is None:
        return payloads, {}
    held = {origin: await deps.repo.delivered_checkpoint(origin) for origin in sorted({e.subject for e in checkpoints})}
    unsent: dict[str, Attempt] = {}
    away: str | None = None
    for key, (first, second) in consistency_links(checkpoints, held).items():
        if away is not None:
            # The archive did not answer this round: the other checkpoints wait too, without holding up the records.
            unsent[key] = Attempt(Answer.RETRY, 0.0, error=f"no consistency proof from tree size {first} to {second} now: {away}")
            continue
        try:
            proof = await deps.archive.consistency(first, second)
        except Refused as exc:
            error = f"the archive gives no consistency proof from tree size {first} to {second}: {exc}"
            unsent[key] = Attempt(Answer.PARK, 0.0, error=error, reason="no-proof")
        except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - the archive unreachable: the checkpoint waits
            if cancelled_here():
                raise
            away = f"{type(exc).__name__}: {exc}"
            unsent[key] = Attempt(Answer.RETRY, 0.0, error=f"no consistency proof from tree size {first} to {second} now: {away}")
        else:
            payloads[key] = with_consistency(payloads[key], first, second, proof)
    return payloads, unsent


def count_answers(
    metrics: SyncMetrics, claimed: list[OutboxEntry], receipts: list[Receipt], failures: list[Failure]
) -> None:
    """Count the answers by kind and outcome, and log what failed."""
    kinds = {e.key: e.kind for e in claimed}
    for receipt in receipts:
        metrics.deliveries.labels(receipt.kind, "delivered").inc()
        metrics.lag.labels(receipt.kind).observe(max(0.0, (receipt.delivered_at - receipt.created_at).total_seconds()))
        if receipt.kind == CHECKPOINT:
            metrics.checkpoint_delivered(receipt.number, receipt.delivered_at)
    parked = [f for f in failures if f.status == PARKED]
    for failure in failures:
        metrics.deliveries.labels(kinds[failure.key], "parked" if failure.status == PARKED else "failed").inc()
    for failure in parked:
        log.error("parked %s after %d attempts: %s", failure.key, failure.attempts, failure.last_error)
    if len(failures) > len(parked):
        first = next(f for f in failures if f.status != PARKED)
        log.warning(
            "%d of %d deliveries failed and wait for another attempt; first: %s: %s",
            len(failures) - len(parked), len(claimed), first.key, first.last_error,
        )


async def refresh_gauges(deps: Deps) -> None:
    """Set the outbox gauges from the outbox's running counts and its oldest waiting entry (never a scan)."""
    backlog = await deps.repo.backlog()
    deps.metrics.outbox(backlog.waiting, backlog.parked, backlog.oldest_waiting)


async def restore_gauges(deps: Deps) -> None:
    """At start: the outbox counted afresh (its running counts restored), the last checkpoint the ministry acknowledged included."""
    backlog = await deps.repo.recount()
    deps.metrics.outbox(backlog.waiting, backlog.parked, backlog.oldest_waiting)
    last = (await deps.repo.summary(parked_limit=0)).last_checkpoint
    if last is not None:
        deps.metrics.checkpoint_delivered(last.number, last.delivered_at)


def delivered_events(message_id: str, receipts: list[Receipt]) -> list[Message]:
    """What to announce: one RecordsDelivered for the records, one CheckpointDelivered per checkpoint."""
    events: list[Message] = []
    records = [r for r in receipts if r.kind == RECORD]
    if records:
        events.append(
            RecordsDelivered(
                message_id=message_id,
                deliveries=[
                    Delivery(record_id=r.subject, version=r.number, receipt_id=r.receipt_id, delivered_at=r.delivered_at)
                    for r in records
                ],
            )
        )
    for r in receipts:
        if r.kind == CHECKPOINT:
            events.append(
                CheckpointDelivered(
                    message_id=derived_id(message_id, r.key),
                    origin=r.subject,
                    tree_size=r.number,
                    receipt_id=r.receipt_id,
                    delivered_at=r.delivered_at,
                )
            )
    return events


# --- announcing deliveries ----------------------------------------------------------------------
#
# A delivery is recorded (delivered state, receipt copy and "not announced yet" in one write of its entry), its
# receipt document kept, then announced; only once the announcement is published is the entry marked announced. A
# crash anywhere between leaves the entry found by `reannounce`, which keeps its receipt document again from the
# entry's copy and announces it again. Announcements are keyed by record and version (and checkpoint), so one told
# twice changes nothing for those who follow them.


async def announced(deps: Deps, publish: Publish, outcome: Outcome) -> Outcome:
    """Publish the deliveries `outcome` announces, then keep them announced; what else it holds is left to the edge."""

    async def kept(messages: Sequence[Message]) -> None:
        await deps.repo.announced(announced_keys(messages))

    return await published_then_kept(outcome, publish, kept)


async def announcing(step: Callable[[Deps], Awaitable[Outcome]], deps: Deps, publish: Publish) -> Outcome:
    """A background step whose deliveries are announced, then kept announced (`announced`)."""
    return await announced(deps, publish, await step(deps))


async def reannounce(deps: Deps) -> Outcome:
    """Deliveries recorded more than `announce_grace_seconds` ago and still not announced (a crash came between):
    their receipt documents kept again from their entries, and announced again, up to `deliveries_per_step` a step.

    Run at start and every `announce_interval_seconds`; a step that found as many as it may runs again at once.
    """
    before = deps.clock() - timedelta(seconds=deps.policy.announce_grace_seconds)
    receipts = await deps.repo.unannounced(before, deps.deliveries_per_step)
    if not receipts:
        return Outcome()
    await deps.repo.keep_receipts(receipts)
    deps.metrics.reannounced.inc(len(receipts))
    log.warning("%d deliveries were recorded but not announced; their receipts kept and announced again", len(receipts))
    keys = sorted(r.key for r in receipts)
    return Outcome(
        publish=delivered_events(derived_id("sync.reannounce", *keys), receipts),
        again=len(receipts) >= deps.deliveries_per_step,
    )


def announced_keys(messages: Iterable[Message]) -> list[str]:
    """The outbox keys whose deliveries `messages` announce."""
    keys: list[str] = []
    for message in messages:
        if isinstance(message, RecordsDelivered):
            keys += [record_key(d.record_id, d.version) for d in message.deliveries]
        elif isinstance(message, CheckpointDelivered):
            keys.append(checkpoint_key(message.origin, message.tree_size))
    return keys


# --- operators -------------------------------------------------------------------------------


async def status(request: GetSyncStatus, deps: Deps) -> Outcome:
    """The outbox at a glance: counts by kind and status, the oldest waiting entry, the parked ones.

    Refused (Forbidden) without a valid actor token of an operator.
    """
    domain.authorise_operator(require_actor(request, deps.issuer_keys))
    summary = await deps.repo.summary(request.parked_limit)
    now = deps.clock()
    last = summary.last_checkpoint
    answer = SyncStatus(
        counts=[OutboxCount(kind=k, status=s, entries=n) for (k, s), n in sorted(summary.counts.items())],
        backlog=sum(n for (_, s), n in summary.counts.items() if s in (PENDING, SENDING)),
        parked=sum(n for (_, s), n in summary.counts.items() if s == PARKED),
        oldest_waiting_seconds=(now - summary.oldest_waiting).total_seconds() if summary.oldest_waiting else None,
        parked_entries=[
            ParkedEntry(key=e.key, kind=e.kind, attempts=e.attempts, last_error=e.last_error, created_at=e.created_at)
            for e in summary.parked
        ],
        last_checkpoint=LastCheckpoint(
            origin=last.subject, tree_size=last.number, receipt_id=last.receipt_id, delivered_at=last.delivered_at
        ) if last else None,
    )
    return Outcome(reply=answer)


async def retry_parked(command: RetryParked, deps: Deps) -> Outcome:
    """An operator hands entries back to the relay: parked ones, or named ones to send again.

    Refused (Forbidden) without a valid actor token of an operator.
    """
    actor = require_actor(command, deps.issuer_keys)
    domain.authorise_operator(actor)
    wanted = sorted(set(command.keys)) or None
    resumed = await deps.repo.resume(wanted, deps.clock())
    deps.metrics.resumed.inc(len(resumed))
    log.info("%s resumed %d outbox entries", actor.subject, len(resumed))
    await refresh_gauges(deps)
    skipped = sorted(set(wanted or []) - set(resumed))
    return Outcome(reply=RetryOutcome(resumed=len(resumed), keys=resumed[:1000], skipped=skipped[:1000]))


async def reconcile(request: Reconcile, deps: Deps) -> Outcome:
    """Compare, key by key, sync's outbox and receipts with every acknowledgement the ministry lists.

    When the comparison cannot be made (the ministry unreachable, say), the operator is told why
    (Unavailable) rather than left waiting. Refused (Forbidden) without a valid actor token of an operator.
    """
    domain.authorise_operator(require_actor(request, deps.issuer_keys))
    try:
        report = await compared(deps, request.limit)
    except HocbaError:
        raise
    except Exception as exc:
        raise Unavailable(f"the outbox could not be compared with the ministry: {type(exc).__name__}: {exc}") from exc
    archive_size = await deps.repo.archive_size()
    report.finish(archive_size)
    for name in DIFFERENCES:
        deps.metrics.differences.labels(name).set(report.counts[name])
    answer = ReconcileReport(
        held=report.held,
        acknowledged=report.acknowledged,
        matched=report.matched,
        waiting=report.waiting,
        archive_size=archive_size,
        differences=[
            Difference(name=name, meaning=meaning, count=report.counts[name], examples=report.examples[name])
            for name, meaning in DIFFERENCES.items()
        ],
    )
    return Outcome(reply=answer)


async def compared(deps: Deps, limit: int) -> Reconciliation:
    """Every key sync holds or the ministry acknowledges, compared; up to `limit` examples per difference."""
    settling_since = deps.clock() - timedelta(seconds=deps.policy.announce_grace_seconds)
    report = Reconciliation(limit=limit, settling_since=settling_since)
    acks = merge_acknowledgements([deps.ministry.acknowledgements(kind) for kind in KINDS])
    async for key, held, acknowledged in pair_by_key(deps.repo.holdings(), acks):
        report.compare(key, held, acknowledged)
    return report


async def merge_acknowledgements(streams: list[AsyncIterator[Acknowledged]]) -> AsyncIterator[Acknowledged]:
    """Several key-ordered listings as one key-ordered listing."""
    heads: dict[int, Acknowledged] = {}
    for n, stream in enumerate(streams):
        if (first := await anext(stream, None)) is not None:
            heads[n] = first
    while heads:
        n, head = min(heads.items(), key=lambda item: item[1].key)
        yield head
        following = await anext(streams[n], None)
        if following is None:
            del heads[n]
        else:
            heads[n] = following


async def pair_by_key(
    held: AsyncIterator[Held], acks: AsyncIterator[Acknowledged]
) -> AsyncIterator[tuple[str, Held | None, list[Acknowledged]]]:
    """Walk two key-ordered streams together: each key once, with sync's entry and the ministry's acknowledgements."""
    h = await anext(held, None)
    a = await anext(acks, None)
    last = ""
    while h is not None or a is not None:
        key = min(x.key for x in (h, a) if x is not None)
        if key < last:
            raise Unavailable(f"a listing is not in key order: {key!r} came after {last!r}")
        last = key
        mine = None
        if h is not None and h.key == key:
            mine, h = h, await anext(held, None)
        theirs: list[Acknowledged] = []
        while a is not None and a.key == key:
            theirs.append(a)
            a = await anext(acks, None)
        yield key, mine, theirs


# --- the data key ----------------------------------------------------------------------------


async def rotate_key(command: RotateSyncKey, deps: Deps) -> Outcome:
    """Add a data key, make it current and re-encrypt every ministry payload under it, step by step (`KeyRotation`)."""
    return await deps.rotation.rotate(command)
