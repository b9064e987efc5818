"""Helpers for wiring tests: probes that record what a service publishes."""


from typing import Any

from shared.contracts.base import Message
from shared.messaging import quorum_queue
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
