"""Broker users against the real RabbitMQ: each identity may publish, bind and consume what the table gives it,
and nothing else (issue 9, items 1 and 4).

Before this change every service, the command line and KEDA shared one login, with which anyone could
publish any routing key and bind a queue to `#`. The `test_attack_...` tests replay those attacks with
the login of one identity, as provisioned here by `rabbitmqctl import_definitions` (the management-API
path has a test of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import aio_pika
import httpx
import pytest
from aiormq.exceptions import ChannelAccessRefused, ProbableAuthenticationError
from typer.testing import CliRunner

from hocba.broker import (
    IDENTITIES,
    BrokerUsers,
    ManagementApi,
    Provisioner,
    Rabbitmqctl,
    dead_letter_policy_name,
    definitions_text,
    provisioner_for,
    rabbitmqctl_command,
    routing_keys,
    user_name,
    with_login,
)
from hocba.broker import app as broker_app
from hocba.infra import MANAGEMENT_PORT, port_open
from hocba.watch import Watch
from services.grades.app import SigningSignatures
from services.signing.app import build_app as signing_app
from services.signing.repository import InMemorySigningRepository
from shared.auth import ServiceIdentity
from shared.contracts.archive import AuditArchive, IssueCheckpoint
from shared.contracts.grades import RecordAssessments, RecordsReady
from shared.contracts.identity import RegisterStudents, RotateIdentityKey
from shared.contracts.signing import Signature, SignWork
from shared.contracts.sync import Reconcile, RetryParked
from shared.messaging import Bus, delete_exchanges, delete_queues
from shared.settings import SERVICES, Names, Settings
from tests.support import depth, needs, running
from tests.unit.signing.trust import make_trust

Action = Callable[[aio_pika.abc.AbstractChannel], Awaitable[object]]
#: Every routing key some identity publishes, sends, consumes or watches.
EVERY_KEY = sorted(
    set().union(*(routing_keys(i.publishes + i.sends + i.consumes + i.watches) for i in IDENTITIES.values()))
)
#: A made-up record version with no token, as the attack of issue 9 item 1 sent it.
FORGED_RECORD = b'{"records": [{"record_id": "forged", "version": 1, "document": {"award": "excellent"}}]}'


@pytest.fixture(scope="module")
def users_namespace() -> str:
    """One namespace for the module (not `namespace`: the layer removes that one's exchanges after each test)."""
    return f"bu{uuid.uuid4().hex[:8]}."


def local_tool(rabbit_url: str) -> str | None:
    """rabbitmqctl, when the broker runs on this machine and the tool is installed."""
    local = urlparse(rabbit_url).hostname in {"127.0.0.1", "localhost", "::1"}
    return rabbitmqctl_command() if local else None


def provisioner(rabbit_url: str) -> Provisioner:
    tool = local_tool(rabbit_url)
    return Rabbitmqctl(tool) if tool else provisioner_for(rabbit_url)


@pytest.fixture(scope="module")
def users(rabbit_url, users_namespace, tmp_path_factory) -> Iterator[BrokerUsers]:
    """Every identity of a fresh namespace, provisioned with rabbitmqctl on the local broker."""
    provisioned = BrokerUsers.provision(
        rabbit_url, users_namespace, tmp_path_factory.mktemp("broker"), provisioner(rabbit_url)
    )
    yield provisioned
    provisioned.remove()
    asyncio.run(delete_exchanges(rabbit_url, Names(users_namespace)))


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    connection = await aio_pika.connect(url)
    try:
        yield connection
    finally:
        await connection.close()


async def refusal(connection: aio_pika.abc.AbstractConnection, action: Action) -> str | None:
    """What the broker said when it refused `action` on a channel of its own (None: it allowed it)."""
    channel = await connection.channel()
    try:
        await action(channel)
    except ChannelAccessRefused as exc:
        return str(exc)
    await channel.close()
    return None


def publishing(names: Names, routing_key: str, body: bytes = b"{}") -> Action:
    async def publish(channel: aio_pika.abc.AbstractChannel) -> None:
        exchange = await channel.get_exchange(names.exchange, ensure=False)
        await exchange.publish(aio_pika.Message(body), routing_key=routing_key)

    return publish


def binding(names: Names, queue: str, routing_key: str) -> Action:
    """Declare `queue` ("" for a server-named one) and bind it to `routing_key` on the namespace's exchange."""

    async def bind(channel: aio_pika.abc.AbstractChannel) -> None:
        exchange = await channel.declare_exchange(names.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        declared = await channel.declare_queue(queue, exclusive=not queue, auto_delete=not queue)
        await declared.bind(exchange, routing_key=routing_key)

    return bind


async def ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    return None


def consuming(queue: str) -> Action:
    async def consume(channel: aio_pika.abc.AbstractChannel) -> None:
        declared = await channel.declare_queue(queue, passive=True)
        await declared.consume(ignore)

    return consume


def own_queue(names: Names, identity: str, what: str) -> str:
    """Where `identity` may bind: a queue of its own (a service), or a server-named one (the command line)."""
    return names.queue(identity, what) if identity in SERVICES else ""


# --- publishing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in IDENTITIES if n != "grades"])
async def test_attack_a_forged_ready_record_is_refused_to_anyone_but_grades(name, users):
    """Reproduction of issue 9 item 1: a `grades.record.ready.v2` with a made-up record, published by someone
    who holds a broker login. Only grades may publish that routing key."""
    async with connected(users.url(name)) as connection:
        said = await refusal(connection, publishing(Names(users.namespace), RecordsReady.ROUTING_KEY, FORGED_RECORD))
    assert said is not None and "ACCESS_REFUSED" in said and f"user '{users.user(name)}'" in said


@pytest.mark.parametrize("name", IDENTITIES)
async def test_each_identity_may_publish_exactly_the_routing_keys_of_its_row(name, users):
    allowed = IDENTITIES[name].may_publish()
    refused = set()
    async with connected(users.url(name)) as connection:
        for key in EVERY_KEY:
            if await refusal(connection, publishing(Names(users.namespace), key)) is not None:
                refused.add(key)
    assert refused == set(EVERY_KEY) - allowed


@pytest.mark.parametrize("message", [RotateIdentityKey, IssueCheckpoint, AuditArchive, RetryParked, Reconcile])
async def test_attack_the_school_tools_cannot_send_an_operators_command(message, users):
    """Reproduction: with the school tools' login, an operator's command (key rotation, checkpoint, audit,
    the ministry outbox) is published as if an operator had sent it."""
    async with connected(users.url("school")) as connection:
        assert await refusal(connection, publishing(Names(users.namespace), RegisterStudents.ROUTING_KEY)) is None
        said = await refusal(connection, publishing(Names(users.namespace), message.ROUTING_KEY))
    assert said is not None and "ACCESS_REFUSED" in said


# --- binding and consuming ------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in IDENTITIES if n != "monitor"])
async def test_attack_nobody_may_bind_a_queue_to_everything(name, users):
    """Reproduction of issue 9 item 4: a queue bound to `#` on the exchange received every message type, records
    and tokens included. No identity may bind `#` (nor `*.*.*.v1`), even to a queue it may declare."""
    names = Names(users.namespace)
    async with connected(users.url(name)) as connection:
        for key in ("#", "*.*.*.v1", "grades.#"):
            said = await refusal(connection, binding(names, own_queue(names, name, "spy"), key))
            assert said is not None and f"topic '{key}'" in said, key
    await delete_queues(users.admin_url, [names.queue(name, "spy")])


@pytest.mark.parametrize("name", [n for n in IDENTITIES if n != "monitor"])
async def test_each_identity_may_bind_exactly_the_keys_it_consumes_or_watches(name, users):
    names = Names(users.namespace)
    identity = IDENTITIES[name]
    refused = set()
    async with connected(users.url(name)) as connection:
        for key in EVERY_KEY:
            if await refusal(connection, binding(names, own_queue(names, name, "probe"), key)) is not None:
                refused.add(key)
    await delete_queues(users.admin_url, [names.queue(name, "probe")])
    assert refused == set(EVERY_KEY) - identity.may_bind()


async def test_a_service_cannot_declare_or_read_another_services_queues(users):
    names = Names(users.namespace)
    work = names.queue("signing", SignWork.ROUTING_KEY)
    async with connected(users.admin_url) as admin:
        channel = await admin.channel()
        await channel.declare_queue(work, durable=True, arguments={"x-queue-type": "quorum"})
    try:
        async with connected(users.url("sync")) as sync:
            assert await refusal(sync, consuming(work)) is not None
            assert await refusal(sync, lambda ch: ch.declare_queue(names.queue("signing", "x"))) is not None
            # The namespace is a literal prefix: "bu1234." does not stand for "bu1234X".
            lookalike = f"{users.namespace[:-1]}Xsync.x"
            assert await refusal(sync, lambda ch: ch.declare_queue(lookalike)) is not None
            assert await refusal(sync, lambda ch: ch.declare_queue(names.queue("sync", "x"), auto_delete=True)) is None
    finally:
        await delete_queues(users.admin_url, [work, names.queue("sync", "x")])


async def test_attack_the_monitor_can_neither_publish_nor_consume(users):
    """Reproduction: KEDA's login (shared with the services before) published and consumed like any of them."""
    names = Names(users.namespace)
    work = names.queue("signing", SignWork.ROUTING_KEY)
    async with connected(users.admin_url) as admin:
        channel = await admin.channel()
        await channel.declare_queue(work, durable=True, arguments={"x-queue-type": "quorum"})
    try:
        async with connected(users.url("monitor")) as monitor:
            for key in (RecordsReady.ROUTING_KEY, SignWork.ROUTING_KEY):
                assert await refusal(monitor, publishing(names, key)) is not None
            assert await refusal(monitor, consuming(work)) is not None
            assert await refusal(monitor, binding(names, "", SignWork.ROUTING_KEY)) is not None
            # What KEDA needs: the depth of the work queue (a passive declaration tells it).
            channel = await monitor.channel()
            declared = await channel.declare_queue(work, passive=True)
            assert declared.declaration_result.message_count == 0
    finally:
        await delete_queues(users.admin_url, [work])


# --- the services' and the command line's real start-up -------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
async def test_a_service_declares_its_queues_and_dead_letters_with_its_own_login(name, users):
    bus = Bus(Settings(amqp_url=users.url(name), namespace=users.namespace), name)
    for message in IDENTITIES[name].consumes:
        bus.topology.queue_for(message)
    await bus.declare_topology(attempts=1)
    await bus.broker.connect()
    try:
        [queue, *_] = bus.topology.queues
        await bus.dead_letter(queue, b"{}", {}, "invalid", "a test's dead letter")
    finally:
        await bus.broker.stop()
        await bus.remove_queues()


@pytest.mark.parametrize("role", ["operator", "school"])
async def test_the_command_line_watches_what_its_role_follows(role, users):
    watch = Watch(users.url(role), Names(users.namespace))
    for message in IDENTITIES[role].watches:
        watch.on(message, lambda _: None)
    await watch.start()
    await watch.stop()


async def test_grades_asks_signing_which_versions_carry_a_signature_each_with_its_own_login(users, tmp_path):
    """The request a year closed again makes before replacing a version: sent with grades' broker login and its own
    certificate, taken and answered by signing with its login, the answer back through direct reply-to."""
    trust = make_trust(tmp_path)
    repo = InMemorySigningRepository()
    homeroom = Signature(
        record_id="rec-0000",
        version=1,
        role="homeroom_teacher",
        key_id="k",
        digest="d" * 64,
        jws="h..s",
        signed_at=datetime.now(UTC),
    )
    await repo.add_signatures([(homeroom, "79000701", "2025-2026")])
    keys = trust.issuer.public_keys().for_service("signing", services=trust.pki.trust_store)
    signing_settings = Settings(amqp_url=users.url("signing"), namespace=users.namespace, data_dir=tmp_path / "hocba")
    signing = signing_app(signing_settings, repository=repo, signers=trust.checked_signers(), issuer_keys=keys)
    grades = Bus(Settings(amqp_url=users.url("grades"), namespace=users.namespace), "grades")
    ask = SigningSignatures(grades, ServiceIdentity("grades", lambda: trust.signers.signer_for("svc-grades")), 20.0)
    async with running(signing):
        await grades.broker.connect()
        try:
            held = await ask("79000701", "2025-2026", [("rec-0000", 1), ("rec-0001", 1)])
        finally:
            await grades.broker.stop()
    assert held == {("rec-0000", 1): ["homeroom_teacher"]}


# --- dead letters expire --------------------------------------------------------------------------


def policies(rabbit_url: str) -> dict[str, dict]:
    """The broker's policies on the default virtual host, by name: rabbitmqctl's list, else the management API's."""
    tool = local_tool(rabbit_url)
    if tool:
        listed = subprocess.run(
            [tool, "list_policies", "--vhost", "/", "--formatter", "json", "--quiet"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout
        found = json.loads(listed)
        return {p["name"]: {**p, "definition": json.loads(p["definition"])} for p in found}
    host = urlparse(rabbit_url).hostname or "127.0.0.1"
    needs(port_open(host, MANAGEMENT_PORT), f"RabbitMQ's management API on {host}:{MANAGEMENT_PORT}")
    admin = ManagementApi.at(f"http://{host}:{MANAGEMENT_PORT}/", rabbit_url)
    answer = httpx.get(f"{admin.url}api/policies/%2F", auth=(admin.user, admin.password)).raise_for_status()
    return {p["name"]: p for p in answer.json()}


async def test_a_dead_letter_waits_its_namespaces_ttl_then_the_broker_drops_it(rabbit_url, tmp_path: Path):
    """Before, dead-letter queues kept whole messages, personal data and actor tokens included, with no expiry."""
    namespace = f"bt{uuid.uuid4().hex[:8]}."
    users = BrokerUsers.provision(rabbit_url, namespace, tmp_path, provisioner(rabbit_url), dead_letter_ttl_days=2 / 86400)
    bus = Bus(Settings(amqp_url=users.url("grades"), namespace=namespace), "grades")
    queue = bus.topology.queue_for(RecordAssessments).name
    dead_letters = Names(namespace).dead_letter_queue(queue)
    try:
        assert policies(rabbit_url)[dead_letter_policy_name(namespace)]["definition"] == {"message-ttl": 2000}
        await bus.declare_topology(attempts=1)
        await bus.broker.connect()
        await bus.dead_letter(queue, b'{"records": []}', {}, "invalid", "a test's dead letter")
        sent = time.monotonic()
        assert await depth(rabbit_url, dead_letters) == 1, "it waits in the dead-letter queue"
        while await depth(rabbit_url, dead_letters) and time.monotonic() - sent < 15:
            await asyncio.sleep(0.2)
        waited = time.monotonic() - sent
        assert await depth(rabbit_url, dead_letters) == 0, "the broker dropped it"
        assert waited > 1.0, "not before its time"
    finally:
        await bus.broker.stop()
        await bus.remove_queues()
        users.remove()
        await delete_exchanges(rabbit_url, Names(namespace))
    assert dead_letter_policy_name(namespace) not in policies(rabbit_url), "the namespace's policy went with it"


# --- users come and go ----------------------------------------------------------------------------


async def test_a_throw_away_stacks_users_cannot_log_in_once_removed(rabbit_url, tmp_path: Path):
    namespace = f"bx{uuid.uuid4().hex[:8]}."
    gone = BrokerUsers.provision(rabbit_url, namespace, tmp_path, provisioner_for(rabbit_url))
    async with connected(gone.url("grades")):
        pass
    gone.remove()
    await delete_exchanges(rabbit_url, Names(namespace))
    with pytest.raises(ProbableAuthenticationError):
        await aio_pika.connect(gone.url("grades"))


async def test_the_management_api_provisions_the_same_users(rabbit_url, tmp_path: Path):
    """The path for a broker elsewhere (a deployment): definitions through POST /api/definitions."""
    host = urlparse(rabbit_url).hostname or "127.0.0.1"
    needs(port_open(host, MANAGEMENT_PORT), f"RabbitMQ's management API on {host}:{MANAGEMENT_PORT}")
    api = ManagementApi.at(f"http://{host}:{MANAGEMENT_PORT}/", rabbit_url)
    namespace = f"bm{uuid.uuid4().hex[:8]}."
    users = BrokerUsers.provision(rabbit_url, namespace, tmp_path, api)
    try:
        async with connected(users.url("signing")) as signing:
            assert await refusal(signing, publishing(Names(namespace), RecordsReady.ROUTING_KEY)) is not None
            assert await refusal(signing, publishing(Names(namespace), SignWork.ROUTING_KEY)) is None
        monitor = users.url("monitor")
        login = (urlparse(monitor).username or "", users.passwords["monitor"])
        answer = httpx.get(f"http://{host}:{MANAGEMENT_PORT}/api/overview", auth=login)
        assert answer.status_code == 200, "the monitoring tag opens the management API to KEDA"
        policy = httpx.get(f"{api.url}api/policies/%2F/{namespace}hocba-dead-letters", auth=(api.user, api.password))
        assert policy.json()["definition"] == {"message-ttl": 30 * 86_400_000}
    finally:
        users.remove()
        await delete_exchanges(rabbit_url, Names(namespace))
    with pytest.raises(ProbableAuthenticationError):
        await aio_pika.connect(users.url("signing"))
    gone = httpx.get(f"{api.url}api/policies/%2F/{namespace}hocba-dead-letters", auth=(api.user, api.password))
    assert gone.status_code == 404, "the namespace's dead-letter policy went with its users"


async def test_a_deployments_provisioning_step_loads_the_definitions_with_passwords_from_its_secrets(
    rabbit_url, tmp_path: Path, monkeypatch
):
    """`hocba broker provision`, as compose's broker-users service and the Kubernetes Job run it: the committed
    definitions (here for a test namespace), passwords from mounted secret files, the management API."""
    host = urlparse(rabbit_url).hostname or "127.0.0.1"
    needs(port_open(host, MANAGEMENT_PORT), f"RabbitMQ's management API on {host}:{MANAGEMENT_PORT}")
    admin = urlparse(rabbit_url)
    namespace = f"bp{uuid.uuid4().hex[:8]}."
    template = tmp_path / "definitions.json"
    template.write_text(definitions_text(namespace))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in IDENTITIES:
        (secrets / name).write_text(f"pw-{name}-{namespace}\n")
    management = f"http://{admin.username}:{admin.password}@{host}:{MANAGEMENT_PORT}/"
    arguments = ["provision", "--namespace", namespace, "--definitions", str(template), "--passwords-dir", str(secrets)]
    result = CliRunner().invoke(broker_app, [*arguments, "--management-url", management])
    assert result.exit_code == 0, result.output
    sync_url = with_login(rabbit_url, user_name(namespace, "sync"), f"pw-sync-{namespace}")
    try:
        async with connected(sync_url) as sync:
            assert await refusal(sync, publishing(Names(namespace), RecordsReady.ROUTING_KEY)) is not None
    finally:
        ManagementApi.at(management).delete_users(user_name(namespace, n) for n in IDENTITIES)
        ManagementApi.at(management).delete_policy("/", dead_letter_policy_name(namespace))
        await delete_exchanges(rabbit_url, Names(namespace))
