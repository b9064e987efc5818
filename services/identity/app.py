"""identity's composition root: broker, key ring, repository, metrics, actor-token keys and routes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.identity.metrics import IdentityMetrics
from services.identity.repository import INDEXES, MongoStudentRepository, StudentRepository
from services.identity.router import register_routes
from services.identity.vault import Vault
from shared.auth import IssuerKeys, issuer_keys_for
from shared.service import ServiceApp, assemble, messaging_parts, mongo_for
from shared.settings import Settings

NAME = "identity"
KEY_RING_FILE = "identity-keyring.json"


def key_ring_path(settings: Settings):
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
    registry, broker, bus, topology = messaging_parts(NAME, settings, registry)
    mongo, owns_mongo = mongo_for(settings, mongo, needed=repository is None)
    if repository is None:
        vault = vault or Vault.at(key_ring_path(settings))
        repository = MongoStudentRepository(mongo[settings.names().database(NAME)], vault)
    vault = vault or getattr(repository, "vault", None) or Vault.ephemeral()
    metrics = IdentityMetrics(registry)
    metrics.keys.set(len(vault.cipher.ring.keys))
    keys = issuer_keys or issuer_keys_for(settings.actor_issuer_jwks, settings.actor_issuer)
    register_routes(broker, bus, topology, repository, metrics, keys, vault)
    service = assemble(
        NAME, settings, registry, broker, bus, topology, mongo=mongo, indexes=INDEXES, owns_mongo=owns_mongo
    )
    if isinstance(repository, MongoStudentRepository):
        service.app.on_startup(repository.drop_obsolete_indexes)
    return service
