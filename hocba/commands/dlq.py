"""`hocba dlq list|show|replay|purge`: the namespace's dead letters, looked at, moved back, purged.

A dead letter waits in `<queue>.dlq` (shared/messaging.py). Either a service put it there: a copy with
the headers x-hocba-reason, x-hocba-error (the kind of error, never a value), x-hocba-queue (where it came
from) and x-hocba-actor-subject (whose token it carried; the copy has `"actor": null`). Or the broker did
(header x-death: a request that expired unread, a message whose consumer died holding it too often),
kept whole, token included.

Which queues there are follows from the broker table (`hocba.broker.IDENTITIES`): each service's queue
`<ns><service>.<routing key>` of a message it consumes has its `.dlq`, and the message's contract is the
kind of every dead letter in it. What may be moved back is an event: it carries no token, and its
handler is idempotent. A command or request lost its token when it was dead-lettered (or holds one that
expired long ago): only its sender can send it again.

Looking never takes a message: each is fetched (basic.get) and held unacknowledged until the look is
over, then handed back (basic.nack with requeue) in the order it was fetched, so the queue keeps its
order; if the command dies, the broker hands back whatever it held. Moving one back publishes it to the
queue it came from through the default exchange, with publisher confirms, and acknowledges the dead
letter only once the broker has confirmed the copy.

These are an administrator's tasks: the commands log in with AMQP_URL as given (in development the
bootstrap administrator, guest), as `hocba broker provision` does; the services' and the command line's
own users may not read other users' queues. Nothing here prints a value from a message's body: at most
the names of its top-level fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import functools
import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

import aio_pika
import typer
from aiormq.exceptions import ChannelAccessRefused, ChannelNotFoundEntity, ProbableAuthenticationError

from hocba.broker import IDENTITIES
from hocba.commands import connection_failure, fail
from hocba.console import console
from shared.contracts.base import Message
from shared.messaging import (
    ACTOR_SUBJECT_HEADER,
    DELIVERY_COUNT_HEADER,
    ERROR_HEADER,
    FIELD_NAME,
    QUEUE_HEADER,
    REASON_HEADER,
    REQUEST_HEADER,
    token_subject,
)
from shared.settings import Names, Settings

#: The broker's own record of a message it dead-lettered: a list, newest death first.
DEATH_HEADER = "x-death"
#: How often a message was moved back from a dead-letter queue (set by `hocba dlq replay`).
REPLAYS_HEADER = "x-hocba-replays"
#: Headers about a message's death (and the attempts before it), not part of the message: a replayed copy
#: goes without them, so that it is tried afresh (a stale x-delivery-count would dead-letter it at once).
DEATH_HEADERS = frozenset(
    {
        REASON_HEADER,
        ERROR_HEADER,
        QUEUE_HEADER,
        ACTOR_SUBJECT_HEADER,
        DEATH_HEADER,
        DELIVERY_COUNT_HEADER,
        REQUEST_HEADER,
    }
)
DEATH_HEADER_PREFIXES = ("x-first-death-", "x-last-death-")
#: Reasons a message was refused for what it is: sent again as it stands, it would be refused again.
REFUSED_AS_IT_STANDS = frozenset({"invalid", "too-large", "forbidden", "unauthenticated"})
#: The broker's reason for a message whose time ran out unread (a request: its requester was told already).
EXPIRED = "expired"
#: The most dead letters of one queue a command looks at; beyond it, counts per reason cover only these.
SCAN_LIMIT = 10_000
#: A message id as it may be printed: printable ASCII, no spaces, as long as the contracts allow.
PRINTABLE_ID = re.compile(r"[\x21-\x7e]{1,100}")
#: What a header's text may not hold when printed: a terminal's control characters.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: The exit status when the queue named is not one of the namespace's dead-letter queues.
NOT_A_QUEUE = 2

app = typer.Typer(
    help="Dead letters: list the namespace's dead-letter queues, show what waits in one (without taking it), "
    "move events back to their queue, purge. An administrator's task: logs in with AMQP_URL as given.",
    no_args_is_help=True,
)


# --- the namespace's dead-letter queues ----------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterQueue:
    """`<ns><service>.<routing key>.dlq`: where the queue `source` sends what cannot be handled."""

    name: str
    source: str
    contract: type[Message]

    @property
    def kind(self) -> str:
        return self.contract.__name__


def dead_letter_queues(names: Names) -> dict[str, DeadLetterQueue]:
    """Every dead-letter queue of the namespace `names`, by name: one per message a service consumes."""
    found = {}
    for identity in IDENTITIES.values():
        if not identity.is_service:
            continue
        for contract in identity.consumes:
            source = names.queue(identity.name, contract.ROUTING_KEY)
            name = names.dead_letter_queue(source)
            found[name] = DeadLetterQueue(name, source, contract)
    return dict(sorted(found.items()))


#: Messages somebody sends with their actor token (commands and requests), as the broker table says.
SENT_WITH_A_TOKEN: frozenset[type[Message]] = frozenset(
    contract for identity in IDENTITIES.values() for contract in identity.sends
)


class UnknownQueue(ValueError):
    """The name given is none of the namespace's dead-letter queues; the sentence says what to do."""


