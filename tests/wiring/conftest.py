"""The wiring layer: each test body runs twice, under FastStream's in-memory broker and against real RabbitMQ.

(No `from __future__ import annotations` here: FastStream reads the probes' annotations as types.)

A test builds a service with in-memory repositories, subscribes probes (before the broker starts),
then sends messages through `wired(service)`:

    async with wired(svc) as wire:
        await wire.send(event)          # returns once the service has handled it and all that followed
        answer = await wire.request(question, Answer)

In memory a publish is handled before it returns. Against RabbitMQ (`TestRabbitBroker(with_real=True)`),
`send` waits until the namespace's queues are empty and no handler is running, so the same
assertions hold after it. The real run declares the service's queues and dead-letter queues as the
service does at start, gives every message it publishes somewhere to go (a sink queue for routing
keys the test does not consume), and removes all of it afterwards.
"""


import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlparse

import aio_pika
import pytest
from faststream.rabbit import RabbitBroker, RabbitMessage, TestRabbitBroker

from shared.contracts.base import Message, Reply
from shared.messaging import dead_letter_queue, delete_exchanges, delete_queues, quorum_queue
from shared.service import ServiceApp
from tests.support import bind_queues

R = TypeVar("R", bound=Reply)

IN_PROCESS = "faststream_received_messages_in_process"
#: Consecutive quiet looks (no message waiting, no handler running) that make a real run settled.
QUIET_LOOKS = 3


def probe(service: ServiceApp, message: type[Message]) -> list[Any]:
    """Subscribe (before the broker starts) to `message` and collect what arrives."""
    received: list[Any] = []
    names = service.settings.names()
    queue = quorum_queue(names, names.queue("probe", message.ROUTING_KEY), message.ROUTING_KEY, 3)

    @service.broker.subscriber(queue, exchange=service.bus.exchange)
    async def collect(body: message) -> None:
        received.append(body)

    return received


def dead_letters(service: ServiceApp, message: type[Message]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Subscribe to the dead-letter queue of `message`'s queue and collect (decoded body, headers)."""
    received: list[tuple[dict[str, Any], dict[str, Any]]] = []
    dlq = dead_letter_queue(service.settings.names(), service.topology.queue_name(message.ROUTING_KEY))

    @service.broker.subscriber(dlq, exchange=service.bus.dlx)
    async def collect(body: dict, msg: RabbitMessage) -> None:
        received.append((body, dict(msg.headers)))

    return received


@dataclass
class Wire:
    """A service's broker under test: in memory, or connected to RabbitMQ."""

    service: ServiceApp
    broker: RabbitBroker
    real: bool
    #: Queues whose emptiness means "settled" (the service's and the probes').
    watched: list[str] = field(default_factory=list)

    async def send(self, message: Message) -> None:
        """Publish `message` as another service would, and wait until it and everything it caused is handled."""
        await self.broker.publish(message, exchange=self.service.bus.exchange, routing_key=message.ROUTING_KEY)
        await self.settle()

    async def request(self, message: Message, answer: type[R], timeout: float = 30.0) -> R:
        """Ask as a command-line tool would, through the service's own bus; raises what `Bus.request` raises."""
        try:
            return await self.service.bus.request(message, answer, timeout)
        finally:
            await self.settle()

    async def settle(self, timeout: float = 30.0) -> None:
        if not self.real:
            return
        deadline = time.monotonic() + timeout
        quiet = 0
        connection = await aio_pika.connect(self.service.settings.amqp_url)
        async with connection:
            channel = await connection.channel()
            while quiet < QUIET_LOOKS:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.service.name} did not settle within {timeout}s")
                waiting = 0
                for name in self.watched:
                    declared = await channel.declare_queue(name, passive=True)
                    waiting += declared.declaration_result.message_count or 0
                quiet = quiet + 1 if waiting == 0 and in_process(self.service) == 0 else 0
                await asyncio.sleep(0.05)


def in_process(service: ServiceApp) -> float:
    return sum(
        sample.value
        for metric in service.registry.collect()
        if metric.name == IN_PROCESS
        for sample in metric.samples
    )


def rabbitmq_reachable(url: str) -> None:
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port or 5672), 2).close()
    except OSError as exc:
        pytest.fail(f"RabbitMQ is not reachable at {url} ({exc}); `make test` starts it, or set AMQP_URL")


async def sinks_for_unconsumed(service: ServiceApp) -> list[str]:
    """A queue for each routing key the service publishes to and nothing in this test consumes.

    In a stack those messages reach other services; here a mandatory publish would otherwise be unroutable.
    """
    consumed = {s.queue.routing_key for s in service.broker.subscribers}
    published = {p.routing() for p in service.broker.publishers} - consumed
    return list((await bind_queues(service.settings, "sink", published)).values())


@pytest.fixture(params=["in-memory", "rabbitmq"])
def wired(request: pytest.FixtureRequest) -> Callable[[ServiceApp], contextlib.AbstractAsyncContextManager[Wire]]:
    """`wired(service)`: the service's broker under test, once in memory and once against RabbitMQ."""
    real = request.param == "rabbitmq"

    @contextlib.asynccontextmanager
    async def connect(service: ServiceApp) -> AsyncIterator[Wire]:
        if not real:
            async with TestRabbitBroker(service.broker) as broker:
                yield Wire(service, broker, real=False)
            return
        rabbitmq_reachable(service.settings.amqp_url)
        await service.bus.declare_topology()
        sinks = await sinks_for_unconsumed(service)
        watched = [s.queue.name for s in service.broker.subscribers]
        try:
            async with TestRabbitBroker(service.broker, with_real=True) as broker:
                yield Wire(service, broker, real=True, watched=watched)
        finally:
            # FastStream's real test broker spies on each publisher through a queue named by its routing key.
            spies = [p.routing() for p in service.broker.publishers]
            await delete_queues(service.settings.amqp_url, [*service.topology.queues, *watched, *sinks, *spies])
            await delete_exchanges(service.settings.amqp_url, service.settings.names())

    return connect
