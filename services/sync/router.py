"""sync's subscriber and the relay's step: call the handler, publish what was delivered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.rabbit import RabbitBroker

from services.sync import handlers
from services.sync.handlers import SyncDeps
from shared.contracts.archive import RecordsArchived
from shared.contracts.sync import RecordsDelivered
from shared.messaging import Bus, Topology, subscriber


def register_routes(broker: RabbitBroker, bus: Bus, topology: Topology, deps: SyncDeps) -> None:
    bus.declare_publisher(RecordsDelivered)

    @subscriber(broker, bus, topology, RecordsArchived)
    async def on_archived(event: RecordsArchived) -> None:
        outcome = await handlers.accept_archived(event, deps)
        if outcome.event is not None:
            await bus.publish(outcome.event)


def relay_step(bus: Bus, deps: SyncDeps, limit: int) -> Callable[[], Awaitable[int]]:
    """One pass of the relay: deliver due entries, announce them; returns how many were claimed."""

    async def step() -> int:
        outcome = await handlers.deliver_due(deps, limit)
        if outcome.event is not None:
            await bus.publish(outcome.event)
        return outcome.claimed

    return step
