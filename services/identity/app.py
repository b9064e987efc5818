"""identity's composition root: bus, key ring, repository, metrics, actor-token keys and routes."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.identity import handlers
from services.identity.handlers import Deps
from services.identity.metrics import IdentityMetrics
from services.identity.repository import INDEXES, MongoStudentRepository, StudentRepository
from services.identity.router import register_routes
from services.identity.vault import Vault
from shared.auth import IssuerKeys, issuer_keys_for
from shared.messaging import Bus
from shared.service import Resource, ServiceApp, Storage, assemble
from shared.settings import Settings

NAME = "identity"
KEY_RING_FILE = "identity-keyring.json"


def key_ring_path(settings: Settings) -> Path:
    """Where identity's key ring is kept: as configured, or under the data folder."""
    return settings.identity_key_ring or settings.data_dir / "keys" / KEY_RING_FILE


def build_app(
    settings: Settings,
    *,
    repository: StudentRepository | None = None,
    mongo: AsyncMongoClient | None = None,
    registry: CollectorRegistry | None = None,
    issuer_keys: IssuerKeys | None = None,
    vault: Vault | None = None,
) -> ServiceApp:
    """`vault` is the key ring personal data is sealed under (by default the ring at `key_ring_path`).

    A `repository` given comes with the `vault` it seals under.
    """
    bus = Bus(settings, NAME, registry)
    storage = Storage.for_service(settings, mongo, needed=repository is None, indexes=INDEXES)
    vault = vault or Vault.at(key_ring_path(settings))
    deps = Deps(
        repo=repository or MongoStudentRepository(storage.database(settings, NAME), vault),
        metrics=IdentityMetrics(bus.registry),
        issuer_keys=issuer_keys or issuer_keys_for(settings.actor_issuer_jwks, settings.actor_issuer),
        vault=vault,
        announce=bus.publish,
    )
    register_routes(bus, deps)
    return assemble(bus, storage, resources=[Resource(open=partial(handlers.show_key_ring, deps))])
