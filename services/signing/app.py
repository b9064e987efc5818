"""signing's composition root: broker, repository, signers and trust anchor, actor-token keys, metrics, routes."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable


from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.signing.handlers import Authority
from services.signing.metrics import SigningMetrics
from services.signing.repository import INDEXES, MongoSigningRepository, SigningRepository
from services.signing.router import register_routes
from shared.auth import IssuerKeys, issuer_keys_for
from shared.crypto.certs import ReloadingTrust, TrustStore
from shared.crypto.pki import DevPki
from shared.crypto.signer import SignerDirectory
from shared.service import ServiceApp, assemble, messaging_parts, mongo_for
from shared.settings import Settings

NAME = "signing"


def worker_name(instance: str = "") -> str:
    """Names this process among the signing workers: its instance name, or host and process id."""
    return instance or f"{NAME}-{socket.gethostname()}-{os.getpid()}"


def build_app(
    settings: Settings,
    *,
    repository: SigningRepository | None = None,
    mongo: AsyncMongoClient | None = None,
    registry: CollectorRegistry | None = None,
    signers: SignerDirectory | None = None,
    trust: Callable[[], TrustStore] | None = None,
    issuer_keys: IssuerKeys | None = None,
) -> ServiceApp:
    """Signers and trust default to the PKI at `settings.pki_path()` (keys in files or a PKCS#11 token)."""
    registry, broker, bus, topology = messaging_parts(NAME, settings, registry)
    mongo, owns_mongo = mongo_for(settings, mongo, needed=repository is None)
    if repository is None:
        repository = MongoSigningRepository(mongo[settings.names().database(NAME)])
    pki = DevPki(
        settings.pki_path(),
        settings.pki_passphrase.encode() if settings.pki_passphrase else None,
        settings.pkcs11_pin,
    )
    authority = Authority(
        issuer_keys=issuer_keys or issuer_keys_for(settings.actor_issuer_jwks, settings.actor_issuer),
        signers=signers or pki.directory(),
        trust=trust or ReloadingTrust(pki.anchor_path, [pki.crl_path]),
    )
    register_routes(
        broker,
        bus,
        topology,
        repository,
        authority,
        SigningMetrics(registry),
        settings.chunk_size,
        worker_name(settings.instance),
    )
    return assemble(
        NAME, settings, registry, broker, bus, topology, mongo=mongo, indexes=INDEXES, owns_mongo=owns_mongo
    )
