"""identity's subscribers: parse the contract, call the handler, publish or reply."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker, RabbitResponse

from services.identity import handlers
from services.identity.metrics import IdentityMetrics
from services.identity.repository import StudentRepository
from shared.contracts.base import derived_id
from shared.contracts.identity import (
    LookupStudents,
    RegisterStudents,
    StudentsRegistered,
)
from shared.messaging import Bus, Topology, reply, subscriber


def register_routes(
    broker: RabbitBroker,
    bus: Bus,
    topology: Topology,
    repo: StudentRepository,
    metrics: IdentityMetrics,
) -> None:
    bus.declare_publisher(StudentsRegistered)

    @subscriber(broker, bus, topology, RegisterStudents)
    async def on_register(command: RegisterStudents) -> None:
        outcome = await handlers.register_students(command, repo, metrics)
        if outcome.rejected:
            # The invalid rows go to the dead-letter queue with their reasons; the rest goes on.
            rejected = RegisterStudents(
                message_id=derived_id(command.message_id, "rejected"),
                actor=command.actor,
                students=[r.registration for r in outcome.rejected],
            )
            reason = "; ".join(f"row {r.index}: {r.reason}" for r in outcome.rejected)
            await bus.dead_letter(
                topology.queue_name(RegisterStudents.ROUTING_KEY),
                rejected.model_dump_json().encode(),
                {},
                "invalid",
                reason,
            )
        if outcome.event is not None:
            await bus.publish(outcome.event)

    @subscriber(broker, bus, topology, LookupStudents)
    async def on_lookup(request: LookupStudents) -> RabbitResponse:
        return reply(await handlers.lookup_students(request, repo, metrics))
