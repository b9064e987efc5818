"""sync's subscribers: each message to its handler; the bus carries out the outcome.

Deliveries are announced here, before the rest of the outcome, so that they are kept announced only once published
(`handlers.announced`)."""

from __future__ import annotations

from services.sync import handlers
from services.sync.handlers import Deps
from shared.contracts.archive import CheckpointIssued, RecordsArchived
from shared.contracts.keys import RotateSyncKey, SyncKeyRotationProgress
from shared.contracts.sync import (
    CheckpointDelivered,
    GetSyncStatus,
    Reconcile,
    RecordsDelivered,
    RetryParked,
)
from shared.messaging import Bus
from shared.outcome import Outcome


def register_routes(bus: Bus, deps: Deps) -> None:
    bus.publishes(RecordsDelivered, CheckpointDelivered, SyncKeyRotationProgress)

    @bus.subscriber(RecordsArchived)
    async def on_archived(event: RecordsArchived) -> Outcome:
        return await handlers.announced(deps, bus.publish_all, await handlers.accept_archived(event, deps))

    @bus.subscriber(CheckpointIssued)
    async def on_checkpoint(event: CheckpointIssued) -> Outcome:
        return await handlers.announced(deps, bus.publish_all, await handlers.accept_checkpoint(event, deps))

    @bus.subscriber(GetSyncStatus)
    async def on_status(request: GetSyncStatus) -> Outcome:
        return await handlers.status(request, deps)

    @bus.subscriber(RetryParked)
    async def on_retry(command: RetryParked) -> Outcome:
        return await handlers.retry_parked(command, deps)

    @bus.subscriber(Reconcile)
    async def on_reconcile(request: Reconcile) -> Outcome:
        return await handlers.reconcile(request, deps)

    @bus.subscriber(RotateSyncKey)
    async def on_rotate(command: RotateSyncKey) -> Outcome:
        return await handlers.rotate_key(command, deps)
