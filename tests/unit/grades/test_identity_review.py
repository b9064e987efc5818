"""A class's records beside identity's register, for the review before signing: what a reviewer must look at."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from services.grades import handlers
from services.grades.domain.identities import compare_classes, identity_differences
from shared.auth import Unauthenticated
from shared.contracts.grades import CompareIdentities, IdentityDifference, RecordVersion
from shared.contracts.identity import StudentIdentity
from shared.errors import Forbidden, NoAnswer, Unavailable
from tests import records as builders
from tests.unit.grades.builders import SCHOOL, YEAR, enrolled, homeroom_teacher, principal, snapshot
from tests.unit.grades.conftest import FakeLookup


def assembled(ref: str, class_name: str = "6A1", **document: object) -> RecordVersion:
    """`ref`'s record as grades assembled it, with the identity the register had then (`snapshot(ref)`)."""
    document.setdefault("student", snapshot(ref).model_dump(mode="json"))
    return builders.record_version(f"rec-{ref}", 1, SCHOOL, YEAR, ref, class_name=class_name, **document)


def renamed(ref: str, **identity: object) -> dict:
    """A record's student as the register had them, with some identity fields otherwise."""
    student = snapshot(ref).model_dump(mode="json")
    return {**student, "identity": {**student["identity"], **identity}}


def register(*refs: str) -> dict[str, StudentIdentity]:
    return {ref: snapshot(ref).identity for ref in refs}


def test_the_fields_that_differ_are_named_with_both_values():
    then = snapshot("s1").identity
    now = then.model_copy(update={"full_name": "Nguyễn Văn Ân", "date_of_birth": date(2014, 9, 6)})
    assert identity_differences(then, now) == [
        IdentityDifference(field="full_name", in_record="Nguyễn Văn An", in_register="Nguyễn Văn Ân"),
        IdentityDifference(field="date_of_birth", in_record="2014-09-05", in_register="2014-09-06"),
    ]
    assert identity_differences(then, then) == []


def test_a_class_shows_the_students_a_reviewer_must_look_at_and_no_other():
    students = [enrolled("s1"), enrolled("s2"), enrolled("s5"), enrolled("s3", class_name="6A2")]
    records = [
        assembled("s1"),
        assembled("s2", student=renamed("s2", full_name="Nguyễn Văn Ân")),
        assembled("s4"),  # the register no longer knows s4
        assembled("s5", complete=False, missing=[{"subject": "Toán", "term": 1}]),
    ]
    class_6a1, class_6a2 = compare_classes(students, records, register("s1", "s2", "s3", "s5"))
    assert (class_6a1.class_name, class_6a1.students, class_6a1.records) == ("6A1", 3, 4)
    found = {f.student_ref: f for f in class_6a1.findings}
    assert set(found) == {"s2", "s4", "s5"}, "s1's record agrees with the register and is complete"
    assert [(d.field, d.in_record, d.in_register) for d in found["s2"].differences] == [
        ("full_name", "Nguyễn Văn Ân", "Nguyễn Văn An")
    ]
    assert (found["s4"].in_register, found["s4"].record_id, found["s4"].full_name) == (False, "rec-s4", "Nguyễn Văn An")
    assert (found["s5"].complete, found["s5"].differences) == (False, [])
    [without] = class_6a2.findings
    assert (class_6a2.students, class_6a2.records) == (1, 0)
    assert (without.student_ref, without.record_id, without.complete, without.in_register) == ("s3", None, None, True)


async def test_the_review_sets_the_records_against_the_register_and_logs_each_student_shown(deps):
    await deps.repo.add_records([assembled("s1"), assembled("s2", student=renamed("s2", sex="F"))])
    lookup = FakeLookup({"s1", "s2", "s3"})
    asked = homeroom_teacher("6A1").signs(
        CompareIdentities(school_code=SCHOOL, school_year=YEAR, class_name="6A1", purpose="review before signing")
    )
    answer = (await handlers.compare_identities(asked, replace(deps, lookup=lookup))).reply
    [class_6a1] = answer.classes
    [finding] = class_6a1.findings
    assert (finding.student_ref, [d.field for d in finding.differences]) == ("s2", ["sex"])
    assert lookup.asked == [["s1", "s2"]], "only the class's students are looked up"
    assert lookup.purposes == [f"review of class 6A1 of {SCHOOL} {YEAR} by gvcn-6A1"]
    [logged] = await deps.access_log.of("s2", 10)
    assert (logged.action, logged.subject, logged.record_id, logged.purpose) == (
        "review",
        "gvcn-6A1",
        "rec-s2",
        "review before signing",
    )
    assert await deps.access_log.of("s1", 10) == [], "a student with nothing to look at is not shown"

    school = principal().signs(CompareIdentities(school_code=SCHOOL, school_year=YEAR))
    every = (await handlers.compare_identities(school, replace(deps, lookup=lookup))).reply
    assert [c.class_name for c in every.classes] == ["6A1", "6A2"]


async def test_only_the_classs_homeroom_teacher_or_the_schools_leads_review_it(deps):
    for asked in (
        homeroom_teacher("6A2").signs(CompareIdentities(school_code=SCHOOL, school_year=YEAR, class_name="6A1")),
        homeroom_teacher("6A1").signs(CompareIdentities(school_code=SCHOOL, school_year=YEAR)),
        principal("79000702").signs(CompareIdentities(school_code=SCHOOL, school_year=YEAR)),
    ):
        with pytest.raises(Forbidden, match="may not review"):
            await handlers.compare_identities(asked, deps)
    with pytest.raises(Unauthenticated):
        await handlers.compare_identities(CompareIdentities(school_code=SCHOOL, school_year=YEAR), deps)


async def test_when_identity_does_not_answer_the_reviewer_is_told(deps):
    async def silent(refs: list[str], purpose: str):
        raise NoAnswer("no answer to identity.students.lookup.v1 within 30s")

    asked = principal().signs(CompareIdentities(school_code=SCHOOL, school_year=YEAR))
    with pytest.raises(Unavailable, match="identity did not answer"):
        await handlers.compare_identities(asked, replace(deps, lookup=silent))
