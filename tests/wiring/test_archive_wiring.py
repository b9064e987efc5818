"""archive's app under FastStream's in-memory broker: routing, contracts, the hash chain, metrics."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from faststream.rabbit import TestRabbitBroker
from faststream.rabbit.annotations import RabbitMessage

from services.archive import domain
from services.archive.app import build_app
from services.archive.repository import InMemoryArchiveRepository
from shared.contracts.archive import RecordsArchived
from shared.contracts.grades import RecordVersion
from shared.contracts.signing import RecordsCompleted, Signature, SignedRecord
from shared.crypto.canonical import canonical_json, digest
from shared.crypto.jws import EcSigner, sign_detached
from shared.messaging import REASON_HEADER, dead_letter_queue
from shared.service import ServiceApp
from tests.wiring.conftest import probe, send

SIGNER = EcSigner.generate("signing-wiring")


def signed(n: int) -> SignedRecord:
    record = RecordVersion(
        record_id=f"rec-{n:04d}",
        version=1,
        school_code="79000701",
        school_year="2025-2026",
        student_ref=f"student-{n:04d}",
        document={"student_ref": f"student-{n:04d}", "subjects": {"toan": {"year": 9}}},
    )
    header = {"record_id": record.record_id, "version": 1, "role": "principal"}
    jws = sign_detached(SIGNER, canonical_json(record.document), header)
    signature = Signature(
        record_id=record.record_id,
        version=1,
        role="principal",
        key_id=SIGNER.key_id,
        digest=digest(record.document),
        jws=jws,
        signed_at=datetime(2026, 5, 20, tzinfo=UTC),
    )
    return SignedRecord(record=record, signatures=[signature])


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
    repo = InMemoryArchiveRepository()
    return build_app(settings, repository=repo), repo


async def test_completed_records_are_archived_in_a_chain_and_reported(service):
    svc, repo = service
    seen = probe(svc, RecordsArchived)
    first, second = RecordsCompleted(records=[signed(0), signed(1)]), RecordsCompleted(records=[signed(2)])
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, first)
        await send(broker, svc, second)
    assert [[(r.record_id, r.seq) for r in e.records] for e in seen] == [
        [("rec-0000", 0), ("rec-0001", 1)],
        [("rec-0002", 2)],
    ]
    log = await repo.entries()
    assert domain.verify_chain(log) is None
    assert [r.entry_hash for e in seen for r in e.records] == [e.entry_hash for e in log]
    assert svc.registry.get_sample_value("hocba_records_archived_total") == 3
    assert svc.registry.get_sample_value("hocba_archive_log_entries") == 3


async def test_a_redelivered_chunk_is_reported_again_without_a_new_entry(service):
    svc, repo = service
    seen = probe(svc, RecordsArchived)
    event = RecordsCompleted(records=[signed(0), signed(1)])
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, event)
        await send(broker, svc, event)
    assert len(repo.log) == 2
    assert len(seen) == 2 and seen[0].message_id == seen[1].message_id
    assert [r.seq for r in seen[1].records] == [0, 1]


async def test_a_forged_signature_is_not_archived(service):
    svc, repo = service
    seen = probe(svc, RecordsArchived)
    dead = dead_letters(svc, RecordsCompleted)
    good = signed(0)
    forged = SignedRecord(
        record=good.record.model_copy(update={"document": {"subjects": {"toan": {"year": 10}}}}),
        signatures=good.signatures,
    )
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, RecordsCompleted(records=[forged]))
    assert repo.log == {} and seen == []
    [(_, headers)] = dead
    assert headers[REASON_HEADER] == "invalid"
    assert (
        svc.registry.get_sample_value(
            "hocba_messages_dead_lettered_total",
            {"queue": svc.topology.queue_name(RecordsCompleted.ROUTING_KEY), "reason": "invalid"},
        )
        == 1
    )
