"""A running service's health on real RabbitMQ and MongoDB: ready while it can take work, its checks as metrics."""

from __future__ import annotations

import asyncio

from shared.contracts.base import Message
from shared.messaging import Bus
from shared.outcome import NOTHING, Outcome
from shared.service import Storage, assemble
from tests.support import running


class Tick(Message):
    ROUTING_KEY = "test.health.tick.v1"


async def test_a_started_service_is_ready_and_reports_how_its_dependencies_answer(settings, mongo_client):
    bus = Bus(settings, "health-probe")

    @bus.subscriber(Tick)
    async def tick(message: Tick) -> Outcome:
        return NOTHING

    service = assemble(bus, Storage(mongo_client, owned=False))
    service.health.interval = 0.05
    async with running(service), asyncio.timeout(10):
        # The two dependencies are checked side by side: wait until each has answered once.
        while any(
            service.registry.get_sample_value("hocba_dependency_up", {"dependency": d}) is None
            for d in ("mongo", "rabbitmq")
        ):
            await asyncio.sleep(0.05)
        assert service.health.report() == (True, {"started": True, "mongo": True, "rabbitmq": True})
        for dependency in ("mongo", "rabbitmq"):
            assert service.registry.get_sample_value("hocba_dependency_up", {"dependency": dependency}) == 1
            assert service.registry.get_sample_value("hocba_dependency_check_seconds", {"dependency": dependency}) >= 0
    assert service.health.report()[0] is False, "a service shutting down takes no new work"
    assert service.watch.task is None, "the checks stop with the service"
