"""Reads of personal data, as the service that answers them logs and counts them.

Every look-up, find, explanation, export or print of a student's data is an `AccessEntry` in the
answering service's `access_log` collection (written by its repository), and a count in
`hocba_personal_data_reads_total{role}`. One subject reading much more than anyone should in a
short time (a copied token, a scraping script) is counted in
`hocba_personal_data_unusual_reads_total{role}`, which an alert watches. Services read in bulk by
design (grades assembling a school's records) and are not held to that limit.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter

from shared.auth import Actor
from shared.contracts.access import AccessEntry, Action
from shared.contracts.base import utcnow

ROLES = ("subject_teacher", "homeroom_teacher", "principal", "school_admin", "operator", "service")
#: Reads by one subject within `WINDOW_SECONDS` above which the reads are unusual.
UNUSUAL_READS = 500
WINDOW_SECONDS = 600.0


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
        for role in ROLES:
            self.reads.labels(role)
            self.unusual.labels(role)


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
    return next((r for r in ROLES if r in actor.roles), "service")
