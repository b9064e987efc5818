"""The relay: a background loop that delivers outbox entries whose next attempt is due."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("hocba.sync.relay")


class Relay:
    """Runs `step` every `interval` seconds, and again at once while it finds a full batch.

    `step` delivers up to `limit` due entries and returns how many it claimed. A failing step
    (the database away, say) is logged and tried again on the next tick, so an outage of the
    ministry or of MongoDB drains by itself once it is over.

    `stop()` lets a step in progress finish (so its answers are recorded rather than left to an
    expiring lease) for up to `grace` seconds, then cancels the loop.
    """

    def __init__(
        self, step: Callable[[], Awaitable[int]], limit: int, interval: float = 1.0, grace: float = 15.0
    ) -> None:
        self.step = step
        self.limit = limit
        self.interval = interval
        self.grace = grace
        self.task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        if self.task is None:
            self._stopping = asyncio.Event()
            self.task = asyncio.create_task(self._run(), name="sync-relay")

    async def stop(self) -> None:
        if self.task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), self.grace)
        except TimeoutError:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                while await self.step() >= self.limit and not self._stopping.is_set():
                    pass
            except Exception:  # noqa: BLE001 - the loop must outlive any one failure
                log.exception("relay step failed; trying again in %.1fs", self.interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
