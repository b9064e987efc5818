"""`hocba dlq list|show|replay|purge` against the real RabbitMQ, in a throw-away namespace.

Dead letters are made the ways they arise: a service's edge gives up on a message (`Bus.dead_letter`,
which removes the actor token and says whose it was), and the broker gives up on a message handed back as
often as its queue allows while no service consumed it (x-death, kept whole, token included). Each command runs
as an operator runs it (AMQP_URL, HOCBA_NAMESPACE), through typer's runner.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from pathlib import Path
from urllib.parse import urlparse

import aio_pika
import pytest
from typer.testing import CliRunner, Result

from hocba.broker import BrokerUsers, Rabbitmqctl, provisioner_for, rabbitmqctl_command
from hocba.cli import app
from hocba.commands.dlq import REPLAYS_HEADER
from shared.contracts.archive import RecordsArchived
from shared.contracts.grades import CloseTerm
from shared.messaging import DELIVERY_COUNT_HEADER, REASON_HEADER, Bus, delete_queues
from shared.settings import Settings

#: A student's personal ID and name, as dead letters hold them: never printed.
PID = "079214000001"
NAME = "Nguyễn Thị Lan"
TEACHER = "gv-79007000-001"


def token(subject: str) -> str:
    """A compact JWT-shaped token naming `subject` (its signature does not matter to a dead letter)."""

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'ES256'})}.{part({'sub': subject, 'name': NAME})}.c2ln"


def archived(message_id: str) -> bytes:
    """A records-archived event as the archive publishes it (fields only as far as dead letters care)."""
    records = [{"record_id": "r-1", "personal_id": PID, "full_name": NAME}]
    return json.dumps({"message_id": message_id, "schema_version": 1, "actor": None, "records": records}).encode()


def close_term(message_id: str) -> bytes:
    command = {"message_id": message_id, "actor": token(TEACHER), "school_code": "79007000", "term": "I"}
    return json.dumps({**command, "school_year": "2025-2026"}).encode()


class Namespace:
    """The throw-away namespace's two queues, their dead-letter queues, and how to look at them directly."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        names = settings.names()
        self.events = names.queue("sync", RecordsArchived.ROUTING_KEY)
        self.commands = names.queue("grades", CloseTerm.ROUTING_KEY)
        self.events_dlq = names.dead_letter_queue(self.events)
        self.commands_dlq = names.dead_letter_queue(self.commands)

    @property
    def env(self) -> dict[str, str]:
        return {"AMQP_URL": self.settings.amqp_url, "HOCBA_NAMESPACE": self.settings.namespace}

    async def depth(self, queue: str) -> int:
        connection = await aio_pika.connect(self.settings.amqp_url)
        async with connection:
            declared = await (await connection.channel()).declare_queue(queue, passive=True)
            return declared.declaration_result.message_count or 0

    def depths(self) -> tuple[int, int, int, int]:
        """Messages waiting in: the events' queue, its dead letters, the commands' queue, its dead letters."""

        async def all_four() -> tuple[int, int, int, int]:
            return (
                await self.depth(self.events),
                await self.depth(self.events_dlq),
                await self.depth(self.commands),
                await self.depth(self.commands_dlq),
            )

        return asyncio.run(all_four())

    def dlq(self, *args: str, given: str | None = None) -> Result:
        return CliRunner().invoke(app, ["dlq", *args], env=self.env, input=given)


async def service_bus(settings: Settings, service: str, message: type) -> Bus:
    """A service's bus with its queue for `message` and the queue's dead-letter queue declared, connected."""
    bus = Bus(settings, service)
    bus.topology.queue_for(message)
    await bus.declare_topology()
    await bus.broker.connect()
    return bus


