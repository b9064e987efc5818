"""signing against the MongoDB-wire server and real RabbitMQ: competing worker processes on one batch.

Storage promises are in test_signing_repository.py; the message flow runs against real RabbitMQ
in tests/wiring/test_signing_wiring.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from services.signing.app import build_app
from shared.contracts.grades import RecordsReady, RecordVersion
from shared.contracts.signing import (
    BatchCompleted,
    RecordsCompleted,
    RequestSignBatch,
    Signature,
)
from shared.service import ServiceApp
from tests.reviews import confirm_reviews
from tests.support import collect, drain, probing, running
from tests.unit.signing.trust import make_trust, record_version

SCHOOL, YEAR = "79000701", "2025-2026"
T0 = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return make_trust(tmp_path_factory.mktemp("signing-integration"))


def record(trust, n: int) -> RecordVersion:
    """Record n as grades publishes it, sealed."""
    return trust.sealed(record_version(n))


def signing_app(settings, mongo_client, trust, instance: str = ""):
    return build_app(
        settings.model_copy(update={"instance": instance}),
        mongo=mongo_client,
        signers=trust.checked_signers(),
        issuer_keys=trust.issuer.public_keys(),
    )


def requests(trust) -> list[RequestSignBatch]:
    """The homeroom teachers' requests, one per class."""
    return [
        trust.staff.homeroom_teacher(SCHOOL, c).signs(
            RequestSignBatch(school_code=SCHOOL, school_year=YEAR, role="homeroom_teacher", class_name=c)
        )
        for c in ("6A1", "6A2")
    ]


def principal(trust) -> RequestSignBatch:
    return trust.staff.principal(SCHOOL).signs(RequestSignBatch(school_code=SCHOOL, school_year=YEAR))


def signature(n: int, role: str = "principal") -> Signature:
    return Signature(
        record_id=f"rec-{n:04d}", version=1, role=role, key_id="k", digest="d" * 64, jws="h..s", signed_at=T0
    )


@contextlib.asynccontextmanager
async def also_running(service: ServiceApp) -> AsyncIterator[ServiceApp]:
    """Run another copy of a service on the same queues; it leaves the queues to the first copy."""
    task = asyncio.create_task(service.app.run())
    while not service.health.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    try:
        yield service
    finally:
        service.app.exit()
        await asyncio.wait_for(task, 30)


async def test_competing_workers_sign_each_record_once(mongo_client, settings, trust):
    first = signing_app(settings, mongo_client, trust, "signing-1")
    second = signing_app(settings, mongo_client, trust, "signing-2")
    async with probing(settings, RecordsCompleted, BatchCompleted) as probes, running(first), also_running(second):
        await first.bus.publish(
            RecordsReady(school_code=SCHOOL, school_year=YEAR, records=[record(trust, n) for n in range(60)])
        )
        db = mongo_client[settings.names().database("signing")]
        deadline = time.monotonic() + 30
        while await db["records"].count_documents({}) < 60 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await confirm_reviews(first.bus, trust.staff, SCHOOL, YEAR, ("6A1", "6A2"))
        for request in requests(trust):
            await first.bus.publish(request)
        await collect(settings.amqp_url, probes[BatchCompleted.ROUTING_KEY], BatchCompleted, lambda got: len(got) >= 2)
        request = principal(trust)
        await first.bus.publish(request)
        await second.bus.publish(request)  # the principal clicked twice
        done = await collect(settings.amqp_url, probes[BatchCompleted.ROUTING_KEY], BatchCompleted, bool)
        await collect(
            settings.amqp_url,
            probes[RecordsCompleted.ROUTING_KEY],
            RecordsCompleted,
            lambda got: len({r.record.record_id for m in got for r in m.records}) >= 60,
        )
        await asyncio.sleep(1.0)
        late = await drain(settings.amqp_url, probes[BatchCompleted.ROUTING_KEY], timeout=1.0)

    assert [(d.records_signed, d.records_total) for d in done] == [(60, 60)] and late == []
    keys = [(s["record_id"], s["role"]) async for s in db["signatures"].find()]
    assert len(keys) == len(set(keys)) == 180
    total = sum(
        app.registry.get_sample_value("hocba_records_signed_total", {"role": "principal"}) or 0
        for app in (first, second)
    )
    assert total == 60
