"""signing's subscribers: parse the contract, call the handler, publish what it returns."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker

from services.signing import handlers
from services.signing.metrics import SigningMetrics
from services.signing.repository import SigningRepository
from shared.contracts.base import derived_id
from shared.contracts.grades import RecordsReady
from shared.contracts.signing import (
    BatchCompleted,
    BatchProgress,
    ChunkSigned,
    RecordsCompleted,
    RecordsReceived,
    RequestSignBatch,
    SignWork,
)
from shared.crypto.jws import EcSigner
from shared.messaging import Bus, Topology, subscriber


def register_routes(
    broker: RabbitBroker,
    bus: Bus,
    topology: Topology,
    repo: SigningRepository,
    signer: EcSigner,
    metrics: SigningMetrics,
    chunk_size: int,
) -> None:
    for message in (RecordsReceived, SignWork, RecordsCompleted, ChunkSigned, BatchProgress, BatchCompleted):
        bus.declare_publisher(message)

    @subscriber(broker, bus, topology, RecordsReady)
    async def on_records_ready(event: RecordsReady) -> None:
        outcome = await handlers.receive_records(event, repo)
        if outcome.conflicts:
            # The conflicting versions go to the dead-letter queue with their reasons; the rest goes on.
            rejected = RecordsReady(
                message_id=derived_id(event.message_id, "conflicts"),
                actor=event.actor,
                school_code=event.school_code,
                school_year=event.school_year,
                records=[c.record for c in outcome.conflicts],
            )
            await bus.dead_letter(
                topology.queue_name(RecordsReady.ROUTING_KEY),
                rejected.model_dump_json().encode(),
                {},
                "invalid",
                "; ".join(c.reason for c in outcome.conflicts),
            )
        if outcome.event is not None:
            await bus.publish(outcome.event)

    @subscriber(broker, bus, topology, RequestSignBatch)
    async def on_sign_batch(command: RequestSignBatch) -> None:
        for message in await handlers.plan_batch(command, repo, chunk_size, metrics):
            await bus.publish(message)

    @subscriber(broker, bus, topology, SignWork)
    async def on_sign_work(work: SignWork) -> None:
        outcome = await handlers.sign_chunk(work, repo, signer, metrics)
        if outcome.completed is not None:
            await bus.publish(outcome.completed)
        await bus.publish(outcome.chunk)

    @subscriber(broker, bus, topology, ChunkSigned)
    async def on_chunk_signed(event: ChunkSigned) -> None:
        for message in await handlers.count_chunk(event, repo, metrics):
            await bus.publish(message)
