"""The metric names each service must serve, from the issue and DESIGN.md §6; rules and dashboards use only these."""

from __future__ import annotations

SERVICES = ("identity", "grades", "signing", "archive", "sync")

#: Rate, errors and duration of message handling and publishing: FastStream's Prometheus middleware.
FASTSTREAM = (
    "faststream_received_messages_total",
    "faststream_received_messages_in_process",
    "faststream_received_processed_messages_total",
    "faststream_received_processed_messages_duration_seconds",
    "faststream_received_processed_messages_exceptions_total",
    "faststream_published_messages_total",
    "faststream_published_messages_duration_seconds",
    "faststream_published_messages_exceptions_total",
)

#: Every service's dead-letter middleware (shared/messaging.py).
MESSAGING = ("hocba_messages_dead_lettered_total", "hocba_messages_retried_total")

#: Reads of students' personal data (shared/access.py), served by the services that answer them.
ACCESS = ("hocba_personal_data_reads_total", "hocba_personal_data_unusual_reads_total")

#: Domain metrics the term-end dashboard and the alerts rely on, by the service that serves them.
DOMAIN = {
    "identity": ("hocba_students_registered_total", *ACCESS),
    "grades": ("hocba_assessments_recorded_total", "hocba_records_assembled_total", *ACCESS),
    "signing": (
        "hocba_records_signed_total",
        "hocba_signing_chunks_total",
        "hocba_signing_batch_duration_seconds",
    ),
    "archive": (
        *ACCESS,
        "hocba_records_archived_total",
        "hocba_archive_log_entries",
        "hocba_archive_checkpoint_tree_size",
        "hocba_archive_checkpoint_age_seconds",
        "hocba_archive_checkpoint_unstamped_age_seconds",
        "hocba_archive_checkpoints_unstamped",
        "hocba_archive_timestamps_total",
    ),
    "sync": (
        "hocba_sync_deliveries_total",
        "hocba_sync_delivery_seconds",
        "hocba_sync_delivery_lag_seconds",
        "hocba_sync_backlog_entries",
        "hocba_sync_parked_entries",
        "hocba_sync_oldest_entry_age_seconds",
        "hocba_sync_checkpoint_delivered_timestamp_seconds",
        "hocba_sync_checkpoint_delivered_tree_size",
        "hocba_sync_resumed_total",
        "hocba_sync_reconcile_differences",
        "hocba_sync_checkpoints_refused_total",
        "hocba_sync_ministry_circuit_open",
    ),
}

#: RabbitMQ's own metrics (rabbitmq_prometheus plugin) that rules and dashboards use.
RABBITMQ = (
    "rabbitmq_alarms_memory_used_watermark",
    "rabbitmq_alarms_free_disk_space_watermark",
    "rabbitmq_detailed_queue_messages",
    "rabbitmq_detailed_queue_messages_ready",
    "rabbitmq_detailed_queue_messages_unacked",
    "rabbitmq_detailed_queue_consumers",
    "rabbitmq_identity_info",
)


def expected(service: str) -> tuple[str, ...]:
    return FASTSTREAM + MESSAGING + DOMAIN[service]


def known() -> set[str]:
    """Every name a rule or dashboard may use (histograms with their _bucket/_sum/_count series; counters and
    histograms with the creation time the client library serves beside them, `_created`)."""
    names = set(FASTSTREAM) | set(MESSAGING) | set(RABBITMQ) | {"up"}
    for service in SERVICES:
        names |= set(DOMAIN[service])
    series = set()
    for name in names:
        series |= {name, f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name.removesuffix('_total')}_created"}
    return series
