"""sync against real RabbitMQ, the MongoDB-wire server and the ministry simulator served over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hocba.keys import dev_issuer
from hocba.ministry_simulator import ReceiptStore, create_app
from services.sync.app import build_app
from services.sync.domain import (
    DELIVERED,
    PARKED,
    PENDING,
    SENDING,
    Attempt,
    DeliveryPolicy,
    Outcome,
    after_failure,
    new_checkpoint_entry,
    new_entry,
    receipt_from,
)
from services.sync.repository import INDEXES, MongoOutboxRepository
from shared.contracts.archive import ArchivedRecord, Checkpoint, CheckpointIssued, RecordsArchived
from shared.contracts.sync import CheckpointDelivered, ReconcileReport, RecordsDelivered, SyncStatus
from shared.mongo import ensure_indexes
from tests.support import drain, free_port, probing, running

FAST = DeliveryPolicy(max_attempts=50, base_seconds=0.2, cap_seconds=0.5, lease_seconds=30.0)


def archived(n: int, school: str = "79000702") -> RecordsArchived:
    return RecordsArchived(
        records=[
            ArchivedRecord(
                record_id=f"hb-{school}-{i:04d}",
                version=1,
                school_code=school,
                school_year="2025-2026",
                student_ref=f"s-{i}",
                seq=i,
                entry_hash=f"{i:064x}",
                digest=f"{i + 11:064x}",
                document={
                    "record_id": f"hb-{school}-{i:04d}",
                    "student": {"identity": {"personal_id": f"0792120{i:05d}", "full_name": "Lê Minh Châu"}},
                    "subjects": [{"name": "Toán", "year": {"average": "8.5"}}],
                    "learning_result": {"year": "Tốt"},
                },
            )
            for i in range(n)
        ]
    )


@contextlib.asynccontextmanager
async def simulator(store: ReceiptStore, port: int, **tls: object) -> AsyncIterator[str]:
    """The ministry simulator served by uvicorn in this event loop, on `port`, until the block ends.

    `tls` takes uvicorn's ssl_* options; the URL is then https.
    """
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(store), host="127.0.0.1", port=port, log_level="warning", lifespan="off", **tls  # type: ignore[arg-type]
        )
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done():
            task.result()
        if time.monotonic() > deadline:
            raise TimeoutError("the simulator did not start")
        await asyncio.sleep(0.02)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_claims_are_exclusive_and_an_expired_lease_is_taken_again(mongo_client, settings):
    db = mongo_client[settings.names().database("sync")]
    await ensure_indexes(db, INDEXES)
    repo = MongoOutboxRepository(db)
    now = datetime.now(UTC)
    entries = [new_entry(r, now) for r in archived(20).records]
    assert await repo.add_new(entries) == 20
    assert await repo.add_new(entries[:5]) == 0

    keys = [e.key for e in entries]
    lease = now + timedelta(seconds=30)
    first, second = await asyncio.gather(
        repo.claim(keys, now, lease, "a", 20), repo.claim(keys, now, lease, "b", 20)
    )
    assert not {e.key for e in first} & {e.key for e in second}
    assert {e.key for e in first} | {e.key for e in second} == set(keys)
    assert {e.status for e in first + second} == {SENDING}
    assert await repo.claim(None, now + timedelta(seconds=10), lease, "c", 100) == []

    later = now + timedelta(seconds=31)
    taken = await repo.claim(None, later, later + timedelta(seconds=30), "d", 5)
    assert len(taken) == 5 and {e.claim for e in taken} == {"d"}
    assert (await repo.look()).backlog == 20


async def test_each_record_version_reaches_the_ministry_once(mongo_client, settings):
    store = ReceiptStore()
    event = archived(12)
    async with simulator(store, free_port()) as url:
        service = build_app(settings.model_copy(update={"ministry_url": url}), mongo=mongo_client, policy=FAST)
        async with probing(settings, RecordsDelivered) as probes, running(service):
            await service.bus.publish(event)
            await service.bus.publish(event)  # a redelivery
            await service.bus.publish(event.model_copy(update={"message_id": "another-archive-event"}))

            db = mongo_client[settings.names().database("sync")]

            async def all_delivered() -> bool:
                return await db["outbox"].count_documents({"status": DELIVERED}) == 12

            await eventually(all_delivered, what="12 delivered outbox entries")
            await asyncio.sleep(1.5)  # a relay tick or two: nothing more may be sent
            announced = await drain(settings.amqp_url, probes[RecordsDelivered.ROUTING_KEY], timeout=5)

    assert (store.accepted, store.duplicates, store.requests) == (12, 0, 12)
    assert await db["outbox"].count_documents({}) == 12
    receipts = [doc async for doc in db["receipts"].find({})]
    assert len(receipts) == 12
    assert {r["_id"]: r["receipt_id"] for r in receipts} == {k: v["receipt_id"] for k, v in store.receipts.items()}
    outbox = {doc["_id"]: doc async for doc in db["outbox"].find({})}
    assert all(outbox[r["_id"]]["receipt"]["receipt_id"] == r["receipt_id"] for r in receipts)
    assert all("full_name" not in str(doc["payload"]) for doc in outbox.values())
    deliveries = [d for m in announced for d in RecordsDelivered.model_validate_json(m.body).deliveries]
    assert sorted(d.record_id for d in deliveries) == sorted(r.record_id for r in event.records)


async def test_entries_wait_through_a_ministry_outage_and_drain_after_it(mongo_client, settings):
    store = ReceiptStore()
    port = free_port()
    async with simulator(store, port) as url:
        pass  # the ministry was there, and now it is down
    service = build_app(
        settings.model_copy(update={"ministry_url": url}), mongo=mongo_client, policy=FAST, relay_interval=0.2
    )
    db = mongo_client[settings.names().database("sync")]
    async with running(service):
        await service.bus.publish(archived(5))

        async def all_failed_once() -> bool:
            return await db["outbox"].count_documents({"status": PENDING, "attempts": {"$gte": 1}}) == 5

        await eventually(all_failed_once, what="5 pending entries with a failed attempt")
        failed = service.registry.get_sample_value("hocba_sync_deliveries_total", {"kind": "record", "outcome": "failed"})
        assert failed >= 5
        assert store.stats()["requests"] == 0

        async with simulator(store, port):

            async def drained() -> bool:
                return await db["outbox"].count_documents({"status": DELIVERED}) == 5

            await eventually(drained, what="the outbox to drain after the outage")

    assert (store.accepted, store.duplicates, store.requests) == (5, 0, 5)
    assert await db["receipts"].count_documents({}) == 5
    errors = [doc["last_error"] async for doc in db["outbox"].find({})]
    assert errors == [None] * 5
    assert service.registry.get_sample_value("hocba_sync_backlog_entries") == 0


def checkpoint_issued(tree_size: int, origin: str = "hocba.test/archive") -> CheckpointIssued:
    return CheckpointIssued(
        checkpoint=Checkpoint(
            origin=origin,
            tree_size=tree_size,
            root_hash=f"{tree_size:064x}",
            issued_at=datetime(2026, 5, 20, tzinfo=UTC),
            signature="e30..c2ln",
        )
    )


async def test_the_mongo_outbox_holds_records_and_checkpoints_and_answers_operators(mongo_client, settings):
    db = mongo_client[settings.names().database("sync")]
    await ensure_indexes(db, INDEXES)
    repo = MongoOutboxRepository(db)
    now = datetime.now(UTC)
    records = [new_entry(r, now) for r in archived(4).records]
    checkpoints = [new_checkpoint_entry(checkpoint_issued(n).checkpoint, now) for n in (2, 4)]
    assert await repo.add_new(records + checkpoints) == 6
    assert await repo.add_new([new_checkpoint_entry(checkpoint_issued(4).checkpoint, now)]) == 0

    taken = await repo.claim(None, now, now + timedelta(seconds=30), "a", 10)
    assert len(taken) == 6
    by_key = {e.key: e for e in taken}
    receipt = receipt_from(by_key[records[0].key], {"receipt_id": "r-0", "received_at": "t"}, now)
    stale = receipt_from(by_key[records[1].key], {"receipt_id": "r-1"}, now)
    cp = receipt_from(by_key[checkpoints[1].key], {"receipt_id": "r-cp"}, now)
    parked = after_failure(by_key[records[2].key], Attempt(Outcome.PARK, 0.1, error="HTTP 422"), now, 0.0, FAST)
    later = after_failure(by_key[records[3].key], Attempt(Outcome.RETRY, 0.1, error="HTTP 503"), now, 0.0, FAST)
    assert await repo.record("a", [receipt, cp], [parked, later]) == sorted([receipt.key, cp.key])
    assert await repo.record("someone-else", [stale], []) == []

    doc = await db["outbox"].find_one({"_id": records[0].key})
    assert doc["status"] == DELIVERED and doc["receipt"]["receipt_id"] == "r-0"
    assert isinstance(doc["receipt"]["delivered_at"], datetime)
    assert await db["receipts"].count_documents({}) == 2

    look = await repo.look()
    assert (look.backlog, look.parked) == (3, 1)  # one failed and waiting, the stale one and a checkpoint still sending
    assert look.oldest_waiting is not None and abs((look.oldest_waiting - now).total_seconds()) < 1

    summary = await repo.summary(parked_limit=10)
    assert summary.counts[("record", PARKED)] == 1 and summary.counts[("checkpoint", DELIVERED)] == 1
    assert [e.key for e in summary.parked] == [records[2].key] and summary.parked[0].last_error == "HTTP 422"
    assert (summary.last_checkpoint.number, summary.last_checkpoint.receipt_id) == (4, "r-cp")

    held = [h async for h in repo.holdings()]
    assert [h.key for h in held] == sorted(e.key for e in records + checkpoints)
    assert {h.key: h.seq for h in held if h.kind == "record"} == {e.key: e.seq for e in records}
    assert await repo.archive_size() == 4

    assert await repo.resume(None, now) == [records[2].key]
    assert await repo.resume([records[0].key, records[3].key, "unknown"], now) == [records[0].key]
    statuses = {doc["_id"]: (doc["status"], doc["attempts"]) async for doc in db["outbox"].find({"kind": "record"})}
    assert statuses[records[2].key] == (PENDING, 0) and statuses[records[0].key] == (PENDING, 0)

    # Sent again, the same key gets a new receipt: the receipts collection keeps one document, the new one.
    again = await repo.claim([records[0].key], now + timedelta(seconds=1), now + timedelta(seconds=31), "b", 1)
    renewed = receipt_from(again[0], {"receipt_id": "r-0-again"}, now)
    assert await repo.record("b", [renewed], []) == [records[0].key]
    assert [d["receipt_id"] async for d in db["receipts"].find({"_id": records[0].key})] == ["r-0-again"]


async def test_indexes_of_earlier_versions_are_dropped_so_checkpoints_fit(mongo_client, settings):
    db = mongo_client[settings.names().database("sync")]
    await db["outbox"].create_index([("record_id", 1), ("version", 1)], unique=True, name="record_version_unique")
    await ensure_indexes(db, INDEXES)
    repo = MongoOutboxRepository(db)
    await repo.drop_obsolete_indexes()
    now = datetime.now(UTC)
    entries = [new_checkpoint_entry(checkpoint_issued(n).checkpoint, now) for n in (1, 2, 3)]
    assert await repo.add_new(entries) == 3


async def test_checkpoints_published_as_mandatory_messages_reach_the_ministry(mongo_client, settings):
    store = ReceiptStore()
    async with simulator(store, free_port()) as url:
        service = build_app(settings.model_copy(update={"ministry_url": url}), mongo=mongo_client, policy=FAST)
        async with probing(settings, CheckpointDelivered) as probes, running(service):
            for size in (5, 5, 9):
                await service.bus.publish(checkpoint_issued(size))  # mandatory: raises if no queue takes it

            async def both() -> bool:
                return len(store.checkpoints) == 2

            await eventually(both, what="two checkpoints at the ministry")
            announced = await drain(settings.amqp_url, probes[CheckpointDelivered.ROUTING_KEY], timeout=5)
    assert sorted(CheckpointDelivered.model_validate_json(m.body).tree_size for m in announced) == [5, 9]
    db = mongo_client[settings.names().database("sync")]
    assert await db["outbox"].count_documents({"kind": "checkpoint"}) == 2


def hocba(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from hocba.cli import main; main()", *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=60
    )


async def test_the_sync_commands_talk_to_a_running_sync(mongo_client, settings, tmp_path):
    issuer, jwks = dev_issuer(tmp_path)
    store = ReceiptStore()
    async with simulator(store, free_port()) as url:
        settings = settings.model_copy(update={"ministry_url": url, "actor_issuer_jwks": jwks})
        service = build_app(settings, mongo=mongo_client, policy=FAST, relay_interval=0.2)
        env = {"AMQP_URL": settings.amqp_url, "HOCBA_NAMESPACE": settings.namespace, "HOCBA_DATA_DIR": str(tmp_path)}
        async with running(service):
            store.faults.update({"fail_next": 3, "fail_status": 422})
            await service.bus.publish(archived(3))
            db = mongo_client[settings.names().database("sync")]

            async def parked() -> bool:
                return await db["outbox"].count_documents({"status": "parked"}) == 3

            await eventually(parked, what="three parked entries")
            shown = await asyncio.to_thread(hocba, "sync", "status", "--json", env=env)
            assert shown.returncode == 0, shown.stderr
            status = SyncStatus.model_validate_json(shown.stdout)
            assert status.parked == 3 and "HTTP 422" in status.parked_entries[0].last_error

            text = await asyncio.to_thread(hocba, "sync", "status", env=env)
            assert "parked" in text.stdout and "hocba sync retry" in text.stdout

            refused = await asyncio.to_thread(hocba, "sync", "retry", env={**env, "HOCBA_DATA_DIR": str(tmp_path / "none")})
            assert refused.returncode == 2 and "refused" in refused.stdout

            resumed = await asyncio.to_thread(hocba, "sync", "retry", env=env)
            assert resumed.returncode == 0 and "resumed 3 entries" in resumed.stdout, resumed.stdout + resumed.stderr

            async def delivered() -> bool:
                return await db["outbox"].count_documents({"status": DELIVERED}) == 3

            await eventually(delivered, what="the resumed entries delivered")
            clean = await asyncio.to_thread(hocba, "sync", "reconcile", env=env)
            assert clean.returncode == 0, clean.stdout
            assert "3 match" in clean.stdout

            store.receipts.pop(sorted(store.receipts)[0])
            differ = await asyncio.to_thread(hocba, "sync", "reconcile", "--json", env=env)
            assert differ.returncode == 1
            report = ReconcileReport.model_validate_json(differ.stdout)
            assert {d.name: d.count for d in report.differences if d.count} == {"missing_at_ministry": 1}


def make_pki(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    now = datetime.now(UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def certificate(subject: str, public, issuer: x509.Name, signer, ca: bool, san=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(signer, hashes.SHA256())

    def write(name: str, data: bytes) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    def pem_key(k) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    ca_key, server_key, client_key = key(), key(), key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ministry CA")])
    ca = certificate("test ministry CA", ca_key.public_key(), ca_name, ca_key, True)
    server = certificate(
        "127.0.0.1", server_key.public_key(), ca_name, ca_key, False, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    client = certificate("hocba sync", client_key.public_key(), ca_name, ca_key, False)
    pem = serialization.Encoding.PEM
    return {
        "ca": write("ca.pem", ca.public_bytes(pem)),
        "server_cert": write("server.pem", server.public_bytes(pem)),
        "server_key": write("server.key", pem_key(server_key)),
        "client_cert": write("client.pem", client.public_bytes(pem)),
        "client_key": write("client.key", pem_key(client_key)),
    }


async def test_delivery_over_mutual_tls_needs_the_configured_ca_and_client_certificate(mongo_client, settings, tmp_path):
    pki = make_pki(tmp_path)
    tls = {
        "ssl_certfile": str(pki["server_cert"]),
        "ssl_keyfile": str(pki["server_key"]),
        "ssl_ca_certs": str(pki["ca"]),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }
    store = ReceiptStore()
    async with simulator(store, free_port(), **tls) as url:
        assert url.startswith("https://")
        untrusted = build_app(
            settings.model_copy(update={"ministry_url": url}), mongo=mongo_client, policy=FAST, relay_interval=30
        )
        db = mongo_client[settings.names().database("sync")]
        async with running(untrusted):
            await untrusted.bus.publish(archived(1))

            async def refused() -> bool:
                return await db["outbox"].count_documents({"attempts": {"$gte": 1}}) == 1

            await eventually(refused, what="a failed attempt without the CA")
        assert "CERTIFICATE_VERIFY_FAILED" in (await db["outbox"].find_one({}))["last_error"]
        assert store.requests == 0

        trusted = build_app(
            settings.model_copy(
                update={
                    "ministry_url": url,
                    "ministry_ca_file": pki["ca"],
                    "ministry_client_cert": pki["client_cert"],
                    "ministry_client_key": pki["client_key"],
                }
            ),
            mongo=mongo_client,
            policy=FAST,
            relay_interval=0.2,
        )
        async with running(trusted):

            async def delivered() -> bool:
                return await db["outbox"].count_documents({"status": DELIVERED}) == 1

            await eventually(delivered, what="delivery over mutual TLS")
    assert store.accepted == 1
