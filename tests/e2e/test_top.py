"""`hocba top --once` against a running stack (two signing workers) after a small term end: the screen shows the
counts the databases and the ministry simulator hold, read from the processes the stack lists for Prometheus and
from the broker, or from a real Prometheus server scraping them; a worker that stops is shown unreachable."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hocba.demo_data import SCHOOL_YEAR, schools
from hocba.keys import dev_issuer
from hocba.stack import TARGETS_FOLDER, scrape_service
from hocba.term_end import TermEnd
from shared.mongo import make_client
from shared.settings import Settings
from tests.support import amqp_url, free_port, needs, throwaway_stack

STUDENTS = 30
SCHOOL = schools(1)[0].code


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("top-stack")
    targets = folder / TARGETS_FOLDER / "up.json"
    with throwaway_stack(folder, "top", signing_workers=2, targets_file=targets) as running:
        yield running


@pytest.fixture(scope="module")
def term_end(stack) -> dict[str, int]:
    settings = Settings(amqp_url=stack.url_for("school"), namespace=stack.config.namespace, chunk_size=10)
    issuer, _ = dev_issuer(stack.config.data_dir)
    run = TermEnd(settings, issuer, schools=1, students=STUDENTS, stage_timeout=180)
    return {r.name: r.count for r in asyncio.run(run.run())}


@pytest.fixture(scope="module")
def prometheus(stack, tmp_path_factory):
    """A Prometheus server scraping every second what the stack lists (file-based service discovery) and the broker's
    per-queue metrics, as deploy/prometheus/prometheus.yml does; its URL."""
    needs(shutil.which("prometheus") is not None, "prometheus (Debian's prometheus package)")
    folder = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "hocba",
                "file_sd_configs": [
                    {"files": [str(stack.config.data_dir / TARGETS_FOLDER / "*.json")], "refresh_interval": "1s"}
                ],
            },
            {
                "job_name": "rabbitmq-queues",
                "metrics_path": "/metrics/detailed",
                "params": {"family": ["queue_coarse_metrics", "queue_consumer_count"]},
                "static_configs": [{"targets": ["127.0.0.1:15692"]}],
            },
        ],
    }
    (folder / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    with open(folder / "prometheus.log", "wb") as log:
        server = subprocess.Popen(
            [
                "prometheus", f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/-/ready").status_code == 200, "Prometheus ready")
        yield url
    finally:
        server.terminate()
        server.wait(30)


def scraped_processes(stack) -> int:
    """How many of the stack's processes serve /metrics (the targets file lists them): all but the simulator."""
    return sum(1 for child in stack.children if scrape_service(child))


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {timeout:.0f}s")


