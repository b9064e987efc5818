"""Watches what the services announce on the exchange, through queues of its own that vanish with it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from pydantic import BaseModel

from shared.contracts.base import Message
from shared.settings import Names

Handler = Callable[[Any], Awaitable[None] | None]


class Watch:
    """An observer: one exclusive, auto-deleted queue per message type, bound to the topic exchange.

    The queues are named by the broker (`amq.gen-…`), the only queues a watcher's broker user may
    declare (hocba.broker); they vanish with the connection, so it is a plain one (a robust
    connection names its queues itself and would declare them again after a reconnection).
    """

    def __init__(self, amqp_url: str, names: Names) -> None:
        self.amqp_url = amqp_url
        self.names = names
        self.connection: aio_pika.abc.AbstractConnection | None = None
        self.handlers: dict[type[Message], tuple[Handler, type[BaseModel]]] = {}

    def on(self, message: type[Message], handler: Handler, view: type[BaseModel] | None = None) -> None:
        """Call `handler` with each `message` announced, decoded as `view` when given.

        A view is a model of only the fields the watcher reads (the keys of a chunk's records, say):
        the rest of the body (the records' documents) is skipped unparsed, so a watcher of a whole
        term end costs little beside the services it watches.
        """
        self.handlers[message] = (handler, view or message)

    async def start(self) -> None:
        self.connection = await aio_pika.connect(self.amqp_url)
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=256)
        exchange = await channel.declare_exchange(
            self.names.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        for message, (handler, view) in self.handlers.items():
            queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
            await queue.bind(exchange, routing_key=message.ROUTING_KEY)
            await queue.consume(self._consumer(view, handler), no_ack=True)

    @staticmethod
    def _consumer(view: type[BaseModel], handler: Handler) -> Callable[..., Awaitable[None]]:
        async def consume(incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
            result = handler(view.model_validate_json(incoming.body))
            if result is not None:
                await result

        return consume

    async def stop(self) -> None:
        if self.connection is not None:
            await self.connection.close()
            self.connection = None
