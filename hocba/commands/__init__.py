"""Sub-commands of `hocba`, and what those that talk to a running stack share: a session with its
broker, how a failed request is told to the operator, CSV rows and bad-row reports."""

from __future__ import annotations

import asyncio
import calendar
import codecs
import contextlib
import csv
import difflib
import getpass
import io
import logging
import os
import re
import unicodedata
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar
from urllib.parse import urlparse

import aio_pika
import typer
from aiormq.exceptions import ChannelInvalidStateError, ChannelNotFoundEntity, ProbableAuthenticationError
from faststream.rabbit import ExchangeType, RabbitExchange
from pydantic import TypeAdapter, ValidationError
from rich.markup import escape
from rich.table import Table

from hocba.broker import role_settings
from hocba.console import console, errors
from hocba.keys import dev_issuer
from hocba.staff import Person, Staff
from shared.contracts.base import Message, Model
from shared.contracts.identity import Enrolment
from shared.errors import NoAnswer, Refused, Unavailable
from shared.messaging import Bus
from shared.settings import Settings

#: Options the commands that talk to a running stack share.
DataDir = Annotated[
    Path | None, typer.Option(help="The stack's data folder (its development issuer key); default .hocba/.")
]
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


# --- CSV files ----------------------------------------------------------------------------------

#: How to save a spreadsheet so that an import reads it: said whenever a file cannot be read as UTF-8 CSV.
SAVE_AS_CSV_UTF8 = (
    'save it again as "CSV UTF-8": in Excel, File > Save As > "CSV UTF-8 (Comma delimited) (*.csv)"; '
    'in LibreOffice Calc, File > Save As > "Text CSV (.csv)" with the character set "Unicode (UTF-8)"'
)
#: The separators a header row is tried with: a spreadsheet set to the Vietnamese locale, whose decimal
#: mark is a comma, exports its "CSV" with semicolons; a "Text (Tab delimited)" export uses tabs.
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DAY_FIRST_DATE = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})")


@dataclass(frozen=True)
class Columns:
    """The columns of an import's CSV file: those its header row must name, and those it may name."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)

    def described(self) -> str:
        """The expected columns in words: "a, b, c (and optionally d, e)"."""
        optional = f" (and optionally {', '.join(self.optional)})" if self.optional else ""
        return f"{', '.join(self.required)}{optional}"


@dataclass(frozen=True)
class Row:
    """One data row of a CSV file; `number` counts the header as row 1, as a spreadsheet shows it.

    `values` holds every column the file names, and "" for an optional column it does not name.
    `problem` says what is wrong with the row as a line of the file ("" when nothing is).
    """

    number: int
    values: dict[str, str]
    problem: str = ""


class CsvShapeError(ValueError):
    """The file cannot be read as the expected CSV at all (not UTF-8 text, missing columns)."""


@dataclass(frozen=True)
class CsvFile:
    """A CSV file as an import reads it: the separator found, the columns it names, its data rows."""

    name: str
    delimiter: str
    #: The header row's cells, known columns under their expected names, others as written.
    columns: tuple[str, ...]
    #: Columns of the file that are none of the expected ones: left out of the import.
    ignored: tuple[str, ...]
    rows: tuple[Row, ...]

    def notes(self) -> list[str]:
        """What the reader of the import's report should know about the file as a whole."""
        if not self.ignored:
            return []
        return [f"column(s) {', '.join(self.ignored)} of {self.name} are not used and were ignored"]


