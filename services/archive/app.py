"""archive's composition root: broker, repository, the log head, metrics and routes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.archive.handlers import LogHead
from services.archive.metrics import ArchiveMetrics
from services.archive.repository import INDEXES, ArchiveRepository, MongoArchiveRepository
from services.archive.router import register_routes
from shared.service import ServiceApp, assemble, messaging_parts, mongo_for
from shared.settings import Settings

NAME = "archive"


def build_app(
    settings: Settings,
    *,
    repository: ArchiveRepository | None = None,
    mongo: AsyncMongoClient | None = None,
    registry: CollectorRegistry | None = None,
) -> ServiceApp:
    registry, broker, bus, topology = messaging_parts(NAME, settings, registry)
    mongo, owns_mongo = mongo_for(settings, mongo, needed=repository is None)
    if repository is None:
        repository = MongoArchiveRepository(mongo[settings.names().database(NAME)])
    metrics = ArchiveMetrics(registry)
    state = LogHead()
    register_routes(broker, bus, topology, repository, state, metrics)
    service = assemble(
        NAME, settings, registry, broker, bus, topology, mongo=mongo, indexes=INDEXES, owns_mongo=owns_mongo
    )

    async def load_head() -> None:
        async with state.lock:
            await state.load(repository, metrics)

    service.on_started.append(load_head)
    return service
