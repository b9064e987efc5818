"""Metrics and health endpoints (/metrics, /health/live, /health/ready) and logging set-up.

Liveness is the process answering. Readiness is "this process can take new work": it has started,
and every dependency it needs (the broker connection, the database) can be reached. A dependency is
unreachable when its check fails, or does not answer within `Health.timeout` seconds, on
`Health.failures_allowed` checks in a row; a slow answer is not a failure. The checks run in the
background (`Health.watch`), so `/health/ready` answers at once from the last checks, however slow a
dependency is; how long each check took is the gauge `hocba_dependency_check_seconds{dependency}`,
and whether it answered, `hocba_dependency_up{dependency}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase

log = logging.getLogger("hocba.health")

def from_zero(metric: MetricWrapperBase, *values: Iterable[str]) -> None:
    """Start a series of `metric` at 0 for every combination of its labels' known `values`, so that its first
    increase is one Prometheus sees: a series that first appears at 1 is invisible to `increase()` and `rate()`."""
    for labels in itertools.product(*values):
        metric.labels(*labels)

Check = Callable[[], Awaitable[bool]]

#: Seconds a dependency has to answer a check before the check counts as failed.
CHECK_TIMEOUT = 10.0
#: Failed checks in a row after which a dependency is unreachable and the process not ready.
FAILURES_ALLOWED = 3
#: Seconds between two rounds of checks.
CHECK_INTERVAL = 5.0


@dataclass
class DependencyState:
    """What the checks of one dependency found: failed checks in a row, and how long the last one took."""

    failures: int = 0
    seconds: float = 0.0

    def reachable(self, failures_allowed: int) -> bool:
        return self.failures < failures_allowed


class HealthMetrics:
    """How the dependency checks went, on the service's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Gauge(
            "hocba_dependency_check_seconds",
            "How long the last check of a dependency (mongo, rabbitmq) took; a slow one is slow, not down.",
            ["dependency"],
            registry=registry,
        )
        self.up = Gauge(
            "hocba_dependency_up",
            f"1 when the last check of a dependency answered within {CHECK_TIMEOUT:.0f}s, else 0.",
            ["dependency"],
            registry=registry,
        )


@dataclass
class Health:
    """Whether the process lives (it answers) and is ready (started, and every dependency reachable).

    A dependency is added (`checks`) once the process has reached it, so it starts out reachable;
    `check_all` (run every `interval` seconds by `watch`) keeps its state. `report` reads that state
    and never waits for a dependency.
    """

    started: bool = False
    checks: dict[str, Check] = field(default_factory=dict)
    timeout: float = CHECK_TIMEOUT
    failures_allowed: int = FAILURES_ALLOWED
    interval: float = CHECK_INTERVAL
    states: dict[str, DependencyState] = field(default_factory=dict)
    metrics: HealthMetrics | None = None

    def measure(self, registry: CollectorRegistry) -> None:
        """Report the checks' durations and results as metrics on `registry`."""
        self.metrics = HealthMetrics(registry)

    async def check_all(self) -> None:
        """Check every dependency once, concurrently, and keep what each check found."""
        checks = list(self.checks.items())  # start-up adds checks while a round may be running
        await asyncio.gather(*(self._check(name, check) for name, check in checks))

    async def _check(self, name: str, check: Check) -> None:
        began = time.monotonic()
        try:
            answered = bool(await asyncio.wait_for(check(), timeout=self.timeout))
        except Exception:  # noqa: BLE001 - a check that raises or times out has failed
            answered = False
        state = self.states.setdefault(name, DependencyState())
        state.seconds = time.monotonic() - began
        state.failures = 0 if answered else state.failures + 1
        if self.metrics is not None:
            self.metrics.seconds.labels(name).set(state.seconds)
            self.metrics.up.labels(name).set(1 if answered else 0)
        if not answered:
            log.warning("%s did not answer its check (%d in a row, %.1fs)", name, state.failures, state.seconds)

    async def watch(self) -> None:
        """Check the dependencies every `interval` seconds until cancelled; a failing round never ends the watch."""
        while True:
            try:
                await self.check_all()
            except Exception:  # noqa: BLE001 - the watch must outlive any one round
                log.exception("checking the dependencies failed")
            await asyncio.sleep(self.interval)

    def report(self) -> tuple[bool, dict[str, bool]]:
        """Ready or not, and why: started, and for each dependency whether it is reachable."""
        results = {"started": self.started}
        for name in list(self.checks):
            results[name] = self.states.get(name, DependencyState()).reachable(self.failures_allowed)
        return all(results.values()), results


class Watch:
    """The background checks of a `Health`, started with the consumers and stopped before them."""

    def __init__(self, health: Health) -> None:
        self.health = health
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self.health.watch(), name="health")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


def http_app(
    registry: CollectorRegistry, health: Health, routes: Callable[..., Awaitable[None]] | None = None
) -> Callable[..., Awaitable[None]]:
    """A minimal ASGI app serving the three operational endpoints; any other path goes to `routes` (a service's own
    public HTTP routes, an ASGI app) when given."""

    async def send_body(send: Any, status: int, body: bytes, content_type: str) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"].rstrip("/")
        if path == "/metrics":
            await send_body(send, 200, generate_latest(registry), CONTENT_TYPE_LATEST)
        elif path == "/health/live":
            await send_body(send, 200, b'{"live":true}', "application/json")
        elif path == "/health/ready":
            ready, checks = health.report()
            body = json.dumps({"ready": ready, "checks": checks}).encode()
            await send_body(send, 200 if ready else 503, body, "application/json")
        elif routes is not None:
            await routes(scope, receive, send)
        else:
            await send_body(send, 404, b'{"error":"not found"}', "application/json")

    return app


#: Libraries that log whole AMQP frames (bodies with personal data in them) at DEBUG: never below INFO.
QUIET_BELOW_INFO = ("aiormq", "aio_pika")


def configure_logging(level: str, service: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
    for name in QUIET_BELOW_INFO:
        logger = logging.getLogger(name)
        logger.setLevel(max(logging.INFO, logging.getLogger().getEffectiveLevel()))
