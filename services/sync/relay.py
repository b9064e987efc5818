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
    """

    def __init__(self, step: Callable[[], Awaitable[int]], limit: int, interval: float = 1.0) -> None:
        self.step = step
        self.limit = limit
        self.interval = interval
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name="sync-relay")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def _run(self) -> None:
        while True:
            try:
                while await self.step() >= self.limit:
                    pass
            except Exception:  # noqa: BLE001 - the loop must outlive any one failure
                log.exception("relay step failed; trying again in %.1fs", self.interval)
            await asyncio.sleep(self.interval)
