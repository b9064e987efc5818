"""identity's composition root: broker, repository, metrics and routes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.identity.metrics import IdentityMetrics
from services.identity.repository import INDEXES, MongoStudentRepository, StudentRepository
from services.identity.router import register_routes
from shared.service import ServiceApp, assemble, messaging_parts, mongo_for
from shared.settings import Settings

NAME = "identity"


def build_app(
    settings: Settings,
    *,
    repository: StudentRepository | None = None,
    mongo: AsyncMongoClient | None = None,
    registry: CollectorRegistry | None = None,
) -> ServiceApp:
    registry, broker, bus, topology = messaging_parts(NAME, settings, registry)
    mongo, owns_mongo = mongo_for(settings, mongo, needed=repository is None)
    if repository is None:
        repository = MongoStudentRepository(mongo[settings.names().database(NAME)])
    register_routes(broker, bus, topology, repository, IdentityMetrics(registry))
    return assemble(
        NAME, settings, registry, broker, bus, topology, mongo=mongo, indexes=INDEXES, owns_mongo=owns_mongo
    )
