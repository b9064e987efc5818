"""archive's subscribers: parse the contract, call the handler, publish or reply with what it returns."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker, RabbitResponse

from services.archive import handlers
from services.archive.handlers import Keys, LogState
from services.archive.metrics import ArchiveMetrics
from services.archive.repository import ArchiveRepository
from shared.contracts.archive import (
    AuditArchive,
    Checkpoint,
    CheckpointIssued,
    ExportRecord,
    IssueCheckpoint,
    ProofReply,
    ProveConsistency,
    ProveInclusion,
    RecordsArchived,
)
from shared.contracts.signing import BatchCompleted, RecordsCompleted
from shared.messaging import Bus, Topology, reply, subscriber


def register_routes(
    broker: RabbitBroker,
    bus: Bus,
    topology: Topology,
    repo: ArchiveRepository,
    state: LogState,
    metrics: ArchiveMetrics,
    keys: Keys,
) -> None:
    bus.declare_publisher(RecordsArchived)
    bus.declare_publisher(CheckpointIssued)

    @subscriber(broker, bus, topology, RecordsCompleted)
    async def on_records_completed(event: RecordsCompleted) -> None:
        await bus.publish(await handlers.archive_records(event, repo, state, metrics, keys))

    @subscriber(broker, bus, topology, BatchCompleted)
    async def on_batch_completed(event: BatchCompleted) -> None:
        checkpoint = await handlers.checkpoint_after_batch(event, repo, state, metrics, keys)
        if checkpoint is not None:
            await bus.publish(handlers.checkpoint_event(checkpoint))

    @subscriber(broker, bus, topology, IssueCheckpoint)
    async def on_issue_checkpoint(_: IssueCheckpoint) -> RabbitResponse:
        checkpoint = await handlers.issue_checkpoint(repo, state, metrics, keys, force=True)
        if checkpoint is not None and checkpoint.tree_size:
            await bus.publish(handlers.checkpoint_event(checkpoint))
        return reply(ProofReply(bundle={"checkpoint": checkpoint.model_dump(mode="json")} if checkpoint else None))

    async def publish_new_checkpoint(before: Checkpoint | None) -> None:
        """A proof or export that needed a fresher checkpoint issued one: it leaves the system too."""
        if state.last is not None and state.last is not before:
            await bus.publish(handlers.checkpoint_event(state.last))

    @subscriber(broker, bus, topology, ProveInclusion)
    async def on_prove_inclusion(request: ProveInclusion) -> RabbitResponse:
        before = state.last
        answer = await handlers.prove_inclusion(request, repo, state, metrics, keys)
        await publish_new_checkpoint(before)
        return reply(answer)

    @subscriber(broker, bus, topology, ProveConsistency)
    async def on_prove_consistency(request: ProveConsistency) -> RabbitResponse:
        return reply(await handlers.prove_consistency(request, repo, state, metrics, keys))

    @subscriber(broker, bus, topology, ExportRecord)
    async def on_export(request: ExportRecord) -> RabbitResponse:
        before = state.last
        answer = await handlers.export_record(request, repo, state, metrics, keys)
        await publish_new_checkpoint(before)
        return reply(answer)

    @subscriber(broker, bus, topology, AuditArchive)
    async def on_audit(_: AuditArchive) -> RabbitResponse:
        return reply(await handlers.audit_log(repo, keys))
