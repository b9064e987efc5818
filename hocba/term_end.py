"""A term end driven over the broker, as the school management application would, with its progress.

Each command carries its sender's token for that one message, which lives minutes: the driver keeps
no more than `WINDOW` commands of a stage waiting for their announcement, so none waits in a queue
longer than its token lives, however large the term end.

The driver reads of each large announcement (a chunk of records, each with its document) only the
keys it counts (`ReadyKeys`, `CompletedKeys`, …): the documents are skipped, not decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from hocba import demo_data
from hocba.commands.pki import enrol, open_pki
from hocba.staff import Staff
from hocba.watch import Watch
from shared.auth import IssuerKey
from shared.contracts.archive import RecordsArchived
from shared.contracts.grades import (
    AssessmentsRecorded,
    CloseTerm,
    CloseYear,
    ConductRecorded,
    RecordAssessments,
    RecordConduct,
    RecordsReady,
    StudentTermConduct,
    SubjectTermScores,
    TermChanged,
    VersionKey,
)
from shared.contracts.identity import RegisterStudents, StudentRegistration, StudentsRegistered
from shared.contracts.signing import (
    BatchCompleted,
    BatchProgress,
    BatchRefused,
    ClassReviews,
    ConfirmReview,
    RecordsCompleted,
    RecordsReceived,
    RequestSignBatch,
    ReviewClasses,
    ReviewConfirmed,
)
from shared.contracts.sync import RecordsDelivered
from shared.errors import NoAnswer, Refused
from shared.messaging import Bus
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
TERMS = (1, 2)
#: Commands of one stage sent and not yet announced done, at most.
WINDOW = 200
#: Classes reviewed at once (each a review and a confirmation, asked and answered).
REVIEWS_AT_ONCE = 20

Progress = Callable[[str, int, int], None]
#: Told each milestone as it is reached: each stage's name as it ends ("register", "assess", "assemble",
#: "sign", "archive", "deliver"), and within signing "homeroom" (the classes' signing begins), "click" (the
#: first principal's click), "probe-signed", "probe-archived", "probe-delivered" (the school that clicks
#: alone first, when there is one) and "crowd-click" (the other principals' clicks).
Milestone = Callable[[str], None]


@dataclass(frozen=True)
class Cohort:
    """One school's students of one grade, their personal ids numbered from `first_serial`."""

    school: demo_data.School
    students: int
    first_serial: int


def cohorts(schools: Sequence[demo_data.School], students: int, first_serial: int = 0) -> list[Cohort]:
    """`students` in each school, numbered one school after the other."""
    return [Cohort(school, students, first_serial + i * students) for i, school in enumerate(schools)]


