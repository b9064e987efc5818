"""archive against the MongoDB-wire server and real RabbitMQ: the insert-only log, checkpoints, the audit."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from services.archive import domain, handlers
from services.archive.app import build_app
from services.archive.handlers import LogState
from services.archive.metrics import ArchiveMetrics
from services.archive.repository import INDEXES, MongoArchiveRepository
from shared.contracts.archive import AuditArchive, AuditReport, CheckpointIssued, ExportRecord, ProofReply, RecordsArchived
from shared.contracts.signing import BatchCompleted, RecordsCompleted
from shared.crypto.bundle import verify_bundle
from shared.crypto.merkle import MerkleTree
from shared.mongo import ensure_indexes, unpacked
from tests.support import drain, probing, running
from tests.unit.archive.conftest import archive_keys
from tests.unit.signing.trust import make_trust, signed_record

AT = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return make_trust(tmp_path_factory.mktemp("archive-integration"))


async def repository(mongo_client, settings) -> MongoArchiveRepository:
    db = mongo_client[settings.names().database("archive")]
    await ensure_indexes(db, INDEXES)
    return MongoArchiveRepository(db)


async def test_the_log_takes_each_position_and_each_version_once(mongo_client, settings, trust):
    repo = await repository(mongo_client, settings)
    entries = domain.build_entries(0, [signed_record(trust, n) for n in range(3)], AT)
    assert await repo.append(entries) == 3
    assert await repo.append(entries) == 0
    again = domain.build_entries(3, [signed_record(trust, 1)], AT)
    assert await repo.append(again) == 0, "a version is archived once, whatever position it asks for"
    assert await repo.entries() == entries
    assert await repo.leaf_hashes() == [bytes.fromhex(e.leaf_hash) for e in entries]
    assert (await repo.entry("rec-0002")) == entries[2]
    positions = await repo.log_positions([("rec-0001", 1), ("nope", 1)])
    assert list(positions) == [("rec-0001", 1)] and positions[("rec-0001", 1)].seq == 1


async def test_appenders_racing_on_one_log_keep_one_tree(mongo_client, settings, trust):
    repo = await repository(mongo_client, settings)
    metrics = ArchiveMetrics(__import__("prometheus_client").CollectorRegistry())
    keys = archive_keys(trust)
    states = [LogState(), LogState()]

    async def append(state: LogState, start: int) -> None:
        for n in range(start, start + 10, 2):
            event = RecordsCompleted(records=[signed_record(trust, n), signed_record(trust, n + 1)])
            await handlers.archive_records(event, repo, state, metrics, keys)

    await asyncio.gather(append(states[0], 0), append(states[1], 100))
    stored = await repo.entries()
    assert [e.seq for e in stored] == list(range(20))
    assert all(e.computed_leaf_hash() == e.leaf_hash for e in stored)
    tree = MerkleTree(bytes.fromhex(e.leaf_hash) for e in stored)
    fresh = LogState()
    await fresh.load(repo, metrics)
    assert fresh.tree.root() == tree.root()


async def test_records_are_archived_over_the_broker_and_a_batch_brings_a_checkpoint(mongo_client, settings, trust):
    keys = archive_keys(trust)
    service = build_app(settings, mongo=mongo_client, signer=keys.signer, trust=keys.trust)
    async with probing(settings, RecordsArchived, CheckpointIssued) as probes, running(service):
        await service.bus.publish(RecordsCompleted(records=[signed_record(trust, n) for n in range(8)], batch_id="b"))
        await service.bus.publish(BatchCompleted(
            batch_id="b", school_code="79000701", school_year="2025-2026", records_signed=8, records_total=8,
            records_completed=8,
        ))
        issued = []
        deadline = time.monotonic() + 30
        while not issued and time.monotonic() < deadline:
            issued = [CheckpointIssued.model_validate_json(m.body) for m in await drain(
                settings.amqp_url, probes[CheckpointIssued.ROUTING_KEY], timeout=1.0)]
        archived = [RecordsArchived.model_validate_json(m.body) for m in await drain(
            settings.amqp_url, probes[RecordsArchived.ROUTING_KEY])]
        export = ProofReply.model_validate(await service.bus.request(ExportRecord(record_id="rec-0005")))
    assert [r.seq for a in archived for r in a.records] == list(range(8))
    assert [e.checkpoint.tree_size for e in issued] == [8]
    assert verify_bundle(export.bundle, trust.pki.trust_store()).ok


async def test_the_audit_names_the_entry_whose_stored_byte_was_edited_in_mongodb(mongo_client, settings, trust):
    keys = archive_keys(trust)
    service = build_app(settings, mongo=mongo_client, signer=keys.signer, trust=keys.trust)
    db = mongo_client[settings.names().database("archive")]
    async with probing(settings, RecordsArchived, CheckpointIssued), running(service):
        await service.bus.publish(RecordsCompleted(records=[signed_record(trust, n) for n in range(6)], batch_id="b"))
        await service.bus.publish(BatchCompleted(
            batch_id="b", school_code="79000701", school_year="2025-2026", records_signed=6, records_total=6,
            records_completed=6,
        ))
        deadline = time.monotonic() + 30
        while await db["checkpoints"].count_documents({}) < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        clean = AuditReport.model_validate(await service.bus.request(AuditArchive(), timeout=60))
        assert clean.ok, clean.findings

        # One byte of one stored entry changes, straight in the database: a year average 8.5 becomes 9.5.
        stored = await db["log"].find_one({"seq": 3})
        assert unpacked(stored["document"])["subjects"]["toan"]["year"] == "8.5"
        altered = stored["document"].replace('"year":"8.5"', '"year":"9.5"')
        assert len(altered) == len(stored["document"]) and altered != stored["document"]
        await db["log"].update_one({"_id": stored["_id"]}, {"$set": {"document": altered}})
        assert unpacked((await db["log"].find_one({"seq": 3}))["document"])["subjects"]["toan"]["year"] == "9.5"
        report = AuditReport.model_validate(await service.bus.request(AuditArchive(), timeout=60))
    assert not report.ok
    assert {f.seq for f in report.findings if f.seq is not None} == {3}
    named = [f for f in report.findings if f.seq == 3]
    assert {(f.record_id, f.version) for f in named} == {("rec-0003", 1)}
    assert any("leaf hash" in f.problem for f in named)
    assert any("no longer give the root signed in the checkpoint of size 6" in f.problem for f in report.findings)
