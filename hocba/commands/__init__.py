"""Sub-commands of `hocba`, and what those that talk to a running stack share: a session with its
broker, how a failed request is told to the operator, CSV rows and bad-row reports."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import getpass
import logging
import os
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar
from urllib.parse import urlparse

import aio_pika
import typer
from aiormq.exceptions import ChannelInvalidStateError, ChannelNotFoundEntity, ProbableAuthenticationError
from faststream.rabbit import ExchangeType, RabbitExchange
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from hocba.broker import role_settings
from hocba.console import console, errors
from hocba.keys import dev_issuer
from hocba.staff import Person, Staff
from shared.contracts.base import Message, Model
from shared.errors import NoAnswer, Refused, Unavailable
from shared.messaging import Bus
from shared.settings import Settings

#: Options the commands that talk to a running stack share.
DataDir = Annotated[Path | None, typer.Option(help="The stack's data folder (its development issuer key); default .hocba/.")]
Timeout = Annotated[float, typer.Option(help="Seconds to wait for each answer.")]

ISSUER_NOTE = (
    "Each command carries an actor token for that one message (10 minutes), issued with the local "
    "development issuer key (<data dir>/keys), which stands in for the school management system; "
    "the services accept them because `hocba up` points them at that key."
)
#: The longest purpose the requests carry (`purpose` in shared/contracts).
PURPOSE_LIMIT = 200


def stated_purpose(value: str) -> str:
    """A reader's purpose as the requests carry it; a longer one is a usage error, not a traceback."""
    if len(value) > PURPOSE_LIMIT:
        raise typer.BadParameter(f"at most {PURPOSE_LIMIT} characters (this one has {len(value)})")
    return value.strip()


#: Why a reader reads a student's data, in their words: the answering service keeps it in its access log.
Purpose = Annotated[
    str,
    typer.Option(
        callback=stated_purpose,
        help="Why you read this student's data, in your words; the service keeps it in its access log.",
    ),
]

#: The name the command line goes by on the broker.
CLI = "cli"
#: Whose broker login a command uses: the department's operators', or the schools' tools' (`hocba.broker`).
BrokerRole = Literal["operator", "school"]

A = TypeVar("A", bound=Model)
T = TypeVar("T")


def fail(sentence: str, exit_code: int = 1) -> NoReturn:
    """End the command: say why in one sentence on stderr, exit with `exit_code`."""
    errors.print(sentence, style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(exit_code)


class BrokerUnreachable(NoAnswer):
    """The stack's broker cannot be asked at all: it refused the connection or the login, or no stack uses the namespace."""


@dataclass
class Session:
    """A connection to the stack's broker, and the staff whose tokens commands carry."""

    settings: Settings
    bus: Bus
    data_dir: Path
    timeout: float

    @cached_property
    def staff(self) -> Staff:
        """People as the development issuer vouches for them (its key is made on first use)."""
        issuer, _ = dev_issuer(self.data_dir)
        return Staff(issuer)

    @property
    def operator(self) -> Person:
        """The department's operator at this terminal, named by their login in every access log."""
        return self.staff.operator(login_name())

    async def ask(self, message: Message, answer: type[A]) -> A:
        """Send a request and return its answer; `Refused` when the service says no, `NoAnswer` when none comes."""
        try:
            return await self.bus.request(message, answer, self.timeout)
        except (aio_pika.exceptions.AMQPError, ChannelInvalidStateError, ConnectionError) as exc:
            raise BrokerUnreachable(f"lost the connection to RabbitMQ while asking: {exc}") from None

    async def send(self, message: Message) -> None:
        """Publish a command whose outcome is announced later; `NoAnswer` when no service takes it."""
        try:
            await self.bus.publish(message)
        except aio_pika.exceptions.DeliveryError:
            raise NoAnswer(f"nothing takes {message.ROUTING_KEY} here: its service is not running") from None


@contextlib.asynccontextmanager
async def session(
    data_dir: Path | None = None, timeout: float = 30.0, role: BrokerRole = "operator"
) -> AsyncIterator[Session]:
    """Connect with the environment's settings (AMQP_URL, HOCBA_NAMESPACE) as the broker user of `role`, whose
    messages the command sends (`hocba.broker.role_settings`); staff from the data folder's issuer key."""
    environment = Settings()
    settings = role_settings(role, environment.model_copy(update={"data_dir": data_dir or environment.data_dir}))
    bus = Bus(settings, CLI)
    try:
        await connect(bus)
        yield Session(settings, bus, settings.data_dir, timeout)
    finally:
        await bus.broker.stop()


async def connect(bus: Bus) -> None:
    """Connect to the broker and make sure a stack has run in this namespace; `BrokerUnreachable` says why not."""
    url = urlparse(bus.settings.amqp_url)
    where = f"RabbitMQ at {url.hostname or '127.0.0.1'}:{url.port or (5671 if url.scheme == 'amqps' else 5672)}"
    # The failure is told in one sentence below; the driver's own log line would only repeat it.
    logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)
    try:
        await bus.broker.connect()
    except ProbableAuthenticationError:
        raise BrokerUnreachable(
            f"{where} refused the login of user '{url.username or 'guest'}': check the credentials in AMQP_URL"
        ) from None
    except (aio_pika.exceptions.AMQPError, OSError) as exc:
        raise BrokerUnreachable(
            f"cannot reach {where} ({connection_failure(exc)}): is the stack up (`hocba up`), and is AMQP_URL right?"
        ) from None
    exchange = RabbitExchange(bus.names.exchange, type=ExchangeType.TOPIC, durable=True, declare=False)
    try:
        await bus.broker.declare_exchange(exchange)
    except ChannelNotFoundEntity:
        namespace = f"namespace '{bus.settings.namespace}'" if bus.settings.namespace else "the default namespace"
        raise BrokerUnreachable(
            f"no hocba stack has run on {where} in {namespace} (there is no exchange {bus.names.exchange}): "
            "start one with `hocba up`, or set HOCBA_NAMESPACE"
        ) from None


