"""signing's composition root: broker, repository, signing key, metrics and routes."""

from __future__ import annotations

import os
import socket
from uuid import uuid4

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.signing.metrics import SigningMetrics
from services.signing.repository import INDEXES, MongoSigningRepository, SigningRepository
from services.signing.router import register_routes
from shared.crypto.jws import EcSigner
from shared.service import ServiceApp, assemble, messaging_parts, mongo_for
from shared.settings import Settings

NAME = "signing"


def process_key_id(instance: str = "") -> str:
    """Names this process's key: its instance name (or host and process id) and a random suffix."""
    return f"{instance or f'{NAME}-{socket.gethostname()}-{os.getpid()}'}-{uuid4().hex[:8]}"


def build_app(
    settings: Settings,
    *,
    repository: SigningRepository | None = None,
    mongo: AsyncMongoClient | None = None,
    registry: CollectorRegistry | None = None,
    signer: EcSigner | None = None,
) -> ServiceApp:
    registry, broker, bus, topology = messaging_parts(NAME, settings, registry)
    mongo, owns_mongo = mongo_for(settings, mongo, needed=repository is None)
    if repository is None:
        repository = MongoSigningRepository(mongo[settings.names().database(NAME)])
    signer = signer or EcSigner.generate(process_key_id(settings.instance))
    register_routes(broker, bus, topology, repository, signer, SigningMetrics(registry), settings.chunk_size)
    return assemble(
        NAME, settings, registry, broker, bus, topology, mongo=mongo, indexes=INDEXES, owns_mongo=owns_mongo
    )
