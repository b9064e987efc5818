"""The messaging safety settings of shared/messaging.py, proved against real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

import aio_pika
import aiormq
import pytest
from aiormq.exceptions import DeliveryError, PublishError
from faststream import FastStream

from shared.auth import Actor, IssuerKey, signed_by
from shared.contracts import limits
from shared.contracts.base import Message, Reply
from shared.contracts.identity import RegisterStudents
from shared.errors import Forbidden, NoAnswer, Refused, TransientError
from shared.messaging import (
    ACTOR_SUBJECT_HEADER,
    DELIVERY_COUNT_HEADER,
    ERROR_HEADER,
    QUEUE_HEADER,
    REASON_HEADER,
    REQUEST_HEADER,
    TOKEN_REMOVED,
    Bus,
    broker_delivery_limit,
)
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
    """A service whose Ping handler fails on demand, counting its attempts; it also takes identity's rosters."""

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

        self.rosters: list[RegisterStudents] = []

        @self.bus.subscriber(RegisterStudents)
        async def take_roster(command: RegisterStudents) -> Outcome:
            self.rosters.append(command)
            return Outcome(reply=Answer(n=len(command.students)))

        self.app = FastStream(self.broker)

        async def declare() -> None:
            await self.broker.connect()
            await self.bus.declare_topology()

        self.app.on_startup(declare)

    @property
    def queue(self) -> str:
        return self.topology.queue_name(Ping.ROUTING_KEY)

    def dead_letters(self, url: str, timeout: float = 3.0, message: type[Message] = Ping):
        return drain(url, self.topology.queue_name(message.ROUTING_KEY) + ".dlq", timeout=timeout)

    def counted(self, metric: str, reason: str) -> float:
        return self.registry.get_sample_value(metric, {"queue": self.queue, "reason": reason}) or 0

    def retried(self, message: type[Message] = Ping) -> float:
        queue = self.topology.queue_name(message.ROUTING_KEY)
        return self.registry.get_sample_value("hocba_messages_retried_total", {"queue": queue}) or 0

    async def publish_raw(self, message: type[Message], body: bytes) -> None:
        """Publish `body` as it is, where `message` goes: what anyone with a broker login can do."""
        await self.broker.publish(body, exchange=self.bus.exchange, routing_key=message.ROUTING_KEY, persist=True)

    async def request_raw(self, message: type[Message], body: bytes) -> dict:
        """Send `body` as a request where `message` goes, and return the decoded answer."""
        response = await self.broker.request(
            body,
            exchange=self.bus.exchange,
            routing_key=message.ROUTING_KEY,
            headers={REQUEST_HEADER: True},
            timeout=10,
        )
        return await response.decode()


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


async def test_a_message_put_straight_into_its_queue_is_dead_lettered_by_the_service_with_its_queue_and_counted(
    settings,
):
    """Reproduction: a message that reached its queue through the default exchange (as `hocba dlq replay` moves one
    back, or as anyone with a login may publish) has the queue's name as routing key. The edge took that for a
    routing key, named a queue that does not exist, could not dead-letter the message and handed it back until the
    broker dead-lettered it by its delivery limit: only `x-death`, no reason, no `x-hocba-queue`, not counted."""
    harness = Harness(settings)
    async with started(harness, settings):
        await harness.broker.publish(Ping(n=8, mode="forbidden"), exchange="", routing_key=harness.queue, persist=True)
        dead = await harness.dead_letters(settings.amqp_url, timeout=10)
    assert harness.attempts[8] == 1, "refused at its first delivery, not handed back"
    [letter] = dead
    assert "x-death" not in letter.headers, "dead-lettered by the service, not by the broker"
    assert (letter.headers[REASON_HEADER], letter.headers[QUEUE_HEADER]) == ("forbidden", harness.queue)
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
        assert spec.arguments["x-delivery-limit"] == broker_delivery_limit(settings.delivery_limit)
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


# -- bad input gets a clear, harmless answer (issue 9, reproduction 6) -------------------------

#: A student's personal ID and full name, as an attacker's (or a broken tool's) message would carry them.
PERSONAL_ID, FULL_NAME = "079214000123", "Nguyễn Văn An"