def resolve(given: str, queues: Mapping[str, DeadLetterQueue], names: Names) -> DeadLetterQueue:
    """The dead-letter queue `given` names: by its own name, or by the name of the queue it serves.

    UnknownQueue when it is another namespace's (saying which) or no queue at all (with the nearest names).
    """
    for name in (given, names.dead_letter_queue(given)):
        if name in queues:
            return queues[name]
    namespace = names.namespace
    for queue in queues.values():
        for own in (queue.name, queue.source):
            suffix = own[len(namespace) :]
            if given.endswith(suffix) and given != own:
                other = given[: -len(suffix)]
                setting = f"HOCBA_NAMESPACE={other.rstrip('.')}" if other else "HOCBA_NAMESPACE unset"
                raise UnknownQueue(
                    f"{given} is a queue of {namespace_words(other)}, and this command works on "
                    f"{namespace_words(namespace)} (HOCBA_NAMESPACE): run it with {setting}"
                )
    near = difflib.get_close_matches(given, list(queues), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    raise UnknownQueue(
        f"{given} is not a dead-letter queue of {namespace_words(namespace)}{hint} "
        "(`hocba dlq list --all` lists every one)"
    )


def namespace_words(namespace: str) -> str:
    return f"the namespace '{namespace.rstrip('.')}'" if namespace else "the default namespace"


# --- one dead letter, as its headers and body say -------------------------------------------------


@dataclass(frozen=True)
class Replay:
    """Whether a dead letter may be moved back to its queue, and why (or why not) in words."""

    possible: bool
    why: str


def replay_verdict(queue: DeadLetterQueue, reason: str, source: str | None, carried_token: bool) -> Replay:
    """May a dead letter of `queue` go back where it came from?

    An event may (it carries no token, and handlers are idempotent), unless it was refused for what it
    is (`REFUSED_AS_IT_STANDS`) or does not come from the queue this one serves. A command or request
    may not: its token was removed (or, kept by the broker, has long expired); its sender sends it again.
    """
    if queue.contract in SENT_WITH_A_TOKEN or carried_token:
        if reason == EXPIRED:
            return Replay(False, "a request that expired unread: its sender was already told there was no answer")
        return Replay(
            False,
            f"a command or request ({queue.kind}): it lost its sender's token; its sender sends it again, "
            "then purge it here",
        )
    if reason in REFUSED_AS_IT_STANDS:
        return Replay(
            False,
            f"refused for what it is ({reason}): sent again it would be refused again; tell whoever "
            "published it, then purge it here",
        )
    if source is None:
        return Replay(False, "it does not say which queue it came from")
    if source != queue.source:
        return Replay(False, f"it says it came from {source}, not from {queue.source}, whose dead letters wait here")
    return Replay(True, f"an event: it goes back to {queue.source}")


@dataclass(frozen=True)
class DeadLetter:
    """What may be said of one dead letter: never a value from its body."""

    #: 1 for the message at the head of the queue when it was looked at.
    position: int
    #: The contract's `message_id`, else the AMQP message id, else a digest of the body ("sha256:…").
    message_id: str
    kind: str
    reason: str
    #: The broker dead-lettered it (x-death), not a service.
    by_broker: bool
    error: str
    #: The queue it came from, as it says (x-hocba-queue, else the broker's x-death).
    source: str | None
    #: Whose actor token it carried (the token's subject, unverified), when it carried one.
    subject: str | None
    dead_lettered_at: datetime | None
    #: The names of its body's top-level fields (a JSON object's keys that are field names).
    fields: tuple[str, ...]
    #: Top-level keys that are no field name (not printed), and the body's size.
    other_keys: int
    size: int
    is_object: bool
    replays: int
    replay: Replay


@dataclass(frozen=True)
class Delivered:
    """What a dead letter arrived with: its body, headers and the AMQP properties that matter here."""

    body: bytes
    headers: Mapping[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    timestamp: datetime | None = None


def read_dead_letter(queue: DeadLetterQueue, position: int, delivered: Delivered) -> DeadLetter:
    """A dead letter of `queue` as its headers and body say, at `position` in the queue."""
    headers = dict(delivered.headers or {})
    death = first_death(headers)
    hocba_reason = text_header(headers, REASON_HEADER)
    content = json_object(delivered.body)
    subject = text_header(headers, ACTOR_SUBJECT_HEADER)
    if subject is None and content is not None:
        subject = token_subject(content.get("actor"))
    carried_token = subject is not None or (content is not None and content.get("actor") is not None)
    reason = hocba_reason or text_of(death.get("reason")) or "unknown"
    source = text_header(headers, QUEUE_HEADER) or text_of(death.get("queue"))
    died = death.get("time") if hocba_reason is None else None
    keys = list(content) if content is not None else []
    fields = tuple(k for k in keys if FIELD_NAME.fullmatch(k))
    replays = headers.get(REPLAYS_HEADER)
    return DeadLetter(
        position=position,
        message_id=message_id_of(content, delivered),
        kind=queue.kind,
        reason=reason,
        by_broker=hocba_reason is None and bool(death),
        error=text_header(headers, ERROR_HEADER) or "",
        source=source,
        subject=subject,
        dead_lettered_at=as_utc(died if isinstance(died, datetime) else delivered.timestamp),
        fields=fields,
        other_keys=len(keys) - len(fields),
        size=len(delivered.body),
        is_object=content is not None,
        replays=replays if isinstance(replays, int) and not isinstance(replays, bool) else 0,
        replay=replay_verdict(queue, reason, source, carried_token),
    )


def first_death(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The broker's latest x-death entry ({} when the broker did not dead-letter the message)."""
    deaths = headers.get(DEATH_HEADER)
    if isinstance(deaths, list | tuple) and deaths and isinstance(deaths[0], Mapping):
        return dict(deaths[0])
    return {}


def text_of(value: Any) -> str | None:
    """A header's text as it may be printed: control characters replaced, at most 1000 characters."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or not value:
        return None
    return CONTROL.sub("?", value[:1000])


def text_header(headers: Mapping[str, Any], name: str) -> str | None:
    return text_of(headers.get(name))


def json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is none."""
    try:
        content = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return content if isinstance(content, dict) else None


def message_id_of(content: Mapping[str, Any] | None, delivered: Delivered) -> str:
    """How a dead letter is named: its contract's message id, its AMQP message id, or a digest of its body."""
    for candidate in ((content or {}).get("message_id"), delivered.message_id):
        if isinstance(candidate, str) and PRINTABLE_ID.fullmatch(candidate):
            return candidate
    return f"sha256:{hashlib.sha256(delivered.body).hexdigest()[:16]}"


def as_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def replayed_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """A dead letter's headers for the copy moved back: without those about its death, one more replay counted."""
    kept = {
        key: value
        for key, value in headers.items()
        if key not in DEATH_HEADERS and not key.startswith(DEATH_HEADER_PREFIXES) and key != REPLAYS_HEADER
    }
    earlier = headers.get(REPLAYS_HEADER)
    count = earlier if isinstance(earlier, int) and not isinstance(earlier, bool) else 0
    return {**kept, REPLAYS_HEADER: count + 1}


# --- in words -------------------------------------------------------------------------------------


def age(elapsed: timedelta | None) -> str:
    """An age in the largest two units that say it: "40 s", "12 min", "3 h 20 min", "4 d 2 h"."""
    if elapsed is None:
        return "—"
    seconds = max(0, int(elapsed.total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else f"{seconds} s"


def since(moment: datetime | None, now: datetime) -> timedelta | None:
    return None if moment is None else now - moment


def described(letter: DeadLetter, queue: DeadLetterQueue, now: datetime) -> list[str]:
    """The lines `hocba dlq show` prints for one dead letter."""
    who = "the broker" if letter.by_broker else "its service"
    if letter.is_object:
        body = ", ".join(letter.fields) or "(no fields)"
        if letter.other_keys:
            body += f" and {letter.other_keys} other key(s)"
    else:
        body = f"not a JSON object ({letter.size} bytes)"
    replay = f"yes: {letter.replay.why}" if letter.replay.possible else f"no: {letter.replay.why}"
    lines = [
        f"#{letter.position}  {letter.message_id}  {letter.kind}  {letter.reason} (dead-lettered by {who})",
        f"    error:  {letter.error or '—'}",
        f"    from:   {letter.source or '— (not said)'}",
        f"    whose:  {letter.subject or ('— (not said)' if queue.contract in SENT_WITH_A_TOKEN else '— (an event: no token)')}",
        f"    age:    {age(since(letter.dead_lettered_at, now))}",
        f"    fields: {body}",
    ]
    if letter.replays:
        lines.append(f"    moved back before: {letter.replays} time(s)")
    lines.append(f"    replay: {replay}")
    return lines


@dataclass(frozen=True)
class QueueLook:
    """One dead-letter queue as a look found it: how many wait (None: not declared), and those looked at."""

    queue: DeadLetterQueue
    depth: int | None
    letters: tuple[DeadLetter, ...] = ()

    @property
    def reasons(self) -> Counter[str]:
        return Counter(letter.reason for letter in self.letters)

    @property
    def replayable(self) -> int:
        return sum(letter.replay.possible for letter in self.letters)

    @property
    def oldest(self) -> datetime | None:
        return min((d for d in (letter.dead_lettered_at for letter in self.letters) if d is not None), default=None)


def listing_lines(looks: Iterable[QueueLook], now: datetime, everything: bool = False) -> list[str]:
    """The lines of `hocba dlq list`: each queue that holds dead letters (every queue with `everything`)."""
    lines = []
    for look in looks:
        if look.depth is None:
            if everything:
                lines.append(f"{look.queue.name}  not declared: its service has not run here")
        elif not look.depth:
            if everything:
                lines.append(f"{look.queue.name}  empty")
        else:
            lines.append(f"{look.queue.name}  {look_words(look, now)}")
    return lines


def look_words(look: QueueLook, now: datetime) -> str:
    """ "4 waiting (delivery_limit 1, invalid 1, retries-exhausted 2); 3 replayable; oldest 2 d 4 h"."""
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(look.reasons.items()))
    if len(look.letters) < (look.depth or 0):
        reasons += f"; counted in the first {len(look.letters)}"
    return f"{look.depth} waiting ({reasons}); {look.replayable} replayable; oldest {age(since(look.oldest, now))}"


# --- the broker, as an administrator ----------------------------------------------------------------


class DlqError(Exception):
    """A dead-letter command cannot go on; the message is the sentence to print."""


@dataclass
class Held:
    """A dead letter fetched and not yet settled; the message itself is kept only where it may be replayed."""

    letter: DeadLetter
    tag: int
    message: aio_pika.abc.AbstractIncomingMessage | None = None
    settled: bool = False


@dataclass
class Look:
    """The dead letters of one queue, held by a channel until the look is over."""

    queue: DeadLetterQueue
    channel: aio_pika.abc.AbstractChannel
    depth: int
    held: list[Held]
    #: The queue exists on the broker (its service has run in the namespace).
    declared: bool = True

    @property
    def letters(self) -> tuple[DeadLetter, ...]:
        return tuple(h.letter for h in self.held)

    async def settle(self, held: Held) -> None:
        """Acknowledge a held dead letter: it leaves the queue."""
        underlay = await self.channel.get_underlay_channel()
        await underlay.basic_ack(held.tag)
        held.settled = True

    async def move_back(self, held: Held) -> None:
        """Publish a copy to the queue it came from (confirmed by the broker), then acknowledge the dead letter."""
        assert held.message is not None, "only a replayable dead letter is kept whole"
        message = held.message
        copy = aio_pika.Message(
            message.body,
            headers=replayed_headers(message.headers or {}),
            content_type=message.content_type or "application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=None if held.letter.message_id.startswith("sha256:") else held.letter.message_id,
            type=self.queue.contract.ROUTING_KEY,
            timestamp=datetime.now(UTC),
            app_id="hocba-dlq",
        )
        await self.channel.default_exchange.publish(copy, routing_key=self.queue.source, mandatory=True)
        await self.settle(held)

    async def hand_back(self) -> None:
        """Hand back every dead letter still held, in the order it was fetched."""
        if self.channel.is_closed:
            return
        underlay = await self.channel.get_underlay_channel()
        for held in self.held:
            if not held.settled:
                await underlay.basic_nack(held.tag, requeue=True)
                held.settled = True


@dataclass
class Administrator:
    """A connection to the broker with AMQP_URL's login, to the dead-letter queues of one namespace."""

    connection: aio_pika.abc.AbstractConnection
    names: Names
    login: str

    def refused(self, queue: str) -> DlqError:
        return DlqError(
            f"RabbitMQ does not let the user '{self.login}' read {queue}: dead letters are an administrator's task; "
            "set AMQP_URL to the broker administrator's login (locally guest, in a deployment the one "
            "`hocba broker provision` uses), not a service's or the command line's"
        )

    async def depth(self, queue: str) -> int | None:
        """How many messages wait in `queue` (None when it is not declared)."""
        channel = await self.connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except ChannelNotFoundEntity:
            return None
        except ChannelAccessRefused:
            raise self.refused(queue) from None
        await channel.close()
        return declared.declaration_result.message_count or 0

    async def exchange_exists(self) -> bool:
        channel = await self.connection.channel()
        try:
            await channel.declare_exchange(self.names.exchange, passive=True)
        except ChannelNotFoundEntity:
            return False
        except ChannelAccessRefused:
            return True
        await channel.close()
        return True

    @contextlib.asynccontextmanager
    async def look(
        self, queue: DeadLetterQueue, keep: Callable[[DeadLetter], bool] = lambda _: False
    ) -> AsyncIterator[Look]:
        """Hold the dead letters of `queue` (at most SCAN_LIMIT) for the block; hand back whatever is not settled.

        `keep` says which to keep whole (to be moved back); of the others only what may be said is kept.
        """
        channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            declared = await channel.declare_queue(queue.name, passive=True)
        except ChannelNotFoundEntity:
            yield Look(queue, channel, 0, [], declared=False)
            return
        look = Look(queue, channel, declared.declaration_result.message_count or 0, [])
        try:
            await self._fetch(look, declared, keep)
            yield look
        finally:
            await look.hand_back()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.close()

    async def _fetch(
        self, look: Look, declared: aio_pika.abc.AbstractQueue, keep: Callable[[DeadLetter], bool]
    ) -> None:
        while len(look.held) < SCAN_LIMIT:
            try:
                message = await declared.get(fail=False)
            except ChannelAccessRefused:
                raise self.refused(look.queue.name) from None
            if message is None:
                return
            delivered = Delivered(message.body, message.headers or {}, message.message_id, message.timestamp)
            letter = read_dead_letter(look.queue, len(look.held) + 1, delivered)
            assert message.delivery_tag is not None
            look.held.append(Held(letter, message.delivery_tag, message if keep(letter) else None))
        look.depth = max(look.depth, len(look.held))


def broker_location(url: str) -> tuple[str, str]:
    """Where AMQP_URL points ("RabbitMQ at host:port") and the user it logs in as."""
    parts = urlsplit(url)
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    return f"RabbitMQ at {parts.hostname or '127.0.0.1'}:{port}", unquote(parts.username or "guest")


@contextlib.asynccontextmanager
async def administrator(settings: Settings) -> AsyncIterator[Administrator]:
    """Log in with AMQP_URL as given, to HOCBA_NAMESPACE's dead letters; DlqError says why it cannot."""
    where, login = broker_location(settings.amqp_url)
    # The failure is told in one sentence below; the driver's own log line would only repeat it.
    logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)
    try:
        connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    except ProbableAuthenticationError:
        raise DlqError(f"{where} refused the login of user '{login}': check the credentials in AMQP_URL") from None
    except (aio_pika.exceptions.AMQPError, OSError, TimeoutError) as exc:
        raise DlqError(
            f"cannot reach {where} ({connection_failure(exc)}): is the broker running, and is AMQP_URL right?"
        ) from None
    try:
        yield Administrator(connection, settings.names(), login)
    except (aio_pika.exceptions.AMQPError, ConnectionError) as exc:
        raise DlqError(
            f"{where} broke off the command ({connection_failure(exc)}); what it had not confirmed stays in its queue"
        ) from None
    finally:
        with contextlib.suppress(aio_pika.exceptions.AMQPError, ConnectionError):
            await connection.close()


async def survey(admin: Administrator, queues: Iterable[DeadLetterQueue]) -> list[QueueLook]:
    """Each queue's depth, and a look at what waits in those that hold any."""
    looks = []
    for queue in queues:
        depth = await admin.depth(queue.name)
        if not depth:
            looks.append(QueueLook(queue, depth))
            continue
        async with admin.look(queue) as look:
            looks.append(QueueLook(queue, look.depth, look.letters))
    return looks


# --- the commands ---------------------------------------------------------------------------------


def settings_and_queues() -> tuple[Settings, dict[str, DeadLetterQueue]]:
    settings = Settings()
    return settings, dead_letter_queues(settings.names())


def the_queue(given: str, settings: Settings, queues: Mapping[str, DeadLetterQueue]) -> DeadLetterQueue:
    try:
        return resolve(given, queues, settings.names())
    except UnknownQueue as exc:
        fail(str(exc), NOT_A_QUEUE)


def carried_out(conversation: Any) -> Any:
    """Run a command's conversation with the broker; a DlqError ends the command with its sentence."""
    try:
        return asyncio.run(conversation)
    except DlqError as exc:
        fail(str(exc), 1)


def say(text: str) -> None:
    """Print a line as written: never as markup (queue names and ids come from the broker), never wrapped."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def now() -> datetime:
    return datetime.now(UTC)


@app.command("list")
def list_command(
    everything: Annotated[
        bool, typer.Option("--all", help="Every dead-letter queue of the namespace, empty or not declared too.")
    ] = False,
) -> None:
    """Each dead-letter queue that holds messages: how many, how many per reason, how many may be replayed, the oldest.

    Looks without taking anything. Namespace: HOCBA_NAMESPACE.
    """
    settings, queues = settings_and_queues()

    async def conversation() -> list[QueueLook]:
        async with administrator(settings) as admin:
            looks = await survey(admin, queues.values())
            if all(look.depth is None for look in looks) and not await admin.exchange_exists():
                raise DlqError(no_stack(settings))
            return looks

    looks = carried_out(conversation())
    lines = listing_lines(looks, now(), everything)
    if not any(look.depth for look in looks):
        say(f"no dead letters in {namespace_words(settings.namespace)}")
    else:
        say(f"dead letters of {namespace_words(settings.namespace)}, looked at without taking them:")
    for line in lines:
        say(f"  {line}")


def no_stack(settings: Settings) -> str:
    where, _ = broker_location(settings.amqp_url)
    return (
        f"no hocba stack has run on {where} in {namespace_words(settings.namespace)} (there is no exchange "
        f"{settings.names().exchange} and no dead-letter queue): start one with `hocba up`, or set HOCBA_NAMESPACE"
    )


QueueArgument = Annotated[
    str, typer.Argument(help="The dead-letter queue (as `hocba dlq list` names it), or its source queue.")
]


@app.command("show")
def show_command(
    queue: QueueArgument,
    count: Annotated[int, typer.Option(min=1, help="Show the first N dead letters.")] = 20,
) -> None:
    """What waits in one dead-letter queue, message by message, without taking anything.

    For each: its position, message id, kind, reason, error, the queue it came from, whose token it
    carried, its age, its body's field names (never their values), and whether it can be replayed.
    """
    settings, queues = settings_and_queues()
    target = the_queue(queue, settings, queues)

    async def conversation() -> tuple[int, tuple[DeadLetter, ...], bool]:
        async with administrator(settings) as admin, admin.look(target) as look:
            return look.depth, look.letters, look.declared

    depth, letters, declared = carried_out(conversation())
    if not declared:
        say(f"no dead letters in {target.name}: the queue does not exist, its service has not run in this namespace")
        return
    if not letters:
        say(f"no dead letters in {target.name}")
        return
    shown = letters[:count]
    say(f"{target.name}: {depth} dead letter(s) of {target.kind}; showing {len(shown)}, looked at without taking them")
    moment = now()
    for letter in shown:
        say("\n".join(described(letter, target, moment)))
    if replayable := sum(letter.replay.possible for letter in letters):
        say(f"{replayable} can be moved back: hocba dlq replay {target.name} --all")


MessageIds = Annotated[
    list[str] | None, typer.Option("--message-id", help="A dead letter's message id, as `show` prints it (repeatable).")
]
Everything = Annotated[bool, typer.Option("--all", help="Every dead letter of the queue.")]


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command acts on: those named, or all."""

    ids: frozenset[str]
    everything: bool

    def chooses(self, letter: DeadLetter) -> bool:
        return self.everything or letter.message_id in self.ids

    def missing(self, letters: Iterable[DeadLetter]) -> list[str]:
        found = {letter.message_id for letter in letters}
        return sorted(self.ids - found)


def selection(ids: list[str] | None, everything: bool) -> Selection:
    if not ids and not everything:
        fail("say which dead letters: --message-id ID (repeat it for more), or --all", NOT_A_QUEUE)
    return Selection(frozenset(ids or ()), everything)


@dataclass
class Handled:
    """What a replay or purge did, message by message."""

    done: list[DeadLetter] = field(default_factory=list)
    kept: list[tuple[DeadLetter, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    empty: bool = False
    #: The operator did not confirm a purge.
    declined: bool = False


@app.command("replay")
def replay_command(queue: QueueArgument, message_id: MessageIds = None, everything: Everything = False) -> None:
    """Move events back to the queue they came from; leave commands and requests (their sender sends them again).

    Each is published to its queue through the default exchange with publisher confirms, and only then
    taken out of the dead-letter queue: nothing is lost if the publish fails.
    """
    chosen = selection(message_id, everything)
    settings, queues = settings_and_queues()
    target = the_queue(queue, settings, queues)

    async def conversation() -> Handled:
        outcome = Handled()
        keep = functools.partial(replayable_choice, chosen)
        async with administrator(settings) as admin, admin.look(target, keep) as look:
            outcome.empty, outcome.missing = not look.held, chosen.missing(look.letters)
            for held in look.held:
                await replay_one(look, held, chosen, outcome)
        return outcome

    outcome = carried_out(conversation())
    report(outcome, target, "moved back to " + target.source, "replayed")
    failed = outcome.missing or (outcome.kept and not chosen.everything) or not outcome.done
    raise typer.Exit(1 if failed else 0)


def replayable_choice(chosen: Selection, letter: DeadLetter) -> bool:
    return chosen.chooses(letter) and letter.replay.possible


async def replay_one(look: Look, held: Held, chosen: Selection, outcome: Handled) -> None:
    letter = held.letter
    if not chosen.chooses(letter):
        return
    if held.message is None:
        outcome.kept.append((letter, letter.replay.why))
        return
    try:
        await look.move_back(held)
    except aio_pika.exceptions.DeliveryError as exc:
        outcome.kept.append((letter, f"the broker did not take the copy ({delivery_failure(exc)}); it stays here"))
        return
    outcome.done.append(letter)


def delivery_failure(exc: aio_pika.exceptions.DeliveryError) -> str:
    """Why the broker refused a copy: its queue is gone (returned), or full or failing (nacked)."""
    if isinstance(exc, aio_pika.exceptions.PublishError):
        return "its queue does not exist: has its service run in this namespace?"
    return "the queue refused it: full, or a broker failure"


@app.command("purge")
def purge_command(
    queue: QueueArgument,
    message_id: MessageIds = None,
    everything: Everything = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete dead letters for good (asks first unless --yes): those named, or all."""
    chosen = selection(message_id, everything)
    settings, queues = settings_and_queues()
    target = the_queue(queue, settings, queues)

    async def conversation() -> Handled:
        outcome = Handled()
        async with administrator(settings) as admin, admin.look(target) as look:
            outcome.empty, outcome.missing = not look.held, chosen.missing(look.letters)
            doomed = [held for held in look.held if chosen.chooses(held.letter)]
            if doomed and (yes or await asyncio.to_thread(confirmed, target, [h.letter for h in doomed])):
                for held in doomed:
                    await look.settle(held)
                    outcome.done.append(held.letter)
            else:
                outcome.declined = bool(doomed)
        return outcome

    outcome = carried_out(conversation())
    report(outcome, target, "purged from " + target.name, "purged")
    raise typer.Exit(1 if outcome.missing or not outcome.done else 0)


def confirmed(queue: DeadLetterQueue, letters: list[DeadLetter]) -> bool:
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(Counter(d.reason for d in letters).items()))
    replayable = sum(d.replay.possible for d in letters)
    note = f"; {replayable} of them could be moved back instead (hocba dlq replay)" if replayable else ""
    say(f"{len(letters)} dead letter(s) of {queue.name} to purge ({reasons}){note}.")
    return typer.confirm("Delete them for good?", default=False)


def report(outcome: Handled, queue: DeadLetterQueue, done_words: str, verb: str) -> None:
    """Print per message what was done and what was left and why; then a summary line."""
    for letter in outcome.done:
        say(f"  {done_words}: #{letter.position} {letter.message_id} ({letter.reason})")
    for letter, why in outcome.kept:
        say(f"  left: #{letter.position} {letter.message_id} ({letter.reason}): {why}")
    for missing in outcome.missing:
        say(f"  not found: {missing} is not in {queue.name}")
    if outcome.empty:
        say(f"no dead letters in {queue.name}: nothing {verb}")
        return
    if outcome.declined:
        say(f"nothing {verb}: not confirmed")
        return
    say(f"{verb} {len(outcome.done)}, left {len(outcome.kept)}")
