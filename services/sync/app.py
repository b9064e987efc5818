"""sync's composition root: broker, outbox repository, ministry client, relay, metrics and routes."""

from __future__ import annotations

import logging

import httpx
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.sync.domain import DeliveryPolicy
from services.sync.handlers import SyncDeps, restore_gauges
from services.sync.metrics import SyncMetrics
from services.sync.ministry import Ministry, Tls
from services.sync.relay import Relay
from services.sync.repository import INDEXES, MongoOutboxRepository, OutboxRepository
from services.sync.router import register_routes, relay_step
from shared.auth import issuer_keys_for
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
    ministry = Ministry(
        settings.ministry_url,
        settings.ministry_concurrency,
        client=http_client,
        timeout=settings.ministry_timeout_seconds,
        tls=Tls(settings.ministry_ca_file, settings.ministry_client_cert, settings.ministry_client_key),
    )
    policy = policy or DeliveryPolicy(max_attempts=settings.sync_max_attempts)
    deps = SyncDeps(repository, ministry, SyncMetrics(registry), policy)
    issuers = issuer_keys_for(settings.actor_issuer_jwks, settings.actor_issuer)
    register_routes(broker, bus, topology, deps, ministry, issuers)
    service = assemble(
        NAME, settings, registry, broker, bus, topology, mongo=mongo, indexes=INDEXES, owns_mongo=owns_mongo
    )
    relay = Relay(relay_step(bus, deps, settings.chunk_size), settings.chunk_size, relay_interval)
    if isinstance(repository, MongoOutboxRepository):
        service.app.on_startup(repository.drop_obsolete_indexes)
    # The client opens before the consumers start and closes after they have finished.
    service.app.on_startup(ministry.open)
    service.on_started.append(lambda: restore_gauges(deps))
    service.on_started.append(relay.start)
    service.on_stopping.append(relay.stop)
    service.app.after_shutdown(ministry.close)
    return service
