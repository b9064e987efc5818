"""sync's composition root: broker, outbox repository, ministry client, relay, metrics and routes."""

from __future__ import annotations

import logging

import httpx
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.sync.domain import DeliveryPolicy
from services.sync.handlers import SyncDeps
from services.sync.metrics import SyncMetrics
from services.sync.ministry import Ministry
from services.sync.relay import Relay
from services.sync.repository import INDEXES, MongoOutboxRepository, OutboxRepository
from services.sync.router import register_routes, relay_step
from shared.service import ServiceApp, assemble, messaging_parts, mongo_for
from shared.settings import Settings

NAME = "sync"


def build_app(
    settings: Settings,
    *,
    repository: OutboxRepository | None = None,
    mongo: AsyncMongoClient | None = None,
    registry: CollectorRegistry | None = None,
    http_client: httpx.AsyncClient | None = None,
    policy: DeliveryPolicy | None = None,
    relay_interval: float = 1.0,
) -> ServiceApp:
    # One INFO line per request to the ministry would drown the service's own log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    registry, broker, bus, topology = messaging_parts(NAME, settings, registry)
    mongo, owns_mongo = mongo_for(settings, mongo, needed=repository is None)
    if repository is None:
        repository = MongoOutboxRepository(mongo[settings.names().database(NAME)])
    ministry = Ministry(settings.ministry_url, settings.ministry_concurrency, client=http_client)
    deps = SyncDeps(repository, ministry, SyncMetrics(registry), policy or DeliveryPolicy())
    register_routes(broker, bus, topology, deps)
    service = assemble(
        NAME, settings, registry, broker, bus, topology, mongo=mongo, indexes=INDEXES, owns_mongo=owns_mongo
    )
    relay = Relay(relay_step(bus, deps, settings.chunk_size), settings.chunk_size, relay_interval)
    # The client opens before the consumers start and closes after they have finished.
    service.app.on_startup(ministry.open)
    service.on_started.append(relay.start)
    service.on_stopping.append(relay.stop)
    service.app.after_shutdown(ministry.close)
    return service
