"""archive's subscribers: each message to its handler; the bus carries out the outcome.

What a handler announces (versions archived, checkpoints) is published here, before the rest of the outcome, so that
it is kept announced only once published (`handlers.announced`)."""

from __future__ import annotations

from services.archive import handlers
from services.archive.handlers import Deps
from shared.contracts.access import ListArchiveAccesses
from shared.contracts.archive import (
    AuditArchive,
    CheckpointIssued,
    ExportRecord,
    IssueCheckpoint,
    ProveConsistency,
    ProveInclusion,
    RecordsArchived,
    RenewTimestamps,
)
from shared.contracts.keys import ArchiveKeyRotationProgress, RotateArchiveKey
from shared.contracts.signing import BatchCompleted, RecordsCompleted
from shared.messaging import Bus
from shared.outcome import Outcome


def register_routes(bus: Bus, deps: Deps) -> None:  # noqa: C901 - one subscriber per message the archive consumes
    bus.publishes(RecordsArchived, CheckpointIssued, ArchiveKeyRotationProgress)

    @bus.subscriber(RecordsCompleted)
    async def on_records_completed(event: RecordsCompleted) -> Outcome:
        return await handlers.announced(deps, bus.publish_all, await handlers.archive_records(event, deps))

    @bus.subscriber(BatchCompleted)
    async def on_batch_completed(event: BatchCompleted) -> Outcome:
        return await handlers.announced(deps, bus.publish_all, await handlers.checkpoint_after_batch(event, deps))

    @bus.subscriber(IssueCheckpoint)
    async def on_issue_checkpoint(command: IssueCheckpoint) -> Outcome:
        return await handlers.announced(deps, bus.publish_all, await handlers.issue_checkpoint(command, deps))

    @bus.subscriber(RenewTimestamps)
    async def on_renew_timestamps(command: RenewTimestamps) -> Outcome:
        return await handlers.renew_timestamps(command, deps)

    @bus.subscriber(ProveInclusion)
    async def on_prove_inclusion(request: ProveInclusion) -> Outcome:
        return await handlers.announced(deps, bus.publish_all, await handlers.prove_inclusion(request, deps))

    @bus.subscriber(ProveConsistency)
    async def on_prove_consistency(request: ProveConsistency) -> Outcome:
        return await handlers.prove_consistency(request, deps)

    @bus.subscriber(ExportRecord)
    async def on_export(request: ExportRecord) -> Outcome:
        return await handlers.announced(deps, bus.publish_all, await handlers.export_record(request, deps))

    @bus.subscriber(AuditArchive)
    async def on_audit(request: AuditArchive) -> Outcome:
        return await handlers.audit_log(request, deps)

    @bus.subscriber(ListArchiveAccesses)
    async def on_list_accesses(request: ListArchiveAccesses) -> Outcome:
        return await handlers.list_accesses(request, deps)

    @bus.subscriber(RotateArchiveKey)
    async def on_rotate(command: RotateArchiveKey) -> Outcome:
        return await handlers.rotate_key(command, deps)
