"""Builders for grades test data: enrolments, identity snapshots, assessment entries, people who sign what they
send, and a PKI with grades' own certificate."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

from hocba.staff import Person
from services.grades.rulesets import CIRCULAR_22_2021_UPPER, GRADE_6
from shared.auth import Actor, IssuerKey, IssuerKeys
from shared.contracts.grades import StudentTermConduct, SubjectTermScores
from shared.contracts.identity import Enrolment, RegisteredStudent, StudentIdentity, StudentSnapshot
from shared.crypto.pki import DevPki, service_holders
from shared.settings import Settings

SCHOOL = "79000701"
YEAR = "2025-2026"


def enrolled(ref: str, grade: int = 6, school: str = SCHOOL, class_name: str = "6A1") -> RegisteredStudent:
    return RegisteredStudent(
        student_ref=ref,
        enrolment=Enrolment(school_code=school, school_year=YEAR, grade=grade, class_name=class_name),
    )


#: A grade 10 student's combination: four score-assessed electives, learning topics in Toán, Vật lí and Hóa học.
SCIENCES = ("Vật lí", "Hóa học", "Sinh học", "Tin học")
SCIENCE_TOPICS = ("Toán", "Vật lí", "Hóa học")


def upper_enrolled(
    ref: str,
    electives: tuple[str, ...] = SCIENCES,
    topics: tuple[str, ...] = SCIENCE_TOPICS,
    grade: int = 10,
    class_name: str = "10A1",
) -> RegisteredStudent:
    """A student of grades 10-12 with their combination: electives and the subjects of their learning topics."""
    return RegisteredStudent(
        student_ref=ref,
        enrolment=Enrolment(
            school_code=SCHOOL,
            school_year=YEAR,
            grade=grade,
            class_name=class_name,
            electives=electives,
            learning_topics=topics,
        ),
    )


def own_year(
    student: RegisteredStudent, score: str = "8.0", level: str = "Đ", skip: frozenset[tuple[str, int]] = frozenset()
) -> list[SubjectTermScores]:
    """Every subject the student takes (grades 10-12: compulsory and electives), both terms, as `full_year`."""
    rule_set = CIRCULAR_22_2021_UPPER
    enrolment = student.enrolment
    table = rule_set.subjects(enrolment.grade) or ()
    choices = rule_set.choices(enrolment.grade)
    assert choices is not None
    entries = []
    ref = student.student_ref
    for rule in choices.subjects_of(table, enrolment.electives, enrolment.learning_topics):
        for term in (1, 2):
            if (rule.name, term) in skip:
                continue
            if rule.scored:
                entries.append(scored(ref, rule.name, term, [score] * rule.regular_per_term, score, score))
            else:
                entries.append(commented(ref, rule.name, term, level))
    return entries


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

#: The school management system that vouches for the people below.
ISSUER = IssuerKey.generate("test-school-app")
#: Its public keys; each service's `build_app` takes them as its own audience.
KEYS = ISSUER.public_keys()


def keys_for(service: str) -> IssuerKeys:
    """The issuer's keys as `service` accepts them: tokens whose audience is that service."""
    return KEYS.for_service(service)


def person(roles: set[str], school: str = SCHOOL, **fields) -> Person:
    """Someone the issuer vouches for: `person(...).signs(message)` gives the message its token."""
    actor = Actor(subject=fields.pop("subject", "-".join(sorted(roles))), roles=frozenset(roles), school_code=school,
                  **fields)
    return Person(ISSUER, actor)


def subject_teacher(subjects: set[str] | None = None, classes: set[str] | None = None, school: str = SCHOOL) -> Person:
    everything = {r.name for r in GRADE_6}
    return person({"subject_teacher"}, school, subjects=frozenset(subjects or everything),
                  classes=frozenset(classes or {"6A1", "6A2"}), subject="gv-1")


def homeroom_teacher(class_name: str = "6A1", school: str = SCHOOL) -> Person:
    return person({"homeroom_teacher"}, school, classes=frozenset({class_name}), homeroom_class=class_name,
                  subject=f"gvcn-{class_name}")


def principal(school: str = SCHOOL) -> Person:
    return person({"principal"}, school, subject="ht-1")


def school_admin(school: str = SCHOOL) -> Person:
    return person({"school_admin"}, school, subject="admin-1")


def operator() -> Person:
    return person({"operator"}, "", subject="operator-1")


# -- grades' own certificate ------------------------------------------------------------------

PKI_PASSPHRASE = "test passphrase"


def service_pki(folder: Path) -> DevPki:
    """A development PKI holding the services' own certificates (svc-grades: its seals and look-ups)."""
    pki = DevPki(folder / "pki", PKI_PASSPHRASE.encode())
    pki.create(service_holders())
    return pki


def with_pki(settings: Settings, pki: DevPki) -> Settings:
    """`settings` configured with `pki`, as HOCBA_PKI_DIR and HOCBA_PKI_PASSPHRASE would."""
    return settings.model_copy(update={"pki_dir": pki.folder, "pki_passphrase": PKI_PASSPHRASE})


def homeroom(ref: str, conduct: tuple[str, str] = ("Tốt", "Tốt"), absences: tuple[int, int] = (1, 2)) -> list[StudentTermConduct]:
    return [
        StudentTermConduct(student_ref=ref, term=t, conduct=conduct[t - 1], absences=absences[t - 1], comment=f"ghi chú {t}")
        for t in (1, 2)
    ]
