"""signing's domain metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.contracts.signing import SIGNING_ORDER
from shared.observability import from_zero

BATCH_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
#: How a batch ends (`hocba_signing_batches_total{outcome}`).
BATCH_OUTCOMES = ("completed", "empty", "waiting-review")


class SigningMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.records_signed = Counter(
            "hocba_records_signed_total",
            "Record versions signed by this process, by signer role.",
            ["role"],
            registry=registry,
        )
        # Every labelled series starts at 0, so that the first signatures are an increase Prometheus sees.
        from_zero(self.records_signed, SIGNING_ORDER)
        self.chunks = Counter(
            "hocba_signing_chunks_total", "Chunks of batch work counted as signed.", registry=registry
        )
        self.chunks_redriven = Counter(
            "hocba_signing_chunks_redriven_total",
            "Chunks of batch work published again because their batch had stopped moving (a chunk dead-lettered, or "
            "held by nothing that finishes it) or was clicked again.",
            registry=registry,
        )
        self.batches = Counter(
            "hocba_signing_batches_total",
            "Signing batches finished, by outcome (completed; empty when nothing needed a signature; waiting-review "
            "when a homeroom teacher's class was refused because its review does not stand).",
            ["outcome"],
            registry=registry,
        )
        from_zero(self.batches, BATCH_OUTCOMES)
        self.reviews = Counter(
            "hocba_signing_reviews_confirmed_total",
            "Reviews of a class confirmed by its homeroom teacher (each keeps the record versions it covers).",
            registry=registry,
        )
        self.batch_duration = Histogram(
            "hocba_signing_batch_duration_seconds",
            "Time from planning a batch to its last chunk being counted.",
            buckets=BATCH_DURATION_BUCKETS,
            registry=registry,
        )
