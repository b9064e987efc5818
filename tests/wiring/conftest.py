"""Helpers for wiring tests: probes that record what a service publishes."""

from typing import Any

from faststream.rabbit import RabbitMessage

from shared.contracts.base import Message
from shared.messaging import dead_letter_queue, quorum_queue
from shared.service import ServiceApp


def probe(service: ServiceApp, message: type[Message]) -> list[Any]:
    """Subscribe (before the test broker starts) to `message` and collect what arrives."""
    received: list[Any] = []
    names = service.settings.names()
    queue = quorum_queue(names, names.queue("probe", message.ROUTING_KEY), message.ROUTING_KEY, 3)

    @service.broker.subscriber(queue, exchange=service.bus.exchange)
    async def collect(body: message) -> None:  # type: ignore[valid-type]
        received.append(body)

    return received


async def send(broker: Any, service: ServiceApp, message: Message) -> None:
    await broker.publish(message, exchange=service.bus.exchange, routing_key=message.ROUTING_KEY)


def dead_letters(service: ServiceApp, message: type[Message]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Subscribe to the dead-letter queue of `message`'s queue and collect (decoded body, headers)."""
    received: list[tuple[dict[str, Any], dict[str, Any]]] = []
    dlq = dead_letter_queue(service.settings.names(), service.topology.queue_name(message.ROUTING_KEY))

    @service.broker.subscriber(dlq, exchange=service.bus.dlx)
    async def collect(body: dict, msg: RabbitMessage) -> None:
        received.append((body, dict(msg.headers)))

    return received
