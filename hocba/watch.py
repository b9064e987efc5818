"""Watches what the services announce on the exchange, through queues of its own that outlive a lost connection.

A watcher (`hocba demo`, `hocba sign`, the benchmarks and drills) must not lose an announcement when its
connection drops or the broker restarts: each message type it follows has a durable queue named by the
broker (`amq.gen-…`, the only queues a watcher's broker user may declare: hocba.broker), which keeps
collecting while the watcher is away and expires on its own (`x-expires`) once nobody reads it. The
watcher reconnects by itself and consumes the same queues again; it acknowledges a message only after
handling it, so one in flight when the connection dropped comes again (the handlers count sets: a message
seen twice counts once). Only when a queue is gone on reconnection (it expired, or a broker node lost it)
can announcements have been missed: the watcher declares a fresh one and counts a gap (`gaps`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from pydantic import BaseModel

from shared.contracts.base import Message
from shared.settings import Names

Handler = Callable[[Any], Awaitable[None] | None]

logger = logging.getLogger(__name__)

#: A watcher's queue is removed by the broker after this long without a consumer (x-expires).
EXPIRES_SECONDS = 900.0
#: Messages handed to the watcher before it acknowledges them.
PREFETCH = 256
#: First and longest wait between two attempts to reconnect.
RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 5.0


class Watch:
    """An observer: one durable, self-expiring, broker-named queue per message type, bound to the topic exchange.

    `start` connects (and raises when the broker cannot be reached); from then on a lost connection is
    re-established in the background until `stop`. `reconnections` counts the times it was, `gaps` the
    queues found gone on reconnection (announcements may have been missed then).
    """

    def __init__(
        self,
        amqp_url: str,
        names: Names,
        expires: float = EXPIRES_SECONDS,
        retry: float = RETRY_SECONDS,
    ) -> None:
        self.amqp_url = amqp_url
        self.names = names
        self.expires = expires
        self.retry = retry
        #: The connection's name as the broker lists it (its management API shows `connection_name`).
        self.connection_name = f"hocba-watch-{uuid.uuid4().hex[:12]}"
        self.connection: aio_pika.abc.AbstractConnection | None = None
        self.handlers: dict[type[Message], tuple[Handler, type[BaseModel]]] = {}
        #: Each message type's queue, named by the broker when first declared and kept across reconnections.
        self.queues: dict[type[Message], str] = {}
        self.reconnections = 0
        self.gaps = 0
        self._keeper: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._channel: aio_pika.abc.AbstractChannel | None = None

    def on(self, message: type[Message], handler: Handler, view: type[BaseModel] | None = None) -> None:
        """Call `handler` with each `message` announced, decoded as `view` when given.

        A view is a model of only the fields the watcher reads (the keys of a chunk's records, say):
        the rest of the body (the records' documents) is skipped unparsed, so a watcher of a whole
        term end costs little beside the services it watches.
        """
        self.handlers[message] = (handler, view or message)

    async def start(self) -> None:
        self.connection = await self._connect()
        self._keeper = asyncio.create_task(self._keep_connected())

    async def _connect(self) -> aio_pika.abc.AbstractConnection:
        """Connect, declare (or find again) each queue, bind it and consume from it."""
        connection = await aio_pika.connect(self.amqp_url, client_properties={"connection_name": self.connection_name})
        lost = self._lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_: lost.set())  # a close by the broker, a dropped socket, or ours
        try:
            channel = self._channel = await connection.channel()
            await channel.set_qos(prefetch_count=PREFETCH)
            exchange = await channel.declare_exchange(self.names.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            for message, (handler, view) in self.handlers.items():
                queue = await self._queue(connection, channel, message)
                await queue.bind(exchange, routing_key=message.ROUTING_KEY)
                await queue.consume(self._acknowledged(self._consumer(view, handler)))
        except BaseException:
            await connection.close()
            raise
        return connection

    async def _queue(
        self,
        connection: aio_pika.abc.AbstractConnection,
        channel: aio_pika.abc.AbstractChannel,
        message: type[Message],
    ) -> aio_pika.abc.AbstractQueue:
        """The message type's queue: the one declared before when the broker still has it, else a new one."""
        known = self.queues.get(message)
        if known is not None:
            if await _exists(connection, known):
                return await channel.declare_queue(known, passive=True)
            self.gaps += 1
            logger.warning("watch queue for %s was gone on reconnection: announcements may be missed", message.__name__)
        queue = await channel.declare_queue("", durable=True, arguments={"x-expires": int(self.expires * 1000)})
        self.queues[message] = queue.name
        return queue

    async def _keep_connected(self) -> None:
        """Wait for the connection to drop, then reconnect, waiting longer between attempts, until stopped."""
        while True:
            await self._lost.wait()
            self.connection = None
            delay = self.retry
            while self.connection is None:
                try:
                    self.connection = await self._connect()
                except Exception as exc:  # noqa: BLE001 - any failure to reconnect is retried
                    logger.info("watch reconnection failed (%s); retrying in %.1fs", type(exc).__name__, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_SECONDS)
            self.reconnections += 1

    @staticmethod
    def _consumer(view: type[BaseModel], handler: Handler) -> Callable[..., Awaitable[None]]:
        async def consume(incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
            result = handler(view.model_validate_json(incoming.body))
            if result is not None:
                await result

        return consume

    @staticmethod
    def _acknowledged(consume: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        """Acknowledge a message once handled; one the watcher cannot read is dropped, never requeued forever."""

        async def acknowledged(incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
            try:
                await consume(incoming)
            except Exception as exc:  # noqa: BLE001 - an unreadable announcement must not stop the watch
                logger.warning("watch dropped an announcement it could not read (%s)", type(exc).__name__)
                await incoming.reject(requeue=False)
                return
            await incoming.ack()

        return acknowledged

    async def stop(self) -> None:
        """Stop reconnecting, remove the queues (they would expire anyway) and close the connection."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        connection, self.connection = self.connection, None
        if connection is None:
            return
        with contextlib.suppress(Exception):
            if self._channel is not None:
                await self._channel.close()  # the consumers end with it, before their queues go
            channel = await connection.channel()
            for name in self.queues.values():
                await channel.queue_delete(name)
        await connection.close()


async def _exists(connection: aio_pika.abc.AbstractConnection, name: str) -> bool:
    """Whether the broker still has the queue (asked on a channel of its own: a failed check closes it)."""
    probe = await connection.channel()
    try:
        await probe.declare_queue(name, passive=True)
    except aio_pika.exceptions.ChannelClosed:
        return False
    with contextlib.suppress(Exception):
        await probe.close()
    return True
