"""identity's subscribers: parse the contract, call the handler, publish or reply."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker, RabbitResponse

from services.identity import handlers
from services.identity.metrics import IdentityMetrics
from services.identity.repository import StudentRepository
from services.identity.vault import Vault
from shared.auth import IssuerKeys
from shared.contracts.identity import (
    FindStudents,
    KeyRotationProgress,
    LookupStudents,
    RegisterStudents,
    RotateIdentityKey,
    StudentsRegistered,
)
from shared.messaging import Bus, Topology, reply, subscriber


def register_routes(
    broker: RabbitBroker,
    bus: Bus,
    topology: Topology,
    repo: StudentRepository,
    metrics: IdentityMetrics,
    keys: IssuerKeys | None,
    vault: Vault,
) -> None:
    bus.declare_publisher(StudentsRegistered)
    bus.declare_publisher(KeyRotationProgress)

    @subscriber(broker, bus, topology, RegisterStudents)
    async def on_register(command: RegisterStudents) -> RabbitResponse:
        outcome = await handlers.register_students(command, repo, metrics, keys)
        for forbidden in (True, False):
            # The rejected rows go to the dead-letter queue with their reasons; the rest goes on.
            part = [r for r in outcome.rejected if r.forbidden is forbidden]
            if not part:
                continue
            kind = "forbidden" if forbidden else "invalid"
            await bus.dead_letter_part(
                topology,
                command,
                "students",
                [r.registration for r in part],
                kind,
                "; ".join(f"row {r.index}: {r.reason}" for r in part),
            )
        if outcome.event is not None:
            await bus.publish(outcome.event)
        return reply(outcome.report)

    @subscriber(broker, bus, topology, LookupStudents)
    async def on_lookup(request: LookupStudents) -> RabbitResponse:
        return reply(await handlers.lookup_students(request, repo, metrics))

    @subscriber(broker, bus, topology, FindStudents)
    async def on_find(request: FindStudents) -> RabbitResponse:
        return reply(await handlers.find_students(request, repo, metrics, keys))

    @subscriber(broker, bus, topology, RotateIdentityKey)
    async def on_rotate(command: RotateIdentityKey) -> RabbitResponse:
        final = await handlers.rotate_key(command, repo, vault, metrics, keys, bus.publish)
        await bus.publish(final)
        return reply(final)
