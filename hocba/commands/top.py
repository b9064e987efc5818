"""`hocba top`: the operator's one screen during term end, refreshed live.

It reads the numbers the dashboards read: each process's `/metrics` (the targets of the Prometheus file-based
service discovery file a stack writes, else the well-known ports of `hocba up`), the broker's per-queue depths and
consumers (RabbitMQ's Prometheus endpoint, else a passive declaration of each queue over AMQP), or all of it from a
Prometheus server's HTTP API (`--prometheus`). Rates are the difference between two reads.

The metrics carry no school label (one series per school would multiply every series by the city's schools), so
the per-school lines come from grades' summary of each school's records (`ListRecords` with `summary`, as the
term-end web page reads it), asked less often than the metrics are read: it counts every record of the school.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import httpx
import typer
from aiormq.exceptions import ChannelAccessRefused, ChannelNotFoundEntity, ProbableAuthenticationError
from prometheus_client.parser import text_string_to_metric_families
from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hocba.broker import vhost_of
from hocba.commands import (
    DataDir,
    Timeout,
    connection_failure,
    current_school_year,
    fail,
    school_year_problem,
    session,
)
from hocba.commands.dlq import dead_letter_queues
from hocba.console import console, duration
from hocba.infra import PROMETHEUS_PORT
from hocba.stack import SCRAPE_JOB, TARGETS_FOLDER
from shared.contracts.grades import ListRecords, RecordList
from shared.errors import NoAnswer, Refused
from shared.settings import DEFAULT_HTTP_PORTS, SERVICES, Names, Settings

#: RabbitMQ's Prometheus plugin (`rabbitmq_prometheus`): per-queue depth and consumers.
QUEUE_FAMILIES = ("queue_coarse_metrics", "queue_consumer_count")

SIGNED = "hocba_records_signed_total"
DELIVERIES = "hocba_sync_deliveries_total"
DEAD_LETTERED = "hocba_messages_dead_lettered_total"
RETRIED = "hocba_messages_retried_total"
HANDLED = "faststream_received_processed_messages_total"
BACKLOG = "hocba_sync_backlog_entries"
PARKED = "hocba_sync_parked_entries"
OLDEST = "hocba_sync_oldest_entry_age_seconds"
CIRCUIT = "hocba_sync_ministry_circuit_open"
LOG_ENTRIES = "hocba_archive_log_entries"
CHECKPOINT_SIZE = "hocba_archive_checkpoint_tree_size"
AT_MINISTRY_SIZE = "hocba_sync_checkpoint_delivered_tree_size"
QUEUE_READY = "rabbitmq_detailed_queue_messages_ready"
QUEUE_UNACKED = "rabbitmq_detailed_queue_messages_unacked"
QUEUE_CONSUMERS = "rabbitmq_detailed_queue_consumers"


@dataclass(frozen=True)
class Stage:
    """One line of the stages table: a counter (summed over processes), restricted to some label values."""

    title: str
    metric: str
    labels: Mapping[str, str] = field(default_factory=dict)


#: Where the records are, in the order they get there (the dashboard's "Records per stage" and its neighbours).
STAGES = (
    Stage("registered", "hocba_students_registered_total"),
    Stage("assembled", "hocba_records_assembled_total"),
    Stage("signed: homeroom teacher", SIGNED, {"role": "homeroom_teacher"}),
    Stage("signed: principal", SIGNED, {"role": "principal"}),
    Stage("signed: school seal", SIGNED, {"role": "school_seal"}),
    Stage("archived", "hocba_records_archived_total"),
    Stage("delivered to the ministry", DELIVERIES, {"kind": "record", "outcome": "delivered"}),
    Stage("ministry requests failed", DELIVERIES, {"outcome": "failed"}),
    Stage("messages retried", RETRIED),
    Stage("messages dead-lettered", DEAD_LETTERED),
)
GAUGES = (BACKLOG, PARKED, OLDEST, CIRCUIT, LOG_ENTRIES, CHECKPOINT_SIZE, AT_MINISTRY_SIZE)
#: Every metric the screen reads; the rest of a /metrics text is skipped unparsed.
WATCHED = frozenset({s.metric for s in STAGES} | {HANDLED, *GAUGES, QUEUE_READY, QUEUE_UNACKED, QUEUE_CONSUMERS})


# --- what is read -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One process whose /metrics is read: its name (instance), service and base URL."""

    name: str
    service: str
    url: str


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Read:
    """One target as read once: its samples, or why it could not be read."""

    target: Target
    samples: tuple[Sample, ...] = ()
    problem: str = ""

    @property
    def reachable(self) -> bool:
        return not self.problem


