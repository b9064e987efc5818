"""The parts every service process is built from, and how one is run.

A service's `app.py` builds its `Bus`, its dependencies and its routes, then calls `assemble`,
which fixes the one start-up and shut-down order of every service:

1. database indexes, the broker connection, the queues and their dead-letter queues;
2. `resources` opened, in order (a client the handlers use, state loaded from storage);
3. the consumers start; then the `loops` (background steps) and the dependency checks start, and the
   process is ready (`shared.observability.Health`);
4. on shutdown the process is no longer ready, the checks and the loops stop first, then the consumers
   finish what they hold, then the resources close in reverse order, then the database client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import uvicorn
from faststream import FastStream
from faststream.rabbit import RabbitBroker
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shared.messaging import Bus, Topology
from shared.mongo import Index, ensure_indexes, make_client, ping
from shared.observability import Health, Watch, configure_logging, http_app
from shared.outcome import Outcome
from shared.settings import Misconfigured, Settings

log = logging.getLogger("hocba.service")

Hook = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Resource:
    """Something the handlers use: opened before the consumers start, closed after they have stopped."""

    open: Hook = _nothing
    close: Hook = _nothing


class Loop:
    """A background step, run every `interval` seconds while the consumers run.

    The step returns an `Outcome` like a handler; its messages are published, and when it says
    more work is waiting (`again`) it runs again at once. A failing step (the database away, say)
    is logged and tried again on the next tick, so an outage drains by itself once it is over.
    `stop()` lets a step in progress finish, for up to `grace` seconds, then cancels the loop.
    """

    def __init__(
        self, name: str, bus: Bus, step: Callable[[], Awaitable[Outcome]], interval: float, grace: float = 15.0
    ) -> None:
        self.name = name
        self.bus = bus
        self.step = step
        self.interval = interval
        self.grace = grace
        self.task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        if self.task is None:
            self._stopping = asyncio.Event()
            self.task = asyncio.create_task(self._run(), name=self.name)

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

    async def run_once(self) -> bool:
        """One step and what it decided carried out; True when more work is waiting."""
        outcome = await self.step()
        await self.bus.publish_all(outcome.publish)
        return outcome.again

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                while await self.run_once() and not self._stopping.is_set():
                    pass
            except Exception:  # noqa: BLE001 - the loop must outlive any one failure
                log.exception("%s: step failed; trying again in %.1fs", self.name, self.interval)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the loop itself is cancelled (`stop()` after its grace)
                # An awaited call inside the step was cancelled (a broker connection lost mid-request): a failure
                # of this step like any other, not the end of the loop.
                log.warning("%s: a call of the step was cancelled; trying again in %.1fs", self.name, self.interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)


@dataclass(frozen=True)
class Storage:
    """The service's database client, whether the service owns it (closes it at shutdown), its indexes."""

    client: AsyncMongoClient | None
    owned: bool
    indexes: Sequence[Index] = ()

    @classmethod
    def for_service(
        cls, settings: Settings, given: AsyncMongoClient | None, *, needed: bool, indexes: Sequence[Index] = ()
    ) -> Storage:
        """The client to use: `given` (a test's), none when no repository needs one, else a new one."""
        if given is not None or not needed:
            return cls(given, False, indexes)
        return cls(make_client(settings.mongo_url), True, indexes)

    def database(self, settings: Settings, service: str) -> AsyncDatabase:
        if self.client is None:
            raise RuntimeError(f"{service} was built without a database client")
        return self.client[settings.names().database(service)]