def connection_failure(exc: BaseException) -> str:
    """Why a connection failed, in a few words ("connection refused")."""
    code = exc.args[0] if exc.args else None
    if isinstance(code, int) and code > 0:
        return os.strerror(code).lower()
    return str(exc.args[-1] if exc.args else exc) or type(exc).__name__


def refusal(exc: Refused) -> str:
    """A service's error answer as the operator reads it."""
    if exc.reason == Unavailable.reason:
        return f"could not be answered now ({exc.reason}): {exc}"
    return f"refused ({exc.reason}): {exc}"


def login_name() -> str:
    """Who runs the command, as the operating system knows them ("hocba-cli" when it cannot say)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "hocba-cli"


def run(conversation: Coroutine[Any, Any, T], exit_code: int = 1) -> T:
    """Hold a command's conversation with the stack and return its result.

    When the stack cannot be asked, gives no answer or refuses, the command ends with one
    sentence on stderr and `exit_code`.
    """
    try:
        return asyncio.run(conversation)
    except Refused as exc:
        fail(refusal(exc), exit_code)
    except NoAnswer as exc:
        fail(str(exc), exit_code)


def ask(message: Message, answer: type[A], timeout: float, exit_code: int = 1, data_dir: Path | None = None) -> A:
    """One request to the stack by the operator at this terminal, with their token for it, and its answer,
    as `run` holds it."""

    async def conversation() -> A:
        async with session(data_dir, timeout) as s:
            return await s.ask(s.operator.signs(message), answer)

    return run(conversation(), exit_code)


@dataclass(frozen=True)
class Row:
    """One data row of a CSV file; `number` counts the header as row 1, as a spreadsheet shows it."""

    number: int
    values: dict[str, str]


class CsvShapeError(ValueError):
    """The file cannot be read as the expected CSV at all (missing columns, not UTF-8)."""


def read_rows(path: Path, required: tuple[str, ...]) -> Iterator[Row]:
    """The rows of a UTF-8 CSV file (a spreadsheet's byte-order mark is accepted), values stripped."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            if missing := [c for c in required if c not in columns]:
                raise CsvShapeError(f"{path.name}: missing column(s) {', '.join(missing)}; expected {','.join(required)}")
            for number, raw in enumerate(reader, start=2):
                values = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
                if any(values.values()):
                    yield Row(number, values)
    except UnicodeDecodeError as exc:
        raise CsvShapeError(f"{path.name} is not UTF-8 text ({exc.reason})") from None


def validation_message(exc: ValidationError) -> str:
    """A pydantic error in words: "sex: Input should be 'M' or 'F'"."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"] if not isinstance(p, int)) or "row"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def print_bad_rows(bad: dict[int, str], limit: int = 200) -> None:
    """Each rejected row's number and reason (the reason quotes the file or the service: printed as written)."""
    for number in sorted(bad)[:limit]:
        console.print(f"  [red]row {number}[/red]: {escape(bad[number])}", soft_wrap=True)
    if len(bad) > limit:
        console.print(f"  … and {len(bad) - limit} more")


def finish_import(title: str, counts: dict[str, int], bad: dict[int, str]) -> NoReturn:
    """Print an import's counts and every bad row, then exit 1 when any row was rejected."""
    table = Table(title=escape(title))
    for column in [*counts, "rejected"]:
        table.add_column(column, justify="right")
    table.add_row(*(str(n) for n in [*counts.values(), len(bad)]))
    console.print(table)
    print_bad_rows(bad)
    raise typer.Exit(1 if bad else 0)
