"""What an operator sees is what happened: a real Prometheus server scrapes a real stack through a term end.

Prometheus (Debian's `prometheus`) runs in a folder of its own with a scrape and evaluation interval of 1s, the
project's alert rules and the targets the stack lists for it (file-based service discovery, as `hocba up` writes
them), and RabbitMQ's Prometheus plugin for the stack's namespace. The stack runs a small term end (the clean
part), then one message nobody can read (a dead letter) and a ministry outage while a second school's records
are delivered (the faults). Then:

* each dashboard panel's query, read from the dashboard's JSON, gives the known counts: the stat panels exactly
  (records assembled, signed × 3 roles, archived, delivered), the per-second panels integrated over the run within
  what `rate()`'s extrapolation allows, and the rest some value;
* HocbaMessagesDeadLettered and HocbaSyncMinistryFailing fire in the faulty part, and no alert fires in the clean
  part.

The rules' expressions are the project's; only their `for:` waits are shortened, sixty times (a minute to a
second), so that an alert that waits 10 minutes in production waits 10 seconds here.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
import yaml

from hocba.demo_data import schools
from hocba.infra import PROMETHEUS_PORT, free_port, port_open
from hocba.keys import dev_issuer
from hocba.stack import SCRAPE_JOB, Stack, scrape_service
from hocba.term_end import Cohort, TermEnd
from shared.contracts.identity import RegisterStudents
from shared.settings import Settings
from tests.deploy.conftest import DEPLOY, tool
from tests.support import needs, throwaway_stack

#: Students of the clean term end, and of the second school whose records meet the ministry's outage.
CLEAN_STUDENTS, OUTAGE_STUDENTS = 40, 10
STUDENTS = CLEAN_STUDENTS + OUTAGE_STUDENTS
ROLES = 3
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "hocba-term-end.json"
RULES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
#: Grafana's $__rate_interval for a 1s scrape interval (four scrape intervals).
RATE_INTERVAL = "4s"
#: Alerts the faults may raise besides the two the test waits for: the dead letter waiting in its queue, and the
#: ministry's backlog and checkpoint while it is down.
FAULT_ALERTS = {
    "HocbaMessagesDeadLettered",
    "HocbaDeadLettersPresent",
    "HocbaSyncMinistryFailing",
    "HocbaSyncBacklogGrowing",
    "HocbaCheckpointNotAtMinistry",
}


def faster(rules: str) -> str:
    """The rules with each `for:` sixty times shorter (10m -> 10s, 1h -> 1m); expressions untouched."""
    units = {"s": 1, "m": 60, "h": 3600}

    def shorten(match: re.Match[str]) -> str:
        seconds = int(match.group(2)) * units[match.group(3)]
        return f"{match.group(1)}{max(1, seconds // 60)}s"

    return re.sub(r"^(\s+for: )(\d+)([smh])$", shorten, rules, flags=re.MULTILINE)


def config(folder: Path, targets: Path, namespace: str) -> dict[str, Any]:
    """The local scrape configuration's jobs at a 1s interval, RabbitMQ's queues narrowed to the stack's namespace
    (other tests share the broker)."""
    ours = {"source_labels": ["queue"], "regex": f"|{re.escape(namespace)}.*", "action": "keep"}
    rabbitmq = {"targets": [f"127.0.0.1:{PROMETHEUS_PORT}"]}
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(folder / "rules" / path.name) for path in RULES],
        "scrape_configs": [
            {"job_name": SCRAPE_JOB, "metrics_path": "/metrics", "file_sd_configs": [{"files": [str(targets)]}]},
            {"job_name": "rabbitmq", "static_configs": [rabbitmq], "metric_relabel_configs": [ours]},
            {
                "job_name": "rabbitmq-queues",
                "metrics_path": "/metrics/detailed",
                "params": {"family": ["queue_coarse_metrics", "queue_consumer_count"]},
                "static_configs": [rabbitmq],
                "metric_relabel_configs": [ours],
            },
        ],
    }


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        answer = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=30).raise_for_status().json()
        assert answer["status"] == "success", f"{expr}: {answer}"
        return answer["data"]["result"]

    def values(self, expr: str, at: float | None = None) -> dict[str, float]:
        """Each series' value, keyed by its labels (`{}` for one without)."""
        return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in self.query(expr, at)}

    def value(self, expr: str, at: float | None = None) -> float:
        found = self.values(expr, at)
        assert len(found) == 1, f"{expr}: {found}"
        return next(iter(found.values()))

    def firing(self) -> set[str]:
        alerts = httpx.get(f"{self.url}/api/v1/alerts", timeout=10).raise_for_status().json()["data"]["alerts"]
        return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

    def fired(self, since: float, until: float) -> dict[str, list[dict[str, str]]]:
        """Alerts that fired at any evaluation between `since` and `until`, with their labels."""
        seconds = max(1, round(until - since))
        found: dict[str, list[dict[str, str]]] = {}
        for r in self.query(f'max_over_time(ALERTS{{alertstate="firing"}}[{seconds}s])', until):
            found.setdefault(r["metric"]["alertname"], []).append(r["metric"])
        return found

    def scraped(self, expected: int) -> bool:
        """Every target of the stack scraped and up, and RabbitMQ's plugin too."""
        pools = httpx.get(f"{self.url}/api/v1/targets", timeout=10).raise_for_status().json()["data"]["activeTargets"]
        ours = [t for t in pools if t["labels"].get("job") == SCRAPE_JOB and t["health"] == "up"]
        rabbit = [t for t in pools if t["labels"].get("job", "").startswith("rabbitmq") and t["health"] == "up"]
        return len(ours) == expected and len(rabbit) == 2


