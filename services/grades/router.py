"""grades' subscribers: parse the contract, call the handler, publish or reply; identity look-ups by request."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker, RabbitResponse

from services.grades import handlers
from services.grades.metrics import GradesMetrics
from services.grades.repository import GradesRepository
from shared.auth import IssuerKeys
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
from shared.contracts.identity import LookupStudents, StudentSnapshots, StudentsRegistered
from shared.messaging import Bus, Topology, reply, subscriber

#: Student references per LookupStudents request.
LOOKUP_CHUNK = 500


def identity_lookup(bus: Bus, chunk: int = LOOKUP_CHUNK) -> handlers.Lookup:
    """Ask identity for snapshots, `chunk` references per request."""

    async def lookup(refs: list[str]) -> StudentSnapshots:
        students, missing = [], []
        for start in range(0, len(refs), chunk):
            reply = await bus.request(LookupStudents(student_refs=refs[start : start + chunk]))
            part = StudentSnapshots.model_validate(reply)
            students.extend(part.students)
            missing.extend(part.missing)
        return StudentSnapshots(students=students, missing=missing)

    return lookup


def register_routes(
    broker: RabbitBroker,
    bus: Bus,
    topology: Topology,
    repo: GradesRepository,
    metrics: GradesMetrics,
    lookup: handlers.Lookup,
    chunk_size: int,
    keys: IssuerKeys | None,
) -> None:
    for published in (AssessmentsRecorded, ConductRecorded, TermChanged, RecordsReady):
        bus.declare_publisher(published)

    async def dead_letter_rejected(
        command: RecordAssessments | RecordConduct, outcome: handlers.RecordingOutcome
    ) -> None:
        """The rejected entries go to the dead-letter queue with their reasons; the rest is stored."""
        for forbidden in (True, False):
            part = [r for r in outcome.rejected if r.forbidden is forbidden]
            if not part:
                continue
            reason = "forbidden" if forbidden else "invalid"
            await bus.dead_letter_part(
                topology, command, "entries", [r.entry for r in part], reason, handlers.describe(part)
            )

    @subscriber(broker, bus, topology, StudentsRegistered)
    async def on_registered(event: StudentsRegistered) -> None:
        await handlers.enrol_students(event, repo, metrics)

    @subscriber(broker, bus, topology, RecordAssessments)
    async def on_record(command: RecordAssessments) -> RabbitResponse:
        outcome = await handlers.record_assessments(command, repo, metrics, keys)
        await dead_letter_rejected(command, outcome)
        await bus.publish(outcome.event)
        return reply(outcome.event)

    @subscriber(broker, bus, topology, RecordConduct)
    async def on_conduct(command: RecordConduct) -> RabbitResponse:
        outcome = await handlers.record_conduct(command, repo, metrics, keys)
        await dead_letter_rejected(command, outcome)
        await bus.publish(outcome.event)
        return reply(outcome.event)

    @subscriber(broker, bus, topology, CloseTerm)
    async def on_close_term(command: CloseTerm) -> RabbitResponse:
        event = await handlers.close_term(command, repo, metrics, keys)
        await bus.publish(event)
        return reply(event)

    @subscriber(broker, bus, topology, ReopenTerm)
    async def on_reopen_term(command: ReopenTerm) -> RabbitResponse:
        event = await handlers.reopen_term(command, repo, metrics, keys)
        await bus.publish(event)
        return reply(event)

    @subscriber(broker, bus, topology, CloseYear)
    async def on_close(command: CloseYear) -> None:
        outcome = await handlers.close_year(command, repo, lookup, metrics, chunk_size, keys)
        for event in outcome.events:
            await bus.publish(event)

    @subscriber(broker, bus, topology, ExplainRecord)
    async def on_explain(request: ExplainRecord) -> RabbitResponse:
        return reply(await handlers.explain_record(request, repo, metrics, keys))
