"""The broker with its safety settings, the queue topology, publishing and dead-lettering.

FastStream's defaults are unsafe for records that must not be lost; this module is the one
place they are set:

* one durable topic exchange; every queue a quorum queue with an explicit delivery limit and a
  dead-letter exchange, each queue with its own `<queue>.dlq`;
* messages persistent, publisher confirms on, and an unroutable mandatory publish raises;
* a permanent failure (invalid message, forbidden, unknown) is dead-lettered at once with a
  reason header; a transient one is retried with back-off until its handler has failed
  `Settings.delivery_limit` times (`FailureCount`: counted by the service per message id), then
  dead-lettered with the last error. Nothing is acknowledged before it is safe elsewhere;
* a handler's failures and a message's returns are counted apart: a consumer that dies or loses its
  channel hands back every message it held (up to its prefetch), and quorum queues count those returns
  in `x-delivery-count` like failures. So the queues' own limit (`x-delivery-limit`,
  `broker_delivery_limit`) is the handler's limit plus `RETURNS_ALLOWED`, room for many such returns,
  and a message the broker would dead-letter at its next return (handed back that many times: it
  kills its consumer) is dead-lettered by the service at that delivery instead, unread, as
  `delivery-limit`;
* every dead letter carries its reason and the queue it was consumed from (`x-hocba-queue`), however
  it reached that queue, and is counted in `hocba_messages_dead_lettered_total{queue, reason}`: a whole
  message, a refused part of one, and one handed back up to the queue's limit. Only a request that
  expired unread (its requester was told there was no answer) is dead-lettered by the broker itself,
  with RabbitMQ's `x-death` alone, which names the queue too;
* bad input gets a clear, harmless answer: a body larger than `Settings.max_message_bytes` is
  dead-lettered `too-large` unread, one that is not JSON (or nested too deep to read) or does not
  fit its contract is dead-lettered `invalid` at once, never retried; dead-letter headers, error
  answers and log lines name the fields and the kinds of error, never a value from the message;
* a dead letter carries no actor token: the copy kept in `<queue>.dlq` has `actor: null`, and a
  header says whose the token said it was (`x-hocba-actor-subject`). It is a place to inspect and
  replay from for a while (the broker drops it after `Settings.dead_letter_ttl_days`, a policy of
  hocba.broker), not a store of who did what with their credentials.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import aio_pika
from faststream import BaseMiddleware
from faststream.exceptions import NackMessage
from faststream.middlewares import AckPolicy
from faststream.prometheus.container import MetricsContainer
from faststream.prometheus.types import ProcessingStatus, PublishingStatus
from faststream.rabbit import (
    Channel,
    ExchangeType,
    RabbitBroker,
    RabbitExchange,
    RabbitMessage,
    RabbitQueue,
    RabbitResponse,
)
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from faststream.rabbit.schemas.queue import QueueType
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from shared.contracts import limits
from shared.contracts.base import Message, Model, Problem, Reply, derived_id
from shared.crypto.jws import b64url_decode
from shared.errors import (
    Forbidden,
    HocbaError,
    InvalidMessage,
    NoAnswer,
    NotFound,
    PermanentError,
    Refused,
)
from shared.observability import from_zero
from shared.outcome import Outcome, RejectedPart
from shared.settings import Names, Settings

log = logging.getLogger("hocba.messaging")

M = TypeVar("M", bound=Message)
R = TypeVar("R", bound=Model)

REASON_HEADER = "x-hocba-reason"
ERROR_HEADER = "x-hocba-error"
QUEUE_HEADER = "x-hocba-queue"
#: Set by `Bus.request`: someone waits for the answer (as `reply_to` says on a real broker; FastStream's
#: in-memory test broker passes headers but no `reply_to`).
REQUEST_HEADER = "x-hocba-request"
DELIVERY_COUNT_HEADER = "x-delivery-count"  # set by quorum queues on redelivery
#: Returns of a message the queues allow beyond its handler's failures: a consumer that dies, or loses its channel,
#: hands back each message it held, and the quorum queue counts that like a failure. Fifty is many consumer deaths
#: for one message, and few enough that a message that kills every consumer it reaches stops soon.
RETURNS_ALLOWED = 50
#: The reason of a message handed back as often as its queue allows (`broker_delivery_limit`).
DELIVERY_LIMIT = "delivery-limit"
#: The reason of a message whose body is larger than a service reads.
TOO_LARGE = "too-large"
#: The parameter FastStream validates a message's body into (`Bus.subscriber`): no part of a field's path.
BODY = "body"
#: A field's name in a validation error's path; anything else there (a mapping's key) may be a value.
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: Whose actor token a dead-lettered message carried: the token's `sub`, as it said (unverified), never the token.
ACTOR_SUBJECT_HEADER = "x-hocba-actor-subject"
#: A compact JWS or JWT: three base64url parts, the first a JSON object (`{"` and `{ ` both encode as `ey`).
TOKEN_SHAPED = r"ey[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"
TOKEN_SHAPED_TEXT = re.compile(TOKEN_SHAPED)
TOKEN_SHAPED_BYTES = re.compile(TOKEN_SHAPED.encode())
#: What stands in a dead letter where token-shaped text was.
TOKEN_REMOVED = "[token removed]"
#: What a subject may look like to be repeated in a header: printable, short, and no token itself.
SUBJECT = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


def topic_exchange(names: Names) -> RabbitExchange:
    return RabbitExchange(names.exchange, type=ExchangeType.TOPIC, durable=True)


def dead_letter_exchange(names: Names) -> RabbitExchange:
    return RabbitExchange(names.dead_letter_exchange, type=ExchangeType.DIRECT, durable=True)


def broker_delivery_limit(handler_limit: int) -> int:
    """The queues' `x-delivery-limit` for a handler that may fail `handler_limit` times: those, and `RETURNS_ALLOWED`."""
    return handler_limit + RETURNS_ALLOWED