class _Keys(BaseModel):
    """What the driver reads of a large announcement: only what it counts; everything else is skipped."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class RecordKey(_Keys):
    record_id: str
    version: int


class ReadyKeys(_Keys):
    """`RecordsReady` without the documents."""

    school_code: str
    records: list[RecordKey]


class _SignedKey(_Keys):
    record: RecordKey


class CompletedKeys(_Keys):
    """`RecordsCompleted` without the documents and signatures."""

    records: list[_SignedKey]


class ArchivedKeys(_Keys):
    """`RecordsArchived` without the documents."""

    records: list[RecordKey]


class DeliveredKeys(_Keys):
    """`RecordsDelivered`, its keys only."""

    deliveries: list[RecordKey]


#: The large announcements and the view of each the driver decodes.
VIEWS: dict[type, type[BaseModel]] = {
    RecordsReady: ReadyKeys,
    RecordsCompleted: CompletedKeys,
    RecordsArchived: ArchivedKeys,
    RecordsDelivered: DeliveredKeys,
}


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
    ready: set[VersionKey] = field(default_factory=set)
    ready_by_school: dict[str, set[VersionKey]] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    batches_done: set[str] = field(default_factory=set)
    batch_signed: dict[str, int] = field(default_factory=dict)
    refused: dict[str, BatchRefused] = field(default_factory=dict)
    signed: set[VersionKey] = field(default_factory=set)
    archived: set[VersionKey] = field(default_factory=set)
    delivered: set[VersionKey] = field(default_factory=set)

    def value(self, stage: str) -> int:
        return {
            "register": sum(len(refs) for refs in self.students.values()),
            "assess": sum(self.assessments.values()),
            "assemble": min(len(self.ready), sum(self.received.values())),
            "sign": max(len(self.signed), sum(self.batch_signed.values())),
            "archive": len(self.archived),
            "deliver": len(self.delivered),
        }[stage]

    def classes(self, school: str) -> list[str]:
        return sorted(set(self.students.get(school, {}).values()))

    # --- what each announcement adds ---------------------------------------------------------

    def students_registered(self, m: StudentsRegistered) -> None:
        for s in m.students:
            self.students.setdefault(s.enrolment.school_code, {})[s.student_ref] = s.enrolment.class_name

    def assessments_recorded(self, m: AssessmentsRecorded) -> None:
        self.assessments[m.source_message_id] = m.entries

    def conduct_recorded(self, m: ConductRecorded) -> None:
        self.homeroom[m.source_message_id] = m.entries

    def term_changed(self, m: TermChanged) -> None:
        if m.state == "closed":
            self.terms_closed.add((m.school_code, m.term))

    def records_ready(self, m: ReadyKeys) -> None:
        found = keys(m.records)
        self.ready.update(found)
        self.ready_by_school.setdefault(m.school_code, set()).update(found)

    def records_received(self, m: RecordsReceived) -> None:
        self.received[m.source_message_id] = m.count

    def batch_progress(self, m: BatchProgress) -> None:
        # "records signed" counts the principals' one-click batches (each record once, not per role).
        if m.role != "homeroom_teacher":
            self.batch_signed[m.batch_id] = m.records_signed

    def batch_refused(self, m: BatchRefused) -> None:
        self.refused[m.batch_id] = m

    def batch_completed(self, m: BatchCompleted) -> None:
        self.batches_done.add(m.batch_id)

    def records_completed(self, m: CompletedKeys) -> None:
        self.signed.update(keys(s.record for s in m.records))

    def records_archived(self, m: ArchivedKeys) -> None:
        self.archived.update(keys(m.records))

    def records_delivered(self, m: DeliveredKeys) -> None:
        self.delivered.update(keys(m.deliveries))

    def school_reached(self, school_code: str, reached: set[VersionKey]) -> bool:
        """Every record of the school assembled so far is in `reached` (signed, archived or delivered)."""
        mine = self.ready_by_school.get(school_code, set())
        return bool(mine) and mine <= reached


class StageTimeout(NoAnswer):
    """A stage stopped growing before it reached its total."""


class TermEnd:
    """Roster → assessments → close year → review → one-click signing → archive → ministry, for N schools.

    `schools` is a number of grade-6 schools of `students` each, or the cohorts themselves (schools of
    any grade and size). When `probe` names one of the schools, its principal clicks alone first and
    the run waits until its records are delivered before the other principals click: the one-school
    latency, measured on a quiet system with every class's homeroom signature in place.
    """

    def __init__(
        self,
        settings: Settings,
        issuer: IssuerKey,
        schools: int | Sequence[Cohort],
        students: int = 0,
        progress: Progress = lambda stage, done, total: None,
        stage_timeout: float = 600.0,
    ) -> None:
        self.settings = settings
        self.cohorts = cohorts(demo_data.schools(schools), students) if isinstance(schools, int) else list(schools)
        self.schools = [c.school for c in self.cohorts]
        self.progress = progress
        self.stage_timeout = stage_timeout
        self.probe: str | None = None
        self.milestone: Milestone = lambda _: None
        self.counts = Counts()
        self.staff = Staff(issuer)
        self.results: list[StageResult] = []
        self.bus = Bus(settings, "term-end")
        self.watch = Watch(settings.amqp_url, settings.names())
        self.principal_batches: list[str] = []
        #: Sent so far (students to register, assessment and conduct commands), to pace them (`WINDOW`).
        self.sent = {"register": 0, "assess": 0, "conduct": 0}
        self._changed = asyncio.Event()

    @property
    def total_students(self) -> int:
        return sum(c.students for c in self.cohorts)

    def expected_entries(self) -> int:
        return sum(c.students * len(demo_data.subjects(c.school.grade)) for c in self.cohorts) * len(TERMS)

    async def run(self) -> list[StageResult]:
        self._watch_counts()
        await self.watch.start()
        await self.bus.broker.connect()
        try:
            await self._run()
        finally:
            await self.bus.broker.stop()
            await self.watch.stop()
        return self.results

    async def _run(self) -> None:
        n = self.total_students
        await self._stage("register", n, self._register)
        await self._stage("assess", self.expected_entries(), self._assess)
        await self._stage("assemble", n, self._close_year)
        await self._review()
        signing_began = time.monotonic()
        await self._stage("sign", n, self._sign, done=lambda: self._signing_settled(self.principal_batches))
        for stage in ("archive", "deliver"):
            await self._until(stage, n)
            self._record(stage, time.monotonic() - signing_began)

    # --- following the announcements ---------------------------------------------------------

    def _watch_counts(self) -> None:
        c = self.counts
        updates: dict[type, Callable[[Any], None]] = {
            StudentsRegistered: c.students_registered,
            AssessmentsRecorded: c.assessments_recorded,
            ConductRecorded: c.conduct_recorded,
            TermChanged: c.term_changed,
            RecordsReady: c.records_ready,
            RecordsReceived: c.records_received,
            BatchProgress: c.batch_progress,
            BatchRefused: c.batch_refused,
            BatchCompleted: c.batch_completed,
            RecordsCompleted: c.records_completed,
            RecordsArchived: c.records_archived,
            RecordsDelivered: c.records_delivered,
        }
        for message, update in updates.items():
            self.watch.on(message, self._noticed(update), VIEWS.get(message))

    def _noticed(self, update: Callable[[Any], None]) -> Callable[[Any], None]:
        def handler(message: Any) -> None:
            update(message)
            self._changed.set()

        return handler

    async def _until(self, stage: str, total: int, done: Callable[[], bool] | None = None) -> None:
        """Wait until `stage` counts `total` (and `done` holds), reporting progress as it grows."""
        await self._wait(stage, total, lambda: self.counts.value(stage) >= total and (done is None or done()))

    async def _paced(self, stage: str, total: int, backlog: Callable[[], int], window: int = WINDOW) -> None:
        """Wait while `window` or more commands (or items) of `stage` sent wait for their announcement."""
        await self._wait(stage, total, lambda: backlog() < window)

    async def _wait(self, stage: str, total: int, reached: Callable[[], bool]) -> None:
        """Wait until `reached` holds, reporting the progress of `stage` (of `total`) as it grows."""
        deadline = time.monotonic() + self.stage_timeout
        while True:
            self._changed.clear()  # before looking: what arrives while we wait wakes us
            value = self.counts.value(stage)
            self.progress(stage, value, total)
            if reached():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StageTimeout(f"stage '{stage}' stalled at {value} of {total} after {self.stage_timeout:.0f}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 1.0))

    def _signing_settled(self, batches: list[str]) -> bool:
        """True once every batch completed; a refused one ends the run with signing's reason."""
        for batch in batches:
            if refused := self.counts.refused.get(batch):
                raise Refused(f"signing refused batch {batch} ({refused.code}): {refused.reason}", reason=refused.code)
        return all(b in self.counts.batches_done for b in batches)

    async def _stage(
        self, stage: str, total: int, start: Callable[[], Awaitable[None]], done: Callable[[], bool] | None = None
    ) -> None:
        began = time.monotonic()
        await start()
        await self._until(stage, total, done)
        self._record(stage, time.monotonic() - began)

    def _record(self, stage: str, seconds: float) -> None:
        self.results.append(StageResult(stage, dict(STAGES)[stage], self.counts.value(stage), seconds))
        self.milestone(stage)

    # --- the stages --------------------------------------------------------------------------

    def rosters(self) -> list[tuple[demo_data.School, list[StudentRegistration]]]:
        """Each school with the students its roster registers (the same every run)."""
        return [(c.school, demo_data.roster(c.school, c.students, c.first_serial)) for c in self.cohorts]

    async def _register(self) -> None:
        """Each school's administrator registers its roster."""
        for school, roster in self.rosters():
            admin = self.staff.school_admin(school.code)
            for part in demo_data.chunks(roster, self.settings.chunk_size):
                await self._paced("register", self.total_students, self._unregistered, WINDOW * self.settings.chunk_size)
                await self.bus.publish(admin.signs(RegisterStudents(students=part)))
                self.sent["register"] += len(part)

    def _unregistered(self) -> int:
        """Students sent for registration and not yet announced registered."""
        return self.sent["register"] - self.counts.value("register")

    async def _assess(self) -> None:
        """Teachers enter every assessment and conduct; once all are stored the principals lock both terms."""
        for school in self.schools:
            await self._enter_assessments(school)
            await self._enter_conduct(school)
        homeroom_total = self.total_students * len(TERMS)
        await self._until(
            "assess", self.expected_entries(), done=lambda: sum(self.counts.homeroom.values()) >= homeroom_total
        )
        await self._close_terms()
        await self._until(
            "assess", self.expected_entries(), done=lambda: len(self.counts.terms_closed) >= len(TERMS) * len(self.schools)
        )

    async def _enter_assessments(self, school: demo_data.School) -> None:
        """Each subject teacher enters their subject for a class, as the school app sends it."""
        class_of = self.counts.students.get(school.code, {})
        by_class_subject: dict[tuple[str, str], list[SubjectTermScores]] = {}
        for entry in demo_data.gradebook(sorted(class_of), grade=school.grade):
            by_class_subject.setdefault((class_of[entry.student_ref], entry.subject), []).append(entry)
        for (class_name, subject), entries in sorted(by_class_subject.items()):
            # The subject's teacher of that class (a token naming every class of a large school would not fit).
            teacher = self.staff.subject_teacher(school.code, subject, [class_name])
            await self._paced("assess", self.expected_entries(), lambda: self.sent["assess"] - len(self.counts.assessments))
            await self.bus.publish(
                teacher.signs(RecordAssessments(school_code=school.code, school_year=demo_data.SCHOOL_YEAR, entries=entries))
            )
            self.sent["assess"] += 1

    async def _enter_conduct(self, school: demo_data.School) -> None:
        """Each homeroom teacher enters their class's conduct, absences and comments."""
        class_of = self.counts.students.get(school.code, {})
        by_class: dict[str, list[StudentTermConduct]] = {}
        for conduct in demo_data.homeroom(sorted(class_of), grade=school.grade):
            by_class.setdefault(class_of[conduct.student_ref], []).append(conduct)
        for class_name, conducts in sorted(by_class.items()):
            teacher = self.staff.homeroom_teacher(school.code, class_name)
            await self._paced("assess", self.expected_entries(), lambda: self.sent["conduct"] - len(self.counts.homeroom))
            await self.bus.publish(
                teacher.signs(RecordConduct(school_code=school.code, school_year=demo_data.SCHOOL_YEAR, entries=conducts))
            )
            self.sent["conduct"] += 1

    async def _close_terms(self) -> None:
        """The principals lock both terms: the year record uses locked entries only."""
        for school in self.schools:
            principal = self.staff.principal(school.code)
            for term in TERMS:
                await self.bus.publish(
                    principal.signs(CloseTerm(school_code=school.code, school_year=demo_data.SCHOOL_YEAR, term=term))
                )

    async def _close_year(self) -> None:
        for school in self.schools:
            principal = self.staff.principal(school.code)
            await self.bus.publish(principal.signs(CloseYear(school_code=school.code, school_year=demo_data.SCHOOL_YEAR)))

    async def _sign(self) -> None:
        """Each homeroom teacher signs their class; then each principal signs the whole school in one click.

        The school's seal follows the principal's signature (services/signing).
        """
        pki = open_pki(self.settings.pki_dir or Settings().pki_path())
        enrol(pki, [(s.code, s.name, set(self.counts.classes(s.code))) for s in self.schools])
        self.milestone("homeroom")
        homeroom = await self._homeroom_batches()
        await self._until("sign", 0, done=lambda: self._signing_settled(homeroom))
        self.milestone("click")
        if self.probe is not None:
            await self._probe(self.probe)
            self.milestone("crowd-click")
        for school in self.schools:
            if school.code != self.probe:
                await self._click(school.code)

    async def _click(self, school_code: str) -> None:
        """The principal signs the whole school in one click."""
        request = self.staff.principal(school_code).signs(
            RequestSignBatch(school_code=school_code, school_year=demo_data.SCHOOL_YEAR, role="principal")
        )
        self.principal_batches.append(request.batch_id)
        await self.bus.publish(request)

    async def _probe(self, school_code: str) -> None:
        """One school's click alone: until its records are signed and sealed, archived and delivered."""
        await self._click(school_code)
        c = self.counts
        for reached, milestone in ((c.signed, "probe-signed"), (c.archived, "probe-archived"), (c.delivered, "probe-delivered")):
            await self._wait("sign", self.total_students, functools.partial(c.school_reached, school_code, reached))
            self.milestone(milestone)

    async def _review(self) -> None:
        """Each homeroom teacher reviews their class and confirms what the review shows, as a school does before
        anyone signs: signing signs a class only as its review confirmed it."""
        classes = [(school.code, c) for school in self.schools for c in self.counts.classes(school.code)]
        for start in range(0, len(classes), REVIEWS_AT_ONCE):
            await asyncio.gather(*(self._confirm_review(*c) for c in classes[start : start + REVIEWS_AT_ONCE]))

    async def _confirm_review(self, school_code: str, class_name: str) -> None:
        teacher = self.staff.homeroom_teacher(school_code, class_name)
        year = demo_data.SCHOOL_YEAR
        asked = ReviewClasses(school_code=school_code, school_year=year, class_name=class_name)
        for shown in (await self.bus.request(teacher.signs(asked), ClassReviews, self.stage_timeout)).classes:
            fingerprint = shown.fingerprint
            seen = ConfirmReview(school_code=school_code, school_year=year, class_name=class_name, reviewed=fingerprint)
            await self.bus.request(teacher.signs(seen), ReviewConfirmed, self.stage_timeout)

    async def _homeroom_batches(self) -> list[str]:
        batches = []
        for school in self.schools:
            for class_name in self.counts.classes(school.code):
                request = self.staff.homeroom_teacher(school.code, class_name).signs(
                    RequestSignBatch(
                        school_code=school.code,
                        school_year=demo_data.SCHOOL_YEAR,
                        role="homeroom_teacher",
                        class_name=class_name,
                    )
                )
                batches.append(request.batch_id)
                await self.bus.publish(request)
        return batches


def keys(items: Iterable[Any]) -> list[VersionKey]:
    return [(item.record_id, item.version) for item in items]