def nested(depth: int) -> bytes:
    """A Ping whose `items` is a list nested `depth` deep."""
    return b'{"n": 1, "items": ' + b"[" * depth + b"]" * depth + b"}"


def roster_row(**identity) -> dict:
    person = {"personal_id": PERSONAL_ID, "full_name": FULL_NAME, "date_of_birth": "2014-09-05", "sex": "M"}
    enrolment = {"school_code": "79000701", "school_year": "2025-2026", "grade": 6, "class_name": "6A1"}
    return {"identity": {**person, **identity}, "enrolment": enrolment}


def leaky_roster() -> bytes:
    """A roster whose every error, as pydantic words it, quotes the personal ID or the name it carries."""
    rows = [
        roster_row(personal_id=int(PERSONAL_ID)),  # a spreadsheet dropped the leading zero
        roster_row(full_name=[FULL_NAME]),
        roster_row(personal_id=PERSONAL_ID + "9", full_name=FULL_NAME * 10),
    ]
    return json.dumps({"students": rows}).encode()


LEAKY_ROSTER_ERRORS = (
    "students.0.identity.personal_id: string_type; students.1.identity.full_name: string_type; "
    "students.2.identity.personal_id: string_too_long; students.2.identity.full_name: string_too_long"
)


@contextlib.contextmanager
def listening_to_faststream(caplog):
    """FastStream's loggers (set up when its broker starts) do not propagate: capture them too, DEBUG included."""
    loggers = [logging.getLogger(name) for name in ("faststream", "faststream.access.rabbit")]
    for logger in loggers:
        caplog.set_level(logging.DEBUG, logger=logger.name)
        logger.addHandler(caplog.handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(caplog.handler)


def personal_data_in(text: str) -> list[str]:
    return [value for value in (PERSONAL_ID[1:], FULL_NAME) if value in text]


async def test_attack_a_body_nested_thousands_deep_is_dead_lettered_once_as_invalid_and_not_retried(settings):
    """Reproduction: a JSON body nested 5,000 deep raised RecursionError and was retried up to the delivery limit."""
    harness = Harness(settings)
    body = nested(5_000)
    async with started(harness, settings):
        await harness.publish_raw(Ping, body)
        await harness.bus.publish(Ping(n=2))
        dead = await harness.dead_letters(settings.amqp_url, timeout=10)
        await wait_for(lambda: 2 in harness.handled)
        later = await harness.dead_letters(settings.amqp_url, timeout=1)
    assert [m.body for m in dead] == [body] and later == [], "dead-lettered once"
    assert dead[0].headers[REASON_HEADER] == "invalid"
    assert dead[0].headers[ERROR_HEADER] == "InvalidMessage: the body is nested too deeply to read"
    assert dead[0].headers.get(DELIVERY_COUNT_HEADER, 0) == 0, "at its first delivery"
    assert harness.retried() == 0
    assert harness.counted("hocba_messages_dead_lettered_total", "invalid") == 1


async def test_attack_a_body_over_the_size_limit_is_dead_lettered_too_large_without_being_read(settings):
    """Reproduction: no size limit existed on messages; whatever arrived was parsed and validated."""
    harness = Harness(settings.model_copy(update={"max_message_bytes": 64 * 1024}))
    padded = Ping(n=8).model_dump_json().encode().ljust(100 * 1024)  # valid, had anything read it
    deep = nested(40_000)  # would be refused as `invalid`, had anything parsed it
    async with started(harness, settings):
        await harness.publish_raw(Ping, padded)
        await harness.publish_raw(Ping, deep)
        await harness.bus.publish(Ping(n=2))
        await wait_for(lambda: 2 in harness.handled)
        dead = await harness.dead_letters(settings.amqp_url, timeout=10)
    assert 8 not in harness.attempts, "the handler never saw it"
    assert [m.body for m in dead] == [padded, deep], "kept whole in the dead-letter queue"
    assert [m.headers[REASON_HEADER] for m in dead] == ["too-large", "too-large"]
    assert dead[0].headers[ERROR_HEADER] == (
        f"InvalidMessage: the message has {len(padded)} bytes, more than the {64 * 1024} a service reads"
    )
    assert harness.retried() == 0


async def test_attack_a_validation_error_puts_no_personal_data_in_dead_letter_headers_or_logs(settings, caplog):
    """Reproduction: pydantic's error text, quoting personal data, went into `x-hocba-error` and the logs."""
    # Everything hocba and FastStream log, and what any library logs at INFO or above. (The AMQP client logs
    # whole frames, bodies and all, at DEBUG: a deployment keeps it above DEBUG.)
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="hocba")
    harness = Harness(settings)
    async with started(harness, settings):
        with listening_to_faststream(caplog):
            await harness.publish_raw(RegisterStudents, leaky_roster())
            dead = await harness.dead_letters(settings.amqp_url, timeout=10, message=RegisterStudents)
    assert harness.rosters == []
    [letter] = dead
    assert letter.headers[REASON_HEADER] == "invalid"
    assert letter.headers[ERROR_HEADER] == f"ValidationError: {LEAKY_ROSTER_ERRORS}"
    assert "Received" in caplog.text and "dead-lettering" in caplog.text and LEAKY_ROSTER_ERRORS in caplog.text
    assert personal_data_in(caplog.text) == []


