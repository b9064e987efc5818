"""identity's composition root: bus, key ring, repository, metrics, access log, actor-token keys and routes."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.identity.handlers import Deps
from services.identity.metrics import IdentityMetrics
from services.identity.repository import INDEXES, MongoStudentRepository, StudentRepository
from services.identity.router import register_routes
from shared.access import ACCESS_LOG_INDEXES, AccessLogStore, AccessRecorder, InMemoryAccessLog, MongoAccessLog
from shared.at_rest import KeyRotation
from shared.auth import IssuerKeys, issuer_keys_for
from shared.contracts.identity import KeyRotationProgress
from shared.crypto.certs import ReloadingTrust, TrustStore
from shared.crypto.pki import DevPki
from shared.crypto.vault import Vault
from shared.messaging import Bus
from shared.service import Resource, ServiceApp, Storage, assemble
from shared.settings import Settings

NAME = "identity"
def pki_trust(settings: Settings) -> Callable[[], TrustStore]:
    """The configured PKI's trust anchor and CRL (re-read when they change): what vouches for a service asking."""
    pki = DevPki.from_settings(settings)
    return ReloadingTrust(pki.anchor_path, [pki.crl_path])


def actor_keys(settings: Settings, issuer_keys: IssuerKeys | None) -> IssuerKeys | None:
    """The issuer's keys (given, or configured) as identity accepts them: identity as the audience, and a
    service's own token (grades asking) checked against the given keys' `services`, else the configured PKI."""
    keys = issuer_keys or issuer_keys_for(settings.actor_issuer_jwks, settings.actor_issuer, NAME)
    if keys is None:
        return None
    return keys.for_service(NAME, services=keys.services or pki_trust(settings))


def build_app(
    settings: Settings,
    *,
    repository: StudentRepository | None = None,
    mongo: AsyncMongoClient | None = None,
    registry: CollectorRegistry | None = None,
    issuer_keys: IssuerKeys | None = None,
    vault: Vault | None = None,
) -> ServiceApp:
    """`vault` is the key ring personal data is sealed under (by default its ring as configured: `Vault.for_service`).

    A `repository` given (tests: an in-memory one) comes with the `vault` it seals under, and an in-memory
    access log beside it. `issuer_keys` given (tests) may say with `services` which trust store a service's own
    token is checked against; by default the configured PKI's.
    """
    bus = Bus(settings, NAME, registry)
    storage = Storage.for_service(settings, mongo, needed=repository is None, indexes=[*INDEXES, *ACCESS_LOG_INDEXES])
    vault = vault or Vault.for_service(settings, NAME)
    access_log: AccessLogStore = InMemoryAccessLog()
    if repository is None:
        db = storage.database(settings, NAME)
        repository, access_log = MongoStudentRepository(db, vault), MongoAccessLog(db)
    keys = actor_keys(settings, issuer_keys)
    deps = Deps(
        repo=repository,
        metrics=IdentityMetrics(bus.registry),
        issuer_keys=keys,
        rotation=KeyRotation.on(bus, vault, repository, KeyRotationProgress, keys),
        access=AccessRecorder(NAME, bus.registry),
        access_log=access_log,
    )
    register_routes(bus, deps)
    return assemble(bus, storage, resources=[Resource(open=deps.rotation.show_key_ring)])
