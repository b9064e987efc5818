"""grades and signing together, in memory, over the messages they exchange: a record found incomplete at review
is completed after the year's close and signed.

The year is closed with s1's term-I mathematics missing; signing keeps its version 1 and refuses to sign it. The
principal reopens term I (which reopens the year), the teacher enters the missing mark, the principal closes the
term and the year again: grades stores the complete record in place of the version nobody signed and announces
it; signing replaces the version it holds; the class's review no longer stands; once its homeroom teacher confirms
it again, the homeroom teacher and the principal sign it. Before replacing, grades asks signing which versions carry a
signature: one its homeroom teacher signed already stays as signed, in grades as in signing.
"""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import CollectorRegistry

from services.grades import handlers as grades
from services.grades.app import SigningSignatures, seal_with
from services.grades.domain import record_id
from services.grades.handlers import Deps as GradesDeps
from services.grades.metrics import GradesMetrics
from services.grades.repository import InMemoryGradesRepository
from services.signing import handlers as signing
from shared.access import AccessRecorder, InMemoryAccessLog
from shared.auth import Actor, ServiceIdentity
from shared.contracts.base import Message, Reply
from shared.contracts.grades import (
    CloseTerm,
    CloseYear,
    KeptSigned,
    RecordAssessments,
    RecordConduct,
    RecordsReady,
    ReopenTerm,
    YearClosed,
)
from shared.contracts.keys import GradesKeyRotationProgress
from shared.contracts.signing import (
    ChunkSigned,
    ClassReviews,
    ConfirmReview,
    HeldSignatures,
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


class SigningOverBus:
    """The bus as far as grades' question to signing goes: each request answered by signing's handler."""

    def __init__(self, deps) -> None:
        # grades' own token is checked against the PKI's trust anchor, as signing's app does.
        self.deps = replace(deps, issuer_keys=deps.issuer_keys.for_service("signing", services=deps.signers.trust))
        self.asked: list[HeldSignatures] = []

    async def request(self, message: Message, answer: type[Reply], timeout: float) -> Reply:
        assert isinstance(message, HeldSignatures)
        self.asked.append(message)
        return (await signing.held_signatures(message, self.deps)).reply


def grades_deps(trust, deps) -> GradesDeps:
    """grades' dependencies; its question to signing answered by signing's handler over `deps`, with grades' token."""
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
        signatures_held=SigningSignatures(
            SigningOverBus(deps),  # type: ignore[arg-type]
            ServiceIdentity("grades", lambda: trust.signers.signer_for(GRADES)),
        ),
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


async def close(trust, g: GradesDeps, *terms: int, suffix: str = "") -> YearClosed:
    principal = trust.staff.principal(SCHOOL)
    for term in terms:
        command = CloseTerm(message_id=f"close-{term}{suffix}", school_code=SCHOOL, school_year=YEAR, term=term)
        await grades.close_term(principal.signs(command), g)
    year = CloseYear(message_id=f"year{suffix}", school_code=SCHOOL, school_year=YEAR)
    return (await grades.close_year(principal.signs(year), g)).reply


async def sign(deps, request: RequestSignBatch) -> list[RecordsCompleted | ChunkSigned]:
    """The batch planned, each chunk signed and counted (as the workers do): what the chunks published."""
    planned = await signing.plan_batch(request, deps)
    published = [
        m for w in planned.publish if isinstance(w, SignWork) for m in (await signing.sign_chunk(w, deps)).publish
    ]
    for chunk in published:
        if isinstance(chunk, ChunkSigned):
            await signing.count_chunk(chunk, deps)
    return published


async def review_and_confirm(trust, deps) -> ClassReviews:
    homeroom_teacher = trust.staff.homeroom_teacher(SCHOOL, CLASS)
    ask = ReviewClasses(school_code=SCHOOL, school_year=YEAR, class_name=CLASS)
    shown = (await signing.review_classes(homeroom_teacher.signs(ask), deps)).reply
    [seen] = shown.classes
    confirm = ConfirmReview(school_code=SCHOOL, school_year=YEAR, class_name=CLASS, reviewed=seen.fingerprint)
    await signing.confirm_review(homeroom_teacher.signs(confirm), deps)
    return shown


async def closed_and_signed_by_homeroom(trust, deps) -> GradesDeps:
    """The year closed with s1's term-I mathematics missing, the class reviewed and signed by its homeroom teacher:
    s2's record carries their signature, s1's incomplete one none. grades, as it stands then."""
    g = grades_deps(trust, deps)
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
    return g


async def reopened_and_closed_again(trust, g: GradesDeps, changed=()) -> YearClosed:
    """Term I reopened (the year with it), s1's missing mark entered and `changed` students' term-I mathematics
    corrected, term I and the year closed again."""
    reason = "thiếu điểm Toán học kỳ I"
    reopen = ReopenTerm(message_id="reopen-1", school_code=SCHOOL, school_year=YEAR, term=1, reason=reason)
    await grades.reopen_term(trust.staff.principal(SCHOOL).signs(reopen), g)
    missing = [e for e in full_year("s1") if (e.subject, e.term) == MATHS_TERM_1]
    entered = RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=missing, message_id="gb-s1-fix")
    assert (await grades.record_assessments(teacher(trust).signs(entered), g)).reply.new == 1
    for ref in changed:
        corrected = [e for e in full_year(ref, score="9.0") if (e.subject, e.term) == MATHS_TERM_1]
        command = RecordAssessments(
            school_code=SCHOOL, school_year=YEAR, entries=corrected, message_id=f"gb-{ref}-fix", reason="chấm lại"
        )
        assert (await grades.record_assessments(teacher(trust).signs(command), g)).reply.changed == 1
    return await close(trust, g, 1, suffix="-again")


async def test_a_record_its_homeroom_teacher_signed_stays_as_signed_in_grades_as_in_signing(trust, deps):
    """Reproduction (issue 12 follow-up): s2's mathematics changed while term I was reopened; grades replaced the
    version its homeroom teacher had signed, signing refused the replacement and kept the signed one, and the two held
    different contents for the same version without anyone being told."""
    g = await closed_and_signed_by_homeroom(trust, deps)
    signed = await g.repo.record(record_id(SCHOOL, YEAR, "s2"), 1)
    closed = await reopened_and_closed_again(trust, g, changed=("s2",))
    [received] = await ready_to_signing(g, deps)
    assert received.refused == [], "signing is sent the version it holds, not one it must refuse"
    assert closed.kept_signed == [
        KeptSigned(record_id=signed.record_id, version=1, class_name=CLASS, roles=["homeroom_teacher"])
    ]
    assert await g.repo.record(signed.record_id, 1) == signed
    [held] = (await deps.repo.records([signed.key])).values()
    assert held.record_version().content == signed.content, "grades and signing hold the same version 1"
    fixed = await g.repo.record(record_id(SCHOOL, YEAR, "s1"), 1)
    assert fixed.document["complete"] is True, "s1's record, which nobody signed, is still completed"
    [replaced] = (await deps.repo.records([fixed.key])).values()
    assert replaced.record_version().content == fixed.content, "and signing holds it in place of the incomplete one"


async def test_an_incomplete_record_is_completed_after_the_years_close_and_then_signed(trust, deps):
    g = await closed_and_signed_by_homeroom(trust, deps)
    # The fix: term I reopened (the year with it), the missing mark entered, term I and the year closed again.
    assert (await reopened_and_closed_again(trust, g)).kept_signed == []
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
