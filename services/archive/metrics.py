"""archive's domain metrics."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.contracts.archive import Checkpoint

#: Why the archive refuses a version: a signature, chain or order that fails; content neither sealed by grades nor
#: an amendment; a signing time its clock does not bear out.
REFUSAL_REASONS = ("invalid-signature", "not-sealed", "signing-time")
#: What third parties ask the archive's public HTTP routes for.
PUBLIC_ROUTES = ("checkpoint", "consistency", "inclusion")


class ArchiveMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.archived = Counter(
            "hocba_records_archived_total", "Record versions appended to the archive log.", registry=registry
        )
        self.log_entries = Gauge(
            "hocba_archive_log_entries",
            "Entries in the archive log, as this process last saw it.",
            registry=registry,
        )
        self.refused = Counter(
            "hocba_archive_refused_total",
            "Record versions the archive refused to admit, by reason (a signature that fails, content not sealed "
            "by grades, a signing time its clock does not bear out).",
            ["reason"],
            registry=registry,
        )
        for reason in REFUSAL_REASONS:
            self.refused.labels(reason)
        self.checkpoints = Counter(
            "hocba_archive_checkpoints_total", "Signed checkpoints of the archive log issued.", registry=registry
        )
        self.checkpoint_size = Gauge(
            "hocba_archive_checkpoint_tree_size",
            "Tree size of the latest signed checkpoint.",
            registry=registry,
        )
        self.last_checkpoint_at: float | None = None
        self.checkpoint_age = Gauge(
            "hocba_archive_checkpoint_age_seconds",
            "Seconds since the latest signed checkpoint was issued (0 before the first).",
            registry=registry,
        )
        self.checkpoint_age.set_function(
            lambda: time.time() - self.last_checkpoint_at if self.last_checkpoint_at is not None else 0.0
        )
        self.exports = Counter(
            "hocba_archive_exports_total", "Verification bundles exported.", registry=registry
        )
        self.public_reads = Counter(
            "hocba_archive_public_reads_total",
            "Answers of the archive's public HTTP routes (no sign-in, hashes and signed checkpoints only), by route "
            "and HTTP status.",
            ["route", "status"],
            registry=registry,
        )

    def checkpoint_seen(self, checkpoint: Checkpoint) -> None:
        """The latest checkpoint (issued now or loaded at start-up) sets tree size and age."""
        self.checkpoint_size.set(checkpoint.tree_size)
        self.last_checkpoint_at = checkpoint.issued_at.timestamp()
