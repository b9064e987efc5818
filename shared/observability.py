"""Metrics and health endpoints (/metrics, /health/live, /health/ready) and logging set-up."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

Check = Callable[[], Awaitable[bool]]


@dataclass
class Health:
    """Liveness is the process answering; readiness is every dependency check passing."""

    started: bool = False
    checks: dict[str, Check] = field(default_factory=dict)

    async def report(self) -> tuple[bool, dict[str, bool]]:
        results = {"started": self.started}
        for name, check in self.checks.items():
            try:
                results[name] = bool(await asyncio.wait_for(check(), timeout=2.0))
            except Exception:  # noqa: BLE001 - a failing check is simply "not ready"
                results[name] = False
        return all(results.values()), results


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
            ready, checks = await health.report()
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
