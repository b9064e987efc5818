"""signing's app under FastStream's in-memory broker: routing, the batch fan-out, contracts, metrics."""

from __future__ import annotations

import pytest
from faststream.rabbit import TestRabbitBroker
from faststream.rabbit.annotations import RabbitMessage

from services.signing.app import build_app
from services.signing.repository import InMemorySigningRepository
from shared.contracts.grades import RecordsReady, RecordVersion
from shared.contracts.signing import (
    BatchCompleted,
    BatchProgress,
    ChunkSigned,
    RecordsCompleted,
    RecordsReceived,
    RequestSignBatch,
    SignWork,
)
from shared.crypto.canonical import canonical_json
from shared.crypto.jws import EcSigner, jwk_public_key, protected_header, verify_detached
from shared.messaging import REASON_HEADER, dead_letter_queue
from shared.service import ServiceApp
from tests.wiring.conftest import probe, send

SCHOOL, YEAR = "79000701", "2025-2026"


def records(count: int, start: int = 0) -> list[RecordVersion]:
    return [
        RecordVersion(
            record_id=f"rec-{n:04d}",
            version=1,
            school_code=SCHOOL,
            school_year=YEAR,
            student_ref=f"student-{n:04d}",
            document={"student_ref": f"student-{n:04d}", "subjects": {"toan": {"year": 8.5}}, "conduct": "Tốt"},
        )
        for n in range(start, start + count)
    ]


def dead_letters(service: ServiceApp, message: type) -> list[tuple[bytes, dict]]:
    """Subscribe to the dead-letter queue of `message`'s queue and collect (body, headers)."""
    received: list[tuple[bytes, dict]] = []
    dlq = dead_letter_queue(service.settings.names(), service.topology.queue_name(message.ROUTING_KEY))

    @service.broker.subscriber(dlq, exchange=service.bus.dlx)
    async def collect(body: dict, msg: RabbitMessage) -> None:
        received.append((msg.body, dict(msg.headers)))

    return received


@pytest.fixture
def service(settings):
    repo = InMemorySigningRepository()
    signer = EcSigner.generate("signing-wiring")
    return build_app(settings, repository=repo, signer=signer), repo, signer


async def test_received_records_are_announced(service):
    svc, repo, _ = service
    seen = probe(svc, RecordsReceived)
    event = RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records(3))
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, event)
    assert len(repo.stored) == 3
    assert [(e.count, e.source_message_id, e.school_code) for e in seen] == [(3, event.message_id, SCHOOL)]


async def test_one_click_signs_every_record_through_chunks_and_completes_the_batch_once(service, settings):
    svc, repo, signer = service
    work, chunks, completed, progress, done = (
        probe(svc, m) for m in (SignWork, ChunkSigned, RecordsCompleted, BatchProgress, BatchCompleted)
    )
    request = RequestSignBatch(school_code=SCHOOL, school_year=YEAR)
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records(25)))
        await send(broker, svc, request)
    assert settings.chunk_size == 10
    assert sorted(w.chunk_no for w in work) == [0, 1, 2]
    assert sorted((c.chunk_no, c.signed, c.worker) for c in chunks) == [
        (0, 10, signer.key_id),
        (1, 10, signer.key_id),
        (2, 5, signer.key_id),
    ]
    signed = [r for event in completed for r in event.records]
    assert sorted(r.record.record_id for r in signed) == [f"rec-{n:04d}" for n in range(25)]
    for record in signed:
        [signature] = record.signatures
        key = jwk_public_key(protected_header(signature.jws)["jwk"])
        assert verify_detached(key, signature.jws, canonical_json(record.record.document))
    assert sorted(p.chunks_done for p in progress) == [1, 2, 3]
    assert [(d.batch_id, d.records_signed, d.records_total) for d in done] == [(request.batch_id, 25, 25)]
    registry = svc.registry
    assert registry.get_sample_value("hocba_records_signed_total", {"role": "principal"}) == 25
    assert registry.get_sample_value("hocba_signing_chunks_total") == 3
    assert registry.get_sample_value("hocba_signing_batches_total", {"outcome": "completed"}) == 1
    assert registry.get_sample_value("hocba_signing_batch_duration_seconds_count") == 1


async def test_a_redelivered_request_signs_nothing_twice_and_completes_once(service):
    svc, repo, _ = service
    done = probe(svc, BatchCompleted)
    completed = probe(svc, RecordsCompleted)
    request = RequestSignBatch(school_code=SCHOOL, school_year=YEAR)
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records(12)))
        await send(broker, svc, request)
        await send(broker, svc, request)
    assert len(repo.signed) == 12
    assert len(done) == 1
    assert svc.registry.get_sample_value("hocba_records_signed_total", {"role": "principal"}) == 12
    # Re-published chunks report the same completed records under the same message ids.
    assert len({c.message_id for c in completed}) == 2 and len(completed) == 4


async def test_a_batch_with_nothing_to_sign_completes_at_once(service):
    svc, _, _ = service
    work, done = probe(svc, SignWork), probe(svc, BatchCompleted)
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, RequestSignBatch(school_code=SCHOOL, school_year=YEAR))
    assert work == [] and [(d.records_signed, d.records_total) for d in done] == [(0, 0)]
    assert svc.registry.get_sample_value("hocba_signing_batches_total", {"outcome": "empty"}) == 1


async def test_conflicting_versions_are_dead_lettered_and_the_rest_stored(service):
    svc, repo, _ = service
    seen = probe(svc, RecordsReceived)
    dead = dead_letters(svc, RecordsReady)
    changed = records(1)[0].model_copy(update={"document": {"conduct": "Khá"}})
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records(2)))
        mixed = RecordsReady(school_code=SCHOOL, school_year=YEAR, records=[changed, *records(1, 5)])
        await send(broker, svc, mixed)
    assert sorted(repo.stored) == [("rec-0000", 1), ("rec-0001", 1), ("rec-0005", 1)]
    assert repo.stored[("rec-0000", 1)].record.document["conduct"] == "Tốt"
    assert [e.count for e in seen] == [2, 1]
    [(body, headers)] = dead
    assert [r.record_id for r in RecordsReady.model_validate_json(body).records] == ["rec-0000"]
    assert headers[REASON_HEADER] == "invalid"
