"""grades and signing together, in memory, over the messages they exchange: a record found incomplete at review
is completed after the year's close and signed.

The year is closed with s1's term-I mathematics missing; signing keeps its version 1 and refuses to sign it. The
principal reopens term I (which reopens the year), the teacher enters the missing mark, the principal closes the
term and the year again: grades stores the complete record in place of the version nobody signed and announces
it; signing replaces the version it holds; the class's review no longer stands; once its homeroom teacher confirms
it again, the homeroom teacher and the principal sign it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.grades import handlers as grades
from services.grades.app import seal_with
from services.grades.handlers import Deps as GradesDeps
from services.grades.metrics import GradesMetrics
from services.grades.repository import InMemoryGradesRepository
from services.signing import handlers as signing
from shared.access import AccessRecorder, InMemoryAccessLog
from shared.auth import Actor
from shared.contracts.grades import CloseTerm, CloseYear, RecordAssessments, RecordConduct, RecordsReady, ReopenTerm
from shared.contracts.keys import GradesKeyRotationProgress
from shared.contracts.signing import (
    ChunkSigned,
    ClassReviews,
    ConfirmReview,
    RecordsCompleted,
    RecordsReceived,
    RequestSignBatch,
    ReviewClasses,
    SignWork,
)
from tests.support import idle_rotation
from tests.unit.grades.builders import enrolled as enrolled_student
from tests.unit.grades.builders import full_year, homeroom
from tests.unit.grades.conftest import FakeLookup, Published

from .trust import GRADES, SCHOOL, YEAR

MATHS_TERM_1 = ("Toán", 1)
CLASS = "6A1"


def grades_deps(trust) -> GradesDeps:
    registry = CollectorRegistry()
    keys = trust.issuer.public_keys("grades")
    return GradesDeps(
        repo=InMemoryGradesRepository(),
        metrics=GradesMetrics(registry),
        issuer_keys=keys,
        lookup=FakeLookup({"s1", "s2"}),
        records_per_message=10,
        sealer=seal_with(lambda: trust.signers.signer_for(GRADES)),
        access=AccessRecorder("grades", registry),
        access_log=InMemoryAccessLog(),
        rotation=idle_rotation(GradesKeyRotationProgress, keys, registry),
        publish=Published(),
    )


def teacher(trust):
    everything = {e.subject for e in full_year("s1")}
    actor = Actor(
        subject="gv-toan",
        roles=frozenset({"subject_teacher"}),
        school_code=SCHOOL,
        subjects=frozenset(everything),
        classes=frozenset({CLASS}),
    )
    return trust.staff.person(actor)


async def ready_to_signing(grades_deps: GradesDeps, deps) -> list[RecordsReceived]:
    """Hand what grades announced so far to signing, as the bus does."""
    received = []
    for message in grades_deps.publish:
        if isinstance(message, RecordsReady):
            received += [m for m in (await signing.receive_records(message, deps)).publish]
    grades_deps.publish.clear()
    return received


async def close(trust, g: GradesDeps, *terms: int, suffix: str = "") -> None:
    principal = trust.staff.principal(SCHOOL)
    for term in terms:
        command = CloseTerm(message_id=f"close-{term}{suffix}", school_code=SCHOOL, school_year=YEAR, term=term)
        await grades.close_term(principal.signs(command), g)
    year = CloseYear(message_id=f"year{suffix}", school_code=SCHOOL, school_year=YEAR)
    await grades.close_year(principal.signs(year), g)


async def sign(deps, request: RequestSignBatch) -> list[RecordsCompleted | ChunkSigned]:
    planned = await signing.plan_batch(request, deps)
    return [m for w in planned.publish if isinstance(w, SignWork) for m in (await signing.sign_chunk(w, deps)).publish]


async def review_and_confirm(trust, deps) -> ClassReviews:
    homeroom_teacher = trust.staff.homeroom_teacher(SCHOOL, CLASS)
    ask = ReviewClasses(school_code=SCHOOL, school_year=YEAR, class_name=CLASS)
    shown = (await signing.review_classes(homeroom_teacher.signs(ask), deps)).reply
    [seen] = shown.classes
    confirm = ConfirmReview(school_code=SCHOOL, school_year=YEAR, class_name=CLASS, reviewed=seen.fingerprint)
    await signing.confirm_review(homeroom_teacher.signs(confirm), deps)
    return shown


async def test_an_incomplete_record_is_completed_after_the_years_close_and_then_signed(trust, deps):
    g = grades_deps(trust)
    await g.repo.enrol([enrolled_student("s1"), enrolled_student("s2")])
    for ref, skip in (("s1", {MATHS_TERM_1}), ("s2", set())):
        subjects = RecordAssessments(
            school_code=SCHOOL, school_year=YEAR, entries=full_year(ref, skip=frozenset(skip)), message_id=f"gb-{ref}"
        )
        await grades.record_assessments(teacher(trust).signs(subjects), g)
        conduct = RecordConduct(school_code=SCHOOL, school_year=YEAR, entries=homeroom(ref), message_id=f"hr-{ref}")
        await grades.record_conduct(trust.staff.homeroom_teacher(SCHOOL, CLASS).signs(conduct), g)
    await close(trust, g, 1, 2)
    await ready_to_signing(g, deps)

    # Review finds the incomplete record; signing refuses it.
    shown = await review_and_confirm(trust, deps)
    [incomplete] = shown.classes[0].incomplete
    assert [(m.subject, m.term) for m in incomplete.missing] == [MATHS_TERM_1]
    by_class = RequestSignBatch(school_code=SCHOOL, school_year=YEAR, role="homeroom_teacher", class_name=CLASS)
    before = await sign(deps, trust.staff.homeroom_teacher(SCHOOL, CLASS).signs(by_class))
    assert sum(m.signed for m in before if isinstance(m, ChunkSigned)) == 1, "s2 only: s1's record waits for its fix"
    assert await deps.repo.signatures([(incomplete.record_id, 1)]) == {}

    # The fix: term I reopened (the year with it), the missing mark entered, term I and the year closed again.
    reason = "thiếu điểm Toán học kỳ I"
    reopen = ReopenTerm(message_id="reopen-1", school_code=SCHOOL, school_year=YEAR, term=1, reason=reason)
    await grades.reopen_term(trust.staff.principal(SCHOOL).signs(reopen), g)
    missing = [e for e in full_year("s1") if (e.subject, e.term) == MATHS_TERM_1]
    entered = RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=missing, message_id="gb-s1-fix")
    assert (await grades.record_assessments(teacher(trust).signs(entered), g)).reply.new == 1
    await close(trust, g, 1, suffix="-again")
    [received] = await ready_to_signing(g, deps)
    assert (received.count, received.refused) == (2, [])

    # signing holds the complete version in place of the incomplete one; the class is reviewed again.
    shown = await review_and_confirm(trust, deps)
    [seen] = shown.classes
    assert seen.status == "changed-since-review" and seen.incomplete == []
    again = RequestSignBatch(school_code=SCHOOL, school_year=YEAR, role="homeroom_teacher", class_name=CLASS)
    signed = await sign(deps, trust.staff.homeroom_teacher(SCHOOL, CLASS).signs(again))
    assert sum(m.signed for m in signed if isinstance(m, ChunkSigned)) == 1, "s1's complete record"
    click = RequestSignBatch(school_code=SCHOOL, school_year=YEAR, role="principal")
    clicked = await sign(deps, trust.staff.principal(SCHOOL).signs(click))
    completed = [r for m in clicked if isinstance(m, RecordsCompleted) for r in m.records]
    assert sorted(r.record.student_ref for r in completed) == ["s1", "s2"]
    [fixed] = [r.record for r in completed if r.record.student_ref == "s1"]
    assert fixed.version == 1 and fixed.document["complete"] is True
    assert fixed.content == (await g.repo.record(fixed.record_id, 1)).content, "signed as grades stores it"
