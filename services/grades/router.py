"""grades' subscribers: each message to its handler; the bus carries out the outcome."""

from __future__ import annotations

from services.grades import handlers
from services.grades.handlers import Deps
from shared.contracts.access import ListGradesAccesses
from shared.contracts.grades import (
    AssessmentsRecorded,
    CloseTerm,
    CloseYear,
    ConductRecorded,
    ExplainRecord,
    RecordAssessments,
    RecordConduct,
    RecordsReady,
    ReopenTerm,
    TermChanged,
)
from shared.contracts.identity import StudentsRegistered
from shared.contracts.keys import GradesKeyRotationProgress, RotateGradesKey
from shared.messaging import Bus
from shared.outcome import Outcome


def register_routes(bus: Bus, deps: Deps) -> None:
    bus.publishes(AssessmentsRecorded, ConductRecorded, TermChanged, RecordsReady, GradesKeyRotationProgress)

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
