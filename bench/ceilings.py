"""What the same database server and broker do with the same bytes and no hocba: the in-run ceilings.

Each is measured on the stack that ran the term end, right after it, over records as signing stores
them: the sealed bytes (BSON binary of the same size, beside a key id) inserted in the services'
chunks, and messages of a chunk's bytes published persistent to a queue of the same broker. CPU is
charged to the server (or broker) from /proc and to this process, per record.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass

import aio_pika
from bson import Binary

from bench.meter import cpu_seconds
from shared.mongo import make_client
from shared.settings import Settings


@dataclass(frozen=True)
class Ceiling:
    """Records per second, and milliseconds of CPU per record of the server (or broker) and of the client."""

    what: str
    records: int
    rate: float
    server_ms: float
    client_ms: float

    @property
    def total_ms(self) -> float:
        return self.server_ms + self.client_ms


async def stored_sizes(mongo_url: str, settings: Settings, limit: int) -> list[int]:
    """The sizes of the sealed record documents signing keeps, as stored."""
    client = make_client(mongo_url)
    try:
        records = client[settings.names().database("signing")]["records"]
        cursor = records.find({}, {"_id": 0, "document": 1}).limit(limit)
        return [len(doc["document"]) async for doc in cursor]
    finally:
        await client.close()


async def raw_insert(mongo_url: str, sizes: list[int], chunk: int, server_pid: int | None) -> Ceiling:
    """insert_many(ordered=False) of documents shaped as stored (ids, key id, sealed bytes), `chunk` at a time."""
    client = make_client(mongo_url)
    scratch = f"bench_ceiling_{uuid.uuid4().hex[:8]}"
    copies = [
        {"record_id": uuid.uuid4().hex, "version": 1, "key_id": "bench", "document": Binary(os.urandom(size))}
        for size in sizes
    ]
    try:
        collection = client[scratch]["records"]
        server, mine, began = _cpu(server_pid), time.process_time(), time.perf_counter()
        for start in range(0, len(copies), chunk):
            await collection.insert_many(copies[start : start + chunk], ordered=False)
        return _ceiling("raw insert of the sealed bytes", len(copies), began, mine, server, server_pid)
    finally:
        await client.drop_database(scratch)
        await client.close()


async def raw_publish(amqp_url: str, sizes: list[int], chunk: int, broker_pid: int | None) -> Ceiling:
    """Persistent publishes of a chunk's bytes at a time to a queue of the broker's own naming, then deleted."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        bodies = [os.urandom(sum(sizes[start : start + chunk])) for start in range(0, len(sizes), chunk)]
        server, mine, began = _cpu(broker_pid), time.process_time(), time.perf_counter()
        for body in bodies:
            message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await channel.default_exchange.publish(message, routing_key=queue.name)
        ceiling = _ceiling("raw publish of the same bytes", len(sizes), began, mine, server, broker_pid)
        await queue.delete(if_unused=False, if_empty=False)
        return ceiling
    finally:
        await connection.close()


def _cpu(pid: int | None) -> float:
    return cpu_seconds(pid) if pid is not None else 0.0


def _ceiling(what: str, records: int, began: float, mine: float, server: float, pid: int | None) -> Ceiling:
    elapsed = time.perf_counter() - began
    return Ceiling(
        what,
        records,
        records / elapsed,
        (_cpu(pid) - server) * 1000 / records,
        (time.process_time() - mine) * 1000 / records,
    )