@dataclass
class ServiceApp:
    """A built service: its bus, storage, resources and loops, health, and the FastStream app that runs them.

    Its four lifecycle steps are FastStream's start-up and shut-down hooks, in the order the
    module docstring gives.
    """

    bus: Bus
    storage: Storage
    resources: Sequence[Resource] = ()
    loops: Sequence[Loop] = ()
    health: Health = field(default_factory=Health)
    #: The service's own HTTP routes beside /metrics and /health (an ASGI app), on the same port; None: none.
    http_routes: Callable[..., Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        self.app = FastStream(self.bus.broker)
        self.health.measure(self.bus.registry)
        self.watch = Watch(self.health)
        self.app.on_startup(self._start)
        self.app.after_startup(self._started)
        self.app.on_shutdown(self._stopping)
        self.app.after_shutdown(self._stopped)

    @property
    def name(self) -> str:
        return self.bus.service

    @property
    def settings(self) -> Settings:
        return self.bus.settings

    @property
    def broker(self) -> RabbitBroker:
        return self.bus.broker

    @property
    def topology(self) -> Topology:
        return self.bus.topology

    @property
    def registry(self) -> CollectorRegistry:
        return self.bus.registry

    @property
    def mongo(self) -> AsyncMongoClient | None:
        return self.storage.client

    async def _start(self) -> None:
        """Indexes, the broker, the queues; then the resources, before any consumer starts."""
        mongo = self.storage.client
        if mongo is not None:
            db = self.storage.database(self.settings, self.name)
            await connect_with_retry("MongoDB", lambda: ensure_indexes(db, list(self.storage.indexes)))
            self.health.checks["mongo"] = lambda: ping(mongo)
        await connect_with_retry("RabbitMQ", self.broker.connect)
        await self.bus.declare_topology()
        self.health.checks["rabbitmq"] = lambda: self.broker.ping(timeout=self.health.timeout)
        for resource in self.resources:
            await resource.open()

    async def _started(self) -> None:
        for loop in self.loops:
            await loop.start()
        self.watch.start()
        self.health.started = True
        log.info("%s ready", self.name)

    async def _stopping(self) -> None:
        self.health.started = False
        await self.watch.stop()
        for loop in self.loops:
            await loop.stop()

    async def _stopped(self) -> None:
        for resource in reversed(self.resources):
            await resource.close()
        if self.storage.client is not None and self.storage.owned:
            await self.storage.client.close()
        if self.settings.ephemeral:
            await self.bus.remove_queues()


async def connect_with_retry(what: str, attempt: Callable[[], Awaitable[object]], tries: int = 30) -> None:
    """Dependencies may come up after the service: wait for them with a bounded back-off."""
    for n in range(1, tries + 1):
        try:
            await attempt()
            return
        except Exception as exc:  # noqa: BLE001 - retried, then re-raised
            if n == tries:
                raise
            log.warning("%s not reachable yet (%s); retrying", what, exc)
            await asyncio.sleep(min(0.5 * n, 3.0))


def assemble(
    bus: Bus,
    storage: Storage,
    resources: Sequence[Resource] = (),
    loops: Sequence[Loop] = (),
    http_routes: Callable[..., Awaitable[None]] | None = None,
) -> ServiceApp:
    """The service around the routes already on `bus`, started and stopped in the one order (module docstring);
    `http_routes` are served beside /metrics and /health."""
    return ServiceApp(bus, storage, resources, loops, http_routes=http_routes)


async def serve(service: ServiceApp) -> None:
    """Run the HTTP endpoints and the consumers until SIGINT or SIGTERM."""
    port = service.settings.port_for(service.name)
    config = uvicorn.Config(
        http_app(service.registry, service.health, service.http_routes),
        host=service.settings.http_host,
        port=port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    http = asyncio.create_task(server.serve())
    try:
        await service.app.run(log_level=logging.getLevelName(service.settings.log_level))
    finally:
        server.should_exit = True
        await http


def main(name: str, build: Callable[[Settings], ServiceApp]) -> None:
    """Entry point of `python -m services.<name>`. A configuration it cannot start with is said in one line, exit 2."""
    settings = Settings()
    configure_logging(settings.log_level, name)
    try:
        app = build(settings)
    except Misconfigured as exc:
        logging.getLogger(f"hocba.{name}").critical("%s cannot start: %s", name, exc)
        raise SystemExit(2) from None
    asyncio.run(serve(app))