def scraped(url: str, query: str) -> float | None:
    result = httpx.get(f"{url}/api/v1/query", params={"query": query}).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def top(stack, *options: str) -> subprocess.CompletedProcess[str]:
    """`hocba top --once` as an operator runs it at this stack: its data folder, namespace and the broker's login."""
    env = {
        **os.environ,
        "AMQP_URL": amqp_url(),
        "HOCBA_NAMESPACE": stack.config.namespace,
        "COLUMNS": "110",  # the tables one under the other
    }
    command = [
        str(Path(sys.executable).with_name("hocba")), "top", "--once", "--interval", "0.5",
        "--data-dir", str(stack.config.data_dir), "--school", SCHOOL, "--year", SCHOOL_YEAR, *options,
    ]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def row(text: str, title: str) -> list[str]:
    """A table row's cells, by its first cell."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells and cells[0] == title:
            return cells
    raise AssertionError(f"no row {title!r} in:\n{text}")


def number(cell: str) -> int:
    return int(cell.replace(",", ""))


async def truth(stack) -> dict[str, int]:
    """What the databases and the ministry simulator hold."""
    names = Settings(namespace=stack.config.namespace).names()
    client = make_client(stack.mongo_url)
    try:
        signatures = client[names.database("signing")]["signatures"]
        found = {
            role: await signatures.count_documents({"role": role})
            for role in ("homeroom_teacher", "principal", "school_seal")
        }
        found["registered"] = await client[names.database("identity")]["students"].count_documents({})
        found["archived"] = await client[names.database("archive")]["log"].count_documents({})
        found["receipts"] = await client[names.database("sync")]["receipts"].count_documents({"kind": "record"})
    finally:
        await client.close()
    with httpx.Client(base_url=stack.simulator.base_url) as ministry:
        found["at the ministry"] = ministry.get("/v1/stats").json()["accepted"]
    return found


#: The rows of the counts by stage each read of `hocba top` shows, and what each counts in the databases.
COUNTED_ROWS = {
    "signed: homeroom teacher": "homeroom_teacher",
    "signed: principal": "principal",
    "signed: school seal": "school_seal",
    "archived": "archived",
    "delivered to the ministry": "at the ministry",
    "messages dead-lettered": None,
}


def shown_counts(screen: str) -> dict[str, int]:
    return {title: number(row(screen, title)[1]) for title in COUNTED_ROWS}


def true_counts(held: dict[str, int]) -> dict[str, int]:
    """What the databases and the simulator hold for each counted row (no dead letter in the run)."""
    return {title: held[key] if key is not None else 0 for title, key in COUNTED_ROWS.items()}


def test_once_shows_the_true_counts_after_a_term_end(stack, term_end):
    assert term_end["deliver"] == STUDENTS
    held = asyncio.run(truth(stack))
    assert held["at the ministry"] == held["receipts"] == held["archived"] == STUDENTS

    shown = top(stack)
    screen = shown.stdout
    assert shown.returncode == 0, screen + shown.stderr
    assert "Traceback" not in screen + shown.stderr
    assert number(row(screen, "registered")[1]) == held["registered"]
    assert number(row(screen, "assembled")[1]) == STUDENTS
    assert shown_counts(screen) == true_counts(held)
    assert number(row(screen, "backlog (waiting for the ministry)")[1]) == 0
    assert row(screen, "ministry circuit")[1].startswith("closed")
    # Both workers read, and both consume the work queue (as the broker counts its consumers).
    assert "signing workers: 2 of 2 answering, 2 consuming the work queue" in screen
    assert {row(screen, p)[1] for p in ("signing-1", "signing-2")} == {"signing"}
    # The school's line: grades' summary of its records.
    assert [number(c) for c in row(screen, SCHOOL)[1:]] == [STUDENTS, 0, STUDENTS, STUDENTS, STUDENTS]


def test_once_shows_the_same_counts_read_from_a_prometheus_server(stack, term_end, prometheus):
    held = asyncio.run(truth(stack))
    wait_for(
        lambda: (
            scraped(prometheus, 'sum(hocba_records_archived_total{job="hocba"})') == STUDENTS
            and scraped(prometheus, 'count(up{job="hocba"} == 1)') == scraped_processes(stack)
        ),
        "scrape of the whole term end",
    )

    shown = top(stack, "--prometheus", prometheus)
    screen = shown.stdout
    assert shown.returncode == 0, screen + shown.stderr
    assert f"Prometheus at {prometheus}" in screen
    assert shown_counts(screen) == true_counts(held)
    assert "signing workers: 2 of 2 answering, 2 consuming the work queue" in screen


def test_a_worker_that_stopped_is_shown_unreachable(stack, term_end):
    worker = stack.child("signing-2")
    assert worker.process is not None
    worker.process.terminate()
    worker.process.wait(30)

    shown = top(stack)
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert "Traceback" not in shown.stdout + shown.stderr
    assert row(shown.stdout, "signing-2")[2] == "unreachable (connection refused)"
    assert re.search(r"signing workers: 1 of 2 answering", shown.stdout)
    assert f"1 of {scraped_processes(stack)} processes unreachable" in shown.stdout
