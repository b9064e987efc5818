"""signing's subscribers: parse the contract, call the handler, publish what it returns."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker

from services.signing import handlers
from services.signing.domain import SignerRefused
from services.signing.handlers import Authority
from services.signing.metrics import SigningMetrics
from services.signing.repository import SigningRepository
from shared.contracts.base import derived_id
from shared.contracts.grades import RecordsReady
from shared.contracts.signing import (
    AmendmentReceived,
    BatchCompleted,
    BatchProgress,
    BatchRefused,
    ChunkSigned,
    RecordsCompleted,
    RecordsReceived,
    RequestAmendment,
    RequestSignBatch,
    SignWork,
)
from shared.errors import Forbidden
from shared.messaging import Bus, Topology, subscriber


def register_routes(
    broker: RabbitBroker,
    bus: Bus,
    topology: Topology,
    repo: SigningRepository,
    authority: Authority,
    metrics: SigningMetrics,
    chunk_size: int,
    worker: str,
) -> None:
    for message in (
        RecordsReceived,
        SignWork,
        RecordsCompleted,
        ChunkSigned,
        BatchProgress,
        BatchCompleted,
        BatchRefused,
        AmendmentReceived,
    ):
        bus.declare_publisher(message)

    @subscriber(broker, bus, topology, RecordsReady)
    async def on_records_ready(event: RecordsReady) -> None:
        outcome = await handlers.receive_records(event, repo)
        if outcome.conflicts:
            # The conflicting versions go to the dead-letter queue with their reasons; the rest goes on.
            await bus.dead_letter_part(
                topology,
                event,
                "records",
                [c.record for c in outcome.conflicts],
                "invalid",
                "; ".join(c.reason for c in outcome.conflicts),
            )
        if outcome.event is not None:
            await bus.publish(outcome.event)

    @subscriber(broker, bus, topology, RequestSignBatch)
    async def on_sign_batch(command: RequestSignBatch) -> None:
        try:
            messages = await handlers.plan_batch(command, repo, chunk_size, metrics, authority)
        except Forbidden as exc:
            metrics.refused.labels(exc.reason).inc()
            await bus.publish(handlers.refusal(command, exc))
            raise
        for message in messages:
            await bus.publish(message)

    @subscriber(broker, bus, topology, RequestAmendment)
    async def on_amendment(command: RequestAmendment) -> None:
        await bus.publish(await handlers.receive_amendment(command, repo, authority.issuer_keys))

    @subscriber(broker, bus, topology, SignWork)
    async def on_sign_work(work: SignWork) -> None:
        try:
            outcome = await handlers.sign_chunk(work, repo, authority, metrics, worker)
        except SignerRefused as exc:
            # A certificate revoked during the batch: the rest of it is refused, and said so.
            metrics.refused.labels(exc.reason).inc()
            batch = await repo.batch(work.batch_id)
            if batch is not None:
                command = RequestSignBatch(
                    message_id=derived_id(work.message_id, "refused"),
                    batch_id=batch.batch_id,
                    school_code=batch.school_code,
                    school_year=batch.school_year,
                    role=batch.role,
                )
                await bus.publish(handlers.refusal(command, exc))
            raise
        if outcome.completed is not None:
            await bus.publish(outcome.completed)
        await bus.publish(outcome.chunk)

    @subscriber(broker, bus, topology, ChunkSigned)
    async def on_chunk_signed(event: ChunkSigned) -> None:
        for message in await handlers.count_chunk(event, repo, metrics):
            await bus.publish(message)
