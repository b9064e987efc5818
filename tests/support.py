"""Test tooling shared by the integration and end-to-end layers: run a service, clean up after it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import aio_pika

from shared.contracts.base import Message
from shared.service import ServiceApp
from shared.settings import Settings

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def amqp_url() -> str:
    return os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)


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


async def delete_queues(url: str, queues: Iterable[str], exchanges: Iterable[str] = ()) -> None:
    """Delete queues (and their `.dlq`) and exchanges a test declared."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            for name in (queue, f"{queue}.dlq"):
                await channel.queue_delete(name)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)


async def drain(url: str, queue: str, timeout: float = 2.0) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take every message now in `queue` (acknowledging them)."""
    connection = await aio_pika.connect(url)
    taken = []
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


class EmbeddedMongo:
    """The MongoDB-wire server (nx-27017) on a free loopback port with its own files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "stdout.log", "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("nx-27017")),
                "--host", "127.0.0.1",
                "--port", str(self.port),
                "--data-dir", str(self.folder / "data"),
                "--pid-file", str(self.folder / "nx.pid"),
                "--log-file", str(self.folder / "nx.log"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nx-27017 did not start; see {self.folder / 'stdout.log'}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@contextlib.asynccontextmanager
async def probing(settings: Settings, *messages: type[Message]) -> AsyncIterator[dict[str, str]]:
    """Bind a `probe.<routing key>` queue for each message type; yields routing key -> queue."""
    names = settings.names()
    queues = {m.ROUTING_KEY: names.queue("probe", m.ROUTING_KEY) for m in messages}
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(names.exchange, "topic", durable=True)
        for routing_key, name in queues.items():
            queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
            await queue.bind(exchange, routing_key=routing_key)
    try:
        yield queues
    finally:
        await delete_queues(settings.amqp_url, queues.values())
