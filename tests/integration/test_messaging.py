"""The messaging safety settings of shared/messaging.py, proved against real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aio_pika
import aiormq
import pytest
from aiormq.exceptions import DeliveryError, PublishError
from faststream import FastStream

from shared.contracts.base import Message, Reply
from shared.errors import Forbidden, NoAnswer, Refused, TransientError
from shared.messaging import ERROR_HEADER, REASON_HEADER, Bus
from shared.mongo import Index, ensure_indexes, insert_one_new
from shared.outcome import Outcome, RejectedPart
from tests.support import delete_queues, drain, probing


class Ping(Message):
    ROUTING_KEY = "test.ping.sent.v1"

    n: int
    mode: str = "ok"
    items: list[int] = []


class Pong(Message):
    ROUTING_KEY = "test.pong.sent.v1"

    n: int


class Answer(Reply):
    n: int = 0


class Harness:
    """A one-queue service whose handler fails on demand, counting its attempts."""

    def __init__(self, settings, effects=None) -> None:
        self.bus = Bus(settings, "probe")
        self.broker, self.topology, self.registry = self.bus.broker, self.bus.topology, self.bus.registry
        self.attempts: dict[int, int] = {}
        self.handled: list[int] = []
        self.effects = effects

        @self.bus.subscriber(Ping)
        async def handle(ping: Ping) -> Outcome:
            attempt = self.attempts[ping.n] = self.attempts.get(ping.n, 0) + 1
            if self.effects is not None:
                await insert_one_new(self.effects, {"_id": ping.message_id, "n": ping.n})
            if ping.mode == "forbidden":
                raise Forbidden("not this school's principal")
            if ping.mode == "announced":
                return Outcome(publish=[Pong(n=ping.n)], refused=Forbidden("not yours", reason="wrong-school"))
            if ping.mode == "transient" or (ping.mode == "flaky" and attempt < 2):
                raise TransientError("database unavailable")
            self.handled.append(ping.n)
            odd = [i for i in ping.items if i % 2]
            rejected = [RejectedPart("items", odd, "invalid", "odd items are not taken")] if odd else []
            return Outcome(reply=Answer(n=ping.n), rejected=rejected)

        self.app = FastStream(self.broker)

        async def declare() -> None:
            await self.broker.connect()
            await self.bus.declare_topology()

        self.app.on_startup(declare)

    @property
    def queue(self) -> str:
        return self.topology.queue_name(Ping.ROUTING_KEY)

    def dead_letters(self, url: str, timeout: float = 3.0):
        return drain(url, self.queue + ".dlq", timeout=timeout)

    def counted(self, metric: str, reason: str) -> float:
        return self.registry.get_sample_value(metric, {"queue": self.queue, "reason": reason}) or 0


@contextlib.asynccontextmanager
async def started(harness: Harness, settings) -> AsyncIterator[Harness]:
    await harness.app.start()
    try:
        yield harness
    finally:
        await harness.app.stop()
        await delete_queues(settings.amqp_url, harness.topology.queues)


async def wait_for(condition, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def test_invalid_message_is_dead_lettered_with_reason_and_nothing_else_is_lost(settings):
    harness = Harness(settings)
    async with started(harness, settings):
        await harness.bus.publish(Ping(n=1))
        await harness.broker.publish(
            b'{"n": "not a number"}',
            exchange=harness.bus.exchange,
            routing_key=Ping.ROUTING_KEY,
            persist=True,
        )
        await harness.bus.publish(Ping(n=2))
        await wait_for(lambda: len(harness.handled) == 2)
        dead = await harness.dead_letters(settings.amqp_url)
    assert sorted(harness.handled) == [1, 2]
    assert len(dead) == 1
    assert dead[0].body == b'{"n": "not a number"}'
    assert dead[0].headers[REASON_HEADER] == "invalid"
    assert "n" in dead[0].headers[ERROR_HEADER]


async def test_permanent_error_goes_to_the_dead_letter_queue_at_once(settings):
    harness = Harness(settings)
    async with started(harness, settings):
        await harness.bus.publish(Ping(n=7, mode="forbidden"))
        dead = await harness.dead_letters(settings.amqp_url, timeout=10)
    assert harness.attempts[7] == 1
    assert dead[0].headers[REASON_HEADER] == "forbidden"
    assert harness.counted("hocba_messages_dead_lettered_total", "forbidden") == 1
    assert harness.counted("hocba_messages_refused_total", "forbidden") == 1


async def test_transient_error_is_retried_a_bounded_number_of_times(settings):
    harness = Harness(settings)
    async with started(harness, settings):
        await harness.bus.publish(Ping(n=3, mode="flaky"))
        await harness.bus.publish(Ping(n=4, mode="transient"))
        dead = await harness.dead_letters(settings.amqp_url, timeout=20)
        await wait_for(lambda: 3 in harness.handled)
    assert harness.attempts[3] == 2, "a flaky failure succeeds on the second delivery"
    assert harness.attempts[4] == settings.delivery_limit
    assert [Ping.model_validate_json(m.body).n for m in dead] == [4]
    assert dead[0].headers[REASON_HEADER] == "retries-exhausted"


async def test_publishing_to_a_key_no_queue_is_bound_to_raises(settings):
    harness = Harness(settings)

    class Orphan(Message):
        ROUTING_KEY = "test.nobody.listens.v1"

    async with started(harness, settings):
        with pytest.raises((DeliveryError, PublishError)):
            await harness.bus.publish(Orphan())


async def test_messages_are_persistent_and_queues_are_quorum_with_limits(settings):
    harness = Harness(settings)
    async with started(harness, settings):
        await harness.app.stop()  # stop consuming so the message stays in the queue
        await harness.broker.connect()
        await harness.bus.publish(Ping(n=5))
        connection = await aio_pika.connect(settings.amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(harness.queue, ensure=False)
            message = await queue.get(timeout=5)
            assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            await message.nack(requeue=True)
            # Re-declaring with other arguments fails: the queue is quorum with these settings.
            with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
                await channel.declare_queue(harness.queue, durable=True, arguments={"x-queue-type": "classic"})
        spec = harness.topology.queues[harness.queue]
        assert spec.arguments["x-queue-type"] == "quorum"
        assert spec.arguments["x-delivery-limit"] == settings.delivery_limit
        assert spec.arguments["x-dead-letter-exchange"] == settings.names().dead_letter_exchange
        # Publisher confirms: the broker answers each publish with Basic.Ack.
        confirmation = await harness.broker.publish(
            Ping(n=6), exchange=harness.bus.exchange, routing_key=Ping.ROUTING_KEY, persist=True
        )
        assert isinstance(confirmation, aiormq.spec.Basic.Ack)


async def test_a_redelivered_message_has_its_effect_once(settings, mongo_client):
    effects = mongo_client[settings.names().database("probe")]["effects"]
    await ensure_indexes(effects.database, [Index("effects", [("n", 1)], unique=True)])
    harness = Harness(settings, effects=effects)
    async with started(harness, settings):
        ping = Ping(n=9, mode="flaky")  # the effect is written, then the first attempt fails
        await harness.bus.publish(ping)
        await harness.bus.publish(ping)  # and the sender publishes it twice
        await wait_for(lambda: harness.handled.count(9) == 2)
    assert harness.attempts[9] >= 3
    assert await effects.count_documents({}) == 1


async def test_a_refused_request_is_answered_with_the_reason_and_not_dead_lettered(settings):
    harness = Harness(settings)
    async with started(harness, settings):
        assert (await harness.bus.request(Ping(n=1), Answer, timeout=10)).n == 1
        with pytest.raises(Refused, match="not this school's principal") as refused:
            await harness.bus.request(Ping(n=2, mode="forbidden"), Answer, timeout=10)
        dead = await harness.dead_letters(settings.amqp_url, timeout=1.0)
    assert refused.value.reason == "forbidden"
    assert dead == [], "the requester was told; nothing waits in the dead-letter queue"
    assert harness.counted("hocba_requests_answered_with_error_total", "forbidden") == 1
    assert harness.counted("hocba_messages_refused_total", "forbidden") == 1


async def test_a_request_that_nothing_takes_gets_no_answer_at_once(settings):
    harness = Harness(settings)

    class Orphan(Message):
        ROUTING_KEY = "test.nobody.answers.v1"

    async with started(harness, settings), asyncio.timeout(5):
        with pytest.raises(NoAnswer, match="not running"):
            await harness.bus.request(Orphan(), Answer, timeout=30)


async def test_the_refused_part_of_a_message_is_dead_lettered_and_counted_while_the_rest_goes_on(settings):
    harness = Harness(settings)
    async with started(harness, settings):
        ping = Ping(n=4, items=[1, 2, 3, 4])
        await harness.bus.publish(ping)
        dead = await harness.dead_letters(settings.amqp_url, timeout=10)
    assert harness.handled == [4]
    [copy] = dead
    assert Ping.model_validate_json(copy.body).items == [1, 3]
    assert Ping.model_validate_json(copy.body).message_id != ping.message_id
    assert (copy.headers[REASON_HEADER], copy.headers[ERROR_HEADER]) == ("invalid", "odd items are not taken")
    assert harness.counted("hocba_messages_dead_lettered_total", "invalid") == 1


async def test_a_refusal_with_an_announcement_is_announced_then_dead_lettered(settings):
    harness = Harness(settings)
    async with probing(settings, Pong) as probes, started(harness, settings):
        await harness.bus.publish(Ping(n=5, mode="announced"))
        dead = await harness.dead_letters(settings.amqp_url, timeout=10)
        told = await drain(settings.amqp_url, probes[Pong.ROUTING_KEY], timeout=5)
    assert [Pong.model_validate_json(m.body).n for m in told] == [5]
    assert [m.headers[REASON_HEADER] for m in dead] == ["wrong-school"]
    assert harness.counted("hocba_messages_refused_total", "wrong-school") == 1
