"""archive against the MongoDB-wire server and real RabbitMQ: the insert-only log, racing appenders, the flow."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from services.archive import domain, handlers
from services.archive.app import build_app
from services.archive.handlers import LogHead
from services.archive.metrics import ArchiveMetrics
from services.archive.repository import INDEXES, ArchivedRow, MongoArchiveRepository
from shared.contracts.archive import RecordsArchived
from shared.contracts.grades import RecordVersion
from shared.contracts.signing import RecordsCompleted, Signature, SignedRecord
from shared.crypto.canonical import canonical_json, digest
from shared.crypto.jws import EcSigner, sign_detached
from shared.mongo import ensure_indexes
from tests.support import drain, probing, running

SIGNER = EcSigner.generate("signing-integration")
AT = datetime(2026, 5, 21, 9, 30, tzinfo=UTC)


def signed(n: int) -> SignedRecord:
    record = RecordVersion(
        record_id=f"rec-{n:04d}",
        version=1,
        school_code="79000703",
        school_year="2025-2026",
        student_ref=f"student-{n:04d}",
        document={"student_ref": f"student-{n:04d}", "subjects": {"toan": {"year": 7.25}}, "conduct": "Khá"},
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
        signed_at=AT,
    )
    return SignedRecord(record=record, signatures=[signature])


async def repository(mongo_client, settings) -> MongoArchiveRepository:
    db = mongo_client[settings.names().database("archive")]
    await ensure_indexes(db, INDEXES)
    return MongoArchiveRepository(db)


async def test_the_log_takes_each_seq_and_each_version_once(mongo_client, settings):
    repo = await repository(mongo_client, settings)
    assert await repo.head() == domain.EMPTY
    entries = domain.build_entries(domain.EMPTY, [signed(n) for n in range(12)], AT)
    assert await repo.append(entries[:3]) == 3
    assert await repo.append(entries[2:5]) == 0, "seq 2 is taken: nothing after it is written"
    head = await repo.head()
    assert head == domain.Head(2, entries[2].entry_hash)
    again = domain.build_entries(head, [signed(3), signed(1), signed(4)], AT)
    assert await repo.append(again) == 1, "rec-0001 v1 is archived already: the append stops there"
    head = await repo.head()
    assert await repo.append(domain.build_entries(head, [signed(n) for n in range(4, 12)], AT)) == 8
    log = await repo.entries()
    assert [e.seq for e in log] == list(range(12))
    assert domain.verify_chain(log) is None
    assert (await repo.head()).seq == 11, "seqs sort as numbers"
    assert [e.seq for e in await repo.entries(start=10)] == [10, 11]
    assert [e.seq for e in await repo.entries(start=2, limit=2)] == [2, 3]
    positions = await repo.positions([("rec-0003", 1), ("rec-0011", 1), ("rec-0011", 2)])
    assert {k: p.seq for k, p in positions.items()} == {("rec-0003", 1): 3, ("rec-0011", 1): 11}
    row = ArchivedRow("rec-0003", 1, 3, "79000703", "2025-2026", "student-0003", AT)
    assert await repo.add_rows([row]) == 1
    assert await repo.add_rows([row]) == 0


async def test_appenders_racing_on_one_log_keep_one_unbroken_chain(mongo_client, settings):
    repo = await repository(mongo_client, settings)
    metrics = ArchiveMetrics(CollectorRegistry())
    appenders = [LogHead() for _ in range(3)]
    chunks = [RecordsCompleted(records=[signed(n) for n in range(i * 5, i * 5 + 5)]) for i in range(9)]
    # Every chunk twice (a redelivery), each time through another appender with its own idea of the head.
    calls = [
        handlers.archive_records(chunk, repo, appenders[(i + k) % 3], metrics)
        for k in range(2)
        for i, chunk in enumerate(chunks)
    ]
    reports = await asyncio.gather(*calls)
    log = await repo.entries()
    assert len(log) == 45 and domain.verify_chain(log) is None
    assert len({e.key for e in log}) == 45
    seq_of = {e.key: e.seq for e in log}
    for report in reports:
        assert all(r.seq == seq_of[(r.record_id, r.version)] for r in report.records)
    assert await mongo_client[settings.names().database("archive")]["records"].count_documents({}) == 45


async def test_completed_records_are_archived_over_the_broker(mongo_client, settings):
    service = build_app(settings, mongo=mongo_client)
    first = RecordsCompleted(records=[signed(n) for n in range(4)])
    second = RecordsCompleted(records=[signed(4), signed(5)])
    async with probing(settings, RecordsArchived) as probes, running(service):
        for event in (first, second, first):
            await service.bus.publish(event)
        got: list[RecordsArchived] = []
        deadline = time.monotonic() + 60
        while len(got) < 3 and time.monotonic() < deadline:
            got += [
                RecordsArchived.model_validate_json(m.body)
                for m in await drain(settings.amqp_url, probes[RecordsArchived.ROUTING_KEY], timeout=1.0)
            ]
    by_id: dict[str, list[RecordsArchived]] = {}
    for event in got:
        by_id.setdefault(event.message_id, []).append(event)
    assert sorted(len(v) for v in by_id.values()) == [1, 2], "the redelivered chunk is reported again"
    seqs = {(r.record_id, r.seq, r.entry_hash) for e in got for r in e.records}
    assert sorted(s for _, s, _ in seqs) == list(range(6))

    db = mongo_client[settings.names().database("archive")]
    repo = MongoArchiveRepository(db)
    log = await repo.entries()
    assert domain.verify_chain(log) is None
    assert seqs == {(e.record_id, e.seq, e.entry_hash) for e in log}
    assert await db["records"].count_documents({}) == 6
    assert service.registry.get_sample_value("hocba_records_archived_total") == 6
    assert service.registry.get_sample_value("hocba_archive_log_entries") == 6
