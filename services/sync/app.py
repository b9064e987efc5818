"""sync's composition root: bus, outbox repository, ministry client, actor-token keys, the PKI's trust, metrics,
routes and the relay."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import httpx
from pymongo import AsyncMongoClient

from services.sync import handlers
from services.sync.domain import DeliveryPolicy
from services.sync.handlers import ArchiveLog, Deps
from services.sync.metrics import SyncMetrics
from services.sync.ministry import Ministry, Tls
from services.sync.repository import INDEXES, MongoOutboxRepository, OutboxRepository
from services.sync.router import register_routes
from shared.at_rest import KeyRotation, NothingSealed, Reencrypting
from shared.auth import issuer_keys_for
from shared.contracts.archive import ProofReply, ProveConsistency
from shared.contracts.keys import SyncKeyRotationProgress
from shared.crypto.certs import ReloadingTrust, TrustStore
from shared.crypto.pki import DevPki
from shared.crypto.vault import Vault
from shared.errors import Refused
from shared.messaging import Bus
from shared.service import Loop, Resource, ServiceApp, Storage, assemble
from shared.settings import Misconfigured, Settings

NAME = "sync"


@dataclass(frozen=True)
class ArchiveProofs:
    """The archive's consistency proofs, asked over the bus. A consistency proof holds hashes only and is public (the
    archive serves it over HTTP too), so the request carries no token: sync holds no key to sign one."""

    bus: Bus
    #: Seconds to wait for each answer (the proof is quick; an archive that is away holds up the relay's round no longer).
    timeout: float = 10.0

    async def consistency(self, first: int, second: int) -> list[str]:
        answer = await self.bus.request(ProveConsistency(first=first, second=second), ProofReply, self.timeout)
        proof = answer.consistency
        if proof is None or (proof.first, proof.second) != (first, second):
            raise Refused(f"the archive answered no consistency proof from tree size {first} to {second}")
        return list(proof.proof)


def ministry_client(settings: Settings, client: httpx.AsyncClient | None = None) -> Ministry:
    """The ministry at `settings.ministry_url`, over TLS as configured; `client` (a test's) instead of its own.
    Entries go in batches of `settings.ministry_batch_size` unless `settings.ministry_batch` is off.

    Production delivers over https only: the records name children.
    """
    if settings.production and not settings.ministry_url.startswith("https://"):
        raise Misconfigured(f"HOCBA_MINISTRY_URL must be an https address in production, not {settings.ministry_url!r}")
    return Ministry(
        settings.ministry_url,
        settings.ministry_concurrency,
        client=client,
        timeout=settings.ministry_timeout_seconds,
        tls=Tls(settings.ministry_ca_file, settings.ministry_client_cert, settings.ministry_client_key),
        batch_size=settings.ministry_batch_size if settings.ministry_batch else 0,
    )


def pki_trust(settings: Settings) -> Callable[[], TrustStore]:
    """The configured PKI's trust anchor and CRL (read again when they change): what the archive's seals must chain to."""
    pki = DevPki.from_settings(settings)
    return ReloadingTrust(pki.anchor_path, [pki.crl_path])


def build_app(  # noqa: PLR0913 - each dependency a test replaces is a parameter
    settings: Settings,
    *,
    repository: OutboxRepository | None = None,
    mongo: AsyncMongoClient | None = None,
    http_client: httpx.AsyncClient | None = None,
    policy: DeliveryPolicy | None = None,
    trust: Callable[[], TrustStore] | None = None,
    archive: ArchiveLog | None = None,
) -> ServiceApp:
    """The policy defaults to `settings.sync_max_attempts` attempts per entry, the relay looking every second;
    `trust` (what the archive's seals and checkpoint signatures must chain to) to the PKI at `settings.pki_path()`.
    Operators' tokens are checked with the issuer keys at `settings.actor_issuer_jwks`, sync as their audience.
    The consistency proofs sent with checkpoints are asked of the archive over the bus unless `archive` is given."""
    # One INFO line per request to the ministry would drown the service's own log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    bus = Bus(settings, NAME)
    storage = Storage.for_service(settings, mongo, needed=repository is None, indexes=INDEXES)
    ministry = ministry_client(settings, http_client)
    policy = policy or DeliveryPolicy(max_attempts=settings.sync_max_attempts)
    vault: Vault = Vault.ephemeral()
    sealed: Reencrypting = NothingSealed()
    if repository is None:
        vault = Vault.for_service(settings, NAME)
        stored = MongoOutboxRepository(storage.database(settings, NAME), vault)
        repository, sealed = stored, stored.sealed
    trust = trust or pki_trust(settings)
    keys = issuer_keys_for(settings.actor_issuer_jwks, settings.actor_issuer, NAME, trust)
    deps = Deps(
        repo=repository,
        ministry=ministry,
        metrics=SyncMetrics(bus.registry),
        issuer_keys=keys,
        trust=trust,
        deliveries_per_step=settings.chunk_size,
        rotation=KeyRotation.on(bus, vault, sealed, SyncKeyRotationProgress, keys),
        policy=policy,
        archive=archive or ArchiveProofs(bus),
    )
    register_routes(bus, deps)
    # Each loop announces its deliveries, then keeps them announced; the second announces again any that a crash
    # left recorded but not announced, at start and every `announce_interval_seconds`.
    relay = Loop(
        "sync-relay", bus, partial(handlers.announcing, handlers.deliver_due, deps, bus.publish_all),
        policy.relay_interval_seconds,
    )
    reannouncing = Loop(
        "sync-reannounce", bus, partial(handlers.announcing, handlers.reannounce, deps, bus.publish_all),
        policy.announce_interval_seconds,
    )
    resources = [
        Resource(open=ministry.open, close=ministry.close),
        Resource(open=partial(handlers.restore_gauges, deps)),
        Resource(open=deps.rotation.show_key_ring),
    ]
    return assemble(bus, storage, resources=resources, loops=[relay, reannouncing])