@dataclass(frozen=True)
class QueueLine:
    """A queue of the namespace: messages ready, held by consumers (unknown over AMQP), consumers."""

    name: str
    ready: int
    unacked: int | None
    consumers: int


@dataclass(frozen=True)
class Queues:
    lines: tuple[QueueLine, ...] = ()
    #: Where the figures come from ("RabbitMQ's Prometheus endpoint at …"), or why there are none.
    source: str = ""
    problem: str = ""


@dataclass(frozen=True)
class SchoolLine:
    """A school's records for the year as grades' summary counts them (each step counts the records past it)."""

    code: str
    records: int = 0
    incomplete: int = 0
    sealed: int = 0
    archived: int = 0
    delivered: int = 0
    problem: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Everything read at one moment (`at`: monotonic seconds)."""

    at: float
    taken: datetime
    reads: tuple[Read, ...]
    queues: Queues
    schools: tuple[SchoolLine, ...] | None = None
    #: Why nothing could be read this time (the Prometheus server did not answer).
    problem: str = ""


def parse_metrics(text: str, wanted: Iterable[str] = WATCHED) -> tuple[Sample, ...]:
    """The samples of a Prometheus text exposition whose names are `wanted` (other lines are skipped unparsed)."""
    names = tuple(wanted)
    kept = "\n".join(line for line in text.splitlines() if line.startswith(names)) + "\n"
    return tuple(
        Sample(s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(kept)
        for s in family.samples
        if s.name in names
    )


def targets_from_file(path: Path) -> list[Target]:
    """The targets of a Prometheus file-based service discovery file (JSON: `[{"targets": [...], "labels": {...}}]`).

    ValueError, in words, when the file cannot be read so.
    """
    try:
        groups = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read the targets file {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"the targets file {path} is not JSON ({exc.msg} on line {exc.lineno})") from None
    if not isinstance(groups, list):
        raise ValueError(f"the targets file {path} is not a list of target groups (Prometheus file_sd_configs)")
    found = []
    for group in groups:
        labels = group.get("labels", {}) if isinstance(group, dict) else {}
        for address in group.get("targets", []) if isinstance(group, dict) else []:
            scheme = labels.get("__scheme__", "http")
            name = labels.get("process") or labels.get("instance") or address
            found.append(Target(name, labels.get("service", ""), f"{scheme}://{address}"))
    return found


def well_known_targets(host: str = "127.0.0.1") -> list[Target]:
    """The five services on the ports `hocba up` gives them (one signing worker)."""
    return [Target(s, s, f"http://{host}:{DEFAULT_HTTP_PORTS[s]}") for s in SERVICES]


def queue_names(names: Names) -> list[str]:
    """The namespace's service queues, each followed by its dead-letter queue."""
    found = []
    for dlq in dead_letter_queues(names).values():
        found += [dlq.source, dlq.name]
    return found


def served_namespaces(reads: Iterable[Read]) -> set[str]:
    """The namespaces whose queues the processes read consume, as their metrics' `queue` labels name them."""
    sources = [q.source for q in dead_letter_queues(Names()).values()]
    found = set()
    for read in reads:
        for sample in read.samples:
            if sample.name == RETRIED:  # a series for each queue the process consumes
                queue = sample.labels.get("queue", "")
                found |= {queue.removesuffix(source) for source in sources if queue.endswith(source)}
    return found


# --- the screen's figures -------------------------------------------------------------------------


def matches(sample: Sample, metric: str, labels: Mapping[str, str]) -> bool:
    return sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items())