def read_csv(path: Path, columns: Columns) -> CsvFile:
    """A UTF-8 CSV file (a spreadsheet's byte-order mark accepted) separated by commas, semicolons or tabs,
    whichever its header row is written with; header names and values stripped and in Unicode NFC form.

    Raises CsvShapeError, saying what was found and what was expected, when the file is not UTF-8 text
    or its header row lacks a required column.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CsvShapeError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    text = unicodedata.normalize("NFC", decoded(path.name, data))
    delimiter = sniffed_delimiter(text, columns)
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise CsvShapeError(f"{path.name} cannot be read as CSV ({exc}): {SAVE_AS_CSV_UTF8}") from None
    start = next((i for i, cells in enumerate(records) if any(c.strip() for c in cells)), None)
    if start is None:
        raise CsvShapeError(f"{path.name} is empty: expected a header row naming the columns {columns.described()}")
    header = header_names(path.name, records[start], columns, delimiter)
    ignored = tuple(h for h in header if h not in columns.names and h)
    rows = tuple(
        data_row(start + 1 + i + 1, cells, header, columns, delimiter)
        for i, cells in enumerate(records[start + 1 :])
        if any(c.strip() for c in cells)
    )
    return CsvFile(path.name, delimiter, header, ignored, rows)


def read_rows(path: Path, columns: Columns | tuple[str, ...]) -> Iterator[Row]:
    """The data rows of a CSV file as `read_csv` reads it; `columns` alone are all required."""
    expected = columns if isinstance(columns, Columns) else Columns(tuple(columns))
    yield from read_csv(path, expected).rows


def decoded(name: str, data: bytes) -> str:
    """The file's text; CsvShapeError, saying how to save it as CSV UTF-8, when it is not UTF-8."""
    if data.startswith(b"PK\x03\x04"):
        raise CsvShapeError(f"{name} is a spreadsheet workbook (.xlsx or .ods), not CSV text: {SAVE_AS_CSV_UTF8}")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data[:4096]:
        raise CsvShapeError(
            f'{name} is UTF-16 text (what Excel saves as "Unicode Text"), not UTF-8: {SAVE_AS_CSV_UTF8}'
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CsvShapeError(
            f"{name} is not UTF-8 text: byte 0x{data[exc.start]:02X} on line {line} is not UTF-8 (a file saved in a "
            f"Windows code page such as Windows-1258, or in TCVN3 or VNI, reads so): {SAVE_AS_CSV_UTF8}"
        ) from None


def column_key(name: str) -> str:
    """A header cell as compared with the expected names: case, spaces and hyphens aside."""
    return re.sub(r"[\s-]+", "_", name.strip()).casefold()


def sniffed_delimiter(text: str, columns: Columns) -> str:
    """The separator the header row is written with: the one that finds most expected columns in it,
    then the one that splits it most; a comma when none splits it."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    known = {column_key(c) for c in columns.names}

    def fit(delimiter: str) -> tuple[int, int]:
        cells = next(csv.reader([first], delimiter=delimiter), [])
        return sum(column_key(c) in known for c in cells), len(cells)

    return max(DELIMITERS, key=fit)


def header_names(name: str, cells: list[str], columns: Columns, delimiter: str) -> tuple[str, ...]:
    """The header row's names, the expected ones as expected; CsvShapeError when a required one is missing
    or one is named twice."""
    by_key = {column_key(c): c for c in columns.names}
    header = tuple(by_key.get(column_key(c), c.strip()) for c in cells)
    if twice := sorted({h for h in header if h and header.count(h) > 1}):
        raise CsvShapeError(
            f"{name}: the header row names column(s) {', '.join(twice)} more than once: keep one of each"
        )
    if missing := [c for c in columns.required if c not in header]:
        raise CsvShapeError(wrong_columns(name, header, columns, missing, delimiter))
    return header


def wrong_columns(name: str, header: tuple[str, ...], columns: Columns, missing: list[str], delimiter: str) -> str:
    """A header row without every required column, in words: what it has, what is missing and unknown, what was expected."""
    found = [h for h in header if h]
    unknown = [h for h in found if h not in columns.names]
    parts = [
        f"{name}: the header row lacks column(s) {', '.join(missing)}",
        f"found {len(found)} column(s), read as {DELIMITERS[delimiter]}-separated: {', '.join(found) or '(none)'}",
    ]
    if unknown:
        guesses = [
            f"'{u}' for {match[0]}?"
            for u in unknown
            if (match := difflib.get_close_matches(u, missing, n=1, cutoff=0.6))
        ]
        parts.append(f"not known: {', '.join(unknown)}" + (f" (did you mean {' '.join(guesses)})" if guesses else ""))
    parts.append(f"expected {columns.described()}, in any order, in row 1 (docs/formats.md)")
    return ";\n  ".join(parts)


def data_row(number: int, cells: list[str], header: tuple[str, ...], columns: Columns, delimiter: str) -> Row:
    """A data row: its values by column, "" for those it lacks; a row with more values than columns says so."""
    values = {h: (cells[i].strip() if i < len(cells) else "") for i, h in enumerate(header) if h}
    values.update({c: "" for c in columns.optional if c not in values})
    problem = ""
    if extra := [c for c in cells[len(header) :] if c.strip()]:
        problem = (
            f"{len(header) + len(extra)} values but the header row names {len(header)} columns: a value holding a "
            f"{DELIMITERS[delimiter]} (a comment, a list of scores) must be written in double quotes"
        )
    return Row(number, values, problem)


def calendar_date(text: str, column: str) -> date:
    """A date written YYYY-MM-DD; ValueError saying whether the form or the calendar is wrong."""
    if ISO_DATE.fullmatch(text):
        year, month, day = (int(part) for part in text.split("-"))
        try:
            return date(year, month, day)
        except ValueError:
            if year < 1:
                why = "there is no year 0"
            elif not 1 <= month <= 12:
                why = f"there is no month {month}"
            else:
                why = f"{calendar.month_name[month]} {year} has {calendar.monthrange(year, month)[1]} days"
            raise ValueError(f"{column} '{text}' is not a date in the calendar ({why})") from None
    hint = ""
    if found := DAY_FIRST_DATE.fullmatch(text):
        day, month, year = (int(part) for part in found.groups())
        try:
            hint = f"; if it means day {day} of month {month}, write {date(year, month, day).isoformat()}"
        except ValueError:
            hint = ", and read day first it is not a date in the calendar either"
    raise ValueError(f"{column} '{text}' is not written YYYY-MM-DD (year-month-day, e.g. 2014-03-02){hint}")


#: A school year as the contracts carry it (`Enrolment.school_year`: "2025-2026").
SCHOOL_YEAR_FORM: TypeAdapter[str] = TypeAdapter(Annotated[(str, *Enrolment.model_fields["school_year"].metadata)])


def current_school_year(today: date | None = None) -> str:
    """The school year under way: from September, the one that begins that year."""
    today = today or date.today()
    first = today.year if today.month >= 9 else today.year - 1
    return f"{first}-{first + 1}"


def school_year_problem(text: str) -> str | None:
    """What is wrong with a school year as written ("2025-2026"), or None."""
    try:
        SCHOOL_YEAR_FORM.validate_python(text)
    except ValidationError:
        return f"'{text}' is not a school year: write its two years, e.g. 2025-2026"
    first, second = (int(part) for part in text.split("-"))
    if second != first + 1:
        return f"'{text}' is not a school year: the second year follows the first, e.g. {first}-{first + 1}"
    return None


def digits_problem(text: str, column: str, count: int) -> str | None:
    """What is wrong with a code of `count` digits as written (a personal ID, a school code), or None."""
    if len(text) == count and text.isascii() and text.isdigit():
        return None
    if text.isascii() and text.isdigit() and len(text) < count:
        return (
            f"{column} '{text}' has {len(text)} digits, not {count}: a spreadsheet drops the leading zeros of a number; "
            f"format the column as Text and write all {count} digits"
        )
    return f"{column} '{text}' must be {count} digits (0-9)"


def validation_message(exc: ValidationError, columns: dict[str, str] | None = None) -> str:
    """A pydantic error in words, fields named as the file's columns: "sex: Input should be 'M' or 'F'".

    `columns` maps a field (dotted, as in the contract) to the column it is read from; an unmapped
    field is named by its last part.
    """
    aliases = columns or {}
    parts = []
    for error in exc.errors():
        path = [str(p) for p in error["loc"] if not isinstance(p, int)]
        dotted = ".".join(path)
        where = aliases.get(dotted) or (aliases.get(path[-1], path[-1]) if path else "row")
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def in_column_words(reason: str, columns: dict[str, str]) -> str:
    """A service's reason with the contract's field names as the file's columns ("comment_level" -> "level")."""
    for field_name, column in columns.items():
        reason = re.sub(rf"\b{re.escape(field_name)}\b", column, reason)
    return reason


def one_of(values: tuple[str, ...]) -> str:
    """Allowed values in words: "Tốt, Khá, Đạt or Chưa đạt"."""
    return f"{', '.join(values[:-1])} or {values[-1]}" if len(values) > 1 else "".join(values)


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def print_bad_rows(bad: dict[int, str], limit: int = 200) -> None:
    """Each rejected row's number and reason (the reason quotes the file or the service: printed as written)."""
    for number in sorted(bad)[:limit]:
        console.print(f"  [red]row {number}[/red]: {escape(bad[number])}", soft_wrap=True)
    if len(bad) > limit:
        console.print(f"  … and {len(bad) - limit} more")


def finish_import(title: str, counts: dict[str, int], bad: dict[int, str], notes: list[str] | None = None) -> NoReturn:
    """Print an import's counts, what to know about its file, and every bad row, then exit 1 when any row
    was rejected, saying so when that was every row (`counts["rows"]`) and nothing was recorded."""
    for note in notes or []:
        console.print(f"[yellow]note[/yellow]: {escape(note)}", soft_wrap=True)
    table = Table(title=escape(title))
    for column in [*counts, "rejected"]:
        table.add_column(column, justify="right")
    table.add_row(*(str(n) for n in [*counts.values(), len(bad)]))
    console.print(table)
    print_bad_rows(bad)
    if bad and len(bad) >= counts.get("rows", len(bad) + 1):
        fail(
            f"nothing was recorded: every row of the file was rejected ({len(bad)}); correct the rows above and import again"
        )
    raise typer.Exit(1 if bad else 0)


def nothing_to_import(name: str) -> NoReturn:
    """End an import whose file has a header row and no data row."""
    fail(f"nothing to import: {name} has a header row but no data rows", 1)
