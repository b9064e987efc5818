"""A watcher keeps every announcement when its connection is closed under it, as a broker restart closes it.

The broker (rabbitmqctl close_connection) closes the watcher's connection (found by its name) while announcements keep
coming: the watcher reconnects by itself, consumes the same queues again, and has seen each one once.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator

import aio_pika
import pytest

from hocba.broker import rabbitmqctl_command
from hocba.watch import Watch
from shared.contracts.signing import BatchCompleted
from shared.settings import Settings
from tests.support import amqp_url, delete_exchanges

pytestmark = pytest.mark.infra


def close_connection(connection_name: str) -> int:
    """Close every connection named `connection_name` on the local broker (rabbitmqctl); how many there were."""
    tool = rabbitmqctl_command()
    assert tool is not None, "rabbitmqctl is needed to close a connection on the local broker"
    deadline = time.monotonic() + 30
    while True:
        listed = subprocess.run(
            [tool, "list_connections", "pid", "client_properties", "--quiet", "--no-table-headers"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        ours = [line.split("\t", 1)[0] for line in listed.splitlines() if connection_name in line]
        if ours or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for pid in ours:
        subprocess.run([tool, "close_connection", pid, "drill"], capture_output=True, timeout=60, check=True)
    return len(ours)


def completed(n: int) -> BatchCompleted:
    return BatchCompleted(
        batch_id=f"b{n}", school_code="79000001", school_year="2025-2026", records_signed=1, records_total=1
    )


async def publish(url: str, settings: Settings, numbers: range) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(settings.names().exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        for n in numbers:
            body = completed(n).model_dump_json().encode()
            await exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=BatchCompleted.ROUTING_KEY,
            )


async def until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the watcher did not catch up"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def watching(url: str, settings: Settings) -> AsyncIterator[tuple[Watch, list[str]]]:
    """A watcher of batch ends, started, and the batch ids it saw; stopped and the exchanges gone afterwards."""
    seen: list[str] = []
    watch = Watch(url, settings.names(), retry=0.2)
    watch.on(BatchCompleted, lambda m: seen.append(m.batch_id))
    await watch.start()
    try:
        yield watch, seen
    finally:
        await watch.stop()
        await delete_exchanges(url, settings.names())


async def test_a_watcher_keeps_every_announcement_across_a_closed_connection(settings: Settings):
    url = amqp_url()
    async with watching(url, settings) as (watch, seen):
        await publish(url, settings, range(0, 20))
        await until(lambda: len(seen) == 20)
        assert await asyncio.to_thread(close_connection, watch.connection_name) == 1
        await publish(url, settings, range(20, 50))  # while the watcher is away or coming back
        await until(lambda: len(set(seen)) == 50)
        assert watch.reconnections >= 1
        assert watch.gaps == 0
        assert sorted(set(seen)) == sorted(f"b{n}" for n in range(50))


async def test_a_watcher_declares_a_fresh_queue_and_counts_a_gap_when_its_queue_is_gone(settings: Settings):
    url = amqp_url()
    async with watching(url, settings) as (watch, seen):
        lost = watch.queues[BatchCompleted]
        connection = await aio_pika.connect(url)
        async with connection:
            await (await connection.channel()).queue_delete(lost)  # as an expired queue, or a node that lost it
        await asyncio.to_thread(close_connection, watch.connection_name)
        await until(lambda: watch.reconnections >= 1)
        assert watch.gaps == 1
        assert watch.queues[BatchCompleted] != lost
        await publish(url, settings, range(0, 5))
        await until(lambda: len(seen) == 5)
