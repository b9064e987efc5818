"""sync's domain metrics: deliveries, backlog, parked entries, oldest waiting entry, lag, checkpoints."""

from __future__ import annotations

import time
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.sync.domain import CHECKPOINT_REFUSALS, DIFFERENCES, KINDS
from shared.observability import from_zero

OUTCOMES = ("delivered", "failed", "parked")

LAG_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


class SyncMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "hocba_sync_deliveries_total",
            "Delivery attempts to the ministry, by kind and outcome (delivered, failed and retried later, parked).",
            ["kind", "outcome"],
            registry=registry,
        )
        from_zero(self.deliveries, KINDS, OUTCOMES)
        self.backlog = Gauge(
            "hocba_sync_backlog_entries",
            "Outbox entries waiting for delivery (pending, or being sent).",
            registry=registry,
        )
        self.parked = Gauge(
            "hocba_sync_parked_entries",
            "Outbox entries parked after their last attempt, waiting for `hocba sync retry`.",
            registry=registry,
        )
        self._oldest: float | None = None
        self._tree_size = 0
        self.oldest_age = Gauge(
            "hocba_sync_oldest_entry_age_seconds",
            "Age of the oldest outbox entry waiting for delivery (0 when none waits); grows between relay passes.",
            registry=registry,
        )
        self.oldest_age.set_function(self._oldest_age)
        self.delivery_seconds = Histogram(
            "hocba_sync_delivery_seconds",
            "Duration of one request to the ministry.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.lag = Histogram(
            "hocba_sync_delivery_lag_seconds",
            "From taking an entry into the outbox to the ministry's receipt, by kind.",
            ["kind"],
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        from_zero(self.lag, KINDS)
        self.last_checkpoint = Gauge(
            "hocba_sync_checkpoint_delivered_timestamp_seconds",
            "When the ministry last acknowledged an archive checkpoint (Unix time).",
            registry=registry,
        )
        self.checkpoint_tree_size = Gauge(
            "hocba_sync_checkpoint_delivered_tree_size",
            "Largest archive tree size whose checkpoint the ministry has acknowledged.",
            registry=registry,
        )
        self.checkpoints_refused = Counter(
            "hocba_sync_checkpoints_refused_total",
            "Archive checkpoints the ministry refused as a witness (or sync could not prove consistent), by reason: "
            "unsigned, bad-signature, no-anchor, bad-proof, inconsistent (the log was rewritten), no-proof, other.",
            ["reason"],
            registry=registry,
        )
        from_zero(self.checkpoints_refused, CHECKPOINT_REFUSALS)
        self.circuit_open = Gauge(
            "hocba_sync_ministry_circuit_open",
            "1 while every request to the ministry has been failing and sync sends only a probe every few seconds, else 0.",
            registry=registry,
        )
        self.resumed = Counter(
            "hocba_sync_resumed_total",
            "Outbox entries handed back to the relay by an operator (`hocba sync retry`).",
            registry=registry,
        )
        self.reannounced = Counter(
            "hocba_sync_reannounced_total",
            "Deliveries recorded but not announced (a crash came between) whose receipts sync kept again and announced again.",
            registry=registry,
        )
        self.differences = Gauge(
            "hocba_sync_reconcile_differences",
            "Differences the last reconciliation with the ministry found, by kind of difference.",
            ["difference"],
            registry=registry,
        )
        from_zero(self.differences, DIFFERENCES)

    def checkpoint_delivered(self, tree_size: int, at: datetime) -> None:
        self.last_checkpoint.set(at.timestamp())
        self._tree_size = max(self._tree_size, tree_size)
        self.checkpoint_tree_size.set(self._tree_size)

    def _oldest_age(self) -> float:
        return max(0.0, time.time() - self._oldest) if self._oldest is not None else 0.0

    def outbox(self, backlog: int, parked: int, oldest_waiting: datetime | None) -> None:
        """Set the outbox gauges from one look at the outbox."""
        self.backlog.set(backlog)
        self.parked.set(parked)
        self._oldest = oldest_waiting.timestamp() if oldest_waiting is not None else None
