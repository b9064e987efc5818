"""A service's background loop: its step every interval, again at once while more waits, outliving failures."""

from __future__ import annotations

import asyncio

from shared.contracts.base import Notification
from shared.outcome import NOTHING, Outcome
from shared.service import Loop


class Tick(Notification):
    ROUTING_KEY = "test.loop.tick.v1"


class Published:
    """Stands in for the bus: keeps what the loop publishes."""

    def __init__(self) -> None:
        self.messages: list[Tick] = []

    async def publish_all(self, messages) -> None:
        self.messages.extend(messages)


async def until(condition, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_the_step_runs_every_interval_and_what_it_decides_is_published():
    bus = Published()

    async def step() -> Outcome:
        return Outcome(publish=[Tick()])

    loop = Loop("ticks", bus, step, interval=0.01)
    await loop.start()
    await until(lambda: len(bus.messages) >= 3)
    await loop.stop()
    assert loop.task is None


async def test_a_step_that_says_more_waits_runs_again_at_once():
    calls = 0

    async def step() -> Outcome:
        nonlocal calls
        calls += 1
        return Outcome(again=calls < 5)

    loop = Loop("backlog", Published(), step, interval=60.0)
    await loop.start()
    await until(lambda: calls >= 5)
    await loop.stop()
    assert calls == 5, "the step ran again without waiting while more was waiting, and then waited"


async def test_the_loop_survives_a_failing_step():
    calls = 0

    async def step() -> Outcome:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database away")
        return NOTHING

    loop = Loop("flaky", Published(), step, interval=0.01)
    await loop.start()
    await until(lambda: calls >= 3)
    await loop.stop()
    assert calls >= 3


async def test_the_loop_survives_a_call_inside_its_step_being_cancelled():
    """A broker connection lost mid-request cancels the awaited call, not the loop: the next tick runs."""
    calls = 0

    async def step() -> Outcome:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise asyncio.CancelledError("CONNECTION_FORCED")
        return NOTHING

    loop = Loop("cancelled-call", Published(), step, interval=0.01)
    await loop.start()
    await until(lambda: calls >= 3)
    await loop.stop()
    assert calls >= 3


async def test_stopping_lets_the_step_in_progress_finish():
    started = asyncio.Event()
    finished = []

    async def step() -> Outcome:
        started.set()
        await asyncio.sleep(0.1)
        finished.append(True)
        return NOTHING

    loop = Loop("slow", Published(), step, interval=5.0)
    await loop.start()
    await started.wait()
    await loop.stop()
    assert finished == [True] and loop.task is None


async def test_a_step_that_outlasts_the_grace_period_is_cancelled():
    started = asyncio.Event()

    async def step() -> Outcome:
        started.set()
        await asyncio.sleep(60)
        return NOTHING

    loop = Loop("stuck", Published(), step, interval=5.0, grace=0.05)
    await loop.start()
    await started.wait()
    async with asyncio.timeout(2):
        await loop.stop()
    assert loop.task is None
