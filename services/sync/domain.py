"""Delivery rules, pure: outbox entries, how a ministry answer is classified, back-off and parking."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from shared.contracts.archive import ArchivedRecord

PENDING = "pending"
SENDING = "sending"
DELIVERED = "delivered"
PARKED = "parked"


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard sync tries: a bounded number of attempts with exponential back-off and jitter."""

    max_attempts: int = 8
    base_seconds: float = 2.0
    cap_seconds: float = 600.0
    #: How long a claimed entry belongs to one sender; after that (a crash) another may take it.
    lease_seconds: float = 300.0


@dataclass(frozen=True)
class OutboxEntry:
    """One record version waiting for (or done with) delivery to the ministry."""

    key: str
    record_id: str
    version: int
    payload: dict[str, Any]
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str | None = None
    claim: str | None = None


class Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    PARK = "park"


@dataclass(frozen=True)
class Attempt:
    """What one request to the ministry came to: a receipt, or an error to retry or park on."""

    outcome: Outcome
    seconds: float
    receipt: dict[str, Any] | None = None
    error: str = ""


@dataclass(frozen=True)
class Receipt:
    """The ministry's acknowledgement of one record version."""

    key: str
    record_id: str
    version: int
    receipt_id: str
    received_at: str
    delivered_at: datetime


@dataclass(frozen=True)
class Failure:
    """A failed attempt as it is recorded: back to pending with a later time, or parked."""

    key: str
    claim: str
    status: str
    attempts: int
    last_error: str
    next_attempt_at: datetime | None


def idempotency_key(record_id: str, version: int) -> str:
    """The key the ministry deduplicates on: one record version is one delivery."""
    return f"{record_id}:{version}"


def ministry_payload(record: ArchivedRecord) -> dict[str, Any]:
    """The body sent to the ministry for one archived record version."""
    return {
        "record_id": record.record_id,
        "version": record.version,
        "school_code": record.school_code,
        "school_year": record.school_year,
        "digest": record.digest,
        "archive_seq": record.seq,
        "entry_hash": record.entry_hash,
        "document": record.document,
    }


def new_entry(record: ArchivedRecord, now: datetime) -> OutboxEntry:
    """A fresh outbox entry, due at once."""
    return OutboxEntry(
        key=idempotency_key(record.record_id, record.version),
        record_id=record.record_id,
        version=record.version,
        payload=ministry_payload(record),
        status=PENDING,
        attempts=0,
        created_at=now,
        next_attempt_at=now,
    )


def classify(status_code: int) -> Outcome:
    """2xx is delivered; 408, 429 and 5xx may pass later; any other answer never will."""
    if 200 <= status_code < 300:
        return Outcome.DELIVERED
    if status_code in (408, 429) or status_code >= 500:
        return Outcome.RETRY
    return Outcome.PARK


def backoff_seconds(attempts: int, jitter: float, policy: DeliveryPolicy) -> float:
    """Delay before the next try after `attempts` failures ("equal jitter").

    The ceiling doubles with each failure up to the cap; the delay is drawn from its upper half,
    `jitter` in [0, 1) choosing where, so retries of many entries spread out but never bunch at zero.
    """
    ceiling = min(policy.cap_seconds, policy.base_seconds * 2 ** max(attempts - 1, 0))
    return ceiling / 2 + ceiling / 2 * min(max(jitter, 0.0), 1.0)


def after_failure(
    entry: OutboxEntry, attempt: Attempt, now: datetime, jitter: float, policy: DeliveryPolicy
) -> Failure:
    """Retry later with back-off, or park: at once for a permanent answer, or after the last attempt."""
    attempts = entry.attempts + 1
    if attempt.outcome is Outcome.PARK or attempts >= policy.max_attempts:
        return Failure(entry.key, entry.claim or "", PARKED, attempts, attempt.error, None)
    delay = timedelta(seconds=backoff_seconds(attempts, jitter, policy))
    return Failure(entry.key, entry.claim or "", PENDING, attempts, attempt.error, now + delay)


def receipt_from(entry: OutboxEntry, answer: dict[str, Any], now: datetime) -> Receipt:
    return Receipt(
        key=entry.key,
        record_id=entry.record_id,
        version=entry.version,
        receipt_id=str(answer["receipt_id"]),
        received_at=str(answer.get("received_at", "")),
        delivered_at=now,
    )
