"""grades' composition root: broker, repository, metrics, actor-token keys, identity look-up and routes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.grades.handlers import Lookup
from services.grades.metrics import GradesMetrics
from services.grades.repository import INDEXES, GradesRepository, MongoGradesRepository
from services.grades.router import identity_lookup, register_routes
from shared.auth import IssuerKeys, issuer_keys_for
from shared.service import ServiceApp, assemble, messaging_parts, mongo_for
from shared.settings import Settings

NAME = "grades"


def build_app(
    settings: Settings,
    *,
    repository: GradesRepository | None = None,
    mongo: AsyncMongoClient | None = None,
    registry: CollectorRegistry | None = None,
    lookup: Lookup | None = None,
    issuer_keys: IssuerKeys | None = None,
) -> ServiceApp:
    registry, broker, bus, topology = messaging_parts(NAME, settings, registry)
    mongo, owns_mongo = mongo_for(settings, mongo, needed=repository is None)
    if repository is None:
        repository = MongoGradesRepository(mongo[settings.names().database(NAME)])
    keys = issuer_keys or issuer_keys_for(settings.actor_issuer_jwks, settings.actor_issuer)
    register_routes(
        broker,
        bus,
        topology,
        repository,
        GradesMetrics(registry),
        lookup or identity_lookup(bus),
        settings.chunk_size,
        keys,
    )
    return assemble(
        NAME, settings, registry, broker, bus, topology, mongo=mongo, indexes=INDEXES, owns_mongo=owns_mongo
    )