def value_of(read: Read, metric: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The sum of a target's samples of `metric` with `labels`; None when it has none."""
    found = [s.value for s in read.samples if matches(s, metric, labels or {})]
    return sum(found) if found else None


def total(snapshot: Snapshot, metric: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The sum over every target read; None when no target has the metric."""
    found = [v for r in snapshot.reads if (v := value_of(r, metric, labels)) is not None]
    return sum(found) if found else None


def rate(
    before: Snapshot | None, after: Snapshot, metric: str, labels: Mapping[str, str] | None = None
) -> float | None:
    """Per second between two reads, target by target: a counter that went down was restarted (counted from 0)."""
    if before is None or after.at <= before.at:
        return None
    earlier = {r.target.url: r for r in before.reads if r.reachable}
    increase, seen = 0.0, False
    for read in after.reads:
        now = value_of(read, metric, labels)
        if now is None or read.target.url not in earlier:
            continue
        then = value_of(earlier[read.target.url], metric, labels) or 0.0
        increase += now - then if now >= then else now
        seen = True
    return increase / (after.at - before.at) if seen else None


def maximum(snapshot: Snapshot, metric: str) -> float | None:
    found = [v for r in snapshot.reads if (v := value_of(r, metric)) is not None]
    return max(found) if found else None


def count(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def per_second(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f}/s"


def titled(title: str, *columns: str, left: int = 1) -> Table:
    """A table with its title on the left, its first `left` columns aligned left and the others (figures) right."""
    table = Table(title=title, title_justify="left")
    for n, column in enumerate(columns):
        table.add_column(column, justify="left" if n < left else "right")
    return table


def work_queue(names: Names) -> str:
    """The queue the signing workers take chunks of batch work from."""
    return names.queue("signing", "signing.work.v1")


def stages_table(before: Snapshot | None, after: Snapshot) -> Table:
    table = titled("records by stage", "stage", "count", "rate")
    table.caption, table.caption_justify = "counted since each process started", "left"
    for stage in STAGES:
        table.add_row(
            stage.title,
            count(total(after, stage.metric, stage.labels)),
            per_second(rate(before, after, stage.metric, stage.labels)),
        )
    return table


def sync_table(after: Snapshot) -> Table:
    table = titled("ministry sync and archive", "figure", "now")
    circuit = maximum(after, CIRCUIT)
    circuit_text = (
        Text("—")
        if circuit is None
        else Text("OPEN: every request failing, probing", style="bold red")
        if circuit
        else Text("closed (requests go through)", style="green")
    )
    backlog, parked = total(after, BACKLOG), total(after, PARKED)
    table.add_row("backlog (waiting for the ministry)", count(backlog))
    table.add_row("parked (waiting for `hocba sync retry`)", Text(count(parked), style="bold red" if parked else ""))
    table.add_row("oldest entry waiting", duration(maximum(after, OLDEST)))
    table.add_row("ministry circuit", circuit_text)
    table.add_row("archive log entries", count(maximum(after, LOG_ENTRIES)))
    table.add_row(
        "latest checkpoint: archive / at the ministry",
        (f"{count(maximum(after, CHECKPOINT_SIZE))} / {count(maximum(after, AT_MINISTRY_SIZE))}"),
    )
    return table


def queues_table(queues: Queues, names: Names) -> Table | Text:
    if queues.problem:
        return Text(f"queues: {queues.problem}", style="yellow")
    by_name = {q.name: q for q in queues.lines}
    table = titled(f"queues ({queues.source})", "queue", "ready", "held", "consumers", "dead letters")
    work = work_queue(names)
    for dlq in dead_letter_queues(names).values():
        line, dead = by_name.get(dlq.source), by_name.get(dlq.name)
        if line is None and dead is None:
            continue
        waiting = dead.ready + (dead.unacked or 0) if dead else 0
        ready = line.ready if line else 0
        if not (ready or waiting or (line and line.unacked)) and dlq.source != work:
            continue  # an idle queue with nothing dead: only the signing work queue is shown idle
        table.add_row(
            dlq.source.removeprefix(names.namespace),
            count(ready) if line else "—",
            count(line.unacked) if line and line.unacked is not None else "—",
            count(line.consumers) if line else "—",
            Text(count(waiting), style="bold red" if waiting else ""),
        )
    if not table.rows:
        table.add_row("(every queue empty, no dead letters)", "", "", "", "")
    return table


def processes_table(before: Snapshot | None, after: Snapshot) -> Table:
    table = titled("processes", "process", "service", "metrics", "handled", "rate", "dead-lettered", left=3)
    for read in after.reads:
        if not read.reachable:
            table.add_row(read.target.name, read.target.service, Text(read.problem, style="bold red"), "", "", "")
            continue
        one = Snapshot(after.at, after.taken, (read,), after.queues)  # `rate` pairs it with its own earlier read
        dead = value_of(read, DEAD_LETTERED)
        table.add_row(
            read.target.name,
            read.target.service,
            read.target.url,
            count(value_of(read, HANDLED)),
            per_second(rate(before, one, HANDLED)),
            Text(count(dead), style="bold red" if dead else ""),
        )
    return table


def schools_table(schools: Sequence[SchoolLine], year: str) -> Table:
    table = titled(
        f"schools, {year} (grades' count of each school's records)",
        "school",
        "records",
        "incomplete",
        "signed and sealed",
        "archived",
        "delivered",
    )
    for school in schools:
        if school.problem:
            table.add_row(school.code, Text(school.problem, style="yellow"), "", "", "", "")
            continue
        table.add_row(
            school.code,
            count(school.records),
            count(school.incomplete),
            count(school.sealed),
            count(school.archived),
            count(school.delivered),
        )
    return table


def workers_line(after: Snapshot, names: Names) -> Text:
    signing = [r for r in after.reads if r.target.service == "signing"]
    up = sum(r.reachable for r in signing)
    work = next((q for q in after.queues.lines if q.name == work_queue(names)), None)
    consumers = f", {work.consumers} consuming the work queue" if work is not None else ""
    style = "bold red" if signing and not up else ""
    return Text(f"signing workers: {up} of {len(signing)} answering{consumers}", style=style)


def frame(before: Snapshot | None, after: Snapshot, names: Names, source: str, year: str) -> Group:
    """One screen from two reads (rates need both; the first screen has counts only): tables side by side where the
    terminal is wide enough, one under the other where it is not."""
    down = [r for r in after.reads if not r.reachable]
    heading = Text.assemble(
        ("hocba top", "bold"),
        f" — {names.namespace.rstrip('.') or 'default namespace'} — {after.taken:%H:%M:%S} UTC — {source}",
    )
    parts: list[RenderableType] = [heading]
    if after.problem:
        parts.append(Text(after.problem, style="bold red"))
    served = served_namespaces(after.reads)
    if served and names.namespace not in served:
        said = ", ".join(f"HOCBA_NAMESPACE={n}" for n in sorted(served))
        parts.append(Text(f"these processes serve another namespace: set {said} for its queues", style="yellow"))
    if down:
        names_down = ", ".join(r.target.name for r in down)
        parts.append(Text(f"{len(down)} of {len(after.reads)} processes unreachable: {names_down}", style="bold red"))
    parts += [
        Columns([stages_table(before, after), Group(sync_table(after), workers_line(after, names))], padding=(0, 2)),
        Columns([queues_table(after.queues, names), processes_table(before, after)], padding=(0, 2)),
    ]
    if after.schools is not None:
        parts.append(schools_table(after.schools, year))
    return Group(*parts)


# --- reading them ----------------------------------------------------------------------------------


def http_problem(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "unreachable (no answer in time)"
    return f"unreachable ({reason_of(exc)})"


def reason_of(exc: BaseException) -> str:
    """The operating system's reason behind an HTTP client's error ("connection refused"), else its kind."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    failures = [e for e in chain if isinstance(e, OSError)]
    with_code = [e for e in failures if isinstance(e.args[0] if e.args else None, int)]
    if with_code or failures:
        return connection_failure((with_code or failures)[0])
    return type(exc).__name__


async def scrape(client: httpx.AsyncClient, target: Target) -> Read:
    try:
        answer = await client.get(f"{target.url}/metrics")
    except httpx.HTTPError as exc:
        return Read(target, problem=http_problem(exc))
    if answer.status_code != 200:
        return Read(target, problem=f"answered HTTP {answer.status_code}")
    try:
        return Read(target, parse_metrics(answer.text))
    except ValueError:
        return Read(target, problem="answered something that is not Prometheus metrics")


class QueueReader:
    """The namespace's queues: from RabbitMQ's Prometheus endpoint when it answers, else passively declared over
    AMQP with AMQP_URL's login (each declaration says how many messages are ready and how many consumers there are)."""

    def __init__(self, settings: Settings, names: Names, endpoint: str) -> None:
        self.settings = settings
        self.names = names
        self.endpoint = endpoint
        self.wanted = queue_names(names)
        self.connection: aio_pika.abc.AbstractConnection | None = None

    async def read(self, client: httpx.AsyncClient) -> Queues:
        try:
            answer = await client.get(self.endpoint, params=[("family", f) for f in QUEUE_FAMILIES])
            if answer.status_code == 200:
                lines = queue_lines(parse_metrics(answer.text), self.wanted, vhost_of(self.settings.amqp_url))
                return await self.completed(Queues(lines, f"RabbitMQ at {self.endpoint}"))
        except (httpx.HTTPError, ValueError):
            pass
        return await self.declared(self.wanted)

    async def completed(self, listed: Queues) -> Queues:
        """The endpoint's lines with those it does not list yet asked over AMQP: RabbitMQ lists a queue from its
        first statistics, which for a quorum queue come seconds after it is declared."""
        missing = [name for name in self.wanted if name not in {line.name for line in listed.lines}]
        if not missing:
            return listed
        asked = await self.declared(missing)
        if asked.problem or not asked.lines:
            return listed
        lines = sorted(listed.lines + asked.lines, key=lambda line: self.wanted.index(line.name))
        return Queues(tuple(lines), f"{listed.source}, {len(asked.lines)} declared passively")

    async def declared(self, names: Sequence[str]) -> Queues:
        where = urlsplit(self.settings.amqp_url)
        broker = f"RabbitMQ at {where.hostname or '127.0.0.1'}:{where.port or 5672}"
        logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)
        try:
            if self.connection is None or self.connection.is_closed:
                self.connection = await aio_pika.connect(self.settings.amqp_url, timeout=5)
            lines = []
            for name in names:
                channel = await self.connection.channel()
                try:
                    declared = await channel.declare_queue(name, passive=True)
                except ChannelNotFoundEntity:
                    continue
                result = declared.declaration_result
                lines.append(QueueLine(name, result.message_count or 0, None, result.consumer_count or 0))
                await channel.close()
        except ProbableAuthenticationError:
            return Queues(problem=f"{broker} refused the login in AMQP_URL")
        except ChannelAccessRefused:
            return Queues(problem=f"{broker} does not let AMQP_URL's user look at the namespace's queues")
        except (aio_pika.exceptions.AMQPError, OSError, TimeoutError) as exc:
            self.connection = None
            return Queues(problem=f"cannot reach {broker} ({connection_failure(exc)}) nor {self.endpoint}")
        return Queues(tuple(lines), f"{broker}, declared passively")

    async def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(aio_pika.exceptions.AMQPError, OSError):
                await self.connection.close()
            self.connection = None


def queue_lines(samples: Iterable[Sample], wanted: Sequence[str], vhost: str = "/") -> tuple[QueueLine, ...]:
    """Per-queue figures of RabbitMQ's detailed metrics, for the queues `wanted` of `vhost` only."""
    figures: dict[str, dict[str, float]] = {}
    for sample in samples:
        queue = sample.labels.get("queue", "")
        if queue in wanted and sample.labels.get("vhost", vhost) == vhost:
            figures.setdefault(queue, {})[sample.name] = figures.get(queue, {}).get(sample.name, 0.0) + sample.value
    return tuple(
        QueueLine(
            name,
            int(figures[name].get(QUEUE_READY, 0)),
            int(figures[name][QUEUE_UNACKED]) if QUEUE_UNACKED in figures[name] else None,
            int(figures[name].get(QUEUE_CONSUMERS, 0)),
        )
        for name in wanted
        if name in figures
    )


async def read_prometheus(
    client: httpx.AsyncClient, url: str, wanted: Sequence[str]
) -> tuple[tuple[Read, ...], Queues]:
    """The same figures from a Prometheus server's HTTP API: every watched series, and `up` for each hocba target."""
    names = "|".join(sorted(WATCHED))
    query = f'{{__name__=~"{names}"}} or up{{job="{SCRAPE_JOB}"}}'
    where = f"Prometheus at {url}"
    try:
        answer = await client.get(f"{url.rstrip('/')}/api/v1/query", params={"query": query})
        body = answer.json()
    except httpx.HTTPError as exc:
        raise NoAnswer(f"cannot ask {where}: {http_problem(exc)}") from None
    except ValueError:
        raise NoAnswer(f"{where} did not answer with JSON: is it a Prometheus server's URL?") from None
    if answer.status_code != 200 or body.get("status") != "success":
        raise NoAnswer(f"{where} refused the query: {body.get('error', f'HTTP {answer.status_code}')}")
    by_instance: dict[str, list[Sample]] = {}
    targets: dict[str, Target] = {}
    up: dict[str, bool] = {}
    queue_samples = []
    for series in body["data"]["result"]:
        labels = {str(k): str(v) for k, v in series["metric"].items()}
        name = labels.pop("__name__", "")
        value = float(series["value"][1])
        sample = Sample(name, labels, value)
        if name.startswith("rabbitmq_"):
            queue_samples.append(sample)
            continue
        instance = labels.get("instance", "")
        targets.setdefault(
            instance, Target(labels.get("process", instance), labels.get("service", ""), f"http://{instance}")
        )
        if name == "up":
            up[instance] = value == 1
        elif not math.isnan(value):
            by_instance.setdefault(instance, []).append(sample)
    reads = tuple(
        Read(
            target,
            tuple(by_instance.get(instance, ())),
            "" if up.get(instance, True) else "down (Prometheus's up is 0)",
        )
        for instance, target in sorted(targets.items(), key=lambda item: (item[1].service, item[1].name))
    )
    queues = (
        Queues(queue_lines(queue_samples, wanted), where)
        if queue_samples
        else Queues(problem=f"{where} holds no rabbitmq_detailed_queue_* series (is the rabbitmq-queues job scraped?)")
    )
    return reads, queues


async def read_schools(
    data_dir: Path | None, timeout: float, schools: Sequence[str], year: str
) -> tuple[SchoolLine, ...]:
    """Each school's records as grades' summary counts them, asked as the operator at this terminal."""
    try:
        async with session(data_dir, timeout) as s:
            lines = []
            for code in schools:
                asked = s.operator.signs(ListRecords(school_code=code, school_year=year, summary=True))
                try:
                    listed = await s.ask(asked, RecordList)
                except Refused as exc:
                    lines.append(SchoolLine(code, problem=f"grades refused ({exc.reason}): {exc}"))
                    continue
                lines.append(
                    SchoolLine(
                        code,
                        sum(c.records for c in listed.classes),
                        sum(c.incomplete for c in listed.classes),
                        sum(c.signed_and_sealed for c in listed.classes),
                        sum(c.archived for c in listed.classes),
                        sum(c.delivered for c in listed.classes),
                    )
                )
            return tuple(lines)
    except NoAnswer as exc:
        return tuple(SchoolLine(code, problem=str(exc)) for code in schools)


@dataclass
class Reader:
    """Reads a snapshot: the targets' /metrics and the broker's queues, or a Prometheus server; schools now and then."""

    settings: Settings
    targets: list[Target]
    prometheus: str | None
    schools: list[str]
    year: str
    data_dir: Path | None
    timeout: float
    schools_every: float
    #: RabbitMQ's per-queue metrics (None: the Prometheus plugin's port on AMQP_URL's host).
    rabbitmq_metrics: str | None = None
    queue_reader: QueueReader = field(init=False)
    _schools: tuple[SchoolLine, ...] | None = None
    _schools_at: float = -math.inf

    def __post_init__(self) -> None:
        host = urlsplit(self.settings.amqp_url).hostname or "127.0.0.1"
        endpoint = self.rabbitmq_metrics or urlunsplit(
            ("http", f"{host}:{PROMETHEUS_PORT}", "/metrics/detailed", "", "")
        )
        self.queue_reader = QueueReader(self.settings, self.settings.names(), endpoint)

    @property
    def source(self) -> str:
        if self.prometheus:
            return f"Prometheus at {self.prometheus}"
        return f"the /metrics of {len(self.targets)} processes"

    async def read(self, client: httpx.AsyncClient) -> Snapshot:
        problem = ""
        if self.prometheus:
            try:
                reads, queues = await read_prometheus(client, self.prometheus, self.queue_reader.wanted)
            except NoAnswer as exc:
                reads, queues, problem = (), Queues(problem="not read"), str(exc)
        else:
            scraped = asyncio.gather(*(scrape(client, t) for t in self.targets))
            reads, queues = tuple(await scraped), await self.queue_reader.read(client)
        at = time.monotonic()
        if self.schools and at - self._schools_at >= self.schools_every:
            self._schools = await read_schools(self.data_dir, self.timeout, self.schools, self.year)
            self._schools_at = at
        return Snapshot(at, datetime.now(UTC), reads, queues, self._schools, problem)


def chosen_targets(given: Path | None, data_dir: Path) -> list[Target]:
    """The targets to read: those of the file or folder of files given, else those the stacks of the data folder list
    (`hocba up`, `hocba demo`: <data dir>/prometheus/*.json), else the well-known ports of `hocba up`."""
    folder = data_dir / TARGETS_FOLDER
    path = given or folder
    files = sorted(path.glob("*.json")) if path.is_dir() else [path] if given is not None else []
    if given is not None and not files:
        fail(f"{given} is neither a targets file nor a folder holding any (*.json, Prometheus file_sd_configs)", 2)
    found = []
    for file in files:
        try:
            found += targets_from_file(file)
        except ValueError as exc:
            fail(str(exc), 2)
    return found or well_known_targets()


async def watch(reader: Reader, names: Names, interval: float, once: bool) -> bool:
    """Show frames every `interval` seconds (one, from two reads, with `once`); True when every process answered."""
    async with httpx.AsyncClient(timeout=min(interval, 5.0)) as client:
        try:
            before = await reader.read(client)
            if once:
                await asyncio.sleep(interval)
                after = await reader.read(client)
                console.print(frame(before, after, names, reader.source, reader.year))
                return not after.problem and all(r.reachable for r in after.reads)
            first = frame(None, before, names, reader.source, reader.year)
            # In a terminal the screen is taken whole, as `top` does, and given back on Ctrl-C.
            with Live(first, console=console, auto_refresh=False, screen=console.is_terminal) as live:
                while True:
                    await asyncio.sleep(interval)
                    after = await reader.read(client)
                    live.update(frame(before, after, names, reader.source, reader.year), refresh=True)
                    before = after
        finally:
            await reader.queue_reader.close()


def top(  # noqa: PLR0913 - each option of the command is a parameter
    interval: Annotated[
        float, typer.Option(min=0.2, help="Seconds between reads (rates are over this interval).")
    ] = 2.0,
    once: Annotated[
        bool, typer.Option("--once", help="Print one screen (from two reads, `--interval` apart) and exit.")
    ] = False,
    prometheus: Annotated[
        str | None, typer.Option(help="Read the same figures from this Prometheus server (its URL) instead.")
    ] = None,
    targets: Annotated[
        Path | None,
        typer.Option(
            help=f"A Prometheus file_sd JSON file of the processes to read, or a folder of them (default: <data "
            f"dir>/{TARGETS_FOLDER}/, where `hocba up` and `hocba demo` list theirs, else the well-known ports)."
        ),
    ] = None,
    school: Annotated[
        list[str] | None, typer.Option(help="A school (its code) to show a line for; repeat for more.")
    ] = None,
    year: Annotated[
        str | None, typer.Option(help="The school year of the schools' lines (default: the current one).")
    ] = None,
    schools_every: Annotated[
        float,
        typer.Option(min=1.0, help="Seconds between asking grades for the schools' lines (each counts a school)."),
    ] = 15.0,
    rabbitmq_metrics: Annotated[
        str | None,
        typer.Option(help="RabbitMQ's per-queue metrics (default: http://<AMQP_URL's host>:15692/metrics/detailed)."),
    ] = None,
    data_dir: DataDir = None,
    timeout: Timeout = 10.0,
) -> None:
    """One screen for term end: per stage the counts and rates (signed per role), the ministry sync's backlog and
    circuit, the signing workers, each queue's depth, consumers and dead letters, each process, and (with --school)
    each school's records, refreshed live until Ctrl-C.

    Exit status with --once: 0 when every process (or the Prometheus server) answered, 1 when some did not (they are
    shown as unreachable), 2 for a bad option.
    """
    if year is not None and (problem := school_year_problem(year)):
        fail(f"--year {problem}", 2)
    settings = Settings()
    folder = data_dir or settings.data_dir
    found = [] if prometheus else chosen_targets(targets, folder)
    reader = Reader(
        settings,
        found,
        prometheus,
        list(school or []),
        year or current_school_year(),
        data_dir,
        timeout,
        schools_every,
        rabbitmq_metrics,
    )
    try:
        complete = asyncio.run(watch(reader, settings.names(), interval, once))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    raise typer.Exit(0 if complete else 1)