async def test_attack_a_requester_is_told_which_fields_are_wrong_never_their_values(settings):
    """Reproduction: an invalid request was answered with pydantic's text, quoting the request's personal data."""
    harness = Harness(settings)
    async with started(harness, settings):
        answer = await harness.request_raw(RegisterStudents, leaky_roster())
        dead = await harness.dead_letters(settings.amqp_url, timeout=1, message=RegisterStudents)
    assert answer == {"error": {"code": "invalid", "message": LEAKY_ROSTER_ERRORS}}
    assert dead == [], "the requester was told"


async def test_attack_a_list_over_its_limit_is_refused_as_invalid(settings):
    """Reproduction: no limit existed on lists: a roster of any length was taken."""
    harness = Harness(settings)
    rows = [roster_row()] * (limits.ROWS + 1)
    async with started(harness, settings):
        await harness.publish_raw(RegisterStudents, json.dumps({"students": rows}).encode())
        dead = await harness.dead_letters(settings.amqp_url, timeout=10, message=RegisterStudents)
    assert harness.rosters == []
    assert [(m.headers[REASON_HEADER], m.headers[ERROR_HEADER]) for m in dead] == [
        ("invalid", "ValidationError: students: too_long")
    ]


async def test_a_request_that_cannot_be_read_is_answered_with_the_reason_at_once(settings):
    harness = Harness(settings.model_copy(update={"max_message_bytes": 64 * 1024}))
    async with started(harness, settings):
        deep = await harness.request_raw(Ping, nested(5_000))
        large = await harness.request_raw(Ping, Ping(n=1).model_dump_json().encode().ljust(100 * 1024))
        garbage = await harness.request_raw(Ping, b"\xff not json")
        dead = await harness.dead_letters(settings.amqp_url, timeout=1)
    assert [a["error"]["code"] for a in (deep, large, garbage)] == ["invalid", "too-large", "invalid"]
    assert garbage["error"]["message"] == "the body is not JSON"
    assert dead == [] and harness.retried() == 0


# -- dead letters keep no actor tokens ---------------------------------------------------------

ISSUER = IssuerKey.generate("messaging-test-issuer")
TEACHER = Actor(
    subject="gv-079-0042",
    name="Trần Thị Bích",
    roles=frozenset({"homeroom_teacher"}),
    school_code="79000701",
    classes=frozenset({"6A1"}),
)


def token_parts(token: str) -> list[str]:
    """The token, and each of its three parts: none may be left in a dead letter."""
    return [token, *token.split(".")]


def assert_no_token_in(letter: aio_pika.abc.AbstractIncomingMessage, token: str) -> None:
    kept = letter.body.decode(errors="replace") + json.dumps(letter.headers, default=str, ensure_ascii=False)
    assert [part for part in token_parts(token) if part in kept] == []
    assert TEACHER.name not in kept, "nor what the token said of its holder but the subject"