async def given_up_by_the_broker(url: str, queue: str, body: bytes, limit: int) -> None:
    """Publish `body` to `queue` and hand it back `limit` times as a dying consumer would: the broker dead-letters it."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue
        )
        declared = await channel.declare_queue(queue, passive=True)
        for _ in range(limit + 3):
            message = await declared.get(fail=False, timeout=5)
            if message is None:
                break
            await message.reject(requeue=True)


async def dead_letters(settings: Settings) -> None:
    """Four dead letters of RecordsArchived (events) and two of CloseTerm (commands), each way they arise."""
    sync = await service_bus(settings, "sync", RecordsArchived)
    grades = await service_bus(settings, "grades", CloseTerm)
    events = sync.topology.queue_name(RecordsArchived.ROUTING_KEY)
    commands = grades.topology.queue_name(CloseTerm.ROUTING_KEY)
    try:
        tried = {DELIVERY_COUNT_HEADER: settings.delivery_limit - 1}
        await sync.dead_letter(events, archived("ev-1"), tried, "retries-exhausted", "NotFound: not yet")
        await sync.dead_letter(events, archived("ev-2"), tried, "retries-exhausted", "NotFound: not yet")
        await sync.dead_letter(events, archived("ev-bad"), {}, "invalid", "ValidationError: records.0.digest: missing")
        await given_up_by_the_broker(settings.amqp_url, events, archived("ev-died"), sync.topology.broker_limit)
        await grades.dead_letter(commands, close_term("cmd-1"), {}, "invalid", "InvalidMessage: term I is open")
        await given_up_by_the_broker(settings.amqp_url, commands, close_term("cmd-died"), grades.topology.broker_limit)
    finally:
        await sync.broker.stop()
        await grades.broker.stop()


@pytest.fixture
def stack(settings: Settings):
    space = Namespace(settings)
    asyncio.run(dead_letters(settings))
    deadline = time.monotonic() + 10
    while space.depths() != (0, 4, 0, 2) and time.monotonic() < deadline:
        time.sleep(0.1)  # the broker dead-letters at least once, a moment after the last hand-back
    yield space
    asyncio.run(delete_queues(settings.amqp_url, [space.events, space.commands]))


def shown_ids(output: str) -> list[str]:
    return re.findall(r"^#\d+  (\S+)  ", output, flags=re.MULTILINE)


async def taken(url: str, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take every message waiting in `queue`."""
    connection = await aio_pika.connect(url)
    found = []
    async with connection:
        declared = await (await connection.channel()).declare_queue(queue, passive=True)
        while (message := await declared.get(fail=False)) is not None:
            await message.ack()
            found.append(message)
    return found


def test_dead_letters_are_listed_shown_replayed_and_purged_and_looking_takes_nothing(stack: Namespace):
    assert stack.depths() == (0, 4, 0, 2)

    listed = stack.dlq("list")
    assert listed.exit_code == 0, listed.output
    assert stack.events_dlq in listed.output and stack.commands_dlq in listed.output
    assert "delivery_limit 1, invalid 1, retries-exhausted 2" in listed.output
    assert "delivery_limit 1, invalid 1" in listed.output.split(stack.commands_dlq)[1]
    assert stack.depths() == (0, 4, 0, 2), "listing took nothing"

    shown = stack.dlq("show", stack.events_dlq)
    assert shown.exit_code == 0, shown.output
    assert shown_ids(shown.output) == ["ev-1", "ev-2", "ev-bad", "ev-died"]
    assert shown.output.count("replay: yes: an event") == 3
    assert "replay: no: refused for what it is (invalid)" in shown.output
    assert "delivery_limit (dead-lettered by the broker)" in shown.output
    assert "fields: message_id, schema_version, actor, records" in shown.output
    assert PID not in shown.output and NAME not in shown.output
    again = stack.dlq("show", stack.events_dlq, "--count", "2")
    assert shown_ids(again.output) == ["ev-1", "ev-2"], "looking kept the queue's order"
    assert stack.depths() == (0, 4, 0, 2), "showing took nothing"

    commands = stack.dlq("show", stack.commands)
    assert shown_ids(commands.output) == ["cmd-1", "cmd-died"]
    assert commands.output.count(f"whose:  {TEACHER}") == 2, "the service's header, and the token the broker kept"
    assert commands.output.count("replay: no: a command or request (CloseTerm)") == 2
    assert token(TEACHER) not in commands.output and "2025-2026" not in commands.output

    replayed = stack.dlq("replay", stack.events_dlq, "--all")
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 3, left 1" in replayed.output
    assert "left: #3 ev-bad (invalid): refused for what it is" in replayed.output
    assert stack.depths() == (3, 1, 0, 2)
    back = asyncio.run(taken(stack.settings.amqp_url, stack.events))
    assert [json.loads(m.body)["message_id"] for m in back] == ["ev-1", "ev-2", "ev-died"]
    assert [m.body for m in back] == [archived("ev-1"), archived("ev-2"), archived("ev-died")], "byte for byte"
    for message in back:
        assert message.headers[REPLAYS_HEADER] == 1
        assert not {REASON_HEADER, "x-death"} & set(message.headers), "it goes without its death"
        assert message.headers.get(DELIVERY_COUNT_HEADER, 0) == 0, "the broker counts its deliveries afresh"

    kept = stack.dlq("replay", stack.commands_dlq, "--message-id", "cmd-1")
    assert kept.exit_code == 1
    assert "left: #1 cmd-1 (invalid): a command or request (CloseTerm): it lost its sender's token" in kept.output
    assert stack.depths() == (0, 1, 0, 2), "commands stayed where they were"

    declined = stack.dlq("purge", stack.commands_dlq, "--message-id", "cmd-1", given="n\n")
    assert declined.exit_code == 1
    assert "1 dead letter(s) of" in declined.output and "nothing purged: not confirmed" in declined.output
    assert stack.depths() == (0, 1, 0, 2)

    unknown = stack.dlq("purge", stack.commands_dlq, "--message-id", "nope", "--yes")
    assert unknown.exit_code == 1
    assert f"not found: nope is not in {stack.commands_dlq}" in unknown.output

    purged = stack.dlq("purge", stack.commands_dlq, "--message-id", "cmd-1", given="y\n")
    assert purged.exit_code == 0, purged.output
    assert stack.depths() == (0, 1, 0, 1)
    assert stack.dlq("show", stack.commands_dlq).output.count("#") == 1

    for queue in (stack.events_dlq, stack.commands_dlq):
        assert stack.dlq("purge", queue, "--all", "--yes").exit_code == 0
    assert stack.depths() == (0, 0, 0, 0)
    empty = stack.dlq("list")
    assert empty.exit_code == 0
    assert f"no dead letters in the namespace '{stack.settings.namespace.rstrip('.')}'" in empty.output


