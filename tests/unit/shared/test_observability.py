"""The /metrics, /health/live and /health/ready endpoints: ready means the process can take new work."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client import CollectorRegistry, Counter

from shared.observability import Health, http_app


async def get(app, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        return await client.get(path)


async def up() -> bool:
    return True


async def down() -> bool:
    raise ConnectionError("refused")


async def test_ready_once_started_with_every_dependency_reachable_and_live_throughout():
    registry = CollectorRegistry()
    health = Health()
    app = http_app(registry, health)
    assert (await get(app, "/health/live")).status_code == 200
    assert (await get(app, "/health/ready")).status_code == 503

    health.started = True
    health.checks = {"mongo": up, "rabbitmq": up}
    await health.check_all()
    response = await get(app, "/health/ready")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "checks": {"started": True, "mongo": True, "rabbitmq": True}}


async def test_a_dependency_that_fails_its_checks_again_and_again_makes_the_process_not_ready_until_it_answers():
    health = Health(started=True, checks={"mongo": up, "rabbitmq": down}, failures_allowed=3)
    app = http_app(CollectorRegistry(), health)
    for _ in range(2):
        await health.check_all()
    assert (await get(app, "/health/ready")).status_code == 200, "one broken check is not yet an outage"

    await health.check_all()
    response = await get(app, "/health/ready")
    assert response.status_code == 503 and response.json()["checks"] == {
        "started": True,
        "mongo": True,
        "rabbitmq": False,
    }
    assert (await get(app, "/health/live")).status_code == 200

    health.checks["rabbitmq"] = up
    await health.check_all()
    assert (await get(app, "/health/ready")).status_code == 200


async def test_a_slow_database_is_a_metric_not_a_reason_to_stop_taking_work():
    """A ping that takes 2.5 s (over the 2 s that once made a loaded worker "not ready" for 84 s) leaves it ready."""
    registry = CollectorRegistry()
    health = Health(started=True, timeout=10.0)
    health.measure(registry)
    app = http_app(registry, health)

    async def slow() -> bool:
        await asyncio.sleep(2.5)
        return True

    health.checks = {"mongo": slow, "rabbitmq": up}
    rounds = asyncio.ensure_future(health.check_all())
    await asyncio.sleep(0.1)
    response = await get(app, "/health/ready")
    assert response.status_code == 200, "readiness does not wait for a check that is still running"
    await rounds

    response = await get(app, "/health/ready")
    assert response.status_code == 200 and response.json()["checks"]["mongo"] is True
    assert registry.get_sample_value("hocba_dependency_check_seconds", {"dependency": "mongo"}) >= 2.5
    assert registry.get_sample_value("hocba_dependency_up", {"dependency": "mongo"}) == 1
    assert registry.get_sample_value("hocba_dependency_up", {"dependency": "rabbitmq"}) == 1


async def test_a_check_that_does_not_answer_in_time_has_failed():
    registry = CollectorRegistry()
    health = Health(started=True, timeout=0.05, failures_allowed=1)
    health.measure(registry)

    async def hangs() -> bool:
        await asyncio.Event().wait()
        return True

    health.checks = {"mongo": hangs}
    await health.check_all()
    assert health.report() == (False, {"started": True, "mongo": False})
    assert registry.get_sample_value("hocba_dependency_up", {"dependency": "mongo"}) == 0


async def test_a_dependency_added_at_start_up_while_its_checks_run_is_checked_from_the_next_round():
    """Start-up adds the broker's check while a round may be under way; that once raised
    "dictionary changed size during iteration"."""
    health = Health(started=True, failures_allowed=1)

    async def mongo_while_the_broker_connects() -> bool:
        health.checks["rabbitmq"] = down
        await asyncio.sleep(0)
        return True

    health.checks["mongo"] = mongo_while_the_broker_connects
    await health.check_all()
    assert health.report() == (True, {"started": True, "mongo": True, "rabbitmq": True})

    await health.check_all()
    assert health.report() == (False, {"started": True, "mongo": True, "rabbitmq": False})


async def test_metrics_are_exposed_in_prometheus_format():
    registry = CollectorRegistry()
    Counter("hocba_things_total", "Things.", registry=registry).inc(3)
    response = await get(http_app(registry, Health()), "/metrics")
    assert response.status_code == 200
    assert "hocba_things_total 3.0" in response.text
    assert (await get(http_app(registry, Health()), "/nope")).status_code == 404
