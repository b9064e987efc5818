"""A whole term end with the five services as separate processes on real RabbitMQ and MongoDB-wire.

Each service logs in to the broker as its own user, and the driver as the school tools (hocba.broker):
the permissions change nothing of the outcome, every record is delivered exactly once.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from urllib.parse import urlparse

import httpx
import pytest

from hocba.broker import rabbitmqctl_command, user_name
from hocba.keys import dev_issuer
from hocba.stack import SIMULATOR, Stack, StackConfig
from hocba.term_end import TermEnd
from shared.messaging import delete_exchanges
from shared.mongo import make_client
from shared.settings import Settings
from tests.support import amqp_url

STUDENTS = 200

#: Which collections each service owns (DESIGN.md §1); nothing else may appear in its database. Those that
#: answer reads of a student keep their access log (issue 9).
OWNED = {
    "identity": {"students", "access_log"},
    "grades": {"enrolments", "assessments", "terms", "records", "access_log"},
    "signing": {"records", "signatures", "batches"},
    "archive": {"log", "records", "checkpoints", "access_log"},
    "sync": {"outbox", "receipts"},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    namespace = f"e2e{uuid.uuid4().hex[:8]}."
    config = StackConfig(
        data_dir=tmp_path_factory.mktemp("stack"),
        namespace=namespace,
        amqp_url=amqp_url(),
        mongo_url=os.environ.get("MONGO_URL") or None,
        fixed_ports=False,
        ephemeral=True,
    )
    running = Stack(config)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def settings(stack) -> Settings:
    """The driver's: the school tools' broker login, as the school management application has it."""
    return Settings(amqp_url=stack.url_for("school"), namespace=stack.config.namespace, chunk_size=50)


def connected_users(rabbitmqctl: str) -> set[str]:
    """Who is logged in to the local broker now."""
    listed = subprocess.run(
        [rabbitmqctl, "list_connections", "user", "--quiet", "--no-table-headers"],
        capture_output=True, text=True, timeout=30, check=False,
    ).stdout
    return {line.strip() for line in listed.splitlines() if line.strip()}


def test_each_service_process_logs_in_as_its_own_broker_user(stack):
    namespace = stack.config.namespace
    for child in stack.children:
        given = urlparse(child.env.get("AMQP_URL", "")).username
        assert given == (None if child.name == SIMULATOR else user_name(namespace, child.name)), child.name
    tool = rabbitmqctl_command()
    if tool and urlparse(stack.config.amqp_url).hostname in {"127.0.0.1", "localhost"}:
        assert {user_name(namespace, s) for s in OWNED} <= connected_users(tool)


async def test_every_record_is_signed_archived_and_delivered_once(stack, settings):
    issuer, _ = dev_issuer(stack.config.data_dir)
    run = TermEnd(settings, issuer, schools=1, students=STUDENTS, stage_timeout=180)
    results = {r.name: r.count for r in await run.run()}
    assert results == {
        "register": STUDENTS,
        "assess": STUDENTS * 12 * 2,
        "assemble": STUDENTS,
        "sign": STUDENTS,
        "archive": STUDENTS,
        "deliver": STUDENTS,
    }
    assert not stack.dead_children(), "a service process died during the run"

    names = settings.names()
    client = make_client(stack.mongo_url)
    try:
        signing = client[names.database("signing")]
        # Three signatures a record: homeroom teacher, principal, school seal.
        assert await signing["signatures"].count_documents({}) == STUDENTS * 3
        keys = {(s["record_id"], s["version"], s["role"]) async for s in signing["signatures"].find()}
        assert len(keys) == STUDENTS * 3, "a record was signed twice for the same role"

        archive = client[names.database("archive")]
        assert await archive["log"].count_documents({}) == STUDENTS
        archived = {(e["record_id"], e["version"]) async for e in archive["log"].find()}
        assert len(archived) == STUDENTS, "a record version was archived twice"

        sync = client[names.database("sync")]
        assert await sync["receipts"].count_documents({"kind": "record"}) == STUDENTS

        prefix = names.database("")
        databases = {d for d in await client.list_database_names() if d.startswith(prefix)}
        assert databases == {names.database(s) for s in OWNED}
        for service, owned in OWNED.items():
            collections = set(await client[names.database(service)].list_collection_names())
            assert collections <= owned, f"{service}'s database holds {collections - owned}"
    finally:
        await client.close()

    with httpx.Client(base_url=stack.simulator.base_url) as ministry:
        stats = ministry.get("/v1/stats").json()
        held = {r["idempotency_key"] for r in ministry.get("/v1/receipts").json()["receipts"]}
    assert stats["accepted"] == STUDENTS
    assert held == {f"{record_id}:{version}" for record_id, version in archived}
    await delete_exchanges(stack.config.amqp_url, names)
