"""A term end driven over the broker, as the school management application would, with its progress."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from hocba import demo_data
from hocba.commands.pki import enrol, open_pki
from hocba.staff import Staff
from hocba.watch import Watch
from shared.contracts.archive import RecordsArchived
from shared.contracts.grades import AssessmentsRecorded, CloseYear, RecordAssessments, RecordsReady
from shared.contracts.grades import CloseTerm, ConductRecorded, RecordConduct, TermChanged
from shared.contracts.identity import RegisterStudents, StudentsRegistered
from shared.contracts.signing import (
    BatchCompleted,
    BatchProgress,
    BatchRefused,
    RecordsCompleted,
    RecordsReceived,
    RequestSignBatch,
)
from shared.contracts.sync import RecordsDelivered
from shared.auth import IssuerKey
from shared.messaging import make_broker
from shared.settings import Settings

#: The stages in order, with what each counts.
STAGES = (
    ("register", "students registered"),
    ("assess", "assessments recorded"),
    ("assemble", "records assembled"),
    ("sign", "records signed"),
    ("archive", "records archived"),
    ("deliver", "records delivered"),
)

Progress = Callable[[str, int, int], None]


@dataclass
class StageResult:
    name: str
    what: str
    count: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Counts:
    """What the watch has seen, deduplicated, since the run began."""

    students: dict[str, dict[str, str]] = field(default_factory=dict)  # school -> ref -> class
    assessments: dict[str, int] = field(default_factory=dict)  # source message -> entries
    homeroom: dict[str, int] = field(default_factory=dict)  # source message -> homeroom entries
    terms_closed: set[tuple[str, int]] = field(default_factory=set)  # (school, term)
    ready: set[tuple[str, int]] = field(default_factory=set)
    received: dict[str, int] = field(default_factory=dict)
    batches_done: set[str] = field(default_factory=set)
    batch_signed: dict[str, int] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # batch -> why signing refused it
    signed: set[tuple[str, int]] = field(default_factory=set)
    archived: set[tuple[str, int]] = field(default_factory=set)
    delivered: set[tuple[str, int]] = field(default_factory=set)

    def value(self, stage: str) -> int:
        return {
            "register": sum(len(refs) for refs in self.students.values()),
            "assess": sum(self.assessments.values()),
            "assemble": min(len(self.ready), sum(self.received.values())),
            "sign": max(len(self.signed), sum(self.batch_signed.values())),
            "archive": len(self.archived),
            "deliver": len(self.delivered),
        }[stage]


class StageTimeout(RuntimeError):
    pass


class SigningRefused(RuntimeError):
    pass


class TermEnd:
    """Roster → assessments → close year → one-click signing → archive → ministry, for N schools."""

    def __init__(
        self,
        settings: Settings,
        issuer: IssuerKey,
        schools: int,
        students: int,
        progress: Progress = lambda stage, done, total: None,
        stage_timeout: float = 600.0,
    ) -> None:
        self.settings = settings
        self.schools = demo_data.schools(schools)
        self.students_per_school = students
        self.progress = progress
        self.stage_timeout = stage_timeout
        self.counts = Counts()
        self.staff = Staff(issuer)
        self.results: list[StageResult] = []
        self.broker, self.bus, _ = make_broker(settings, CollectorRegistry(), "term-end")
        self.watch = Watch(settings.amqp_url, settings.names())
        self._changed = asyncio.Event()

    @property
    def total_students(self) -> int:
        return len(self.schools) * self.students_per_school

    def expected_entries(self) -> int:
        return self.total_students * len(demo_data.SUBJECTS) * 2

    def _on(self, update: Callable[[Any], object]) -> Callable[[Any], None]:
        def handler(message: Any) -> None:
            update(message)
            self._changed.set()

        return handler

    def _watch_counts(self) -> None:
        c = self.counts

        def registered(m: StudentsRegistered) -> None:
            for s in m.students:
                c.students.setdefault(s.enrolment.school_code, {})[s.student_ref] = s.enrolment.class_name

        watch = self.watch
        watch.on(StudentsRegistered, self._on(registered))
        watch.on(AssessmentsRecorded, self._on(lambda m: c.assessments.__setitem__(m.source_message_id, m.entries)))
        watch.on(ConductRecorded, self._on(lambda m: c.homeroom.__setitem__(m.source_message_id, m.entries)))
        watch.on(
            TermChanged,
            self._on(lambda m: m.state == "closed" and c.terms_closed.add((m.school_code, m.term))),
        )
        watch.on(RecordsReady, self._on(lambda m: c.ready.update(keys(m.records))))
        watch.on(RecordsReceived, self._on(lambda m: c.received.__setitem__(m.source_message_id, m.count)))
        # "records signed" counts the principals' one-click batches (each record once, not per role).
        watch.on(
            BatchProgress,
            self._on(lambda m: m.role != "homeroom_teacher" and c.batch_signed.__setitem__(m.batch_id, m.records_signed)),
        )
        watch.on(BatchRefused, self._on(lambda m: c.refused.__setitem__(m.batch_id, f"{m.code}: {m.reason}")))
        watch.on(BatchCompleted, self._on(lambda m: c.batches_done.add(m.batch_id)))
        watch.on(RecordsCompleted, self._on(lambda m: c.signed.update(keys(s.record for s in m.records))))
        watch.on(RecordsArchived, self._on(lambda m: c.archived.update(keys(m.records))))
        watch.on(RecordsDelivered, self._on(lambda m: c.delivered.update(keys(m.deliveries))))

    async def _until(self, stage: str, total: int, done: Callable[[], bool] | None = None) -> None:
        """Wait until `stage` counts `total` (and `done` holds), reporting progress as it grows."""
        deadline = time.monotonic() + self.stage_timeout
        while True:
            value = self.counts.value(stage)
            self.progress(stage, value, total)
            if value >= total and (done is None or done()):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StageTimeout(
                    f"stage '{stage}' stalled at {value} of {total} after {self.stage_timeout:.0f}s"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 1.0))

    def _signing_settled(self, batches: list[str]) -> bool:
        """True once every batch completed; a refused one ends the run with its reason."""
        refused = [self.counts.refused[b] for b in batches if b in self.counts.refused]
        if refused:
            raise SigningRefused(f"signing refused: {refused[0]}")
        return all(b in self.counts.batches_done for b in batches)

    async def _stage(self, stage: str, total: int, start: Callable[[], Awaitable[None]], done=None) -> None:
        began = time.monotonic()
        await start()
        await self._until(stage, total, done)
        what = dict(STAGES)[stage]
        self.results.append(StageResult(stage, what, self.counts.value(stage), time.monotonic() - began))

    async def run(self) -> list[StageResult]:
        self._watch_counts()
        await self.watch.start()
        await self.broker.connect()
        try:
            await self._run()
        finally:
            await self.broker.stop()
            await self.watch.stop()
        return self.results

    async def _run(self) -> None:
        n = self.total_students
        size = self.settings.chunk_size
        rosters = [
            (school, demo_data.roster(school, self.students_per_school, i * self.students_per_school))
            for i, school in enumerate(self.schools)
        ]

        async def register() -> None:
            for school, roster in rosters:
                actor = self.staff.school_admin(school.code)
                for part in demo_data.chunks(roster, size):
                    await self.bus.publish(RegisterStudents(students=part, actor=actor))

        await self._stage("register", n, register)

        async def assess() -> None:
            # Each subject teacher enters their subject for a class, as the school app sends it;
            # each homeroom teacher enters their class's conduct, absences and comments.
            for school in self.schools:
                class_of = self.counts.students.get(school.code, {})
                by_class_subject: dict[tuple[str, str], list] = {}
                for entry in demo_data.gradebook(sorted(class_of)):
                    by_class_subject.setdefault((class_of[entry.student_ref], entry.subject), []).append(entry)
                classes = sorted(set(class_of.values()))
                for (_, subject), entries in sorted(by_class_subject.items()):
                    actor = self.staff.subject_teacher(school.code, subject, classes)
                    await self.bus.publish(
                        RecordAssessments(
                            school_code=school.code,
                            school_year=demo_data.SCHOOL_YEAR,
                            entries=entries,
                            actor=actor,
                        )
                    )
                by_class: dict[str, list] = {}
                for conduct in demo_data.homeroom(sorted(class_of)):
                    by_class.setdefault(class_of[conduct.student_ref], []).append(conduct)
                for class_name, conducts in sorted(by_class.items()):
                    await self.bus.publish(
                        RecordConduct(
                            school_code=school.code,
                            school_year=demo_data.SCHOOL_YEAR,
                            entries=conducts,
                            actor=self.staff.homeroom_teacher(school.code, class_name),
                        )
                    )
            # Every entry stored, the principal locks both terms: the year record uses locked entries only.
            homeroom_total = self.total_students * 2
            await self._until(
                "assess", self.expected_entries(), done=lambda: sum(self.counts.homeroom.values()) >= homeroom_total
            )
            for school in self.schools:
                for term in (1, 2):
                    await self.bus.publish(
                        CloseTerm(
                            school_code=school.code,
                            school_year=demo_data.SCHOOL_YEAR,
                            term=term,
                            actor=self.staff.principal(school.code),
                        )
                    )
            await self._until(
                "assess",
                self.expected_entries(),
                done=lambda: len(self.counts.terms_closed) >= 2 * len(self.schools),
            )

        await self._stage("assess", self.expected_entries(), assess)

        async def close() -> None:
            for school in self.schools:
                await self.bus.publish(
                    CloseYear(
                        school_code=school.code,
                        school_year=demo_data.SCHOOL_YEAR,
                        actor=self.staff.principal(school.code),
                    )
                )

        await self._stage("assemble", n, close)

        principal_batches: list[str] = []

        async def sign() -> None:
            # Each homeroom teacher signs their class; then each principal signs the whole school in
            # one click, and the school's seal follows the principal's signature (services/signing).
            pki = open_pki(self.settings.pki_dir or Settings().pki_path())
            enrol(pki, [(s.code, s.name, set(self.counts.students.get(s.code, {}).values())) for s in self.schools])
            homeroom: list[str] = []
            for school in self.schools:
                for class_name in sorted(set(self.counts.students.get(school.code, {}).values())):
                    request = RequestSignBatch(
                        school_code=school.code,
                        school_year=demo_data.SCHOOL_YEAR,
                        role="homeroom_teacher",
                        class_name=class_name,
                        actor=self.staff.homeroom_teacher(school.code, class_name),
                    )
                    homeroom.append(request.batch_id)
                    await self.bus.publish(request)
            await self._until("sign", 0, done=lambda: self._signing_settled(homeroom))
            for school in self.schools:
                request = RequestSignBatch(
                    school_code=school.code,
                    school_year=demo_data.SCHOOL_YEAR,
                    role="principal",
                    actor=self.staff.principal(school.code),
                )
                principal_batches.append(request.batch_id)
                await self.bus.publish(request)

        signing_began = time.monotonic()
        await self._stage("sign", n, sign, done=lambda: self._signing_settled(principal_batches))
        for stage in ("archive", "deliver"):
            await self._until(stage, n)
            self.results.append(
                StageResult(stage, dict(STAGES)[stage], self.counts.value(stage), time.monotonic() - signing_began)
            )


def keys(items: Iterable[Any]) -> list[tuple[str, int]]:
    return [(item.record_id, item.version) for item in items]
