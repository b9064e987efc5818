"""Who may do what in grades: pure checks of a verified actor against the school, class and subject.

Each check returns when the actor may, and raises `Forbidden` saying why not.
"""

from __future__ import annotations

from shared.auth import Actor
from shared.errors import Forbidden


def same_school(actor: Actor, school_code: str) -> None:
    """Whoever acts does so for the school the message is for."""
    if actor.school_code != school_code:
        raise Forbidden(f"{actor.subject} acts for school {actor.school_code or '(none)'}, not {school_code}")


def authorise_assessment(actor: Actor, school_code: str, class_name: str, subject: str) -> None:
    """A subject teacher enters only the subjects and classes assigned to them."""
    same_school(actor, school_code)
    if not actor.teaches(class_name, subject):
        raise Forbidden(f"{actor.subject} is not assigned to teach {subject} in class {class_name}")


def authorise_homeroom_entry(actor: Actor, school_code: str, class_name: str) -> None:
    """Conduct, absences and the homeroom comment come from the class's homeroom teacher."""
    same_school(actor, school_code)
    if not actor.is_homeroom_teacher_of(class_name):
        raise Forbidden(f"{actor.subject} is not the homeroom teacher of class {class_name}")


def authorise_term_close(actor: Actor, school_code: str) -> None:
    """The principal or the school's records administrator closes a term."""
    same_school(actor, school_code)
    if not (actor.has("principal") or actor.has("school_admin")):
        raise Forbidden(f"{actor.subject} may not close a term: the principal or the school administrator does")


def authorise_principal(actor: Actor, school_code: str, what: str) -> None:
    """Reopening a term and closing the year need the principal; `what` names the act."""
    same_school(actor, school_code)
    if not actor.is_principal_of(school_code):
        raise Forbidden(f"{actor.subject} may not {what}: only the principal may")


def authorise_reopen(actor: Actor, school_code: str, year_closed: bool) -> None:
    """The principal reopens a term. After the year's close, the principal or the school's records administrator
    (who amend its signed records too) reopens it to complete the records nobody has signed yet."""
    if year_closed:
        same_school(actor, school_code)
        if not (actor.is_principal_of(school_code) or actor.has("school_admin")):
            raise Forbidden(
                f"{actor.subject} may not reopen a term after the year's close: the principal or the records "
                "administrator does"
            )
        return
    authorise_principal(actor, school_code, "reopen a term")


def authorise_amendment(actor: Actor, issuing_school: str, record_id: str) -> None:
    """A signed record is amended by the school that issued it only: by its principal or its records administrator."""
    if actor.school_code != issuing_school or not (actor.has("principal") or actor.has("school_admin")):
        raise Forbidden(
            f"{actor.subject} may not amend record {record_id}: it was issued by school {issuing_school}, and only "
            "that school's principal or records administrator amends it"
        )


def authorise_reader(actor: Actor, school_code: str) -> None:
    """A record is read by its school's staff, or by the department's operators."""
    if not actor.has("operator"):
        same_school(actor, school_code)
