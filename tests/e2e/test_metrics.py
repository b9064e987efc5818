"""Each service process serves /metrics with the expected names, in Prometheus naming, and its health endpoints."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hocba.stack import SIMULATOR, TSA
from tests.deploy.metric_names import DOMAIN, FASTSTREAM, MESSAGING, SERVICES
from tests.support import needs, throwaway_stack

#: Units in a name must be base units (seconds, bytes), never these.
NOT_BASE_UNITS = ("_milliseconds", "_ms", "_microseconds", "_minutes", "_hours", "_kilobytes", "_megabytes", "_percent")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with throwaway_stack(tmp_path_factory.mktemp("metrics-stack"), "m", signing_workers=2) as running:
        yield running


@pytest.fixture(scope="module")
def scraped(stack) -> dict[str, str]:
    """The /metrics text of every service process (both signing workers)."""
    with httpx.Client(timeout=10) as client:
        return {
            c.name: client.get(c.base_url + "/metrics").raise_for_status().text
            for c in stack.children
            if c.name not in (SIMULATOR, TSA)
        }


def families(text: str) -> dict[str, str]:
    """Metric name (as exposed, counters with _total) -> type."""
    found = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        found[name] = family.type
    return found


def service_of(process: str) -> str:
    return process.split("-")[0]


def test_every_service_process_is_scraped(scraped):
    assert sorted({service_of(p) for p in scraped}) == sorted(SERVICES)
    assert sorted(p for p in scraped if p.startswith("signing")) == ["signing-1", "signing-2"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_serves_rate_errors_and_duration_from_faststream(scraped, service):
    for process, text in scraped.items():
        if service_of(process) == service:
            names = families(text)
            missing = [n for n in FASTSTREAM + MESSAGING if n not in names]
            assert not missing, f"{process} lacks {missing}"


@pytest.mark.parametrize(
    ("service", "name"),
    [pytest.param(s, n, id=f"{s}:{n}") for s in SERVICES for n in DOMAIN[s]],
)
def test_each_service_serves_its_domain_metrics(scraped, service, name):
    for process, text in scraped.items():
        if service_of(process) == service:
            assert name in families(text), f"{process} does not serve {name}"


def test_names_follow_prometheus_conventions(scraped):
    problems = []
    for process, text in scraped.items():
        for name, kind in families(text).items():
            if not name.startswith(("hocba_", "faststream_")) or name.endswith("_created"):
                continue  # _created: the client library's creation time of a counter or histogram
            if kind == "counter" and not name.endswith("_total"):
                problems.append(f"{process}: counter {name} does not end in _total")
            if kind != "counter" and name.endswith("_total"):
                problems.append(f"{process}: {kind} {name} ends in _total")
            if any(unit in name for unit in NOT_BASE_UNITS):
                problems.append(f"{process}: {name} is not in base units")
            if kind == "histogram" and not name.endswith(("_seconds", "_bytes", "_entries", "_size")):
                problems.append(f"{process}: histogram {name} names no unit")
            if any(word in name for word in ("duration", "latency", "_age", "_lag")) and not name.endswith("_seconds"):
                problems.append(f"{process}: {name} measures time but is not in _seconds")
    assert not problems, "\n".join(problems)


def test_promtool_accepts_every_exposition(scraped):
    needs(shutil.which("promtool") is not None, "promtool (Debian's prometheus package)")
    for process, text in scraped.items():
        result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert result.returncode == 0, f"{process}: {result.stdout}{result.stderr}"


def test_every_service_answers_its_health_probes(stack):
    with httpx.Client(timeout=5) as client:
        for child in stack.children:
            if child.name in (SIMULATOR, TSA):
                continue
            assert client.get(child.base_url + "/health/live").status_code == 200
            ready = client.get(child.base_url + "/health/ready")
            assert ready.status_code == 200, f"{child.name}: {ready.text}"
            assert ready.json()["checks"]["rabbitmq"] is True
