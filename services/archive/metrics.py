"""archive's domain metrics."""

from __future__ import annotations

import time
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.contracts.archive import Checkpoint
from shared.observability import from_zero

#: Why the archive refuses a version: a signature, chain or order that fails; content neither sealed by grades nor
#: an amendment; a signing time its clock does not bear out.
REFUSAL_REASONS = ("invalid-signature", "not-sealed", "signing-time")
#: What third parties ask the archive's public HTTP routes for: signed checkpoints and proofs; a printed copy's bundle
#: (`copy`, by the address its QR code holds); the verification page (`verify-page`, `verify-asset`), and the page at a
#: copy's address (`copy-page`).
#: What became of a request for a checkpoint's timestamp.
TIMESTAMP_OUTCOMES = ("stamped", "renewed", "tsa-unavailable")
PUBLIC_ROUTES = ("checkpoint", "consistency", "inclusion", "copy", "verify-page", "verify-asset", "copy-page")


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
        from_zero(self.refused, REFUSAL_REASONS)
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
        self.timestamps = Counter(
            "hocba_archive_timestamps_total",
            "RFC 3161 timestamps of checkpoints, by outcome: stamped (a checkpoint's first), renewed (a token over the "
            "one before), tsa-unavailable (the TSA gave no good token: the checkpoint waits and is stamped later).",
            ["outcome"],
            registry=registry,
        )
        from_zero(self.timestamps, TIMESTAMP_OUTCOMES)
        self.unstamped_checkpoints = Gauge(
            "hocba_archive_checkpoints_unstamped",
            "Checkpoints waiting for their first timestamp, as the archive last looked (at most a step's worth).",
            registry=registry,
        )
        self.oldest_unstamped_at: float | None = None
        self.unstamped_age = Gauge(
            "hocba_archive_checkpoint_unstamped_age_seconds",
            "Seconds the oldest checkpoint waiting for its timestamp has waited (0 when none waits).",
            registry=registry,
        )
        self.unstamped_age.set_function(
            lambda: time.time() - self.oldest_unstamped_at if self.oldest_unstamped_at is not None else 0.0
        )
        self.exports = Counter(
            "hocba_archive_exports_total", "Verification bundles exported.", registry=registry
        )
        self.public_reads = Counter(
            "hocba_archive_public_reads_total",
            "Answers of the archive's public HTTP routes (no sign-in: signed checkpoints, proofs, the verification "
            "page and the copies its addresses name), by route and HTTP status (404 alike for no such leaf and a "
            "wrong key).",
            ["route", "status"],
            registry=registry,
        )
        from_zero(self.public_reads, PUBLIC_ROUTES, ["200"])

    def unstamped(self, waiting: int, oldest_issued_at: datetime | None) -> None:
        """How many checkpoints wait for their first timestamp (up to a step's worth) and since when the oldest."""
        self.unstamped_checkpoints.set(waiting)
        self.oldest_unstamped_at = oldest_issued_at.timestamp() if oldest_issued_at is not None else None

    def checkpoint_seen(self, checkpoint: Checkpoint) -> None:
        """The latest checkpoint (issued now or loaded at start-up) sets tree size and age."""
        self.checkpoint_size.set(checkpoint.tree_size)
        self.last_checkpoint_at = checkpoint.issued_at.timestamp()
