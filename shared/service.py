"""The parts every service process is built from, and how one is run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import uvicorn
from faststream import FastStream
from faststream.rabbit import RabbitBroker
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from shared.messaging import Bus, Topology, delete_queues, make_broker
from shared.mongo import Index, ensure_indexes, make_client, ping
from shared.observability import Health, configure_logging, http_app
from shared.settings import Settings

log = logging.getLogger("hocba.service")

Hook = Callable[[], Awaitable[None]]


@dataclass
class ServiceApp:
    """A built service: its broker, bus, metrics and the FastStream app that runs them."""

    name: str
    settings: Settings
    broker: RabbitBroker
    bus: Bus
    topology: Topology
    registry: CollectorRegistry
    health: Health
    app: FastStream
    mongo: AsyncMongoClient | None = None
    on_started: list[Hook] = field(default_factory=list)
    on_stopping: list[Hook] = field(default_factory=list)


def messaging_parts(
    name: str, settings: Settings, registry: CollectorRegistry | None
) -> tuple[CollectorRegistry, RabbitBroker, Bus, Topology]:
    registry = registry or CollectorRegistry()
    broker, bus, topology = make_broker(settings, registry, name)
    return registry, broker, bus, topology


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
    name: str,
    settings: Settings,
    registry: CollectorRegistry,
    broker: RabbitBroker,
    bus: Bus,
    topology: Topology,
    *,
    mongo: AsyncMongoClient | None,
    indexes: list[Index],
    owns_mongo: bool = True,
) -> ServiceApp:
    """Wire the start-up order: database and indexes, dead-letter queues, then consumers."""
    health = Health()
    service = ServiceApp(name, settings, broker, bus, topology, registry, health, FastStream(broker))

    async def start_dependencies() -> None:
        if mongo is not None:
            db = mongo[settings.names().database(name)]
            await connect_with_retry("MongoDB", lambda: ensure_indexes(db, indexes))
            health.checks["mongo"] = lambda: ping(mongo)
        await connect_with_retry("RabbitMQ", broker.connect)
        await bus.declare_topology(topology)
        health.checks["rabbitmq"] = lambda: broker.ping(timeout=1.0)

    async def started() -> None:
        for hook in service.on_started:
            await hook()
        health.started = True
        log.info("%s ready", name)

    async def stopping() -> None:
        health.started = False
        for hook in service.on_stopping:
            await hook()

    async def stopped() -> None:
        if mongo is not None and owns_mongo:
            await mongo.close()
        if settings.ephemeral:
            await delete_queues(settings.amqp_url, topology.queues)

    service.mongo = mongo
    service.app.on_startup(start_dependencies)
    service.app.after_startup(started)
    service.app.on_shutdown(stopping)
    service.app.after_shutdown(stopped)
    return service


def mongo_for(
    settings: Settings, given: AsyncMongoClient | None, needed: bool
) -> tuple[AsyncMongoClient | None, bool]:
    """The client to use and whether the service owns it (and so closes it at shutdown)."""
    if given is not None or not needed:
        return given, False
    return make_client(settings.mongo_url), True


async def serve(service: ServiceApp) -> None:
    """Run the HTTP endpoints and the consumers until SIGINT or SIGTERM."""
    port = service.settings.port_for(service.name)
    config = uvicorn.Config(
        http_app(service.registry, service.health),
        host=service.settings.http_host,
        port=port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    http = asyncio.create_task(server.serve())
    try:
        await service.app.run(log_level=logging.getLevelName(service.settings.log_level))
    finally:
        server.should_exit = True
        await http


def main(name: str, build: Callable[[Settings], ServiceApp]) -> None:
    """Entry point of `python -m services.<name>`."""
    settings = Settings()
    configure_logging(settings.log_level, name)
    asyncio.run(serve(build(settings)))
