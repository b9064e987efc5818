"""archive's composition root: broker, repository, the Merkle tree, its signing key and trust, schedule, routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.archive import handlers
from services.archive.handlers import Keys, LogState
from services.archive.metrics import ArchiveMetrics
from services.archive.repository import INDEXES, ArchiveRepository, MongoArchiveRepository
from services.archive.router import register_routes
from shared.crypto.certs import ReloadingTrust, TrustStore
from shared.crypto.pki import ARCHIVE_SUBJECT, DevPki
from shared.crypto.signer import X509Signer
from shared.service import ServiceApp, assemble, messaging_parts, mongo_for
from shared.settings import Settings

NAME = "archive"
log = logging.getLogger("hocba.archive")


def keys_from_pki(settings: Settings) -> Keys:
    """The archive's certificate and key, and the trust anchor and CRL, from the PKI folder."""
    pki = DevPki(
        settings.pki_path(),
        settings.pki_passphrase.encode() if settings.pki_passphrase else None,
        settings.pkcs11_pin,
    )
    directory = pki.directory()
    trust = ReloadingTrust(pki.anchor_path, [pki.crl_path])
    return Keys(
        signer=lambda: directory.signer_for(ARCHIVE_SUBJECT),
        trust=trust if settings.archive_verify_signatures else None,
        origin=settings.archive_origin,
        crl_pem=lambda: pki.crl_path.read_text() if pki.crl_path.exists() else None,
    )


def build_app(
    settings: Settings,
    *,
    repository: ArchiveRepository | None = None,
    mongo: AsyncMongoClient | None = None,
    registry: CollectorRegistry | None = None,
    signer: Callable[[], X509Signer] | None = None,
    trust: Callable[[], TrustStore] | None = None,
) -> ServiceApp:
    registry, broker, bus, topology = messaging_parts(NAME, settings, registry)
    mongo, owns_mongo = mongo_for(settings, mongo, needed=repository is None)
    if repository is None:
        repository = MongoArchiveRepository(mongo[settings.names().database(NAME)])
    metrics = ArchiveMetrics(registry)
    state = LogState()
    keys = keys_from_pki(settings)
    if signer is not None:
        keys.signer = signer
    if trust is not None:
        keys.trust = trust
    register_routes(broker, bus, topology, repository, state, metrics, keys)
    service = assemble(
        NAME, settings, registry, broker, bus, topology, mongo=mongo, indexes=INDEXES, owns_mongo=owns_mongo
    )
    schedule: dict[str, asyncio.Task] = {}

    async def scheduled_checkpoints() -> None:
        """A checkpoint every interval while the log grows, so the ministry holds a recent root."""
        while True:
            await asyncio.sleep(settings.checkpoint_interval)
            try:
                checkpoint = await handlers.issue_checkpoint(repository, state, metrics, keys)
                if checkpoint is not None:
                    await bus.publish(handlers.checkpoint_event(checkpoint))
            except Exception:  # noqa: BLE001 - logged; the next tick tries again
                log.exception("scheduled checkpoint failed")

    async def start() -> None:
        async with state.lock:
            await state.load(repository, metrics)
        schedule["task"] = asyncio.create_task(scheduled_checkpoints())

    async def stop() -> None:
        task = schedule.pop("task", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    service.on_started.append(start)
    service.on_stopping.append(stop)
    return service
