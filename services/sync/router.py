"""sync's subscribers, its replies to operators, and the relay's step: call the handler, publish what it returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.rabbit import RabbitBroker, RabbitResponse

from services.sync import handlers
from services.sync.handlers import Lister, SyncDeps
from shared.auth import IssuerKeys
from shared.contracts.archive import CheckpointIssued, RecordsArchived
from shared.contracts.base import Message
from shared.contracts.sync import (
    CheckpointDelivered,
    GetSyncStatus,
    Reconcile,
    RecordsDelivered,
    RetryParked,
)
from shared.messaging import Bus, Topology, reply, subscriber


def register_routes(
    broker: RabbitBroker,
    bus: Bus,
    topology: Topology,
    deps: SyncDeps,
    ministry: Lister,
    issuers: IssuerKeys | None,
) -> None:
    bus.declare_publisher(RecordsDelivered)
    bus.declare_publisher(CheckpointDelivered)

    async def publish(events: list[Message]) -> None:
        for event in events:
            await bus.publish(event)

    @subscriber(broker, bus, topology, RecordsArchived)
    async def on_archived(event: RecordsArchived) -> None:
        await publish((await handlers.accept_archived(event, deps)).events)

    @subscriber(broker, bus, topology, CheckpointIssued)
    async def on_checkpoint(event: CheckpointIssued) -> None:
        await publish((await handlers.accept_checkpoint(event, deps)).events)

    @subscriber(broker, bus, topology, GetSyncStatus)
    async def on_status(request: GetSyncStatus) -> RabbitResponse:
        return reply(await handlers.status(request, deps))

    @subscriber(broker, bus, topology, RetryParked)
    async def on_retry(command: RetryParked) -> RabbitResponse:
        return reply(await handlers.retry_parked(command, deps, issuers))

    @subscriber(broker, bus, topology, Reconcile)
    async def on_reconcile(request: Reconcile) -> RabbitResponse:
        return reply(await handlers.reconcile(request, deps, ministry))


def relay_step(bus: Bus, deps: SyncDeps, limit: int) -> Callable[[], Awaitable[int]]:
    """One pass of the relay: deliver due entries, announce them; returns how many were claimed."""

    async def step() -> int:
        outcome = await handlers.deliver_due(deps, limit)
        for event in outcome.events:
            await bus.publish(event)
        return outcome.claimed

    return step
