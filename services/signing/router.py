"""signing's subscribers: each message to its handler; the bus carries out the outcome.

Completed versions are announced here, before the rest of a chunk's outcome, so that they are kept announced only
once published (`handlers.announced`)."""

from __future__ import annotations

from services.signing import handlers
from services.signing.handlers import Deps
from shared.contracts.grades import RecordsReady
from shared.contracts.keys import RotateSigningKey, SigningKeyRotationProgress
from shared.contracts.signing import (
    AmendmentReceived,
    BatchCompleted,
    BatchProgress,
    BatchRefused,
    ChunkSigned,
    ConfirmReview,
    HeldSignatures,
    RecordsCompleted,
    RecordsReceived,
    RequestAmendment,
    RequestSignBatch,
    ReviewClasses,
    SealCopy,
    SignWork,
)
from shared.messaging import Bus
from shared.outcome import Outcome


def register_routes(bus: Bus, deps: Deps) -> None:
    bus.publishes(
        RecordsReceived,
        SignWork,
        RecordsCompleted,
        ChunkSigned,
        BatchProgress,
        BatchCompleted,
        BatchRefused,
        AmendmentReceived,
        SigningKeyRotationProgress,
    )

    @bus.subscriber(RecordsReady)
    async def on_records_ready(event: RecordsReady) -> Outcome:
        return await handlers.receive_records(event, deps)

    @bus.subscriber(RequestSignBatch)
    async def on_sign_batch(command: RequestSignBatch) -> Outcome:
        return await handlers.plan_batch(command, deps)

    @bus.subscriber(ReviewClasses)
    async def on_review(request: ReviewClasses) -> Outcome:
        return await handlers.review_classes(request, deps)

    @bus.subscriber(ConfirmReview)
    async def on_confirm_review(request: ConfirmReview) -> Outcome:
        return await handlers.confirm_review(request, deps)

    @bus.subscriber(HeldSignatures)
    async def on_held_signatures(request: HeldSignatures) -> Outcome:
        return await handlers.held_signatures(request, deps)

    @bus.subscriber(RequestAmendment)
    async def on_amendment(command: RequestAmendment) -> Outcome:
        return await handlers.receive_amendment(command, deps)

    # A few chunks a worker at a time: what a worker that stops hands back, and what waits behind its chunk in hand.
    @bus.subscriber(SignWork, prefetch=deps.work_prefetch)
    async def on_sign_work(work: SignWork) -> Outcome:
        return await handlers.announced(deps, bus.publish_all, await handlers.sign_chunk(work, deps))

    @bus.subscriber(ChunkSigned)
    async def on_chunk_signed(event: ChunkSigned) -> Outcome:
        return await handlers.count_chunk(event, deps)

    @bus.subscriber(RotateSigningKey)
    async def on_rotate(command: RotateSigningKey) -> Outcome:
        return await handlers.rotate_key(command, deps)

    register_copy_routes(bus, deps)


def register_copy_routes(bus: Bus, deps: Deps) -> None:
    """The school's seal on certified copies: asked by the printing command, answered to it."""

    @bus.subscriber(SealCopy)
    async def on_seal_copy(request: SealCopy) -> Outcome:
        return await handlers.seal_copy(request, deps)
