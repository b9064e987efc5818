"""identity's rules, pure: the 12-digit personal ID (Decree 137/2015/NĐ-CP Art. 13), a roster row, who may do what."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from services.identity.provinces import PROVINCES
from shared.auth import Actor, Role
from shared.contracts.identity import Enrolment, StudentIdentity, StudentRegistration
from shared.errors import Forbidden

#: Digit 4 encodes century and sex: (century start year, sex) -> digit.
CENTURY_SEX_DIGIT = {
    (1900, "M"): "0",
    (1900, "F"): "1",
    (2000, "M"): "2",
    (2000, "F"): "3",
    (2100, "M"): "4",
    (2100, "F"): "5",
}

#: Identity fields compared when a student is registered again.
COMPARED = ("full_name", "date_of_birth", "sex", "place_of_birth", "ethnicity", "guardian_name")


@dataclass(frozen=True)
class IdProblem:
    code: str
    message: str


def personal_id_problems(personal_id: str, date_of_birth: date, sex: str) -> list[IdProblem]:
    """Every way `personal_id` disagrees with the rules or with the stated birth date and sex.

    Each problem names the field and the rule it breaks, never a value: the messages go to the
    registering school, the dead-letter queue and the logs.
    """
    if len(personal_id) != 12 or not personal_id.isascii() or not personal_id.isdigit():
        return [IdProblem("format", "personal ID: must be exactly 12 digits (0-9)")]
    problems = []
    if personal_id[:3] not in PROVINCES:
        problems.append(IdProblem("province", "personal ID: digits 1-3 must be a known province code"))
    expected = CENTURY_SEX_DIGIT.get((date_of_birth.year // 100 * 100, sex))
    if expected is None:
        problems.append(IdProblem("century", "date of birth: the year must be within 1900-2199"))
    elif personal_id[3] != expected:
        problems.append(
            IdProblem("century-sex", "personal ID: digit 4 must encode the sex and the century of the date of birth")
        )
    if personal_id[4:6] != f"{date_of_birth.year % 100:02d}":
        problems.append(
            IdProblem("birth-year", "personal ID: digits 5-6 must be the last two digits of the year of birth")
        )
    return problems


def identity_problems(identity: StudentIdentity, today: date) -> list[IdProblem]:
    """A roster row's identity: the personal ID rules, a name, and a birth date not in the future."""
    problems = personal_id_problems(identity.personal_id, identity.date_of_birth, identity.sex)
    if not identity.full_name.strip():
        problems.append(IdProblem("name", "full name: must not be empty"))
    if identity.date_of_birth > today:
        problems.append(IdProblem("date-of-birth", "date of birth: must not be in the future"))
    return problems


#: What a school is told of a roster row that disagrees with a registered student: nothing about how.
CONFLICT = "conflict with a registered student: a transfer between schools goes through an operator"


def conflicts(stored: StudentIdentity, enrolments: Iterable[Enrolment], given: StudentRegistration) -> bool:
    """Whether a row naming a registered student's personal ID may not be taken as that student.

    It may when it states the same identity (every field of `COMPARED`) for a school the student is
    enrolled at already (a new year, a new class). A row from another school is a transfer between
    schools, which goes through an operator. Whoever registers is never told which of these it was,
    nor which fields differ: that would let a school learn another school's student field by field.
    """
    same_identity = all(getattr(stored, name) == getattr(given.identity, name) for name in COMPARED)
    same_school = any(e.school_code == given.enrolment.school_code for e in enrolments)
    return not (same_identity and same_school)


# --- who may do what -------------------------------------------------------------------------

#: The roles of a school's staff: they see the students enrolled at their school.
STAFF_ROLES: tuple[Role, ...] = ("subject_teacher", "homeroom_teacher", "principal", "school_admin")


def authorise_registration(actor: Actor) -> None:
    """Refuse a roster from anyone but a school's administrator or principal."""
    if not actor.school_code or not (actor.has("school_admin") or actor.has("principal")):
        raise Forbidden(f"{actor.subject} may not register students: the school administrator or the principal does")


def authorise_enrolment(actor: Actor, enrolment: Enrolment) -> None:
    """Refuse a roster row that enrols a student at another school than the actor's."""
    if enrolment.school_code != actor.school_code:
        raise Forbidden(f"{actor.subject} registers for school {actor.school_code}, not {enrolment.school_code}")


def authorise_lookup(actor: Actor) -> None:
    """Look-ups by student reference are grades' alone, asked on its own behalf (its service certificate)."""
    if not actor.is_service("grades"):
        raise Forbidden(f"{actor.subject} may not look students up by reference: only the grades service does")


def is_staff(actor: Actor) -> bool:
    return bool(actor.school_code) and any(actor.has(role) for role in STAFF_ROLES)


def authorise_find(actor: Actor) -> None:
    """Finding students by personal ID is for a school's staff and the department's operators."""
    if not (actor.has("operator") or is_staff(actor)):
        raise Forbidden(f"{actor.subject} may not find students: a school's staff or an operator does")


def may_see(actor: Actor, enrolments: Iterable[Enrolment]) -> bool:
    """A school's staff see the students enrolled at their school; operators see every student."""
    return actor.has("operator") or (is_staff(actor) and any(e.school_code == actor.school_code for e in enrolments))
