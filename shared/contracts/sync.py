"""Sync messages: deliveries acknowledged by the ministry, and the operator's requests to sync."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from shared.contracts.base import Message, Model, Notification, Reply
from shared.contracts.limits import (
    CODE,
    EXAMPLES,
    ID,
    KEY,
    LINES,
    LISTING,
    RECORDS,
    TEXT,
    OutboxKey,
    ShortCode,
)


class Delivery(Model):
    record_id: str = Field(max_length=ID)
    version: int
    receipt_id: str = Field(max_length=KEY)
    delivered_at: datetime


class RecordsDelivered(Notification):
    ROUTING_KEY = "sync.record.delivered.v1"

    deliveries: list[Delivery] = Field(max_length=RECORDS)


class CheckpointDelivered(Notification):
    """An archive checkpoint is held by the ministry: history up to `tree_size` is witnessed outside."""

    ROUTING_KEY = "sync.checkpoint.delivered.v1"

    origin: str = Field(max_length=ID)
    tree_size: int
    receipt_id: str = Field(max_length=KEY)
    delivered_at: datetime


# -- operator requests (answered by reply; `hocba sync ...`) ----------------------------------


class GetSyncStatus(Message):
    """Request (an operator's, with an actor token): the outbox by kind and status, the oldest waiting entry and the parked ones."""

    ROUTING_KEY = "sync.outbox.status.v1"

    #: How many parked entries to list (the count is always complete).
    parked_limit: int = Field(50, ge=0, le=10_000)


class OutboxCount(Model):
    kind: str = Field(max_length=CODE)
    status: str = Field(max_length=CODE)
    entries: int


class ParkedEntry(Model):
    key: str = Field(max_length=KEY)
    kind: str = Field(max_length=CODE)
    attempts: int
    last_error: str | None = Field(max_length=TEXT)
    created_at: datetime


class LastCheckpoint(Model):
    origin: str = Field(max_length=ID)
    tree_size: int
    receipt_id: str = Field(max_length=KEY)
    delivered_at: datetime


class SyncStatus(Reply):
    """Reply to GetSyncStatus."""

    counts: list[OutboxCount] = Field(max_length=LINES)
    backlog: int
    parked: int
    #: Age of the oldest entry not delivered nor parked; None when there is none.
    oldest_waiting_seconds: float | None = None
    parked_entries: list[ParkedEntry] = Field(default_factory=list, max_length=LISTING)
    last_checkpoint: LastCheckpoint | None = None


class RetryParked(Message):
    """Command (an operator's, with an actor token): hand entries back to the relay.

    Without `keys`, every parked entry. With `keys`, those entries if parked or delivered: a
    delivered one is sent again (under the same idempotency key), for a record the ministry lost.
    """

    ROUTING_KEY = "sync.outbox.retry.v1"

    keys: list[OutboxKey] = Field(default_factory=list, max_length=LISTING)


class RetryOutcome(Reply):
    """Reply to RetryParked: what was resumed."""

    resumed: int = 0
    keys: list[OutboxKey] = Field(default_factory=list, max_length=LISTING)
    #: Keys asked for that were neither parked nor delivered (unknown, or already on their way).
    skipped: list[OutboxKey] = Field(default_factory=list, max_length=LISTING)


class Reconcile(Message):
    """Request (an operator's, with an actor token): compare sync's outbox and receipts with what the ministry acknowledges."""

    ROUTING_KEY = "sync.outbox.reconcile.v1"

    #: Example keys listed per kind of difference (the counts are always complete).
    limit: int = Field(100, ge=0, le=100_000)


class Difference(Model):
    name: str = Field(max_length=CODE)
    meaning: str = Field(max_length=TEXT)
    count: int
    examples: list[OutboxKey] = Field(default_factory=list, max_length=EXAMPLES)


class ReconcileReport(Reply):
    """Reply to Reconcile: what sync holds beside what the ministry acknowledges, and every difference."""

    held: int = 0
    acknowledged: int = 0
    matched: int = 0
    #: Entries not delivered yet, by status (the backlog; not a difference).
    waiting: dict[ShortCode, int] = Field(default_factory=dict, max_length=LINES)
    #: The largest checkpoint tree size sync holds: the archive's size it can check against.
    archive_size: int | None = None
    differences: list[Difference] = Field(default_factory=list, max_length=LINES)

    @property
    def consistent(self) -> bool:
        return self.error is None and all(d.count == 0 for d in self.differences)
