"""identity's subscribers: each message to its handler; the bus carries out the outcome."""

from __future__ import annotations

from services.identity import handlers
from services.identity.handlers import Deps
from shared.contracts.access import ListIdentityAccesses
from shared.contracts.identity import (
    FindStudents,
    KeyRotationProgress,
    LookupStudents,
    RegisterStudents,
    RotateIdentityKey,
    StudentsRegistered,
)
from shared.messaging import Bus
from shared.outcome import Outcome


def register_routes(bus: Bus, deps: Deps) -> None:
    bus.publishes(StudentsRegistered, KeyRotationProgress)

    @bus.subscriber(RegisterStudents)
    async def on_register(command: RegisterStudents) -> Outcome:
        return await handlers.register_students(command, deps)

    @bus.subscriber(LookupStudents)
    async def on_lookup(request: LookupStudents) -> Outcome:
        return await handlers.lookup_students(request, deps)

    @bus.subscriber(FindStudents)
    async def on_find(request: FindStudents) -> Outcome:
        return await handlers.find_students(request, deps)

    @bus.subscriber(ListIdentityAccesses)
    async def on_list_accesses(request: ListIdentityAccesses) -> Outcome:
        return await handlers.list_accesses(request, deps)

    @bus.subscriber(RotateIdentityKey)
    async def on_rotate(command: RotateIdentityKey) -> Outcome:
        return await handlers.rotate_key(command, deps)
