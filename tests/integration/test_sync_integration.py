"""sync against real RabbitMQ, the MongoDB-wire server and the ministry simulator served over HTTP.

The archived records are sealed by the archive's certificate of a small test PKI, which sync is
given as its trust store (`trust`).
"""

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
from dataclasses import replace
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
from services.sync.domain import DELIVERED, PENDING, DeliveryPolicy
from services.sync.repository import MongoOutboxRepository
from shared.contracts.archive import CheckpointIssued, RecordsArchived
from shared.contracts.record import content_of
from shared.contracts.sync import ReconcileReport, RecordsDelivered, SyncStatus
from shared.crypto.vault import Vault
from shared.messaging import ERROR_HEADER, REASON_HEADER
from tests.records import identity, record_document
from tests.support import drain, free_port, probing, running
from tests.unit.sync.sealed import announced, archived_record, signed_checkpoint, trust

FAST = DeliveryPolicy(max_attempts=50, base_seconds=0.2, cap_seconds=0.5, lease_seconds=30.0)
#: FAST, with the relay looking for due entries five times a second.
EAGER = replace(FAST, relay_interval_seconds=0.2)


def archived(n: int, school: str = "79000702") -> RecordsArchived:
    """n record versions of `school` as the archive announces them: sealed by its certificate."""
    return announced(
        [
            archived_record(
                f"hb-{school}-{i:04d}",
                i,
                record_document(
                    f"hb-{school}-{i:04d}", 1, school, "2025-2026", f"s-{i}",
                    student={"student_ref": f"s-{i}", "identity": {**identity(f"0792120{i:05d}"), "full_name": "Lê Minh Châu"}},
                    subjects=[{"name": "Toán", "year": {"average": "8.5"}}],
                    learning_result={"year": "Tốt"},
                ),
                school_code=school,
                student_ref=f"s-{i}",
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


async def test_each_record_version_reaches_the_ministry_once(mongo_client, settings):
    store = ReceiptStore()
    event = archived(12)
    async with simulator(store, free_port()) as url:
        service = build_app(settings.model_copy(update={"ministry_url": url}), mongo=mongo_client, policy=FAST, trust=trust)
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
    assert all(isinstance(doc["payload"], bytes) and "full_name" not in str(doc["payload"]) for doc in outbox.values())
    kept = MongoOutboxRepository(db, Vault.for_service(settings, "sync"))
    payloads = [e.payload for e in (await kept.entries(list(outbox))).values()]
    assert all("full_name" not in str(payload) and payload["personal_id"] for payload in payloads), "only what the ministry needs"
    deliveries = [d for m in announced for d in RecordsDelivered.model_validate_json(m.body).deliveries]
    assert sorted(d.record_id for d in deliveries) == sorted(r.record_id for r in event.records)


async def test_entries_wait_through_a_ministry_outage_and_drain_after_it(mongo_client, settings):
    store = ReceiptStore()
    port = free_port()
    async with simulator(store, port) as url:
        pass  # the ministry was there, and now it is down
    service = build_app(settings.model_copy(update={"ministry_url": url}), mongo=mongo_client, policy=EAGER, trust=trust)
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


async def test_attack_a_forged_records_archived_event_gets_no_ministry_receipt(mongo_client, settings):
    """Reproduction (issue 9, 2): a RecordsArchived event with a made-up record and digest, and a checkpoint
    nobody signed, published on the broker by anyone with a broker login, got a ministry receipt through sync."""
    store = ReceiptStore()
    genuine = archived(1).records[0]
    made_up = genuine.model_copy(
        update={"digest": "f" * 64, "content": content_of({**genuine.document, "awards": ["Học sinh Xuất sắc"]})}
    )
    checkpoint = signed_checkpoint(1).checkpoint
    unsigned = CheckpointIssued(checkpoint=checkpoint.model_copy(update={"signature": "e30..c2ln"}))
    async with simulator(store, free_port()) as url:
        service = build_app(settings.model_copy(update={"ministry_url": url}), mongo=mongo_client, policy=EAGER, trust=trust)
        db = mongo_client[settings.names().database("sync")]
        names = settings.names()
        async with running(service):
            await service.bus.publish(RecordsArchived(records=[made_up]))
            await service.bus.publish(unsigned)
            dead = {
                message.ROUTING_KEY: await drain(
                    settings.amqp_url, names.dead_letter_queue(service.topology.queue_name(message.ROUTING_KEY)), timeout=10
                )
                for message in (RecordsArchived, CheckpointIssued)
            }
            await asyncio.sleep(1.0)  # relay ticks: nothing may be sent

    assert store.stats()["requests"] == 0 and store.receipts == {} and store.checkpoints == {}
    assert await db["outbox"].count_documents({}) == 0
    [records] = dead[RecordsArchived.ROUTING_KEY]
    assert records.headers[REASON_HEADER] == "invalid"
    assert f"{genuine.record_id} v1: it carries no seal by archive" in records.headers[ERROR_HEADER]
    assert "0792120" not in records.headers[ERROR_HEADER]
    [checkpoints] = dead[CheckpointIssued.ROUTING_KEY]
    assert checkpoints.headers[REASON_HEADER] == "invalid"


def hocba(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from hocba.cli import main; main()", *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=60
    )


async def test_the_sync_commands_talk_to_a_running_sync(mongo_client, settings, tmp_path):
    issuer, jwks = dev_issuer(tmp_path)
    store = ReceiptStore()
    async with simulator(store, free_port()) as url:
        settings = settings.model_copy(update={"ministry_url": url, "actor_issuer_jwks": jwks})
        service = build_app(settings, mongo=mongo_client, policy=EAGER, trust=trust)
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
            assert refused.returncode == 2 and "refused" in refused.stderr

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
            settings.model_copy(update={"ministry_url": url}),
            mongo=mongo_client,
            policy=replace(FAST, relay_interval_seconds=30),
            trust=trust,
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
            policy=EAGER,
            trust=trust,
        )
        async with running(trusted):

            async def delivered() -> bool:
                return await db["outbox"].count_documents({"status": DELIVERED}) == 1

            await eventually(delivered, what="delivery over mutual TLS")
    assert store.accepted == 1
