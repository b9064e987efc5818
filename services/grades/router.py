"""grades' subscribers: parse the contract, call the handler, publish; identity look-ups by request."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker

from services.grades import handlers
from services.grades.metrics import GradesMetrics
from services.grades.repository import GradesRepository
from shared.contracts.base import derived_id
from shared.contracts.grades import AssessmentsRecorded, CloseYear, RecordAssessments, RecordsReady
from shared.contracts.identity import LookupStudents, StudentSnapshots, StudentsRegistered
from shared.messaging import Bus, Topology, subscriber

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
) -> None:
    bus.declare_publisher(AssessmentsRecorded)
    bus.declare_publisher(RecordsReady)

    @subscriber(broker, bus, topology, StudentsRegistered)
    async def on_registered(event: StudentsRegistered) -> None:
        await handlers.enrol_students(event, repo, metrics)

    @subscriber(broker, bus, topology, RecordAssessments)
    async def on_record(command: RecordAssessments) -> None:
        outcome = await handlers.record_assessments(command, repo, metrics)
        if outcome.rejected:
            # The invalid entries go to the dead-letter queue with their reasons; the rest is stored.
            rejected = RecordAssessments(
                message_id=derived_id(command.message_id, "rejected"),
                actor=command.actor,
                school_code=command.school_code,
                school_year=command.school_year,
                entries=[r.entry for r in outcome.rejected],
            )
            await bus.dead_letter(
                topology.queue_name(RecordAssessments.ROUTING_KEY),
                rejected.model_dump_json().encode(),
                {},
                "invalid",
                handlers.describe(outcome.rejected),
            )
        await bus.publish(outcome.event)

    @subscriber(broker, bus, topology, CloseYear)
    async def on_close(command: CloseYear) -> None:
        outcome = await handlers.close_year(command, repo, lookup, metrics, chunk_size)
        for event in outcome.events:
            await bus.publish(event)
