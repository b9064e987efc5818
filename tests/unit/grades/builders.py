"""Builders for grades test data: enrolments, identity snapshots and assessment entries."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from services.grades.rulesets import GRADE_6
from shared.auth import Actor, IssuerKey, issue_token
from shared.contracts.grades import StudentTermConduct, SubjectTermScores
from shared.contracts.identity import Enrolment, RegisteredStudent, StudentIdentity, StudentSnapshot

SCHOOL = "79000701"
YEAR = "2025-2026"


def enrolled(ref: str, grade: int = 6, school: str = SCHOOL, class_name: str = "6A1") -> RegisteredStudent:
    return RegisteredStudent(
        student_ref=ref,
        enrolment=Enrolment(school_code=school, school_year=YEAR, grade=grade, class_name=class_name),
    )


def snapshot(ref: str, personal_id: str = "079214000123") -> StudentSnapshot:
    return StudentSnapshot(
        student_ref=ref,
        identity=StudentIdentity(
            personal_id=personal_id, full_name="Nguyễn Văn An", date_of_birth=date(2014, 9, 5), sex="M"
        ),
    )


def scored(
    ref: str, subject: str, term: int, regular: list[str], midterm: str | None, final: str | None
) -> SubjectTermScores:
    return SubjectTermScores(
        student_ref=ref,
        subject=subject,
        term=term,
        regular=tuple(Decimal(v) for v in regular),
        midterm=None if midterm is None else Decimal(midterm),
        final=None if final is None else Decimal(final),
    )


def commented(ref: str, subject: str, term: int, level: str = "Đ") -> SubjectTermScores:
    return SubjectTermScores(student_ref=ref, subject=subject, term=term, comment_level=level)


def full_year(
    ref: str, score: str = "8.0", level: str = "Đ", skip: frozenset[tuple[str, int]] = frozenset()
) -> list[SubjectTermScores]:
    """Every grade 6 subject, both terms, each score `score` and each comment level `level`."""
    entries = []
    for rule in GRADE_6:
        for term in (1, 2):
            if (rule.name, term) in skip:
                continue
            if rule.scored:
                entries.append(scored(ref, rule.name, term, [score] * rule.regular_per_term, score, score))
            else:
                entries.append(commented(ref, rule.name, term, level))
    return entries


# -- people and their tokens ------------------------------------------------------------------

ISSUER = IssuerKey.generate("test-school-app")
KEYS = ISSUER.public_keys()


def token(roles: set[str], school: str = SCHOOL, **fields) -> str:
    actor = Actor(
        subject=fields.pop("subject", "-".join(sorted(roles))),
        roles=frozenset(roles),
        school_code=school,
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        **fields,
    )
    return issue_token(ISSUER, actor)


def subject_teacher(subjects: set[str] | None = None, classes: set[str] | None = None, school: str = SCHOOL) -> str:
    everything = {r.name for r in GRADE_6}
    return token({"subject_teacher"}, school, subjects=frozenset(subjects or everything),
                 classes=frozenset(classes or {"6A1", "6A2"}), subject="gv-1")


def homeroom_teacher(class_name: str = "6A1", school: str = SCHOOL) -> str:
    return token({"homeroom_teacher"}, school, classes=frozenset({class_name}), homeroom_class=class_name,
                 subject=f"gvcn-{class_name}")


def principal(school: str = SCHOOL) -> str:
    return token({"principal"}, school, subject="ht-1")


def school_admin(school: str = SCHOOL) -> str:
    return token({"school_admin"}, school, subject="admin-1")


def homeroom(ref: str, conduct: tuple[str, str] = ("Tốt", "Tốt"), absences: tuple[int, int] = (1, 2)) -> list[StudentTermConduct]:
    return [
        StudentTermConduct(student_ref=ref, term=t, conduct=conduct[t - 1], absences=absences[t - 1], comment=f"ghi chú {t}")
        for t in (1, 2)
    ]