async def test_attack_a_command_that_fails_for_good_is_dead_lettered_without_its_actor_token(settings):
    """Reproduction: the dead-letter queue kept the whole command, its sender's token (their credential, naming
    them, their roles and classes) included, for as long as nobody removed it."""
    harness = Harness(settings)
    command = signed_by(Ping(n=7, mode="forbidden"), ISSUER, TEACHER)
    assert command.actor
    async with started(harness, settings):
        await harness.bus.publish(command)
        [letter] = await harness.dead_letters(settings.amqp_url, timeout=10)
    assert_no_token_in(letter, command.actor)
    kept = Ping.model_validate_json(letter.body)
    assert kept.actor is None
    assert kept == command.model_copy(update={"actor": None}), "the rest of the command is kept for a replay"
    assert letter.headers[ACTOR_SUBJECT_HEADER] == TEACHER.subject
    assert (letter.headers[REASON_HEADER], letter.headers[QUEUE_HEADER]) == ("forbidden", harness.queue)


async def test_a_command_retried_to_its_limit_is_dead_lettered_without_its_actor_token(settings):
    harness = Harness(settings)
    command = signed_by(Ping(n=4, mode="transient"), ISSUER, TEACHER)
    async with started(harness, settings):
        await harness.bus.publish(command)
        [letter] = await harness.dead_letters(settings.amqp_url, timeout=20)
    assert letter.headers[REASON_HEADER] == "retries-exhausted"
    assert_no_token_in(letter, command.actor or "")
    assert Ping.model_validate_json(letter.body).actor is None


async def test_the_refused_part_of_a_command_is_dead_lettered_without_its_actor_token(settings):
    harness = Harness(settings)
    command = signed_by(Ping(n=4, items=[1, 2, 3]), ISSUER, TEACHER)
    async with started(harness, settings):
        await harness.bus.publish(command)
        [letter] = await harness.dead_letters(settings.amqp_url, timeout=10)
    assert harness.handled == [4]
    assert_no_token_in(letter, command.actor or "")
    kept = Ping.model_validate_json(letter.body)
    assert (kept.items, kept.actor) == ([1, 3], None)
    assert letter.headers[ACTOR_SUBJECT_HEADER] == TEACHER.subject


async def test_attack_a_token_in_a_body_that_is_no_json_or_in_a_header_is_not_kept(settings):
    """A body nobody can read still went whole to the dead-letter queue, with any token written in it; a header
    claiming whose token it was went along as the sender wrote it."""
    harness = Harness(settings)
    token = signed_by(Ping(n=1), ISSUER, TEACHER).actor or ""
    async with started(harness, settings):
        await harness.broker.publish(
            f"actor={token}; not json".encode(),
            exchange=harness.bus.exchange,
            routing_key=Ping.ROUTING_KEY,
            persist=True,
            headers={"x-note": f"Bearer {token}", ACTOR_SUBJECT_HEADER: "someone-else"},
        )
        [letter] = await harness.dead_letters(settings.amqp_url, timeout=10)
    assert letter.headers[REASON_HEADER] == "invalid"
    assert letter.body == f"actor={TOKEN_REMOVED}; not json".encode()
    assert letter.headers["x-note"] == f"Bearer {TOKEN_REMOVED}"
    assert ACTOR_SUBJECT_HEADER not in letter.headers, "only the edge says whose token a message carried"
    assert_no_token_in(letter, token)


async def test_a_message_without_a_token_is_dead_lettered_byte_for_byte(settings):
    """Events carry no token; their dead letters (signed records among them) must replay as they were."""
    harness = Harness(settings)
    body = b'{"n": 3, "mode": "forbidden", "actor": null, "note": "eyJhbGciOiJFUzI1NiJ9..c2lnbmF0dXJl"}'
    async with started(harness, settings):
        await harness.publish_raw(Ping, body)
        [letter] = await harness.dead_letters(settings.amqp_url, timeout=10)
    assert letter.body == body
    assert ACTOR_SUBJECT_HEADER not in letter.headers
