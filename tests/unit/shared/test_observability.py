"""The /metrics, /health/live and /health/ready endpoints."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry, Counter

from shared.observability import Health, http_app


async def get(app, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        return await client.get(path)


async def test_ready_only_when_started_and_every_check_passes():
    registry = CollectorRegistry()
    health = Health()
    app = http_app(registry, health)
    assert (await get(app, "/health/live")).status_code == 200
    assert (await get(app, "/health/ready")).status_code == 503

    async def up() -> bool:
        return True

    async def down() -> bool:
        raise ConnectionError("refused")

    health.started = True
    health.checks = {"mongo": up, "rabbitmq": up}
    response = await get(app, "/health/ready")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "checks": {"started": True, "mongo": True, "rabbitmq": True}}

    health.checks["rabbitmq"] = down
    response = await get(app, "/health/ready")
    assert response.status_code == 503 and response.json()["checks"]["rabbitmq"] is False


async def test_metrics_are_exposed_in_prometheus_format():
    registry = CollectorRegistry()
    Counter("hocba_things_total", "Things.", registry=registry).inc(3)
    response = await get(http_app(registry, Health()), "/metrics")
    assert response.status_code == 200
    assert "hocba_things_total 3.0" in response.text
    assert (await get(http_app(registry, Health()), "/nope")).status_code == 404