def quorum_queue(names: Names, queue: str, routing_key: str, delivery_limit: int, declare: bool = True) -> RabbitQueue:
    """A quorum queue bound to `routing_key`, dead-lettering at least once to `<queue>.dlq`.

    `delivery_limit` is the handler's (`Settings.delivery_limit`); the queue's own is `broker_delivery_limit` of it.
    Without `declare`, a consumer only looks the queue up (`Bus.declare_topology` declares it first).
    """
    return RabbitQueue(
        queue,
        queue_type=QueueType.QUORUM,
        durable=True,
        declare=declare,
        routing_key=routing_key,
        arguments={
            "x-delivery-limit": broker_delivery_limit(delivery_limit),
            "x-dead-letter-exchange": names.dead_letter_exchange,
            "x-dead-letter-routing-key": queue,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )


def dead_letter_queue(names: Names, queue: str) -> RabbitQueue:
    return RabbitQueue(
        names.dead_letter_queue(queue),
        queue_type=QueueType.QUORUM,
        durable=True,
        routing_key=queue,
    )


@dataclass
class Topology:
    """The queues one service consumes, so their dead-letter queues can be declared first."""

    names: Names
    consumer: str
    delivery_limit: int
    queues: dict[str, RabbitQueue] = field(default_factory=dict)

    def queue_for(self, message: type[Message]) -> RabbitQueue:
        name = self.names.queue(self.consumer, message.ROUTING_KEY)
        if name not in self.queues:
            # Declared by `Bus.declare_topology` before anything consumes, which keeps a queue an earlier release
            # declared with other arguments; the consumer only looks it up.
            self.queues[name] = quorum_queue(self.names, name, message.ROUTING_KEY, self.delivery_limit, declare=False)
        return self.queues[name]

    def queue_name(self, routing_key: str) -> str:
        return self.names.queue(self.consumer, routing_key)

    @property
    def broker_limit(self) -> int:
        """How often the queues hand a message out before the broker dead-letters it (`broker_delivery_limit`)."""
        return broker_delivery_limit(self.delivery_limit)

    def arrived_on(self, routing_key: str) -> str:
        """The queue a message delivered with `routing_key` was consumed from.

        A message published to the topic exchange has its contract's routing key; one put straight into a queue
        through the default exchange (moved back by `hocba dlq replay`, or published so by anyone with a login)
        has the queue's own name.
        """
        return routing_key if routing_key in self.queues else self.queue_name(routing_key)


def is_permanent(exc: BaseException) -> bool:
    """Errors no retry can fix: bad payloads and the service's own permanent errors.

    A `RecursionError` is one: input nested deeper than Python's stack (a document thousands of
    levels deep) fails the same way on every delivery.
    """
    return isinstance(
        exc, PermanentError | ValidationError | json.JSONDecodeError | UnicodeDecodeError | RecursionError
    )


def describe_error(exc: BaseException) -> str:
    """What went wrong, fit for a dead-letter header and a log line: its type, and what may be said of it.

    Never a value from the message (`error_detail`): `ValidationError: students.3.identity.personal_id:
    string_too_long; students.3.identity.full_name: missing`, `Forbidden: <the service's sentence>`,
    or only `DuplicateKeyError` for an error hocba did not raise on purpose (its text may quote data).
    """
    detail = error_detail(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def error_detail(exc: BaseException) -> str:
    """What may be said of an error: each field at fault and its kind of error, or hocba's own sentence.

    hocba's errors (`shared.errors`) are written not to name personal data, so their sentence is kept;
    anything else says nothing here.
    """
    if isinstance(exc, ValidationError):
        return validation_summary(exc)
    if isinstance(exc, HocbaError):
        return str(exc)
    return ""


def validation_summary(exc: ValidationError, most: int = 10) -> str:
    """`path.to.field: error_type` for each error (the first `most`), without the values pydantic quotes."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    said = [f"{field_path(error['loc'])}: {error['type']}" for error in errors[:most]]
    if len(errors) > most:
        said.append(f"{len(errors) - most} more")
    return "; ".join(said)


def field_path(location: tuple[int | str, ...]) -> str:
    """A validation error's location as a dotted path; a mapping's key that is no field name becomes `*`."""
    parts = location[1:] if location[:1] == (BODY,) else location
    named = [str(p) if isinstance(p, int) or FIELD_NAME.fullmatch(p) else "*" for p in parts]
    return ".".join(named) or "(message)"


def refuse_oversized(body: bytes, most: int) -> None:
    """Refuse a body larger than `most` bytes before anything reads it."""
    if len(body) > most:
        raise InvalidMessage(f"the message has {len(body)} bytes, more than the {most} a service reads", reason=TOO_LARGE)


async def decode_body(message: RabbitMessage) -> Any:
    """The body as JSON, or `InvalidMessage`: every hocba message is a JSON object, whatever its content type says.

    FastStream calls this when the handler's parameter is validated, inside the edge middleware's
    `consume_scope`, so a refusal here is dead-lettered (or answered) at once like any invalid message.
    """
    try:
        return json.loads(message.body)
    except RecursionError:
        raise InvalidMessage("the body is nested too deeply to read") from None
    except ValueError:  # not UTF-8, not JSON, or a number too long to convert
        raise InvalidMessage("the body is not JSON") from None


class _JsonObject(dict[str, Any]):
    """A JSON object as read, with every value its `actor` key had (a repeated key keeps only the last in the dict)."""

    actors: list[Any]


def _json_object(pairs: list[tuple[str, Any]]) -> _JsonObject:
    read = _JsonObject(pairs)
    read.actors = [value for key, value in pairs if key == "actor" and value is not None]
    return read


def without_actor_token(body: bytes, most: int) -> tuple[bytes, str | None]:
    """What of a failed message's `body` may wait in a dead-letter queue, and whose actor token it carried.

    A command's token is its sender's credential and names them (name, roles, classes): a JSON object's
    `actor` becomes null (every copy of the key), and only the token's subject is said, in a header. Any
    other JSON object is kept byte for byte: its signatures and signed bytes must survive a replay. A
    body that is no JSON object, or larger than `most` (never read, so never parsed here), can never be
    handled as it stands; it is kept with any token-shaped text replaced.
    """
    read = _read_object(body) if len(body) <= most else None
    if read is None:
        return TOKEN_SHAPED_BYTES.sub(TOKEN_REMOVED.encode(), body), None
    if not read.actors:
        return body, None
    subject = token_subject(read.actors[-1])
    return _encode({**read, "actor": None}), subject


def _read_object(body: bytes) -> _JsonObject | None:
    try:
        read = json.loads(body, object_pairs_hook=_json_object)
    except (ValueError, RecursionError):
        return None
    return read if isinstance(read, _JsonObject) else None


def _encode(content: dict[str, Any]) -> bytes:
    try:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate, written as an escape in the body: kept as one
        return json.dumps(content, separators=(",", ":")).encode()


def token_subject(token: Any) -> str | None:
    """The `sub` claim of a compact JWT, unverified, when it is one and its subject is fit for a header."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, RecursionError):
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(subject, str) or not SUBJECT.fullmatch(subject) or TOKEN_SHAPED_TEXT.search(subject):
        return None
    return subject


def dead_letter_headers(headers: dict[str, Any], subject: str | None) -> dict[str, Any]:
    """The failed message's plain headers for its dead letter, token-shaped text replaced, and whose token it was.

    A subject header the message arrived with is dropped: only the edge says whose token a message carried.
    """
    kept: dict[str, Any] = {
        key: TOKEN_SHAPED_TEXT.sub(TOKEN_REMOVED, value) if isinstance(value, str) else value
        for key, value in headers.items()
        if isinstance(value, str | int | float | bool) and key != ACTOR_SUBJECT_HEADER
    }
    return {**kept, ACTOR_SUBJECT_HEADER: subject} if subject else kept


class FailureCount:
    """How often this process's handlers failed on each message, by message id: what a message's retries are bounded
    by, apart from its returns by consumers that stopped holding it (`x-delivery-count` counts both).

    Kept for the `most` messages that failed last (a message forgotten starts again from none, and the queue's own
    limit still bounds it); a message is forgotten once handled or dead-lettered. Copies of a service each count their
    own: a message that fails on several copies is tried up to `Settings.delivery_limit` times on each.
    """

    def __init__(self, most: int = 10_000) -> None:
        self.most = most
        self._failed: OrderedDict[str, int] = OrderedDict()

    def failed(self, key: str) -> int:
        """Count one more failure of message `key`; how many there have been."""
        count = self._failed.pop(key, 0) + 1
        self._failed[key] = count
        while len(self._failed) > self.most:
            self._failed.popitem(last=False)
        return count

    def forget(self, key: str) -> None:
        self._failed.pop(key, None)

    def __len__(self) -> int:
        return len(self._failed)


def message_key(msg: Any) -> str:
    """What names a delivered message across its deliveries: its AMQP message id (every hocba publish sets it),
    or, without one, a digest of its routing key and body."""
    raw = msg.raw_message
    if raw.message_id:
        return f"id:{raw.message_id}"
    return "sha256:" + hashlib.sha256((raw.routing_key or "").encode() + b"\0" + msg.body).hexdigest()


def backoff_seconds(attempt: int) -> float:
    return min(0.2 * 2**attempt, 5.0)


#: Why the edge dead-letters a whole message, whatever the queue: the reasons every queue's series start with (at 0),
#: so that the first dead letter is an increase Prometheus sees. A handler's own reasons (a refused part) appear
#: when they first happen; the alert counts a series that appears already above 0 as well.
DEAD_LETTER_REASONS = (
    InvalidMessage.reason,
    TOO_LARGE,
    NotFound.reason,
    Forbidden.reason,
    "retries-exhausted",
    DELIVERY_LIMIT,
)
#: What the edge answers a request with when it fails (`hocba_requests_answered_with_error_total`), and what it
#: refuses for the sender (`hocba_messages_refused_total`): series started at 0 for every queue.
ANSWER_REASONS = (InvalidMessage.reason, NotFound.reason, Forbidden.reason)
#: The label FastStream's Prometheus middleware gives RabbitMQ as a broker.
FASTSTREAM_BROKER = "rabbitmq"


class EdgeMetrics:
    """What the edge did with messages its handlers could not take as they came.

    Every series of a queue the service consumes starts at 0 as the queue is subscribed (`consumed`),
    so that the first dead letter or retry is an increase Prometheus sees; a series that first
    appears at 1 is invisible to `increase()` and `rate()`.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.dead_lettered = Counter(
            "hocba_messages_dead_lettered_total",
            "Messages sent to a dead-letter queue, by queue and reason.",
            ["queue", "reason"],
            registry=registry,
        )
        self.retried = Counter(
            "hocba_messages_retried_total",
            "Messages handed back for another attempt after a transient failure.",
            ["queue"],
            registry=registry,
        )
        self.refused = Counter(
            "hocba_messages_refused_total",
            "Messages refused whole for who sent them (no valid actor token, or the actor may not), by queue and reason.",
            ["queue", "reason"],
            registry=registry,
        )
        self.answered_with_error = Counter(
            "hocba_requests_answered_with_error_total",
            "Requests answered with an error instead of what they asked for, by queue and reason.",
            ["queue", "reason"],
            registry=registry,
        )

    def consumed(self, queue: str) -> None:
        """Start the series of `queue` (a queue this service consumes) at 0."""
        from_zero(self.retried, [queue])
        from_zero(self.dead_lettered, [queue], DEAD_LETTER_REASONS)
        from_zero(self.refused, [queue], ANSWER_REASONS)
        from_zero(self.answered_with_error, [queue], ANSWER_REASONS)


class MessagingMetrics:
    """FastStream's Prometheus middleware's series for the messages a service consumes and publishes, started at 0.

    The middleware creates a series when it first counts a message, so the first wave of a term end
    would be invisible to `increase()` and `rate()`. Its metrics are found again on the registry
    (`MetricsContainer` reuses what is registered) and each series this service will count is made
    beforehand: for a consumed message its handler label is `<exchange>.<routing key>`, for a
    published one its destination label is the same. Only the exception counter cannot be started:
    its `exception_type` is known when an exception happens.
    """

    def __init__(self, registry: CollectorRegistry, app_name: str) -> None:
        self.container = MetricsContainer(registry, custom_label_names=())
        self.app_name = app_name

    def consumed(self, handler: str) -> None:
        c, labels = self.container, {"app_name": self.app_name, "broker": FASTSTREAM_BROKER, "handler": handler}
        c.received_messages_total.labels(**labels)
        c.received_messages_size_bytes.labels(**labels)
        c.received_messages_in_process.labels(**labels)
        c.received_processed_messages_duration_seconds.labels(**labels)
        for status in ProcessingStatus:
            c.received_processed_messages_total.labels(**labels, status=status.value)

    def published(self, destination: str) -> None:
        c, labels = self.container, {"app_name": self.app_name, "broker": FASTSTREAM_BROKER, "destination": destination}
        c.published_messages_duration_seconds.labels(**labels)
        for status in PublishingStatus:
            c.published_messages_total.labels(**labels, status=status.value)


#: A handler as the Bus calls it: the parsed message in, what to do about it out.
Handler = Callable[[M], Awaitable[Outcome]]


class Bus:
    """One process's broker, the queues it consumes (its topology), and the edge of its handlers.

    The edge is the one place where handling meets the broker: `subscriber` parses a message,
    calls the handler and carries out its `Outcome` (refused parts to the dead-letter queue, then
    the messages, then the reply); the middleware turns what a handler raises into an error reply,
    a dead letter or a bounded retry (see `shared.errors`).
    """

    def __init__(self, settings: Settings, service: str, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.names = settings.names()
        self.service = service
        self.registry = registry if registry is not None else CollectorRegistry()
        self.exchange = topic_exchange(self.names)
        self.dlx = dead_letter_exchange(self.names)
        self.topology = Topology(self.names, service, settings.delivery_limit)
        self.metrics = EdgeMetrics(self.registry)
        self.failures = FailureCount()
        self.broker = RabbitBroker(
            settings.amqp_url,
            default_channel=Channel(
                prefetch_count=settings.prefetch,
                publisher_confirms=True,
                on_return_raises=True,
            ),
            ack_policy=AckPolicy.NACK_ON_ERROR,
            graceful_timeout=30.0,
            app_id=f"hocba-{service}",
            middlewares=[
                edge_middleware(self),
                RabbitPrometheusMiddleware(registry=self.registry, app_name=service),
            ],
            log_level=logging.DEBUG,
        )
        self.messaging_metrics = MessagingMetrics(self.registry, service)

    # --- consuming -------------------------------------------------------------------------------

    def subscriber(self, message: type[M], prefetch: int | None = None) -> Callable[[Handler[M]], Handler[M]]:
        """Consume `message` on this service's own quorum queue with the decorated handler.

        The handler receives the parsed message and returns an `Outcome`, which is carried out here. `prefetch`
        gives the subscriber a channel of its own holding at most that many unacknowledged messages (long work:
        what a consumer that stops hands back is what it held); by default it shares the broker's
        (`Settings.prefetch`).
        """

        def register(handle: Handler[M]) -> Handler[M]:
            async def consume(body: Any) -> RabbitResponse | None:
                return await self.carry_out(body, await handle(body))

            # FastStream decodes the body (`decode_body`) and validates it into the type of the parameter BODY.
            consume.__annotations__ = {BODY: message}
            consume.__name__ = consume.__qualname__ = handle.__name__
            queue = self.topology.queue_for(message)
            self.metrics.consumed(queue.name)
            self.messaging_metrics.consumed(f"{self.exchange.name}.{message.ROUTING_KEY}")
            self.broker.subscriber(
                queue,
                exchange=self.exchange,
                channel=Channel(prefetch_count=prefetch) if prefetch is not None else None,
                title=f"{self.service}:{message.ROUTING_KEY}",
                decoder=decode_body,
            )(consume)
            return handle

        return register

    async def carry_out(self, message: Message, outcome: Outcome) -> RabbitResponse | None:
        """Do what a handler decided: dead-letter refused parts, publish, and return the reply (if any)."""
        for part in outcome.rejected:
            await self.dead_letter_rejected(message, part)
        await self.publish_all(outcome.publish)
        if outcome.refused is not None:
            raise outcome.refused
        return reply(outcome.reply) if outcome.reply is not None else None

    # --- publishing ------------------------------------------------------------------------------

    def publishes(self, *messages: type[Message]) -> None:
        """Record that this service publishes `messages` (they then appear in its AsyncAPI document)."""
        for message in messages:
            self.messaging_metrics.published(f"{self.exchange.name}.{message.ROUTING_KEY}")
            self.broker.publisher(
                message.ROUTING_KEY,
                exchange=self.exchange,
                persist=message.MANDATORY,
                mandatory=message.MANDATORY,
                title=f"{self.service}:{message.ROUTING_KEY}:publish",
                schema=message,
            )

    async def publish(self, message: Message) -> None:
        await self.broker.publish(
            message,
            exchange=self.exchange,
            routing_key=message.ROUTING_KEY,
            persist=message.MANDATORY,
            mandatory=message.MANDATORY,
            message_id=message.message_id,
            message_type=message.ROUTING_KEY,
        )

    async def publish_all(self, messages: Iterable[Message]) -> None:
        for message in messages:
            await self.publish(message)

    async def waiting(self, message: type[Message]) -> int:
        """How many messages wait in this service's queue of `message`, ready for a consumer (not those held)."""
        declared = await self.broker.declare_queue(self.topology.queue_for(message))
        return (await declared.declare()).message_count or 0

    # --- requests --------------------------------------------------------------------------------

    async def request(self, message: Message, answer: type[R], timeout: float = 30.0) -> R:
        """Send a request and return its answer as `answer`.

        Raises `NoAnswer` when no service takes the request, none answers within `timeout` (the
        request then expires unread) or its service could not finish it for now (it is tried again),
        and `Refused` when the answer carries an error.
        """
        try:
            response = await self.broker.request(
                message,
                exchange=self.exchange,
                routing_key=message.ROUTING_KEY,
                message_id=message.message_id,
                headers={REQUEST_HEADER: True},
                mandatory=True,
                timeout=timeout,
                expiration=timedelta(seconds=timeout),
            )
        except TimeoutError:
            raise NoAnswer(f"no answer to {message.ROUTING_KEY} within {timeout:.0f}s") from None
        except aio_pika.exceptions.DeliveryError:
            raise NoAnswer(f"nothing takes {message.ROUTING_KEY} here: its service is not running") from None
        body = await response.decode()
        if not isinstance(body, dict):
            # FastStream answers a request whose handler failed for now (handed back to be tried again) with an
            # empty body: there is no answer yet, and the request may still take effect when it is tried again.
            raise NoAnswer(
                f"no answer to {message.ROUTING_KEY} now: its service could not finish it and is trying it again "
                "(it may still take effect); see the service's log, and ask again later"
            )
        if body.get("error"):
            problem = Problem.model_validate(body["error"])
            raise Refused(problem.message, reason=problem.code)
        return answer.model_validate(body)

    # --- dead letters ----------------------------------------------------------------------------

    async def dead_letter(
        self, queue: str, body: bytes, headers: dict[str, Any], reason: str, error: str
    ) -> None:
        """Publish (with confirm) a copy of a failed message to `<queue>.dlq` with the reason, and count it.

        The copy carries no actor token (`without_actor_token`): whoever replays it sends it again with a fresh one.
        """
        kept, subject = without_actor_token(body, self.settings.max_message_bytes)
        await self.broker.publish(
            kept,
            exchange=self.dlx,
            routing_key=queue,
            persist=True,
            mandatory=True,
            headers={
                **dead_letter_headers(headers, subject),
                REASON_HEADER: reason,
                ERROR_HEADER: error[:1000],
                QUEUE_HEADER: queue,
            },
            content_type="application/json",
        )
        self.metrics.dead_lettered.labels(queue, reason).inc()

    async def dead_letter_rejected(self, original: Message, part: RejectedPart) -> None:
        """Dead-letter the refused part of a message: a copy holding only `part.items` in `part.field`.

        The rest of the message goes on; nothing of the refused part is lost (but its actor token:
        `dead_letter` keeps none).
        """
        copy = original.model_copy(
            update={
                "message_id": derived_id(original.message_id, "rejected", part.reason),
                part.field: list(part.items),
            }
        )
        queue = self.topology.queue_name(original.ROUTING_KEY)
        await self.dead_letter(queue, copy.model_dump_json().encode(), {}, part.reason, part.explanation)

    # --- topology --------------------------------------------------------------------------------

    async def declare_topology(self, attempts: int = 12) -> None:
        """Declare the exchanges, every queue this service consumes and its dead-letter queue, before consuming.

        Copies of one service (signing workers) start together, and RabbitMQ answers simultaneous
        first declarations of one quorum queue with INTERNAL_ERROR and closes the connection; so the
        declarations run on a connection of their own and are retried after a random pause. When the
        consumers then start, declaring their queues again is a no-op.
        """
        for attempt in range(1, attempts + 1):
            try:
                await _declare(self.settings.amqp_url, self.names, self.topology)
                return
            except (aio_pika.exceptions.AMQPError, ConnectionError, OSError) as exc:
                if attempt == attempts:
                    raise
                log.warning("declaring queues failed (%s); retrying", exc)
                await asyncio.sleep(random.uniform(0.1, 0.5) * attempt)

    async def remove_queues(self) -> None:
        """Delete this service's queues and their dead-letter queues (throw-away stacks only)."""
        await delete_queues(self.settings.amqp_url, self.topology.queues)


def edge_middleware(bus: Bus) -> Callable[..., BaseMiddleware]:
    """Middleware that maps what a handler raises: an error reply, a dead letter, or a bounded retry.

    Its `consume_scope` holds everything done with a message's body: the size check, decoding
    (`decode_body`), validation into the contract, the handler and carrying out its outcome. What
    fails there is said with `describe_error`, never with the error's own text, which may quote the
    message.
    """

    class _Edge(BaseMiddleware):
        async def consume_scope(self, call_next: Any, msg: Any) -> Any:
            key = message_key(msg)
            returned = int((msg.headers or {}).get(DELIVERY_COUNT_HEADER, 0))
            if returned >= bus.topology.broker_limit:
                return await given_up(bus, msg, key, returned)
            try:
                refuse_oversized(msg.body, bus.settings.max_message_bytes)
                answer = await call_next(msg)
            except Exception as exc:  # noqa: BLE001 - every failure is classified below
                failure = exc
            else:
                bus.failures.forget(key)
                return answer
            # Handled outside the `except` block, so that nothing raised from here chains the failure (and its text).
            return await self._on_failure(msg, key, failure)

        async def _on_failure(self, msg: Any, key: str, exc: Exception) -> RabbitResponse | None:
            queue = bus.topology.arrived_on(msg.raw_message.routing_key or "")
            headers = dict(msg.headers or {})
            error = describe_error(exc)
            # This process's handler failures on the message, never its returns by consumers that stopped.
            attempts = bus.failures.failed(key)
            if is_permanent(exc):
                reason = getattr(exc, "reason", "invalid")
                if isinstance(exc, Forbidden):
                    bus.metrics.refused.labels(queue, reason).inc()
                if msg.reply_to or headers.get(REQUEST_HEADER):
                    # Someone waits for the answer: the error is the answer, and nothing is lost.
                    log.info("answered %s with an error (%s): %s", queue, reason, error)
                    bus.metrics.answered_with_error.labels(queue, reason).inc()
                    return reply(Reply(error=problem(reason, exc)))
            elif attempts >= bus.topology.delivery_limit:
                reason = "retries-exhausted"
            else:
                bus.metrics.retried.labels(queue).inc()
                log.warning("retrying %s (attempt %d): %s", queue, attempts, error)
                await asyncio.sleep(backoff_seconds(attempts))
                raise NackMessage() from None
            log.error("dead-lettering from %s (%s): %s", queue, reason, error)
            await bus.dead_letter(queue, msg.body, headers, reason, error)
            bus.failures.forget(key)
            return None

    return _Edge


async def given_up(bus: Bus, msg: Any, key: str, returned: int) -> None:
    """Dead-letter, unread, a message handed back as often as its queue allows: at its next return the broker would
    dead-letter it with `x-death` alone, neither counted nor saying its queue."""
    queue = bus.topology.arrived_on(msg.raw_message.routing_key or "")
    error = (
        f"handed back {returned} times without being finished: each consumer that held it stopped or lost its "
        "connection (a message that stops its consumer, or consumers stopped that often)"
    )
    log.error("dead-lettering from %s (%s): %s", queue, DELIVERY_LIMIT, error)
    await bus.dead_letter(queue, msg.body, dict(msg.headers or {}), DELIVERY_LIMIT, error)
    bus.failures.forget(key)


def problem(reason: str, exc: BaseException) -> Problem:
    """The error answered to a requester: its reason code, and what may be said of it (`error_detail`)."""
    return Problem(code=reason[: limits.CODE], message=(error_detail(exc) or type(exc).__name__)[: limits.TEXT])


def reply(body: Any) -> RabbitResponse:
    """A reply to a request. Direct reply-to is not a queue, so it is not published as mandatory."""
    return RabbitResponse(body, mandatory=False)


async def delete_queues(url: str, queues: Iterable[str]) -> None:
    """Delete queues and their dead-letter queues (throw-away stacks only)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
            await channel.queue_delete(f"{queue}.dlq")


async def delete_exchanges(url: str, names: Names) -> None:
    """Delete a throw-away namespace's exchanges once everything using them has stopped."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(names.exchange)
        await channel.exchange_delete(names.dead_letter_exchange)


async def _declare(url: str, names: Names, topology: Topology) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(names.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        dlx = await channel.declare_exchange(names.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        for name, queue in topology.queues.items():
            try:
                declared = await channel.declare_queue(name, durable=True, arguments=queue.arguments)
            except aio_pika.exceptions.ChannelPreconditionFailed:
                # Declared before with other arguments (an earlier release's lower delivery limit): RabbitMQ keeps a
                # queue's arguments, so it is used as it is until an operator re-creates it (docs/operations.md).
                log.warning(
                    "queue %s exists with other arguments than this release declares (an earlier delivery limit); it "
                    "is used as it is until it is re-created",
                    name,
                )
                channel = await connection.channel()
                declared = await channel.declare_queue(name, passive=True)
            await declared.bind(exchange, routing_key=queue.routing_key)
            dlq = dead_letter_queue(names, name)
            declared_dlq = await channel.declare_queue(dlq.name, durable=True, arguments=dlq.arguments)
            await declared_dlq.bind(dlx, routing_key=name)
