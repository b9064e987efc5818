"""archive's app under FastStream's in-memory broker: routing, contracts, checkpoints, requests, metrics."""

from __future__ import annotations

import pytest
from faststream.rabbit import TestRabbitBroker

from services.archive.app import build_app
from services.archive.repository import InMemoryArchiveRepository
from shared.contracts.archive import (
    AuditArchive,
    AuditReport,
    CheckpointIssued,
    ExportRecord,
    ProofReply,
    ProveInclusion,
    RecordsArchived,
)
from shared.contracts.signing import BatchCompleted, RecordsCompleted
from shared.crypto.archive_log import check_checkpoint
from shared.crypto.bundle import verify_bundle
from shared.crypto.merkle import MerkleTree, verify_inclusion
from shared.messaging import REASON_HEADER
from tests.unit.archive.conftest import archive_keys
from tests.unit.signing.trust import make_trust, signed_record
from tests.wiring.conftest import dead_letters, probe, send


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return make_trust(tmp_path_factory.mktemp("archive-wiring"))


@pytest.fixture
def service(settings, trust):
    repo = InMemoryArchiveRepository()
    keys = archive_keys(trust)
    return build_app(settings, repository=repo, signer=keys.signer, trust=keys.trust), repo


async def test_signed_records_are_archived_once_and_reported(service, trust):
    svc, repo = service
    archived = probe(svc, RecordsArchived)
    event = RecordsCompleted(records=[signed_record(trust, n) for n in range(4)], batch_id="b1")
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, event)
        await send(broker, svc, event)
    assert len(repo.log) == 4
    assert [[r.seq for r in a.records] for a in archived] == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert archived[0].records[1].entry_hash == repo.log[1].leaf_hash
    assert svc.registry.get_sample_value("hocba_records_archived_total") == 4


async def test_a_completed_batch_brings_a_signed_checkpoint_event(service, trust):
    svc, repo = service
    issued = probe(svc, CheckpointIssued)
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, RecordsCompleted(records=[signed_record(trust, n) for n in range(5)], batch_id="b1"))
        await send(broker, svc, BatchCompleted(
            batch_id="b1", school_code="79000701", school_year="2025-2026", records_signed=5, records_total=5,
            records_completed=5,
        ))
    [event] = issued
    checkpoint = event.checkpoint
    assert checkpoint.tree_size == 5
    assert checkpoint.root_hash == MerkleTree(bytes.fromhex(repo.log[s].leaf_hash) for s in range(5)).root().hex()
    assert check_checkpoint(checkpoint, trust.pki.trust_store()).ok
    assert await repo.checkpoints() == [checkpoint]


async def test_proofs_exports_and_audits_are_answered(service, trust):
    svc, _ = service
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, RecordsCompleted(records=[signed_record(trust, n) for n in range(6)]))
        exchange = svc.bus.exchange
        proof = ProofReply.model_validate(await (await broker.request(
            ProveInclusion(record_id="rec-0002"), exchange=exchange, routing_key=ProveInclusion.ROUTING_KEY
        )).decode())
        export = ProofReply.model_validate(await (await broker.request(
            ExportRecord(record_id="rec-0002"), exchange=exchange, routing_key=ExportRecord.ROUTING_KEY
        )).decode())
        audit = AuditReport.model_validate(await (await broker.request(
            AuditArchive(), exchange=exchange, routing_key=AuditArchive.ROUTING_KEY
        )).decode())
    inclusion = proof.inclusion
    assert verify_inclusion(
        inclusion.leaf_index, inclusion.tree_size, bytes.fromhex(inclusion.leaf_hash),
        [bytes.fromhex(p) for p in inclusion.proof], bytes.fromhex(inclusion.checkpoint.root_hash),
    )
    assert verify_bundle(export.bundle, trust.pki.trust_store()).ok
    assert audit.ok and audit.entries == 6 and audit.checkpoints == 1


async def test_a_record_with_a_broken_signature_chain_is_dead_lettered_with_the_reason(service, trust):
    svc, repo = service
    dead = dead_letters(svc, RecordsCompleted)
    partial = signed_record(trust, 1, roles=("homeroom_teacher",))
    async with TestRabbitBroker(svc.broker) as broker:
        await send(broker, svc, RecordsCompleted(records=[partial]))
    [(_, headers)] = dead
    assert headers[REASON_HEADER] == "invalid" and not repo.log
