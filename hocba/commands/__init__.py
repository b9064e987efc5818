"""Sub-commands of `hocba`, and what those that talk to a running stack share: a broker session, CSV rows, bad-row reports."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from prometheus_client import CollectorRegistry
from pydantic import ValidationError
import typer
from rich.console import Console
from rich.table import Table

from hocba.keys import dev_issuer
from hocba.staff import Staff
from shared.contracts.base import Message
from shared.messaging import Bus, make_broker
from shared.settings import Settings

console = Console()

#: Options the commands that talk to a running stack share.
DataDir = Annotated[Path | None, typer.Option(help="The stack's data folder (its development issuer key); default .hocba/.")]
Timeout = Annotated[float, typer.Option(help="Seconds to wait for each answer.")]

ISSUER_NOTE = (
    "Commands carry actor tokens issued with the local development issuer key (<data dir>/keys), "
    "which stands in for the school management system; the services accept them because "
    "`hocba up` points them at that key."
)


@dataclass
class Session:
    """A connection to the stack's broker, and the staff whose tokens commands carry."""

    settings: Settings
    bus: Bus
    staff: Staff
    timeout: float

    async def request(self, message: Message) -> Any:
        return await self.bus.request(message, timeout=self.timeout)


@contextlib.asynccontextmanager
async def session(data_dir: Path | None, timeout: float) -> AsyncIterator[Session]:
    """Connect with the environment's settings (AMQP_URL, HOCBA_NAMESPACE) and the data folder's issuer key."""
    settings = Settings()
    issuer, _ = dev_issuer(data_dir or settings.data_dir)
    broker, bus, _ = make_broker(settings, CollectorRegistry(), "cli")
    await broker.connect()
    try:
        yield Session(settings, bus, Staff(issuer), timeout)
    finally:
        await broker.stop()


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


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def print_bad_rows(bad: dict[int, str], limit: int = 200) -> None:
    for number in sorted(bad)[:limit]:
        console.print(f"  [red]row {number}[/red]: {bad[number]}")
    if len(bad) > limit:
        console.print(f"  … and {len(bad) - limit} more")


def finish_import(title: str, counts: dict[str, int], bad: dict[int, str]) -> None:
    """Print an import's counts and every bad row, then exit 1 when any row was rejected."""
    table = Table(title=title)
    for column in [*counts, "rejected"]:
        table.add_column(column, justify="right")
    table.add_row(*(str(n) for n in [*counts.values(), len(bad)]))
    console.print(table)
    print_bad_rows(bad)
    raise typer.Exit(1 if bad else 0)
