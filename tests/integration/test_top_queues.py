"""`hocba top` where RabbitMQ's Prometheus endpoint does not answer: each of the namespace's queues is declared
passively over AMQP on the real broker, which says how many messages wait in it and how many consumers it has."""

from __future__ import annotations

import aio_pika
import httpx

from hocba.commands.dlq import dead_letter_queues
from hocba.commands.top import QUEUE_CONSUMERS, QUEUE_READY, QueueReader
from shared.messaging import delete_queues
from tests.support import free_port


async def keep(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    """A consumer that never acknowledges what it takes."""


async def test_queue_depths_and_consumers_come_from_passive_declarations(settings):
    names = settings.names()
    work = names.queue("signing", "signing.work.v1")
    dead = next(q.name for q in dead_letter_queues(names).values() if q.source != work)
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(work, durable=True)
        await channel.declare_queue(dead, durable=True)
        for n in range(3):
            await channel.default_exchange.publish(aio_pika.Message(f"work {n}".encode()), routing_key=work)
        await channel.default_exchange.publish(aio_pika.Message(b"dead"), routing_key=dead)
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=1)
        held = await consumer.declare_queue(work, passive=True)
        tag = await held.consume(keep)  # holds one, unacknowledged

        nowhere = f"http://127.0.0.1:{free_port()}/metrics/detailed"
        reader = QueueReader(settings, names, nowhere)
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                queues = await reader.read(client)
        finally:
            await reader.close()
        await held.cancel(tag)
    finally:
        await connection.close()
        await delete_queues(settings.amqp_url, [work, dead])

    assert not queues.problem
    assert "declared passively" in queues.source
    lines = {q.name: q for q in queues.lines}
    assert set(lines) == {work, dead}, "only this namespace's queues that exist"
    assert (lines[work].ready, lines[work].unacked, lines[work].consumers) == (2, None, 1)
    assert lines[dead].ready == 1


async def test_a_queue_rabbitmqs_endpoint_does_not_list_yet_is_declared_passively(settings):
    """RabbitMQ lists a quorum queue from its first statistics, seconds after it was declared: until then the
    endpoint's lines are completed over AMQP."""
    names = settings.names()
    work = names.queue("signing", "signing.work.v1")
    dead = next(q.name for q in dead_letter_queues(names).values() if q.source != work)
    endpoint = "http://rabbitmq.test/metrics/detailed"
    listed = f'{QUEUE_READY}{{vhost="/",queue="{dead}"}} 4\n{QUEUE_CONSUMERS}{{vhost="/",queue="{dead}"}} 0\n'
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(work, durable=True)
        for n in range(2):
            await channel.default_exchange.publish(aio_pika.Message(f"work {n}".encode()), routing_key=work)
        reader = QueueReader(settings, names, endpoint)
        transport = httpx.MockTransport(lambda request: httpx.Response(200, text=listed))
        try:
            async with httpx.AsyncClient(transport=transport) as client:
                queues = await reader.read(client)
        finally:
            await reader.close()
    finally:
        await connection.close()
        await delete_queues(settings.amqp_url, [work])

    assert queues.source == f"RabbitMQ at {endpoint}, 1 declared passively"
    assert [(q.name, q.ready, q.consumers) for q in queues.lines] == sorted(
        [(work, 2, 0), (dead, 4, 0)], key=lambda line: reader.wanted.index(line[0])
    )