def wait_for(what: str, check: Any, timeout: float, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        time.sleep(every)


@pytest.fixture(scope="module")
def began() -> float:
    """Before the stack's processes start: every series they serve is created after it."""
    return time.time()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, began) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("monitored")
    with throwaway_stack(folder, "mon", targets_file=folder / "sd" / "targets.json") as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(stack, tmp_path_factory) -> Iterator[Prometheus]:
    needs(port_open("127.0.0.1", PROMETHEUS_PORT), "RabbitMQ's Prometheus plugin (python -m hocba.infra management)")
    command = tool("prometheus")
    folder = tmp_path_factory.mktemp("prometheus")
    (folder / "rules").mkdir()
    for path in RULES:
        (folder / "rules" / path.name).write_text(faster(path.read_text()))
    assert stack.config.targets_file is not None
    settings = config(folder, stack.config.targets_file, stack.config.namespace)
    (folder / "prometheus.yml").write_text(yaml.safe_dump(settings))
    port = free_port()
    with (folder / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                *command,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", process)
    try:
        processes = sum(1 for child in stack.children if scrape_service(child))
        wait_for("Prometheus scraping the stack", lambda: _answers(server) and server.scraped(processes), 60)
        yield server
    finally:
        process.terminate()
        process.wait(30)


def _answers(server: Prometheus) -> bool:
    try:
        return httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass(frozen=True)
class Run:
    """When the stack began, and each part of the run began and ended (Unix seconds)."""

    began: float
    clean_from: float
    clean_until: float
    until: float


async def inject_dead_letter(stack: Stack) -> None:
    """A message identity can never read, published as the school tools would: it is dead-lettered `invalid`."""
    connection = await aio_pika.connect(stack.url_for("school"))
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(Settings(namespace=stack.config.namespace).names().exchange)
        await exchange.publish(
            aio_pika.Message(b"{not json", content_type="application/json"), RegisterStudents.ROUTING_KEY
        )


def ministry_faults(stack: Stack, faults: dict[str, Any]) -> None:
    httpx.post(f"{stack.simulator.base_url}/v1/faults", json=faults, timeout=10).raise_for_status()


@pytest.fixture(scope="module")
def run(began, stack, prometheus) -> Run:
    settings = Settings(amqp_url=stack.url_for("school"), namespace=stack.config.namespace, chunk_size=50)
    issuer, _ = dev_issuer(stack.config.data_dir)
    first, second = schools(2)

    clean_from = time.time()
    asyncio.run(TermEnd(settings, issuer, [Cohort(first, CLEAN_STUDENTS, 0)], stage_timeout=120).run())
    time.sleep(3)  # the last counts scraped and the rules evaluated on them
    clean_until = time.time()

    asyncio.run(inject_dead_letter(stack))
    ministry_faults(stack, {"fail_next": 1_000_000, "fail_status": 503})
    outage = TermEnd(settings, issuer, [Cohort(second, OUTAGE_STUDENTS, CLEAN_STUDENTS)], stage_timeout=180)
    failure: list[BaseException] = []

    def drive() -> None:
        try:
            asyncio.run(outage.run())
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failure.append(exc)

    driver = threading.Thread(target=drive)
    driver.start()
    try:
        wait_for("the ministry alert", lambda: "HocbaSyncMinistryFailing" in prometheus.firing(), 120, every=1)
    finally:
        ministry_faults(stack, {"reset": True})
        driver.join(200)
    assert not failure, f"the second school's term end failed: {failure[0]!r}"
    time.sleep(3)
    return Run(began, clean_from, clean_until, time.time())


def panel_targets(*types: str) -> list[tuple[str, str, str]]:
    """(panel title, legend, query) of each dashboard panel of the given types."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [
        (p["title"], t.get("legendFormat", ""), t["expr"]) for p in panels if p["type"] in types for t in p["targets"]
    ]


def over(expr: str, seconds: int) -> str:
    return expr.replace("$__range_s", str(seconds)).replace("$__range", f"{seconds}s")


def test_the_stat_panels_count_every_record_of_the_run(prometheus, run):
    seconds = round(run.until - run.began) + 5
    expected = {
        "Assembled": STUDENTS,
        "Signed (every role)": STUDENTS * ROLES,
        "Archived": STUDENTS,
        "Delivered to the ministry": STUDENTS,
        "Parked for an operator": 0,
    }
    shown = {
        title: prometheus.value(over(expr, seconds), run.until)
        for title, _, expr in panel_targets("stat")
        if title in expected
    }
    assert shown == expected


#: Per-second panels of counters: what each integrates to over the run, by legend (None: checked against the
#: counters themselves only).
KNOWN_TOTALS = {
    ("Records per stage (per second)", "registered"): STUDENTS,
    ("Records per stage (per second)", "assembled"): STUDENTS,
    ("Records per stage (per second)", "signed"): STUDENTS * ROLES,
    ("Records per stage (per second)", "archived"): STUDENTS,
    ("Records per stage (per second)", "delivered"): STUDENTS,
}


def close_enough(shown: float, counted: float) -> bool:
    """Within what rate()'s extrapolation allows. A window of four 1s scrapes holds three intervals and is
    extrapolated to its four seconds, except towards zero: where a counter is still 0 at a window's first sample
    (it began at 0, as every counter here does) rate() does not reach past that sample, so up to a quarter of an
    increase from zero goes unseen. Above the count, a burst (the 40 registrations of one message) that the
    windows' samples span in three seconds is extrapolated to four: at most a third more."""
    return 0.75 * counted - 2 <= shown <= 4 / 3 * counted + 2


def integrated(expr: str, seconds: int) -> str:
    """The panel's per-second (or per-minute) series summed over the run, one value a second: what it says
    happened."""
    inner = expr.removesuffix("* 60").strip().replace("$__rate_interval", RATE_INTERVAL)
    return f"sum_over_time(({inner})[{seconds}s:1s])"


def truth(expr: str) -> str:
    """The same panel over the counters' final values: what the processes counted."""
    inner = expr.removesuffix("* 60").strip()
    return re.sub(r"rate\(([^\[]+)\[\$__rate_interval\]\)", r"\1", inner)


def rate_panels() -> list[tuple[str, str, str]]:
    return [
        (t, legend, e)
        for t, legend, e in panel_targets("timeseries")
        if e.startswith("sum") and "rate(" in e and "histogram_quantile" not in e
    ]


@pytest.mark.parametrize(("title", "legend", "expr"), [pytest.param(*p, id=f"{p[0]}: {p[1]}") for p in rate_panels()])
def test_each_per_second_panel_adds_up_to_what_the_processes_counted(prometheus, run, title, legend, expr):
    seconds = round(run.until - run.began) + 5
    shown = prometheus.values(integrated(expr, seconds), run.until)
    counted = prometheus.values(truth(expr), run.until)
    if not counted:  # nothing of the kind happened (no handler raised, say): nothing is shown either
        assert not {k: v for k, v in shown.items() if v}, f"{title}: shows {shown} of nothing counted"
    for labels, total in counted.items():
        got = shown.get(labels, 0.0)
        assert close_enough(got, total), f"{title} {labels}: shows {got:.1f}, counted {total:.0f}"
    if (title, legend) in KNOWN_TOTALS:
        assert sum(counted.values()) == KNOWN_TOTALS[(title, legend)]


def test_signatures_per_role_and_per_worker_count_every_signature(prometheus, run):
    seconds = round(run.until - run.began) + 5
    [by_role] = [e for t, _, e in panel_targets("timeseries") if t == "Signatures per role (per second)"]
    [by_worker] = [e for t, _, e in panel_targets("timeseries") if t.startswith("Signing throughput per worker")]
    roles = prometheus.values(integrated(by_role, seconds), run.until)
    assert len(roles) == ROLES
    assert all(close_enough(v, STUDENTS) for v in roles.values()), roles
    workers = prometheus.values(integrated(by_worker, seconds), run.until)
    assert close_enough(sum(workers.values()), STUDENTS * ROLES), workers


def test_the_dead_letter_is_counted_once(prometheus, run):
    seconds = round(run.until - run.began) + 5
    [dead] = [e for t, legend, e in panel_targets("timeseries") if legend.startswith("dead-lettered")]
    shown = prometheus.values(integrated(dead, seconds), run.until)
    assert {json.loads(k)["service"]: round(v) for k, v in shown.items() if round(v)} == {"identity": 1}


#: A panel that hides its zeros ends in this filter.
HIDES_ZEROS = re.compile(r"\s*>\s*0$")


def test_every_panel_of_gauges_and_durations_shows_something(prometheus, run):
    """Some value in the run. A panel that hides zeros is checked for its series with the zeros shown: the queues
    of a small term end may drain between two of the broker's statistics (every 5 s), so hiding them is the panel's
    choice, and its series being there is what the run can show."""
    seconds = round(run.until - run.began) + 5
    silent = []
    counters = {(t, legend) for t, legend, _ in rate_panels()}
    for title, legend, expr in panel_targets("timeseries", "stat"):
        if (title, legend) in counters:
            continue
        shown = HIDES_ZEROS.sub("", over(expr, seconds).replace("$__rate_interval", RATE_INTERVAL))
        query = f"count_over_time(({shown})[{seconds}s:1s])"
        if not prometheus.query(query, run.until):
            silent.append(f"{title} / {legend}")
    assert silent == []


def test_the_queue_depth_panel_lists_every_services_queues_and_no_dead_letter_queue(prometheus, stack, run):
    expr = next(e for title, _, e in panel_targets("timeseries") if title == "Queue depth per queue")
    listed = {s["metric"]["queue"] for s in prometheus.query(HIDES_ZEROS.sub("", expr), run.until)}
    namespace = Settings(namespace=stack.config.namespace).names().namespace
    assert listed and all(q.startswith(namespace) and not q.endswith(".dlq") for q in listed), listed
    consumers = {q.removeprefix(namespace).split(".")[0] for q in listed}
    assert consumers >= {"identity", "grades", "signing", "archive", "sync"}, consumers


def test_the_dead_letter_and_the_ministry_outage_raise_their_alerts(prometheus, run):
    fired = prometheus.fired(run.clean_until, run.until)
    assert [(a["service"], a["reason"]) for a in fired.get("HocbaMessagesDeadLettered", [])] == [
        ("identity", "invalid")
    ]
    assert "HocbaSyncMinistryFailing" in fired
    assert set(fired) <= FAULT_ALERTS, f"unexpected alerts: {sorted(set(fired) - FAULT_ALERTS)}"


def test_no_alert_fires_on_the_clean_part(prometheus, run):
    assert prometheus.fired(run.clean_from, run.clean_until) == {}
