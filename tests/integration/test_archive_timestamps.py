"""archive on MongoDB and RabbitMQ with the development TSA over HTTP: a token kept per checkpoint, kept waiting while
the TSA is down and stamped by the loop once it is back, renewed on an operator's request over the broker."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from hocba.infra import free_port
from hocba.tsa import from_pki
from services.archive.app import build_app, stamping_from
from shared.contracts.archive import CheckpointIssued, RecordsArchived, RenewalProgress, RenewTimestamps
from shared.contracts.signing import BatchCompleted, RecordsCompleted
from shared.crypto.pki import TSA_SUBJECT, tsa_holder
from shared.crypto.timestamps import checkpoint_bytes, verify_chain, verify_timestamp
from shared.settings import Settings
from tests.support import collect, probing, running
from tests.tsa import serving
from tests.unit.archive.conftest import archive_keys
from tests.unit.signing.trust import make_trust, signed_record


@pytest.fixture
def trust(tmp_path):
    return make_trust(tmp_path / "trust")


def stamped_settings(settings: Settings, trust, port: int) -> Settings:
    return settings.model_copy(
        update={
            "pki_dir": trust.pki.folder,
            "pki_passphrase": "test passphrase",
            "tsa_url": f"http://127.0.0.1:{port}/",
            "tsa_timeout_seconds": 2.0,
            "tsa_retry_seconds": 0.2,
        }
    )


def archive_app(settings: Settings, mongo_client, trust):
    return build_app(
        settings,
        mongo=mongo_client,
        keys=archive_keys(trust),
        issuer_keys=trust.issuer.public_keys(),
        stamping=stamping_from(settings),
    )


async def a_batch(service, trust, numbers: range, batch: str) -> None:
    await service.bus.publish(RecordsCompleted(records=[signed_record(trust, n) for n in numbers], batch_id=batch))
    await service.bus.publish(
        BatchCompleted(
            batch_id=batch,
            school_code="79000701",
            school_year="2025-2026",
            records_signed=len(numbers),
            records_total=len(numbers),
            records_completed=len(numbers),
        )
    )


async def rows_in(collection, count: int, timeout: float = 30.0) -> list[dict]:
    """The documents of `collection` once there are `count` of them (or the time is up)."""
    deadline = time.monotonic() + timeout
    while await collection.count_documents({}) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return [doc async for doc in collection.find({}, sort=[("_id", 1)])]


async def test_every_checkpoint_is_stored_with_its_token_and_renewed_over_the_broker(mongo_client, settings, trust):
    port = free_port()
    stamped = stamped_settings(settings, trust, port)
    db = mongo_client[settings.names().database("archive")]
    first_tsa = trust.pki.certificate(TSA_SUBJECT)
    with serving(from_pki(trust.pki), port):
        service = archive_app(stamped, mongo_client, trust)
        async with probing(settings, CheckpointIssued, RecordsArchived) as probes, running(service):
            await a_batch(service, trust, range(4), "b1")
            [issued] = await collect(settings.amqp_url, probes[CheckpointIssued.ROUTING_KEY], CheckpointIssued, bool)
            [row] = await rows_in(db["checkpoint_timestamps"], 1)
    checkpoint = issued.checkpoint
    subject = checkpoint_bytes(checkpoint.model_dump(mode="json"))
    assert (row["tree_size"], row["index"]) == (checkpoint.tree_size, 0)
    assert isinstance(row["token"], bytes) and isinstance(row["gen_time"], datetime), "BSON binary and a real date"
    stated = verify_timestamp(row["token"], subject, trust.pki.anchors())
    kept = row["gen_time"].replace(tzinfo=UTC)  # BSON keeps milliseconds; the token is what counts
    assert stated.gen_time.replace(microsecond=stated.gen_time.microsecond // 1000 * 1000) == kept
    assert (await db["checkpoints"].find_one({"tree_size": checkpoint.tree_size}))["unstamped_ts"] is None

    trust.pki.create([tsa_holder()], renew=[TSA_SUBJECT])
    with serving(from_pki(trust.pki), port):
        service = archive_app(stamped, mongo_client, trust)
        async with running(service):
            renew = trust.staff.operator().signs(RenewTimestamps(until=first_tsa.not_valid_after_utc))
            progress = await service.bus.request(renew, RenewalProgress, timeout=60)
            again = await service.bus.request(
                trust.staff.operator().signs(RenewTimestamps(until=first_tsa.not_valid_after_utc)),
                RenewalProgress,
                timeout=60,
            )
    assert progress.error is None and (progress.examined, progress.renewed, progress.next_after) == (1, 1, None)
    assert again.renewed == 0
    chain = await rows_in(db["checkpoint_timestamps"], 2)
    assert [r["index"] for r in chain] == [0, 1]
    assert len(verify_chain(subject, [r["token"] for r in chain], trust.pki.anchors())) == 2


async def test_a_tsa_that_is_down_leaves_the_checkpoint_waiting_and_the_loop_stamps_it_when_back(
    mongo_client, settings, trust
):
    port = free_port()
    stamped = stamped_settings(settings, trust, port)
    db = mongo_client[settings.names().database("archive")]
    service = archive_app(stamped, mongo_client, trust)
    async with probing(settings, CheckpointIssued, RecordsArchived) as probes, running(service):
        await a_batch(service, trust, range(3), "b1")
        [issued] = await collect(settings.amqp_url, probes[CheckpointIssued.ROUTING_KEY], CheckpointIssued, bool)
        await asyncio.sleep(0.5)  # a few turns of the loop against a TSA that is down
        waiting = await db["checkpoints"].find_one({"tree_size": issued.checkpoint.tree_size})
        assert waiting is not None and waiting["unstamped_ts"] is not None, "the checkpoint is kept, waiting"
        assert await db["checkpoint_timestamps"].count_documents({}) == 0
        assert service.registry.get_sample_value("hocba_archive_checkpoints_unstamped") == 1
        assert service.registry.get_sample_value("hocba_archive_timestamps_total", {"outcome": "tsa-unavailable"}) >= 2

        with serving(from_pki(trust.pki), port):
            [row] = await rows_in(db["checkpoint_timestamps"], 1)
            deadline = time.monotonic() + 10
            while (
                service.registry.get_sample_value("hocba_archive_checkpoints_unstamped") and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.1)
            assert service.registry.get_sample_value("hocba_archive_checkpoints_unstamped") == 0

    assert row["tree_size"] == issued.checkpoint.tree_size
    verify_timestamp(row["token"], checkpoint_bytes(issued.checkpoint.model_dump(mode="json")), trust.pki.anchors())
