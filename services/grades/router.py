"""grades' subscribers: each message to its handler; the bus carries out the outcome."""

from __future__ import annotations

from services.grades import handlers
from services.grades.handlers import Deps
from shared.contracts.access import ListGradesAccesses
from shared.contracts.archive import RecordsArchived
from shared.contracts.grades import (
    AmendRecord,
    AssessmentsRecorded,
    CloseTerm,
    CloseYear,
    CompareIdentities,
    ConductRecorded,
    EntryHistory,
    ExplainRecord,
    ListRecords,
    RecordAssessments,
    RecordConduct,
    RecordsReady,
    ReopenTerm,
    TermChanged,
    YearClosed,
    YearClosing,
)
from shared.contracts.identity import StudentsRegistered
from shared.contracts.keys import GradesKeyRotationProgress, RotateGradesKey
from shared.contracts.signing import RecordsCompleted
from shared.contracts.sync import RecordsDelivered
from shared.messaging import Bus
from shared.outcome import Outcome


def register_routes(bus: Bus, deps: Deps) -> None:
    bus.publishes(
        AssessmentsRecorded,
        ConductRecorded,
        TermChanged,
        RecordsReady,
        YearClosing,
        YearClosed,
        GradesKeyRotationProgress,
    )

    @bus.subscriber(StudentsRegistered)
    async def on_registered(event: StudentsRegistered) -> Outcome:
        return await handlers.enrol_students(event, deps)

    @bus.subscriber(RecordAssessments)
    async def on_record(command: RecordAssessments) -> Outcome:
        return await handlers.record_assessments(command, deps)

    @bus.subscriber(RecordConduct)
    async def on_conduct(command: RecordConduct) -> Outcome:
        return await handlers.record_conduct(command, deps)

    @bus.subscriber(CloseTerm)
    async def on_close_term(command: CloseTerm) -> Outcome:
        return await handlers.close_term(command, deps)

    @bus.subscriber(ReopenTerm)
    async def on_reopen_term(command: ReopenTerm) -> Outcome:
        return await handlers.reopen_term(command, deps)

    @bus.subscriber(CloseYear)
    async def on_close(command: CloseYear) -> Outcome:
        return await handlers.close_year(command, deps)

    @bus.subscriber(ExplainRecord)
    async def on_explain(request: ExplainRecord) -> Outcome:
        return await handlers.explain_record(request, deps)

    @bus.subscriber(ListGradesAccesses)
    async def on_list_accesses(request: ListGradesAccesses) -> Outcome:
        return await handlers.list_accesses(request, deps)

    @bus.subscriber(RotateGradesKey)
    async def on_rotate(command: RotateGradesKey) -> Outcome:
        return await handlers.rotate_key(command, deps)

    register_record_routes(bus, deps)


def register_record_routes(bus: Bus, deps: Deps) -> None:
    """Where records stand, as the services after grades announce it, and the reads of records and entries."""

    @bus.subscriber(ListRecords)
    async def on_list_records(request: ListRecords) -> Outcome:
        return await handlers.list_records(request, deps)

    @bus.subscriber(EntryHistory)
    async def on_entry_history(request: EntryHistory) -> Outcome:
        return await handlers.entry_history(request, deps)

    @bus.subscriber(AmendRecord)
    async def on_amend(request: AmendRecord) -> Outcome:
        return await handlers.amend_record(request, deps)

    @bus.subscriber(CompareIdentities)
    async def on_compare_identities(request: CompareIdentities) -> Outcome:
        return await handlers.compare_identities(request, deps)

    @bus.subscriber(RecordsCompleted)
    async def on_completed(event: RecordsCompleted) -> Outcome:
        return await handlers.note_completed(event, deps)

    @bus.subscriber(RecordsArchived)
    async def on_archived(event: RecordsArchived) -> Outcome:
        return await handlers.note_archived(event, deps)

    @bus.subscriber(RecordsDelivered)
    async def on_delivered(event: RecordsDelivered) -> Outcome:
        return await handlers.note_delivered(event, deps)
