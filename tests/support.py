"""Test tooling shared by the integration and end-to-end layers: run a service, clean up after it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from prometheus_client import CollectorRegistry

from hocba.infra import EmbeddedMongo, free_port  # noqa: F401 - re-exported for the test layers
from hocba.stack import Stack, StackConfig
from shared.at_rest import KeyRotation, NothingSealed, RotationMetrics
from shared.auth import IssuerKeys
from shared.contracts.base import Message
from shared.contracts.keys import DataKeyRotationProgress
from shared.crypto.vault import Vault
from shared.messaging import delete_exchanges, delete_queues
from shared.service import ServiceApp
from shared.settings import Settings

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def amqp_url() -> str:
    return os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)


@contextlib.contextmanager
def mongo_server(folder: Path) -> Iterator[str]:
    """The MongoDB the tests store in: `MONGO_URL` when set, else an embedded MongoDB-wire server in `folder`, stopped
    at the end."""
    if url := os.environ.get("MONGO_URL"):
        yield url
        return
    server = EmbeddedMongo(folder, free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@contextlib.contextmanager
def throwaway_stack(folder: Path, prefix: str, **options: Any) -> Iterator[Stack]:
    """The whole local stack (database server, five services, ministry simulator) in a namespace of its own under
    `folder`, as `hocba up` starts it on free ports; stopped, its broker users and exchanges removed, afterwards.
    `options` are StackConfig's (signing_workers, web, extra_env, ...)."""
    config = StackConfig(
        data_dir=folder,
        namespace=f"{prefix}{uuid.uuid4().hex[:8]}.",
        amqp_url=amqp_url(),
        mongo_url=os.environ.get("MONGO_URL") or None,
        fixed_ports=False,
        ephemeral=True,
        **options,
    )
    stack = Stack(config)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        asyncio.run(delete_exchanges(config.amqp_url, Settings(namespace=config.namespace).names()))


@contextlib.asynccontextmanager
async def running(service: ServiceApp, timeout: float = 30.0) -> AsyncIterator[ServiceApp]:
    """Run a built service in this event loop until the block ends, then remove its queues."""
    task = asyncio.create_task(service.app.run())
    deadline = time.monotonic() + timeout
    while not service.health.started:
        if task.done():
            task.result()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{service.name} did not start within {timeout}s")
        await asyncio.sleep(0.05)
    try:
        yield service
    finally:
        service.app.exit()
        await asyncio.wait_for(task, 30)
        await delete_queues(service.settings.amqp_url, service.topology.queues)


async def depth(url: str, queue: str) -> int:
    """How many messages wait in `queue`, ready (a passive declaration: the queue is left as it is)."""
    connection = await aio_pika.connect(url)
    async with connection:
        declared = await (await connection.channel()).declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def drain(url: str, queue: str, timeout: float = 2.0) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take every message now in `queue` (acknowledging them)."""
    connection = await aio_pika.connect(url)
    taken: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with connection:
        channel = await connection.channel()
        q = await channel.declare_queue(queue, passive=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = await q.get(fail=False)
            if message is None:
                if taken:
                    break
                await asyncio.sleep(0.1)
                continue
            await message.ack()
            taken.append(message)
    return taken


async def bind_queues(settings: Settings, consumer: str, routing_keys: Iterable[str]) -> dict[str, str]:
    """A quorum queue `<consumer>.<routing key>` bound to each routing key on the namespace's exchange;
    returns routing key -> queue."""
    names = settings.names()
    queues = {key: names.queue(consumer, key) for key in routing_keys}
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(names.exchange, "topic", durable=True)
        for routing_key, name in queues.items():
            queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
            await queue.bind(exchange, routing_key=routing_key)
    return queues


@contextlib.asynccontextmanager
async def probing(settings: Settings, *messages: type[Message]) -> AsyncIterator[dict[str, str]]:
    """Bind a `probe.<routing key>` queue for each message type; yields routing key -> queue."""
    queues = await bind_queues(settings, "probe", [m.ROUTING_KEY for m in messages])
    try:
        yield queues
    finally:
        await delete_queues(settings.amqp_url, queues.values())


async def collect(
    url: str, queue: str, model: type[Message], until: Callable[[list], bool], timeout: float = 60.0
) -> list:
    """Messages from a probe queue until `until(messages)` holds (or the time is up)."""
    got: list = []
    deadline = time.monotonic() + timeout
    while not until(got) and time.monotonic() < deadline:
        got += [model.model_validate_json(m.body) for m in await drain(url, queue, timeout=1.0)]
    return got


def needs(present: bool, what: str) -> None:
    """Run a test only where `what` is present: `make test` installs it and sets HOCBA_REQUIRE_TOOLS=1,
    so there its absence fails the test instead of skipping it."""
    if present:
        return
    message = f"{what} is missing (`make test` installs it)"
    if os.environ.get("HOCBA_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def idle_rotation(progress: type[DataKeyRotationProgress], keys: IssuerKeys | None, registry: CollectorRegistry) -> KeyRotation:
    """The data-key rotation of a service over an in-memory repository: a ring in memory, nothing sealed at rest."""

    async def discard(_: Message) -> None:
        return None

    return KeyRotation(Vault.ephemeral(), NothingSealed(), progress, keys, RotationMetrics(registry), discard)


class Broker:
    """A bus's publishing as a service's announcing step sees it: publishes what it is given, or fails the way a
    broker that went away does."""

    def __init__(self, failing: bool = False) -> None:
        self.failing = failing
        self.published: list[Message] = []

    async def __call__(self, messages: Sequence[Message]) -> None:
        if self.failing:
            raise ConnectionError("the broker connection was lost")
        self.published += messages
