"""Reads of personal data, as the service that answers them logs and counts them.

Every look-up, find, explanation, export or print of a student's data is an `AccessEntry` in the
answering service's `access_log` collection (an `AccessLogStore`: `MongoAccessLog`, or
`InMemoryAccessLog` in tests; insert-only, by student reference), and a count in
`hocba_personal_data_reads_total{role}`. One subject reading much more than anyone should in a
short time (a copied token, a scraping script) is counted in
`hocba_personal_data_unusual_reads_total{role}`, which an alert watches. Services read in bulk by
design (grades assembling a school's records) and are not held to that limit.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter
from pymongo.asynchronous.database import AsyncDatabase

from shared.auth import Actor
from shared.contracts.access import AccessEntry, Action
from shared.contracts.base import utcnow
from shared.errors import Forbidden
from shared.mongo import Index
from shared.observability import from_zero

ROLES = ("subject_teacher", "homeroom_teacher", "principal", "school_admin", "operator", "service", "public")
#: Whoever opens a printed copy's address on the public verification page: no sign-in, one subject for all, so
#: unusual volume from the page (an attempt to walk the log) shows as unusual reads by `public`.
PUBLIC_READER = Actor(subject="public verification page", roles=frozenset(), school_code="")
#: Reads by one subject within `WINDOW_SECONDS` above which the reads are unusual.
UNUSUAL_READS = 500
WINDOW_SECONDS = 600.0

ACCESS_LOG = "access_log"
#: The access log's index, added to the indexes of each service that keeps one.
ACCESS_LOG_INDEXES = [Index(ACCESS_LOG, [("student_ref", 1), ("at", 1)], name="student_at")]


def authorise_access_list(actor: Actor, schools: Iterable[str]) -> None:
    """Who read a student is told to operators, and to the principal or records administrator of a school the
    student belongs to (`schools`, as the answering service knows them)."""
    if actor.has("operator"):
        return
    leads = actor.has("principal") or actor.has("school_admin")
    if not (leads and actor.school_code and actor.school_code in set(schools)):
        raise Forbidden(
            f"{actor.subject} may not see who read this student: only an operator, or the principal or records "
            "administrator of the student's school, may"
        )


class AccessLogStore(Protocol):
    """A service's access log: insert-only, read by student."""

    async def add(self, entries: list[AccessEntry]) -> None:
        """Keep these reads in the access log."""

    async def of(self, student_ref: str, limit: int) -> list[AccessEntry]:
        """The first `limit` reads of a student, oldest first."""


class MongoAccessLog:
    """The `access_log` collection of a service's MongoDB database."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.collection = db[ACCESS_LOG]

    async def add(self, entries: list[AccessEntry]) -> None:
        if entries:
            await self.collection.insert_many([entry.model_dump() for entry in entries], ordered=False)

    async def of(self, student_ref: str, limit: int) -> list[AccessEntry]:
        cursor = self.collection.find({"student_ref": student_ref}, {"_id": 0}).sort([("at", 1), ("_id", 1)])
        return [AccessEntry.model_validate(doc) async for doc in cursor.limit(limit)]


class InMemoryAccessLog:
    """For unit and wiring tests: the same promises, in a list (reads of the same instant in the order kept)."""

    def __init__(self) -> None:
        self._entries: list[AccessEntry] = []

    async def add(self, entries: list[AccessEntry]) -> None:
        self._entries += entries

    async def of(self, student_ref: str, limit: int) -> list[AccessEntry]:
        return sorted((e for e in self._entries if e.student_ref == student_ref), key=lambda e: e.at)[:limit]


class AccessMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.reads = Counter(
            "hocba_personal_data_reads_total",
            "Students' personal data or records read (looked up, found, explained, exported, printed), by reader role.",
            ["role"],
            registry=registry,
        )
        self.unusual = Counter(
            "hocba_personal_data_unusual_reads_total",
            "Reads by a subject who read more than the unusual-volume limit within the window, by reader role.",
            ["role"],
            registry=registry,
        )
        from_zero(self.reads, ROLES)
        from_zero(self.unusual, ROLES)


class AccessRecorder:
    """Makes the access-log entries of a service's reads, counts them, and notices unusual volume by one subject."""

    def __init__(
        self,
        service: str,
        registry: CollectorRegistry,
        unusual_reads: int = UNUSUAL_READS,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.metrics = AccessMetrics(registry)
        self.unusual_reads = unusual_reads
        self.window_seconds = window_seconds
        self.clock = clock
        self.monotonic = monotonic
        self._recent: dict[str, deque[tuple[float, int]]] = defaultdict(deque)

    def entries(
        self, actor: Actor, action: Action, student_refs: Sequence[str], purpose: str = "", record_id: str = ""
    ) -> list[AccessEntry]:
        """The log entries of `actor` reading these students (one entry a student), counted as they are made."""
        at = self.clock()
        entries = [
            AccessEntry(
                at=at,
                service=self.service,
                subject=actor.subject,
                roles=sorted(actor.roles),
                school_code=actor.school_code,
                action=action,
                student_ref=ref,
                record_id=record_id,
                purpose=purpose,
            )
            for ref in student_refs
        ]
        self._count(actor, len(entries))
        return entries

    def _count(self, actor: Actor, reads: int) -> None:
        role = _main_role(actor)
        self.metrics.reads.labels(role).inc(reads)
        if actor.has("service") or not reads:
            return
        now = self.monotonic()
        recent = self._recent[actor.subject]
        recent.append((now, reads))
        while recent and recent[0][0] < now - self.window_seconds:
            recent.popleft()
        total = sum(n for _, n in recent)
        if total > self.unusual_reads:
            self.metrics.unusual.labels(role).inc(min(reads, total - self.unusual_reads))


def _main_role(actor: Actor) -> str:
    """The role a read is counted under: the first of the actor's roles in `ROLES` order."""
    if not actor.roles:
        return "public"
    return next((r for r in ROLES if r in actor.roles), "service")
