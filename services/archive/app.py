"""archive's composition root: bus, repository, log state, the archive's keys and trust, actor-token keys, access log,
metrics, routes, schedule, and the public HTTP routes of its proofs."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.archive import handlers
from services.archive.handlers import Deps, Keys, Stamping
from services.archive.http import public_routes
from services.archive.metrics import ArchiveMetrics
from services.archive.repository import INDEXES, ArchiveRepository, MongoArchiveRepository
from services.archive.router import register_routes
from shared.access import ACCESS_LOG_INDEXES, AccessLogStore, AccessRecorder, InMemoryAccessLog, MongoAccessLog
from shared.at_rest import KeyRotation, NothingSealed, Reencrypting
from shared.auth import IssuerKeys, issuer_keys_for
from shared.contracts.keys import ArchiveKeyRotationProgress
from shared.crypto.certs import ReloadingTrust
from shared.crypto.pki import ARCHIVE_SUBJECT, DevPki
from shared.crypto.timestamps import Timestamp, averify_timestamp, request_timestamp
from shared.crypto.vault import Vault
from shared.messaging import Bus
from shared.service import Loop, Resource, ServiceApp, Storage, assemble
from shared.settings import Settings

NAME = "archive"


def stamping_from(settings: Settings) -> Stamping:
    """The TSA at HOCBA_TSA_URL; its tokens checked against HOCBA_TSA_ANCHOR, else the PKI's trust anchors and CRL."""
    pki = DevPki.from_settings(settings)
    # Read once and again only when the files change, not for every token.
    trust = ReloadingTrust(settings.tsa_anchor, []) if settings.tsa_anchor else ReloadingTrust(pki.anchor_path, [pki.crl_path])

    async def verify(token: bytes, data: bytes) -> Timestamp:
        store = trust()
        return await averify_timestamp(token, data, store.anchors, crls=store.crls)

    async def request(data: bytes, algorithm: str) -> bytes:
        return await request_timestamp(
            settings.tsa_url, data, algorithm=algorithm, timeout=settings.tsa_timeout_seconds
        )

    return Stamping(request=request, verify=verify)


def keys_from_pki(settings: Settings) -> Keys:
    """The archive's certificate and key, and the trust anchor and CRL, from the configured PKI."""
    pki = DevPki.from_settings(settings)
    directory = pki.directory()
    return Keys(
        signer=lambda: directory.signer_for(ARCHIVE_SUBJECT),
        trust=ReloadingTrust(pki.anchor_path, [pki.crl_path]) if settings.archive_verify_signatures else None,
        crl_pem=lambda: pki.crl_path.read_text() if pki.crl_path.exists() else None,
    )


def build_app(  # noqa: PLR0913 - each dependency a test may inject is a parameter
    settings: Settings,
    *,
    repository: ArchiveRepository | None = None,
    mongo: AsyncMongoClient | None = None,
    registry: CollectorRegistry | None = None,
    keys: Keys | None = None,
    issuer_keys: IssuerKeys | None = None,
    stamping: Stamping | None = None,
) -> ServiceApp:
    """Keys default to the archive's in the PKI at `settings.pki_path()`; the actor-token keys to
    `settings.actor_issuer_jwks` (given keys are taken with the archive as their audience); the log state is read
    before consuming. A `repository` given (tests: an in-memory one) has an in-memory access log beside it."""
    bus = Bus(settings, NAME, registry)
    storage = Storage.for_service(settings, mongo, needed=repository is None, indexes=[*INDEXES, *ACCESS_LOG_INDEXES])
    access_log: AccessLogStore = InMemoryAccessLog()
    vault: Vault = Vault.ephemeral()
    sealed: Reencrypting = NothingSealed()
    if repository is None:
        db = storage.database(settings, NAME)
        vault = Vault.for_service(settings, NAME)
        stored = MongoArchiveRepository(db, vault)
        repository, access_log, sealed = stored, MongoAccessLog(db), stored.sealed
    given = (
        issuer_keys.for_service(NAME)
        if issuer_keys
        else issuer_keys_for(settings.actor_issuer_jwks, settings.actor_issuer, NAME)
    )
    deps = Deps(
        repo=repository,
        metrics=ArchiveMetrics(bus.registry),
        keys=keys or keys_from_pki(settings),
        log_origin=settings.archive_origin,
        issuer_keys=given,
        access=AccessRecorder(NAME, bus.registry),
        access_log=access_log,
        rotation=KeyRotation.on(bus, vault, sealed, ArchiveKeyRotationProgress, given),
        max_clock_skew=timedelta(seconds=settings.archive_max_clock_skew_seconds),
        stamping=stamping or (stamping_from(settings) if keys is None else None),
    )
    register_routes(bus, deps)
    log_state = Resource(open=partial(handlers.load_log, deps))
    # The first loop announces the checkpoints it signs, then keeps them announced; the second announces again
    # versions and checkpoints a crash left stored but not announced, at start and every `announce_interval_seconds`.
    checkpoints = Loop(
        "archive-checkpoints", bus, partial(handlers.announcing, handlers.scheduled_checkpoint, deps, bus.publish_all),
        settings.checkpoint_interval,
    )
    reannouncing = Loop(
        "archive-reannounce", bus, partial(handlers.announcing, handlers.reannounce, deps, bus.publish_all),
        deps.announce_interval_seconds,
    )
    # The third stamps the checkpoints that wait for their timestamp (the TSA was down when they were signed).
    stamping_loop = Loop("archive-timestamps", bus, partial(handlers.stamp_owed, deps), settings.tsa_retry_seconds)
    key_ring = Resource(open=deps.rotation.show_key_ring)
    return assemble(
        bus, storage, resources=[log_state, key_ring], loops=[checkpoints, reannouncing, stamping_loop],
        http_routes=public_routes(deps),
    )