def test_a_replay_whose_queue_is_gone_leaves_the_dead_letter_where_it_is(stack: Namespace):
    async def remove_source() -> None:
        connection = await aio_pika.connect(stack.settings.amqp_url)
        async with connection:
            await (await connection.channel()).queue_delete(stack.events)

    asyncio.run(remove_source())
    result = stack.dlq("replay", stack.events_dlq, "--message-id", "ev-1")
    assert result.exit_code == 1
    assert (
        "left: #1 ev-1 (retries-exhausted): the broker did not take the copy (its queue does not exist" in result.output
    )
    assert asyncio.run(stack.depth(stack.events_dlq)) == 4, "nothing was lost"


def test_a_queue_of_another_namespace_and_a_stack_that_never_ran_are_told_apart(settings: Settings, stack: Namespace):
    other = stack.dlq("show", "elsewhere." + stack.events_dlq[len(settings.namespace) :])
    assert other.exit_code == 2
    assert "is a queue of the namespace 'elsewhere'" in other.output and "HOCBA_NAMESPACE=elsewhere" in other.output

    nowhere = CliRunner().invoke(app, ["dlq", "list"], env={**stack.env, "HOCBA_NAMESPACE": "never-ran-here"})
    assert nowhere.exit_code == 1
    assert "no hocba stack has run on RabbitMQ at" in nowhere.output
    assert "namespace 'never-ran-here'" in nowhere.output


def local_provisioner(rabbit_url: str):
    tool = rabbitmqctl_command() if urlparse(rabbit_url).hostname in {"127.0.0.1", "localhost", "::1"} else None
    return Rabbitmqctl(tool) if tool else provisioner_for(rabbit_url)


def test_a_login_without_the_rights_is_told_to_use_the_administrators(stack: Namespace, tmp_path: Path):
    namespace = stack.settings.namespace
    users = BrokerUsers.provision(
        stack.settings.amqp_url, namespace, tmp_path, local_provisioner(stack.settings.amqp_url)
    )
    try:
        env = {**stack.env, "AMQP_URL": users.url("operator")}
        for args in (["list"], ["show", stack.events_dlq], ["replay", stack.events_dlq, "--all"]):
            result = CliRunner().invoke(app, ["dlq", *args], env=env)
            assert result.exit_code == 1, args
            assert f"RabbitMQ does not let the user '{users.user('operator')}' read" in result.output
            assert "set AMQP_URL to the broker administrator's login" in result.output
            assert "Traceback" not in result.output
    finally:
        users.remove()
    assert stack.depths() == (0, 4, 0, 2)
