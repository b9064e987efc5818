"""sync's domain metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OUTCOMES = ("delivered", "failed", "parked")


class SyncMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "hocba_sync_deliveries_total",
            "Delivery attempts to the ministry, by outcome (delivered, failed and retried later, parked).",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.deliveries.labels(outcome)
        self.backlog = Gauge(
            "hocba_sync_backlog_entries",
            "Outbox entries not yet delivered nor parked.",
            registry=registry,
        )
        self.delivery_seconds = Histogram(
            "hocba_sync_delivery_seconds",
            "Duration of one request to the ministry's record endpoint.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
