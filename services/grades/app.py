"""grades' composition root: bus, repository, metrics, actor-token keys, identity look-up and routes."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.grades.handlers import Deps, Lookup
from services.grades.metrics import GradesMetrics
from services.grades.repository import INDEXES, GradesRepository, MongoGradesRepository
from services.grades.router import register_routes
from shared.auth import IssuerKeys, issuer_keys_for
from shared.contracts.identity import LookupStudents, StudentSnapshots
from shared.messaging import Bus
from shared.service import ServiceApp, Storage, assemble
from shared.settings import Settings

NAME = "grades"


@dataclass(frozen=True)
class IdentityLookup:
    """identity's snapshots of student references, asked by request, `refs_per_request` references at a time."""

    bus: Bus
    refs_per_request: int = 500
    #: Seconds to wait for each answer.
    timeout: float = 30.0

    async def __call__(self, refs: list[str]) -> StudentSnapshots:
        students, missing = [], []
        for start in range(0, len(refs), self.refs_per_request):
            asked = LookupStudents(student_refs=refs[start : start + self.refs_per_request])
            part = await self.bus.request(asked, StudentSnapshots, self.timeout)
            students += part.students
            missing += part.missing
        return StudentSnapshots(students=students, missing=missing)


def build_app(
    settings: Settings,
    *,
    repository: GradesRepository | None = None,
    mongo: AsyncMongoClient | None = None,
    registry: CollectorRegistry | None = None,
    lookup: Lookup | None = None,
    issuer_keys: IssuerKeys | None = None,
) -> ServiceApp:
    """Student snapshots come from identity by request unless `lookup` stands in for it."""
    bus = Bus(settings, NAME, registry)
    storage = Storage.for_service(settings, mongo, needed=repository is None, indexes=INDEXES)
    deps = Deps(
        repo=repository or MongoGradesRepository(storage.database(settings, NAME)),
        metrics=GradesMetrics(bus.registry),
        issuer_keys=issuer_keys or issuer_keys_for(settings.actor_issuer_jwks, settings.actor_issuer),
        lookup=lookup or IdentityLookup(bus),
        records_per_message=settings.chunk_size,
    )
    register_routes(bus, deps)
    return assemble(bus, storage)
