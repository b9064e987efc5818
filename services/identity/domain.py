"""identity's rules, pure: the 12-digit personal ID (Decree 137/2015/NĐ-CP Art. 13), a roster row, who may do what."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from services.identity.provinces import PROVINCES
from shared.auth import Actor
from shared.contracts.identity import Enrolment, StudentIdentity
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
    """Every way `personal_id` disagrees with the rules or with the stated birth date and sex."""
    if len(personal_id) != 12 or not personal_id.isascii() or not personal_id.isdigit():
        return [IdProblem("format", f"personal ID must be exactly 12 digits, got {len(personal_id)} characters")]
    problems = []
    province = personal_id[:3]
    if province not in PROVINCES:
        problems.append(IdProblem("province", f"digits 1-3 '{province}' are not a known province code"))
    century = date_of_birth.year // 100 * 100
    expected = CENTURY_SEX_DIGIT.get((century, sex))
    if expected is None:
        problems.append(IdProblem("century", f"birth year {date_of_birth.year} is outside 1900-2199"))
    elif personal_id[3] != expected:
        problems.append(
            IdProblem(
                "century-sex",
                f"digit 4 is '{personal_id[3]}' but a {'male' if sex == 'M' else 'female'} "
                f"born in {date_of_birth.year} has '{expected}'",
            )
        )
    if personal_id[4:6] != f"{date_of_birth.year % 100:02d}":
        problems.append(
            IdProblem(
                "birth-year",
                f"digits 5-6 '{personal_id[4:6]}' do not match birth year {date_of_birth.year}",
            )
        )
    return problems


def identity_problems(identity: StudentIdentity, today: date) -> list[IdProblem]:
    """A roster row's identity: the personal ID rules, a name, and a birth date not in the future."""
    problems = personal_id_problems(identity.personal_id, identity.date_of_birth, identity.sex)
    if not identity.full_name.strip():
        problems.append(IdProblem("name", "full name is empty"))
    if identity.date_of_birth > today:
        problems.append(IdProblem("date-of-birth", f"date of birth {identity.date_of_birth} is in the future"))
    return problems


def differences(stored: StudentIdentity, given: StudentIdentity) -> list[str]:
    """The identity fields in which a row differs from the registered student."""
    return [name for name in COMPARED if getattr(stored, name) != getattr(given, name)]


# --- who may do what -------------------------------------------------------------------------


def authorise_registration(actor: Actor) -> None:
    """Refuse a roster from anyone but a school's administrator or principal."""
    if not (actor.has("school_admin") or actor.has("principal")):
        raise Forbidden(f"{actor.subject} may not register students: the school administrator or the principal does")


def authorise_enrolment(actor: Actor, enrolment: Enrolment) -> None:
    """Refuse a roster row that enrols a student at another school than the actor's."""
    if enrolment.school_code != actor.school_code:
        raise Forbidden(f"{actor.subject} registers for school {actor.school_code}, not {enrolment.school_code}")


def authorise_key_rotation(actor: Actor) -> None:
    """Refuse a key rotation by anyone but an operator."""
    if not actor.has("operator"):
        raise Forbidden(f"{actor.subject} may not rotate keys: operators do")


def may_see(actor: Actor, enrolments: Iterable[Enrolment]) -> bool:
    """A school's staff see the students enrolled at their school; operators see every student."""
    return actor.has("operator") or any(e.school_code == actor.school_code for e in enrolments)
