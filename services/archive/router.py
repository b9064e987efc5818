"""archive's subscribers: parse the contract, call the handler, publish what it returns."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker

from services.archive import handlers
from services.archive.handlers import LogHead
from services.archive.metrics import ArchiveMetrics
from services.archive.repository import ArchiveRepository
from shared.contracts.archive import RecordsArchived
from shared.contracts.signing import RecordsCompleted
from shared.messaging import Bus, Topology, subscriber


def register_routes(
    broker: RabbitBroker,
    bus: Bus,
    topology: Topology,
    repo: ArchiveRepository,
    state: LogHead,
    metrics: ArchiveMetrics,
) -> None:
    bus.declare_publisher(RecordsArchived)

    @subscriber(broker, bus, topology, RecordsCompleted)
    async def on_records_completed(event: RecordsCompleted) -> None:
        await bus.publish(await handlers.archive_records(event, repo, state, metrics))
