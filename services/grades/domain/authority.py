"""Who may do what in grades: pure checks of a verified actor against the school, class and subject."""

from __future__ import annotations

from shared.auth import Actor


def _other_school(actor: Actor, school_code: str) -> str | None:
    if actor.school_code != school_code:
        return f"{actor.subject} acts for school {actor.school_code or '(none)'}, not {school_code}"
    return None


def assessment_refusal(actor: Actor, school_code: str, class_name: str, subject: str) -> str | None:
    """A subject teacher enters only the subjects and classes assigned to them."""
    if refusal := _other_school(actor, school_code):
        return refusal
    if not actor.teaches(class_name, subject):
        return f"{actor.subject} is not assigned to teach {subject} in class {class_name}"
    return None


def homeroom_refusal(actor: Actor, school_code: str, class_name: str) -> str | None:
    """Conduct, absences and the homeroom comment come from the class's homeroom teacher."""
    if refusal := _other_school(actor, school_code):
        return refusal
    if not actor.is_homeroom_teacher_of(class_name):
        return f"{actor.subject} is not the homeroom teacher of class {class_name}"
    return None


def close_term_refusal(actor: Actor, school_code: str) -> str | None:
    """The principal or the school's records administrator closes a term."""
    if refusal := _other_school(actor, school_code):
        return refusal
    if not (actor.has("principal") or actor.has("school_admin")):
        return f"{actor.subject} may not close a term: the principal or the school administrator does"
    return None


def principal_refusal(actor: Actor, school_code: str, what: str) -> str | None:
    """Reopening a term and closing the year need the principal."""
    if refusal := _other_school(actor, school_code):
        return refusal
    if not actor.is_principal_of(school_code):
        return f"{actor.subject} may not {what}: only the principal may"
    return None


def reader_refusal(actor: Actor, school_code: str) -> str | None:
    """A record is read by its school's staff, or by the department's operators."""
    if actor.has("operator"):
        return None
    return _other_school(actor, school_code)
