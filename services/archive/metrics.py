"""archive's domain metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


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
