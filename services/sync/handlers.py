"""sync's use cases: take archived record versions into the outbox, deliver what is due."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import uuid4

from services.sync.domain import (
    PARKED,
    Attempt,
    DeliveryPolicy,
    Failure,
    Outcome,
    Receipt,
    after_failure,
    new_entry,
    receipt_from,
)
from services.sync.metrics import SyncMetrics
from services.sync.repository import OutboxRepository
from shared.contracts.archive import RecordsArchived
from shared.contracts.base import derived_id, utcnow
from shared.contracts.sync import Delivery, RecordsDelivered

log = logging.getLogger("hocba.sync")


class Sender(Protocol):
    async def send(self, key: str, payload: dict[str, Any]) -> Attempt:
        """One request to the ministry; HTTP trouble comes back as an Attempt, not an exception."""


@dataclass(frozen=True)
class SyncDeps:
    """What the use cases need, passed in: storage, the ministry, metrics, policy, time and chance."""

    repo: OutboxRepository
    ministry: Sender
    metrics: SyncMetrics
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    clock: Callable[[], datetime] = utcnow
    jitter: Callable[[], float] = random.random


@dataclass
class DeliveryOutcome:
    claimed: int = 0
    receipts: list[Receipt] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    event: RecordsDelivered | None = None


async def accept_archived(event: RecordsArchived, deps: SyncDeps) -> DeliveryOutcome:
    """Put each archived record version in the outbox once, then deliver this chunk's due entries.

    A redelivered event finds its entries already there (delivered, or held by another sender)
    and delivers nothing new.
    """
    now = deps.clock()
    entries = {e.key: e for e in (new_entry(r, now) for r in event.records)}
    await deps.repo.add_new(list(entries.values()))
    outcome = await deliver(deps, list(entries), limit=len(entries))
    outcome.event = delivered_event(derived_id(event.message_id, "delivered"), outcome.receipts)
    return outcome


async def deliver_due(deps: SyncDeps, limit: int) -> DeliveryOutcome:
    """The relay's step: deliver up to `limit` entries whose time has come (or whose lease ran out)."""
    outcome = await deliver(deps, None, limit=limit)
    keys = sorted(r.key for r in outcome.receipts)
    outcome.event = delivered_event(derived_id("sync.relay", *keys), outcome.receipts)
    return outcome


async def deliver(deps: SyncDeps, keys: list[str] | None, limit: int) -> DeliveryOutcome:
    """Claim entries, send them concurrently (the ministry bounds how many at once), record each answer."""
    now = deps.clock()
    lease_until = now + timedelta(seconds=deps.policy.lease_seconds)
    claimed = await deps.repo.claim(keys, now, lease_until, uuid4().hex, limit)
    if not claimed:
        deps.metrics.backlog.set(await deps.repo.backlog())
        return DeliveryOutcome()
    answers = await asyncio.gather(*(deps.ministry.send(e.key, e.payload) for e in claimed), return_exceptions=True)
    attempts = [_as_attempt(a) for a in answers]
    done = deps.clock()
    receipts: list[Receipt] = []
    failures: list[Failure] = []
    for entry, attempt in zip(claimed, attempts, strict=True):
        if attempt.seconds > 0:
            deps.metrics.delivery_seconds.observe(attempt.seconds)
        if attempt.outcome is Outcome.DELIVERED and attempt.receipt is not None:
            receipts.append(receipt_from(entry, attempt.receipt, done))
        else:
            failures.append(after_failure(entry, attempt, done, deps.jitter(), deps.policy))
    await deps.repo.record(receipts, failures)

    parked = [f for f in failures if f.status == PARKED]
    deps.metrics.deliveries.labels("delivered").inc(len(receipts))
    deps.metrics.deliveries.labels("failed").inc(len(failures) - len(parked))
    deps.metrics.deliveries.labels("parked").inc(len(parked))
    for failure in parked:
        log.error("parked %s after %d attempts: %s", failure.key, failure.attempts, failure.last_error)
    if len(failures) > len(parked):
        first = next(f for f in failures if f.status != PARKED)
        log.warning(
            "%d of %d deliveries failed and wait for another attempt; first: %s: %s",
            len(failures) - len(parked), len(claimed), first.key, first.last_error,
        )
    deps.metrics.backlog.set(await deps.repo.backlog())
    return DeliveryOutcome(claimed=len(claimed), receipts=receipts, failures=failures)


def _as_attempt(answer: Attempt | BaseException) -> Attempt:
    """An unexpected error while sending counts as a failed attempt, so the entry is not left claimed."""
    if isinstance(answer, Exception):
        return Attempt(Outcome.RETRY, 0.0, error=f"{type(answer).__name__}: {answer}")
    if isinstance(answer, BaseException):
        raise answer
    return answer


def delivered_event(message_id: str, receipts: list[Receipt]) -> RecordsDelivered | None:
    if not receipts:
        return None
    return RecordsDelivered(
        message_id=message_id,
        deliveries=[
            Delivery(record_id=r.record_id, version=r.version, receipt_id=r.receipt_id, delivered_at=r.delivered_at)
            for r in receipts
        ],
    )
