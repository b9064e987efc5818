"""signing's composition root: bus, repository, signers and trust anchor, actor-token keys, metrics, routes."""

from __future__ import annotations

import os
import socket
from functools import partial

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.signing import handlers
from services.signing.handlers import Deps, Signers
from services.signing.metrics import SigningMetrics
from services.signing.repository import INDEXES, MongoSigningRepository, SigningRepository
from services.signing.router import register_routes
from shared.access import ACCESS_LOG_INDEXES, AccessLogStore, AccessRecorder, InMemoryAccessLog, MongoAccessLog
from shared.at_rest import KeyRotation, NothingSealed, Reencrypting
from shared.auth import IssuerKeys, issuer_keys_for
from shared.contracts.keys import SigningKeyRotationProgress
from shared.contracts.signing import SignWork
from shared.crypto.certs import ReloadingTrust
from shared.crypto.pki import DevPki
from shared.crypto.vault import Vault
from shared.messaging import Bus
from shared.service import Loop, Resource, ServiceApp, Storage, assemble
from shared.settings import Settings

NAME = "signing"


def worker_name(instance: str = "") -> str:
    """Names this process among the signing workers: its instance name, or host and process id."""
    return instance or f"{NAME}-{socket.gethostname()}-{os.getpid()}"


def pki_signers(settings: Settings) -> Signers:
    """The configured PKI's signers, checked against its trust anchor and CRL (re-read when it changes)."""
    pki = DevPki.from_settings(settings)
    return Signers(pki.directory(), ReloadingTrust(pki.anchor_path, [pki.crl_path]))


def pki_trust(settings: Settings) -> ReloadingTrust:
    """The configured PKI's trust anchor and CRL: what the web gateway's certificate must chain to (its tokens act
    for the people signed in on the web page)."""
    pki = DevPki.from_settings(settings)
    return ReloadingTrust(pki.anchor_path, [pki.crl_path])


def build_app(
    settings: Settings,
    *,
    repository: SigningRepository | None = None,
    mongo: AsyncMongoClient | None = None,
    registry: CollectorRegistry | None = None,
    signers: Signers | None = None,
    issuer_keys: IssuerKeys | None = None,
) -> ServiceApp:
    """Signers default to the PKI at `settings.pki_path()` (keys in files or a PKCS#11 token) and its trust anchor
    (grades' seals are checked against it too); the actor-token keys to `settings.actor_issuer_jwks` (given keys
    are taken with signing as their audience). A `repository` given (tests: an in-memory one) has an in-memory access
    log beside it (the seals put on certified copies)."""
    bus = Bus(settings, NAME, registry)
    storage = Storage.for_service(settings, mongo, needed=repository is None, indexes=[*INDEXES, *ACCESS_LOG_INDEXES])
    vault: Vault = Vault.ephemeral()
    sealed: Reencrypting = NothingSealed()
    access_log: AccessLogStore = InMemoryAccessLog()
    if repository is None:
        vault = Vault.for_service(settings, NAME)
        db = storage.database(settings, NAME)
        stored = MongoSigningRepository(db, vault)
        repository, sealed, access_log = stored, stored.sealed, MongoAccessLog(db)
    keys = (
        issuer_keys.for_service(NAME)
        if issuer_keys
        else issuer_keys_for(settings.actor_issuer_jwks, settings.actor_issuer, NAME, pki_trust(settings))
    )
    deps = Deps(
        repo=repository,
        metrics=SigningMetrics(bus.registry),
        issuer_keys=keys,
        signers=signers or pki_signers(settings),
        records_per_chunk=settings.chunk_size,
        worker=worker_name(settings.instance),
        rotation=KeyRotation.on(bus, vault, sealed, SigningKeyRotationProgress, keys),
        work_waiting=partial(bus.waiting, SignWork),
        access=AccessRecorder(NAME, bus.registry),
        access_log=access_log,
    )
    register_routes(bus, deps)
    # Versions a crash (or a dead-lettered chunk) left completed but not announced are announced again, at start and
    # every `announce_interval_seconds`.
    step = partial(handlers.announcing, handlers.reannounce, deps, bus.publish_all)
    reannouncing = Loop("signing-reannounce", bus, step, deps.announce_interval_seconds)
    # Batches that stopped moving (a chunk dead-lettered, or held by nothing that finishes it) have their unfinished
    # chunks published again, at start and every `redrive_interval_seconds`.
    redriving = Loop("signing-redrive", bus, partial(handlers.redrive, deps), deps.redrive_interval_seconds)
    loops = [reannouncing, redriving]
    return assemble(bus, storage, resources=[Resource(open=deps.rotation.show_key_ring)], loops=loops)
