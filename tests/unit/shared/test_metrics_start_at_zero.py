"""Every labelled series whose labels a service knows is served at 0 from the start.

A counter series that first appears at its first event shows Prometheus a first sample that is already the
final value, so `increase()` and `rate()` count none of it (a term end's first wave of signatures, a dead
letter). Each service built as it runs (`build_app`, nothing connected) serves a 0 sample for every queue it
consumes (dead letters by reason, retries, refusals; FastStream's received and processed messages by status),
every message it publishes, and its domain metrics' known labels (roles, kinds, outcomes, reasons).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from faststream.prometheus.types import ProcessingStatus, PublishingStatus
from faststream.rabbit.publisher.usecase import RabbitPublisher
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.archive.metrics import PUBLIC_ROUTES, REFUSAL_REASONS
from services.grades.metrics import ENTRY_KINDS, EXPLAIN_OUTCOMES, TERM_ACTIONS
from services.identity.metrics import FIND_OUTCOMES
from services.signing.metrics import BATCH_OUTCOMES
from services.sync.domain import CHECKPOINT_REFUSALS, KINDS
from services.sync.metrics import OUTCOMES
from shared.access import ROLES
from shared.contracts.signing import SIGNING_ORDER
from shared.messaging import ANSWER_REASONS, DEAD_LETTER_REASONS, FASTSTREAM_BROKER
from shared.service import ServiceApp
from shared.settings import SERVICES, Settings

Series = tuple[str, frozenset[tuple[str, str]]]


def series(name: str, **labels: str) -> Series:
    return name, frozenset(labels.items())


def served(service: ServiceApp) -> dict[Series, float]:
    """Every sample of the service's /metrics text, by name and labels."""
    text = generate_latest(service.bus.registry).decode()
    return {
        series(sample.name, **sample.labels): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def built(name: str, data_dir: Path) -> ServiceApp:
    app = importlib.import_module(f"services.{name}.app")
    service: ServiceApp = app.build_app(Settings(data_dir=data_dir, namespace="t0."))
    return service


def edge_series(service: ServiceApp) -> set[Series]:
    """What the edge and FastStream count for each queue the service consumes and each message it publishes."""
    name, exchange = service.name, service.bus.exchange.name
    known: set[Series] = set()
    for queue, declared in service.bus.topology.queues.items():
        handler = {"app_name": name, "broker": FASTSTREAM_BROKER, "handler": f"{exchange}.{declared.routing_key}"}
        known.add(series("hocba_messages_retried_total", queue=queue))
        known |= {series("hocba_messages_dead_lettered_total", queue=queue, reason=r) for r in DEAD_LETTER_REASONS}
        known |= {series("hocba_messages_refused_total", queue=queue, reason=r) for r in ANSWER_REASONS}
        known |= {series("hocba_requests_answered_with_error_total", queue=queue, reason=r) for r in ANSWER_REASONS}
        known.add(series("faststream_received_messages_total", **handler))
        known.add(series("faststream_received_processed_messages_duration_seconds_count", **handler))
        known |= {
            series("faststream_received_processed_messages_total", **handler, status=s.value) for s in ProcessingStatus
        }
    for publisher in service.broker.publishers:
        assert isinstance(publisher, RabbitPublisher)
        destination = f"{exchange}.{publisher.routing()}"
        labels = {"app_name": name, "broker": FASTSTREAM_BROKER, "destination": destination}
        known |= {series("faststream_published_messages_total", **labels, status=s.value) for s in PublishingStatus}
    return known


#: The domain series each service knows the labels of.
DOMAIN: dict[str, set[Series]] = {
    "identity": {series("hocba_student_finds_total", outcome=o) for o in FIND_OUTCOMES},
    "grades": {series("hocba_entries_changed_total", kind=k) for k in ENTRY_KINDS}
    | {series("hocba_terms_changed_total", action=a) for a in TERM_ACTIONS}
    | {series("hocba_records_explained_total", outcome=o) for o in EXPLAIN_OUTCOMES}
    | {series("hocba_record_amendments_total", outcome="amended")},
    "signing": {series("hocba_records_signed_total", role=r) for r in SIGNING_ORDER}
    | {series("hocba_signing_batches_total", outcome=o) for o in BATCH_OUTCOMES},
    "archive": {series("hocba_archive_refused_total", reason=r) for r in REFUSAL_REASONS}
    | {series("hocba_archive_public_reads_total", route=r, status="200") for r in PUBLIC_ROUTES},
    "sync": {series("hocba_sync_deliveries_total", kind=k, outcome=o) for k in KINDS for o in OUTCOMES}
    | {series("hocba_sync_delivery_lag_seconds_count", kind=k) for k in KINDS}
    | {series("hocba_sync_checkpoints_refused_total", reason=r) for r in CHECKPOINT_REFUSALS},
}
#: The services that answer reads of students' personal data count them by reader role.
READERS = ("identity", "grades", "archive")


@pytest.mark.parametrize("name", SERVICES)
def test_each_queue_a_service_consumes_and_each_message_it_publishes_is_counted_from_zero(name, tmp_path):
    service = built(name, tmp_path)
    samples = served(service)
    expected = edge_series(service)
    assert service.bus.topology.queues and service.broker.publishers, "a service that neither consumes nor publishes"
    missing = sorted(str(s) for s in expected if s not in samples)
    assert not missing, f"{name} serves no sample for {missing[:5]} ({len(missing)} in all)"
    assert {s: samples[s] for s in expected if samples[s] != 0} == {}


@pytest.mark.parametrize("name", SERVICES)
def test_each_services_domain_metrics_with_known_labels_start_at_zero(name, tmp_path):
    samples = served(built(name, tmp_path))
    expected = set(DOMAIN[name])
    if name in READERS:
        expected |= {
            series(f"hocba_personal_data_{m}_total", role=r) for m in ("reads", "unusual_reads") for r in ROLES
        }
    missing = sorted(str(s) for s in expected if s not in samples)
    assert not missing, f"{name} serves no sample for {missing}"
    assert {s: samples[s] for s in expected if samples[s] != 0} == {}


def test_the_count_of_series_started_follows_the_queues_consumed(tmp_path):
    """Counted, not assumed: each consumed queue adds its dead-letter reasons, retries, refusals and FastStream's
    five statuses, so a service with more queues serves proportionally more zeros."""
    service = built("signing", tmp_path)
    samples = served(service)
    queues = len(service.bus.topology.queues)
    dead_letter_zeros = [s for s, v in samples.items() if s[0] == "hocba_messages_dead_lettered_total" and v == 0]
    processed_zeros = [s for s, v in samples.items() if s[0] == "faststream_received_processed_messages_total"]
    assert len(dead_letter_zeros) == queues * len(DEAD_LETTER_REASONS)
    assert len(processed_zeros) == queues * len(ProcessingStatus)
