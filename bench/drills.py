"""Failure drills: worker, broker, database and ministry faults rehearsed on a broker and database of their own.

    .venv/bin/python bench/drills.py [--records 10000] [--kills 20] [--students 3000] [--only NAME ...]

A RabbitMQ node is started for the run (RABBITMQ_NODENAME hocba-drill-…@localhost on a free port from
5700, its database and logs in a temporary folder) and stopped at the end: the shared broker is never
touched. A whole stack (embedded database, five services, ministry simulator) runs on it. One term end
prepares one school per drill (rosters, gradebooks, closing, reviews, homeroom signatures); then each
drill in turn lets its school's principal click and rehearses its fault during the batch, the archiving
and the delivery:

| drill | fault |
|---|---|
| fault-free | none: the same work undisturbed, once for each size drilled, before the drills |
| worker-kills | a signing worker SIGKILLed `--kills` times (every 2.5 s), restarted each time |
| broker-restarts | the broker node stopped and started again 3 times |
| database-kill | the database server SIGKILLed, started again on the same folder |
| archive-sync-kills | archive SIGKILLed and restarted, then sync |
| poison | 1,000 malformed or forged commands among the school's own |
| ministry-faults | the ministry answers half the writes 503, loses 5 % of answers after storing, 0.3 s latency |
| cluster-node-kill | on a three-node cluster (quorum queues led across the nodes), a node SIGKILLed mid-batch |

Each drill is judged from the data, not from announcements: the ministry simulator's receipts and the
archive's log (delivered, missing, duplicated: a record stored twice anywhere), the dead-letter queues
(dead-lettered; the poison drill expects its own messages there and nothing else), beside what the
services counted dead-lettered meanwhile (`hocba_messages_dead_lettered_total`; not shown for a drill that
restarted a process, whose counters began again). "Recovered without
help" means every record reached the ministry within `--bound` seconds of the click with nobody acting;
"time to recover" runs from the end of the fault (the last kill, restart or fault cleared) to the last
record delivered; "click to done" from the principal's click to the last record delivered, and "added by the
fault" is that beyond the fault-free run of the same size on the same broker. The exit code is 1 when any drill lost, doubled or needed help.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hocba import demo_data  # noqa: E402
from hocba.demo import dead_letter_total  # noqa: E402
from hocba.infra import port_open  # noqa: E402
from hocba.keys import dev_issuer  # noqa: E402
from hocba.stack import Stack, StackConfig  # noqa: E402
from hocba.term_end import Cohort, TermEnd  # noqa: E402
from shared.contracts.grades import RecordAssessments  # noqa: E402
from shared.contracts.signing import RequestSignBatch  # noqa: E402
from shared.mongo import make_client  # noqa: E402
from shared.settings import Settings  # noqa: E402

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
#: Ports tried for a node: AMQP from 5700, distribution 12000 above, management 10000 above: all below the ports
#: the stack's processes take (`hocba.infra.LISTEN_PORTS`), which a cluster booting beside a stack must not take.
FIRST_PORT, LAST_PORT = 5700, 5999
DIST_OFFSET, MANAGEMENT_OFFSET = 12000, 10000
KILL_INTERVAL = 2.5
#: The name of the run without a fault that each drill is set against.
FAULT_FREE = "fault-free"


# --- a RabbitMQ node of the drill's own ------------------------------------------------------------------


@dataclass
class Node:
    """One RabbitMQ node, its files under `base`, its own Erlang cookie; never the shared broker."""

    name: str
    port: int
    base: Path
    cluster: bool = False

    @property
    def node(self) -> str:
        return f"{self.name}@localhost"

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def management_url(self) -> str:
        return f"http://guest:guest@127.0.0.1:{self.port + MANAGEMENT_OFFSET}/"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.base.parent / "home"),  # where the nodes' shared cookie is
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.port + DIST_OFFSET),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base / "node.pid"),
        }

    def prepare(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        home = self.base.parent / "home"
        home.mkdir(exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(uuid.uuid4().hex.upper())
            cookie.chmod(0o400)
        lines = [
            f"listeners.tcp.default = {self.port}",
            f"management.tcp.port = {self.port + MANAGEMENT_OFFSET}",
            "management.tcp.ip = 127.0.0.1",
            "loopback_users = none",
            "collect_statistics_interval = 1000",
        ]
        if self.cluster:
            lines.append("queue_leader_locator = balanced")  # quorum queues led from every node, not one
        (self.base / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        (self.base / "enabled_plugins").write_text("[rabbitmq_management].\n")

    def ctl(self, *args: str, timeout: float = 120.0, check: bool = True) -> str:
        done = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {args[0]} on {self.node}: {(done.stderr or done.stdout).strip()[-400:]}")
        return done.stdout

    def start(self, timeout: float = 180.0) -> None:
        self.prepare()
        subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmq-server"), "-detached"],
            env=self.env(),
            check=True,
            timeout=60,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:  # until the node has registered with epmd, await_startup fails at once
            try:
                self.ctl("await_startup", "--timeout", "60", timeout=90)
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def pid(self) -> int:
        return int(self.ctl("eval", "list_to_integer(os:getpid()).").strip())

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.ctl("stop", timeout=120)
        deadline = time.monotonic() + 60
        while port_open("127.0.0.1", self.port) and time.monotonic() < deadline:
            time.sleep(0.2)

    def kill(self) -> None:
        os.kill(self.pid(), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while port_open("127.0.0.1", self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def dead_letters(self) -> dict[str, int]:
        """Messages held in each dead-letter queue (`….dlq`) now (asked again when the node is slow to answer)."""
        for attempt in range(5):
            try:
                listed = self.ctl("list_queues", "name", "messages", "--quiet", "--no-table-headers", timeout=60)
                break
            except (RuntimeError, subprocess.TimeoutExpired):
                if attempt == 4:
                    raise
                time.sleep(2.0)
        held: dict[str, int] = {}
        for line in listed.splitlines():
            parts = line.split("\t")
            if len(parts) == 2 and parts[0].endswith(".dlq") and parts[1].strip().isdigit():
                held[parts[0]] = int(parts[1])
        return held


def free_ports(count: int) -> list[int]:
    """`count` AMQP ports from 5700 whose distribution and management ports are free too (random order avoids
    a concurrent run's choice)."""
    candidates = list(range(FIRST_PORT, LAST_PORT))
    random.shuffle(candidates)
    chosen: list[int] = []
    for port in candidates:
        if all(not port_open("127.0.0.1", p) for p in (port, port + DIST_OFFSET, port + MANAGEMENT_OFFSET)):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError("no free ports for a drill broker between 5700 and 5999")


def start_nodes(started: Sequence[Node]) -> None:
    """Start the nodes side by side; the second and third join the first in a cluster."""
    if not started:
        return
    started[0].prepare()  # the cookie the nodes share, before they start together
    with ThreadPoolExecutor(len(started)) as pool:
        list(pool.map(Node.start, started))
    for node in started[1:]:
        node.ctl("stop_app")
        node.ctl("join_cluster", started[0].node)
        node.ctl("start_app")


def stop_nodes(started: Sequence[Node]) -> None:
    with ThreadPoolExecutor(max(1, len(started))) as pool:
        list(pool.map(Node.stop, started))


# --- the drills ------------------------------------------------------------------------------------------


@dataclass
class Result:
    drill: str
    expected: int
    delivered: int = 0
    missing: int = 0
    duplicated: int = 0
    dead_lettered: int = 0
    expected_dead: int = 0
    #: What the services counted dead-lettered meanwhile (`hocba_messages_dead_lettered_total`); None when a
    #: process was restarted during the drill (its counters began again at 0).
    counted_dead: int | None = None
    recovered: bool = False
    recover_seconds: float | None = None
    #: From the click to the last record delivered.
    click_to_done: float | None = None
    #: What the fault added to `click_to_done`: beyond the fault-free run of the same size in the same group.
    added_seconds: float | None = None
    #: Records delivered when the fault began (fewer than expected: it landed in the middle of the work).
    delivered_at_fault: int | None = None
    note: str = ""

    @property
    def passed(self) -> bool:
        counted = self.counted_dead is None or self.counted_dead == self.dead_lettered
        return (
            self.recovered
            and not self.missing
            and not self.duplicated
            and self.dead_lettered == self.expected_dead
            and counted
        )


@dataclass
class Drill:
    name: str
    fault: Callable[[Run, str], Coroutine[Any, Any, None]]
    records: int
    #: Messages the drill itself sends to the dead-letter queues (the poison drill's).
    expected_dead: int = 0


@dataclass
class Run:
    """What the drills act on: the nodes, the stack, the term end's driver and the sizes."""

    nodes: list[Node]
    stack: Stack
    settings: Settings
    kills: int
    poison: int
    restarts: int
    kill_interval: float = KILL_INTERVAL
    #: When the last fault action ended (the clock of "time to recover").
    fault_over: float = 0.0
    log: Callable[[str], None] = print
    term_end: TermEnd | None = None
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    waiting: dict[str, asyncio.Event] = field(default_factory=dict)
    #: The term end's driver, running.
    task: asyncio.Task[Any] | None = None

    #: Records of the drill's school the ministry held when the fault began (0 unless it came late).
    delivered_at_fault: int | None = None
    delivered_before: int = 0
    #: Whether the drill restarted a process of the stack (whose counters then began again).
    restarted: bool = False

    def over(self) -> None:
        self.fault_over = time.monotonic()

    async def reached(self, school: str, stage: str) -> None:
        """Wait until some record of `school` is announced at `stage` ("signed", "archived"): the fault then lands
        in the middle of the work whatever the drill's size."""
        assert self.term_end is not None
        counts = self.term_end.counts
        mine = counts.ready_by_school.get(school, set())
        while not mine & getattr(counts, stage):
            await asyncio.sleep(0.05)

    async def begins(self) -> None:
        """The fault's first action: how far delivery had come is kept, to show the fault landed mid-work."""
        if self.delivered_at_fault is None:
            held = await delivered_count(self.stack.simulator.base_url)
            self.delivered_at_fault = held - self.delivered_before


async def restart_child(run: Run, name: str) -> None:
    child = run.stack.child(name)
    run.restarted = True
    if child.process is not None:
        child.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(child.process.wait)
    child.start()


async def fault_free(run: Run, school: str) -> None:
    """No fault: the same work undisturbed, the baseline each drill's time is set against."""
    await run.begins()
    run.over()


async def worker_kills(run: Run, school: str) -> None:
    await asyncio.sleep(0.2)  # the batch is being planned and its first chunks handed out
    await run.begins()
    for n in range(run.kills):
        await restart_child(run, first_signing(run.stack))
        run.log(f"signing worker killed and restarted ({n + 1}/{run.kills})")
        if n + 1 < run.kills:
            await asyncio.sleep(run.kill_interval)
    run.over()


def first_signing(stack: Stack) -> str:
    return next(c.name for c in stack.children if c.name.startswith("signing"))


async def broker_restarts(run: Run, school: str) -> None:
    node = run.nodes[0]
    await run.reached(school, "signed")
    await run.begins()
    for n in range(run.restarts):
        await asyncio.to_thread(node.stop)
        await asyncio.to_thread(node.start)
        run.log(f"broker restarted ({n + 1}/{run.restarts})")
        if n + 1 < run.restarts:
            await asyncio.sleep(2.0)
    run.over()


async def database_kill(run: Run, school: str) -> None:
    # Right after the click, while the batch is planned and signed: waiting for the first "signed" announcement let a
    # small drill's whole school be delivered before the kill landed.
    await asyncio.sleep(0.2)
    await run.begins()
    server = run.stack.mongo
    if server is None or server.process is None:
        raise RuntimeError("the database drill needs the stack's embedded server")
    server.process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(server.process.wait)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(server.start)
    run.log("database server killed and started again on the same folder")
    run.over()


async def archive_sync_kills(run: Run, school: str) -> None:
    for name, stage in (("archive", "signed"), ("sync", "archived")):
        await run.reached(school, stage)  # while it has work in hand
        await run.begins()
        await restart_child(run, name)
        run.log(f"{name} killed and restarted")
    run.over()


async def poison(run: Run, school: str) -> None:
    """Malformed and forged commands among the school's own: not JSON, wrong shape, another school's principal."""
    staff = run.term_end.staff if run.term_end else None
    assert staff is not None
    other = "79009999"
    year = demo_data.SCHOOL_YEAR
    await run.begins()
    connection = await aio_pika.connect(run.settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(run.settings.names().exchange, ensure=False)
        for n in range(run.poison):
            kind = n % 4
            if kind == 0:
                body, key = b"{not json" + str(n).encode(), RequestSignBatch.ROUTING_KEY
            elif kind == 1:
                body, key = b'{"school_code": "' + school.encode() + b'"}', RecordAssessments.ROUTING_KEY
            elif kind == 2:  # another school's principal asks to sign this school
                forged = staff.principal(other).signs(
                    RequestSignBatch(school_code=school, school_year=year, role="principal")
                )
                body, key = forged.model_dump_json().encode(), RequestSignBatch.ROUTING_KEY
            else:  # the principal's own command, its token altered after signing
                signed = staff.principal(school).signs(
                    RequestSignBatch(school_code=school, school_year=year, role="principal")
                )
                token = signed.actor or ""
                tampered = signed.model_copy(
                    update={"actor": token[:-4] + ("BBBB" if token.endswith("AAAA") else "AAAA")}
                )
                body, key = tampered.model_dump_json().encode(), RequestSignBatch.ROUTING_KEY
            await exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=key
            )
    run.log(f"{run.poison} malformed or forged commands sent")
    run.over()


async def ministry_faults(run: Run, school: str) -> None:
    """Half the writes 503, 5 % of answers lost after storing, 0.3 s latency, until the school's records are
    archived (or 60 s), then the endpoint answers normally again."""
    url = run.stack.simulator.base_url
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        await run.begins()
        await client.post("/v1/faults", json={"latency_seconds": 0.3, "hang_seconds": 2.0})
        seen = (await client.get("/v1/stats")).json()["requests"]
        began = time.monotonic()
        archived = run.term_end.counts.archived if run.term_end else set()
        mine = run.term_end.counts.ready_by_school.get(school, set()) if run.term_end else set()
        while time.monotonic() - began < 60 and not (mine and mine <= archived):
            await asyncio.sleep(0.5)
            requests = (await client.get("/v1/stats")).json()["requests"]
            new, seen = requests - seen, requests
            if new:  # keep the fault counters topped up in proportion to the writes the endpoint receives
                await client.post("/v1/faults", json={"fail_next": max(1, new // 2), "lose_next": max(1, new // 20)})
        await asyncio.sleep(5.0)
        await client.post("/v1/faults", json={"reset": True})
    run.log("ministry answers normally again")
    run.over()


async def cluster_node_kill(run: Run, school: str) -> None:
    await asyncio.sleep(0.2)  # mid-batch: the click is being planned into chunks
    await run.begins()
    victim = run.nodes[1]
    await asyncio.to_thread(victim.kill)
    run.log(f"cluster node {victim.node} killed")
    await asyncio.sleep(5.0)
    await asyncio.to_thread(victim.start)
    run.log(f"cluster node {victim.node} started again")
    run.over()


# --- judging from the data -------------------------------------------------------------------------------


async def ministry_keys(simulator_url: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=simulator_url, timeout=60) as client:
        return (await client.get("/v1/receipts")).raise_for_status().json()["receipts"]


async def archived_keys(stack: Stack, settings: Settings) -> list[tuple[str, int]]:
    client = make_client(stack.mongo_url_for("archive"))
    try:
        log = client[settings.names().database("archive")]["log"]
        return [(d["record_id"], d["version"]) async for d in log.find({}, {"_id": 0, "record_id": 1, "version": 1})]
    finally:
        await client.close()


async def judge(run: Run, expected: set[tuple[str, int]], result: Result) -> None:
    receipts = await ministry_keys(run.stack.simulator.base_url)
    ids = {rid for rid, _ in expected}
    held = Counter((r["record_id"], int(r["version"])) for r in receipts if r["record_id"] in ids)
    per_record = Counter(r["record_id"] for r in receipts if r["record_id"] in ids)
    archived = Counter(k for k in await archived_keys(run.stack, run.settings) if k[0] in ids)
    result.delivered = len(expected & set(held))
    lost_archive = len(expected - set(archived))
    result.missing = max(len(expected - set(held)), lost_archive)
    result.duplicated = sum(n - 1 for n in per_record.values() if n > 1) + sum(
        n - 1 for n in archived.values() if n > 1
    )
    if lost_archive:
        result.note += f" {lost_archive} not in the archive's log;"


# --- running the drills over one term end ----------------------------------------------------------------


class GatedTermEnd(TermEnd):
    """The term end whose principals click one school at a time, when the drill of that school opens its gate."""

    gates: dict[str, asyncio.Event]
    waiting: dict[str, asyncio.Event]

    async def _click(self, school_code: str) -> None:
        self.waiting[school_code].set()
        await self.gates[school_code].wait()
        # The school's tool sends again a click its broker refused (its connection coming back after a drill):
        # a send that failed, not a second click of a principal.
        for attempt in range(30):
            try:
                await super()._click(school_code)
                return
            except Exception:
                if attempt == 29:
                    raise
                await asyncio.sleep(2.0)


async def stack_ready(stack: Stack, bound: float) -> bool:
    """Every process of the stack answers ready (the services back on the broker and database after a drill)."""
    deadline = time.monotonic() + bound
    async with httpx.AsyncClient(timeout=5) as client:
        for child in stack.children:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(child.ready_url)).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.5)
    return True


async def delivered_count(simulator_url: str) -> int:
    async with httpx.AsyncClient(base_url=simulator_url, timeout=30) as client:
        return int((await client.get("/v1/stats")).json()["accepted"])


async def run_drill(run: Run, drill: Drill, school: str, bound: float, console: Console) -> Result:
    term_end = run.term_end
    assert term_end is not None
    expected = set(term_end.counts.ready_by_school.get(school, set()))
    result = Result(drill.name, len(expected), expected_dead=drill.expected_dead)
    simulator = run.stack.simulator.base_url
    before = run.delivered_before = await delivered_count(simulator)
    run.delivered_at_fault = None
    dead_before = await asyncio.to_thread(run.nodes[0].dead_letters)
    run.restarted = False
    counted_before = await asyncio.to_thread(dead_letter_total, run.stack)
    if not await stack_ready(run.stack, bound):
        result.note += " the stack was not ready before the drill;"
        return result
    console.print(f"[bold]{drill.name}[/bold]: {len(expected):,} records; the principal of {school} clicks")
    run.fault_over = 0.0
    began = time.monotonic()
    run.gates[school].set()
    fault = asyncio.create_task(drill.fault(run, school))
    done_at: float | None = None
    while time.monotonic() - began < bound:
        await asyncio.sleep(0.5)
        if fault.done() and fault.exception() is not None:
            result.note += f" the fault failed: {fault.exception()};"
            break
        if run.task is not None and run.task.done() and not run.task.cancelled() and run.task.exception():
            failed = run.task.exception()
            result.note += f" the school's tool stopped: {type(failed).__name__}: {failed};"
            break
        with contextlib.suppress(httpx.HTTPError):
            if fault.done() and await delivered_count(simulator) >= before + len(expected):
                done_at = time.monotonic()
                break
    if not fault.done():
        result.note += " the fault had not ended (it waits for progress that never came);"
        fault.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await fault
    await judge(run, expected, result)
    result.recovered = done_at is not None and result.delivered == len(expected)
    if result.recovered and done_at is not None:
        result.recover_seconds = max(0.0, done_at - (run.fault_over or began))
        result.click_to_done = done_at - began
    await judge_dead_letters(run, drill, result, dead_before, counted_before)
    result.delivered_at_fault = run.delivered_at_fault
    return result


async def judge_dead_letters(
    run: Run, drill: Drill, result: Result, held_before: dict[str, int], counted_before: int
) -> None:
    """What the drill added to the dead-letter queues, and what the services counted of it."""
    result.dead_lettered, by_queue = await settled_dead_letters(run.nodes[0], held_before, drill.expected_dead)
    if result.dead_lettered != drill.expected_dead:
        result.note += " dead letters in " + ", ".join(f"{q} ({n})" for q, n in sorted(by_queue.items()) if n) + ";"
    if not run.restarted:
        result.counted_dead = await asyncio.to_thread(dead_letter_total, run.stack) - counted_before
        if result.counted_dead != result.dead_lettered:
            result.note += f" the services counted {result.counted_dead:,} dead letters;"


async def settled_dead_letters(node: Node, before: dict[str, int], expected: int) -> tuple[int, dict[str, int]]:
    """What the drill added to the dead-letter queues, once the count reaches what is expected or stays put
    for three seconds (a service dead-letters a moment after it reads)."""
    last, steady, deadline = -1, 0, time.monotonic() + 30
    while True:
        held = await asyncio.to_thread(node.dead_letters)
        added = {q: n - before.get(q, 0) for q, n in held.items()}
        total = sum(added.values())
        steady = steady + 1 if total == last else 0
        if total == expected or steady >= 3 or time.monotonic() > deadline:
            return total, added
        last = total
        await asyncio.sleep(1.0)


async def drive(run: Run, drills: Sequence[tuple[Drill, str]], bound: float, console: Console) -> list[Result]:
    term_end = run.term_end
    assert term_end is not None
    task = run.task = asyncio.create_task(term_end.run())
    results: list[Result] = []
    try:
        for drill, school in drills:
            waiting = asyncio.create_task(run.waiting[school].wait())
            await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # the preparation failed: say why
            results.append(await run_drill(run, drill, school, bound, console))
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    return results


def plan(args: argparse.Namespace, cluster: bool) -> list[Drill]:
    kills = [Drill("worker-kills", worker_kills, args.records)]
    others = [
        Drill("broker-restarts", broker_restarts, args.students),
        Drill("database-kill", database_kill, args.students),
        Drill("archive-sync-kills", archive_sync_kills, args.students),
        Drill("poison", poison, args.students, expected_dead=args.poison),
        Drill("ministry-faults", ministry_faults, args.students),
    ]
    chosen = [Drill("cluster-node-kill", cluster_node_kill, args.students)] if cluster else kills + others
    chosen = [d for d in chosen if not args.only or d.name in args.only]
    if args.baseline and chosen:
        # First, on the fresh stack: the same work without a fault, once for each size drilled.
        chosen = [Drill(FAULT_FREE, fault_free, n) for n in sorted({d.records for d in chosen}, reverse=True)] + chosen
    return chosen


def set_against_baseline(results: list[Result]) -> None:
    """Each drill's time from click to done, beside the fault-free run of its size in its group."""
    baseline = {r.expected: r.click_to_done for r in results if r.drill == FAULT_FREE}
    for r in results:
        base = baseline.get(r.expected)
        if r.drill != FAULT_FREE and r.click_to_done is not None and base is not None:
            r.added_seconds = r.click_to_done - base


def run_group(
    args: argparse.Namespace, folder: Path, drills: list[Drill], started: list[Node], console: Console
) -> list[Result]:
    """One broker (or cluster), one stack, one term end preparing a school per drill, then the drills in turn."""
    where = ", ".join(f"{n.node} on {n.port}" for n in started)
    console.print(f"[dim]· {time.strftime('%H:%M:%S')} RabbitMQ {where}[/dim]")
    namespace = f"drill{uuid.uuid4().hex[:6]}."
    config = StackConfig(
        data_dir=folder / "stack",
        namespace=namespace,
        amqp_url=started[0].amqp_url,
        management_url=started[0].management_url,
        mongo_url=None,
        fixed_ports=False,
        ephemeral=True,
        signing_workers=args.signing_workers,
        extra_env={"HOCBA_CHUNK_SIZE": str(args.chunk_size)},
    )
    stack = Stack(config, report=lambda line: console.print(f"[dim]· {line}[/dim]"))
    stack.start(ready_timeout=180)
    try:
        settings = Settings(
            amqp_url=stack.url_for("school"), namespace=namespace, chunk_size=args.chunk_size, data_dir=config.data_dir
        )
        run = Run(
            started,
            stack,
            settings,
            kills=args.kills,
            poison=args.poison,
            restarts=args.restarts,
            kill_interval=args.kill_interval,
            log=lambda line: console.print(f"[dim]· {time.strftime('%H:%M:%S')} {line}[/dim]"),
        )
        schools = demo_data.schools(len(drills) + 1)[1:]  # 79007000 is left to the other tools' runs
        plans, serial = [], 0
        for drill, school in zip(drills, schools, strict=True):
            plans.append(Cohort(school, drill.records, serial))
            serial += drill.records
        run.term_end = GatedTermEnd(settings, dev_issuer(config.data_dir)[0], plans, stage_timeout=args.bound)
        pairs = [(d, s.code) for d, s in zip(drills, schools, strict=True)]
        results = asyncio.run(drive_in_loop(run, pairs, args.bound, console))
        set_against_baseline(results)
        return results
    finally:
        stack.stop()


async def drive_in_loop(run: Run, pairs: list[tuple[Drill, str]], bound: float, console: Console) -> list[Result]:
    """The drills in this event loop: the gates each school's click waits on are made in it."""
    assert isinstance(run.term_end, GatedTermEnd)
    run.term_end.gates = run.gates = {school: asyncio.Event() for _, school in pairs}
    run.term_end.waiting = run.waiting = {school: asyncio.Event() for _, school in pairs}
    return await drive(run, pairs, bound, console)


def table(results: Sequence[Result]) -> Table:
    out = Table(title="failure drills")
    for column in (
        "drill",
        "expected",
        "delivered",
        "missing",
        "duplicated",
        "dead-lettered",
        "counted by the services",
        "recovered without help",
        "time to recover (s)",
        "click to done (s)",
        "added by the fault (s)",
        "delivered when the fault began",
        "note",
    ):
        out.add_column(column, justify="left" if column in ("drill", "note", "recovered without help") else "right")
    for r in results:
        dead = f"{r.dead_lettered:,}" + (f" of {r.expected_dead:,}" if r.expected_dead else "")
        seconds, click, added = (
            f"{v:.1f}" if v is not None else "—" for v in (r.recover_seconds, r.click_to_done, r.added_seconds)
        )
        out.add_row(
            r.drill,
            f"{r.expected:,}",
            f"{r.delivered:,}",
            f"{r.missing:,}",
            f"{r.duplicated:,}",
            dead,
            "—" if r.counted_dead is None else f"{r.counted_dead:,}",
            "yes" if r.recovered else "no",
            seconds,
            click,
            added,
            "—" if r.delivered_at_fault is None else f"{r.delivered_at_fault:,}",
            r.note.strip(),
        )
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=10_000, help="records of the worker-kill drill (default 10000)")
    p.add_argument("--kills", type=int, default=20, help="signing worker kills (default 20)")
    p.add_argument("--students", type=int, default=3_000, help="records of each other drill (default 3000)")
    p.add_argument("--kill-interval", type=float, default=KILL_INTERVAL, help="seconds between kills (default 2.5)")
    p.add_argument("--restarts", type=int, default=3, help="broker restarts (default 3)")
    p.add_argument("--poison", type=int, default=1_000, help="malformed or forged commands (default 1000)")
    p.add_argument("--chunk-size", type=int, default=100)
    p.add_argument("--signing-workers", type=int, default=2)
    p.add_argument("--bound", type=float, default=1800.0, help="seconds a drill may take before it 'needs a human'")
    p.add_argument("--only", nargs="*", default=[], help="drill names to run (default: all)")
    p.add_argument("--no-cluster", action="store_true", help="skip the three-node cluster drill")
    p.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the fault-free runs the drills are set against",
    )
    return p


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> list[Result]:
    args = parser().parse_args(argv)
    console = console or Console(width=240)
    for noisy in ("aiormq", "aio_pika", "faststream"):  # the driver's own reconnections, expected in a drill
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    folder = Path(tempfile.mkdtemp(prefix="hocba-drills-"))
    single, cluster = plan(args, cluster=False), [] if args.no_cluster else plan(args, cluster=True)
    ports = free_ports(int(bool(single)) + 3 * int(bool(cluster)))
    tag = uuid.uuid4().hex[:6]
    single_nodes = [Node(f"hocba-drill-{tag}", ports.pop(), folder / "single" / "node")] if single else []
    cluster_nodes = (
        [Node(f"hocba-drill-{tag}-c{n}", ports.pop(), folder / "cluster" / f"node{n}", cluster=True) for n in (1, 2, 3)]
        if cluster
        else []
    )
    results: list[Result] = []
    with ThreadPoolExecutor(1) as pool:
        # The cluster boots while the single node's drills run: most of either is waiting.
        booting = pool.submit(start_nodes, cluster_nodes)
        try:
            if single:
                start_nodes(single_nodes)
                results += run_group(args, folder / "single", single, single_nodes, console)
            if cluster:
                booting.result()
                results += run_group(args, folder / "cluster", cluster, cluster_nodes, console)
        finally:
            with contextlib.suppress(Exception):
                booting.result()
            stop_nodes(single_nodes + cluster_nodes)
            shutil.rmtree(folder, ignore_errors=True)
    console.print(table(results))
    return results


if __name__ == "__main__":
    outcome = main()
    sys.exit(0 if outcome and all(r.passed for r in outcome) else 1)
