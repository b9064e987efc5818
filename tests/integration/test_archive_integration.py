"""archive as a running process on MongoDB and RabbitMQ: it takes up its log after a restart; its audit sees edits.

Storage promises are in test_archive_repository.py; the message flow runs against real RabbitMQ
in tests/wiring/test_archive_wiring.py.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from services.archive.app import build_app
from shared.at_rest import record_owner, sealed_records
from shared.contracts.archive import AuditArchive, AuditReport, CheckpointIssued, RecordsArchived
from shared.contracts.signing import BatchCompleted, RecordsCompleted
from shared.crypto.canonical import canonical_json
from shared.crypto.merkle import MerkleTree
from shared.crypto.vault import Vault
from tests.support import collect, probing, running
from tests.unit.archive.conftest import archive_keys
from tests.unit.signing.trust import make_trust, signed_record


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return make_trust(tmp_path_factory.mktemp("archive-integration"))


def records(trust, numbers: range, batch_id: str | None = None) -> RecordsCompleted:
    return RecordsCompleted(records=[signed_record(trust, n) for n in numbers], batch_id=batch_id)


async def test_a_restarted_archive_takes_up_its_log_and_its_schedule_checkpoints_the_whole_log(
    mongo_client, settings, trust
):
    scheduled = settings.model_copy(update={"checkpoint_interval": 0.2})
    url = settings.amqp_url
    async with probing(settings, RecordsArchived, CheckpointIssued) as probes:
        archived, issued = probes[RecordsArchived.ROUTING_KEY], probes[CheckpointIssued.ROUTING_KEY]
        first = build_app(scheduled, mongo=mongo_client, keys=archive_keys(trust), issuer_keys=trust.issuer.public_keys())
        async with running(first):
            await first.bus.publish(records(trust, range(5)))
            before = await collect(url, issued, CheckpointIssued, bool)
        second = build_app(scheduled, mongo=mongo_client, keys=archive_keys(trust), issuer_keys=trust.issuer.public_keys())
        async with running(second):
            taken_up = [second.registry.get_sample_value(name) for name in (
                "hocba_archive_log_entries", "hocba_archive_checkpoint_tree_size")]
            await second.bus.publish(records(trust, range(5, 8)))
            after = await collect(url, issued, CheckpointIssued, bool)
            appended = await collect(url, archived, RecordsArchived, lambda got: len(got) >= 2)
    assert taken_up == [5, 5], "the log and its last checkpoint are read at start"
    assert [[r.seq for r in a.records] for a in appended] == [[0, 1, 2, 3, 4], [5, 6, 7]]
    assert [e.checkpoint.tree_size for e in before + after] == [5, 8]
    db = mongo_client[settings.names().database("archive")]
    leaves = [bytes.fromhex(doc["leaf_hash"]) async for doc in db["log"].find({}, sort=[("seq", 1)])]
    assert after[0].checkpoint.root_hash == MerkleTree(leaves).root().hex()
    assert await db["checkpoints"].count_documents({}) == 2


async def test_the_audit_names_the_entry_whose_stored_bytes_were_edited_in_mongodb(mongo_client, settings, trust):
    service = build_app(settings, mongo=mongo_client, keys=archive_keys(trust), issuer_keys=trust.issuer.public_keys())
    db = mongo_client[settings.names().database("archive")]
    async with probing(settings, RecordsArchived, CheckpointIssued), running(service):
        await service.bus.publish(records(trust, range(6), "b"))
        await service.bus.publish(BatchCompleted(
            batch_id="b", school_code="79000701", school_year="2025-2026", records_signed=6, records_total=6,
            records_completed=6,
        ))
        deadline = time.monotonic() + 30
        while await db["checkpoints"].count_documents({}) < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        clean = await service.bus.request(trust.staff.operator().signs(AuditArchive()), AuditReport, timeout=60)
        assert clean.ok, clean.findings

        # One byte of one stored entry's ciphertext changes, straight in the database.
        stored = await db["log"].find_one({"seq": 3})
        flipped = bytes(stored["document"])[:-1] + bytes([stored["document"][-1] ^ 1])
        await db["log"].update_one({"_id": stored["_id"]}, {"$set": {"document": flipped}})
        unreadable = await service.bus.request(trust.staff.operator().signs(AuditArchive()), AuditReport, timeout=60)
        assert {f.seq for f in unreadable.findings if f.seq is not None} == {3}
        assert any("does not decrypt" in f.problem for f in unreadable.findings)

        # Someone holding the archive's key ring re-seals the entry with a year average 8.5 made 9.5.
        log = sealed_records(db["log"], Vault.for_service(settings, "archive"), encode=canonical_json)
        document = log.opened(stored)
        assert document["subjects"][0] == {"name": "Toán", "year": {"average": "8.5"}}
        document["subjects"][0]["year"]["average"] = "9.5"
        await db["log"].update_one({"_id": stored["_id"]}, {"$set": log.sealed(record_owner(stored), document)})
        report = await service.bus.request(trust.staff.operator().signs(AuditArchive()), AuditReport, timeout=60)
    assert not report.ok
    assert {f.seq for f in report.findings if f.seq is not None} == {3}
    named = [f for f in report.findings if f.seq == 3]
    assert {(f.record_id, f.version) for f in named} == {("rec-0003", 1)}
    assert any("leaf hash" in f.problem for f in named)
    assert any("no longer give the root signed in the checkpoint of size 6" in f.problem for f in report.findings)
