"""Who uses the web page: the people who may sign in, what each may see, and whose token each message carries.

The gateway is no trust boundary: every message it sends carries the signed-in person's actor token for that one
message, and the service that acts checks it as it checks the command line's. The gateway only keeps a person
from opening pages that are not theirs, so that nobody sees more than they may.

In development the tokens come from the local development issuer key, which stands in for the school management
system, exactly as the command line's do (`hocba.staff`); sign-in is then a choice among the enrolled staff
(`hocba pki enrol`) and the department's operator. No other source of tokens exists yet, so the gateway runs in
development only (`hocba.web.__main__`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from hocba.staff import Staff, StaffMember, StaffRegister
from shared.auth import IssuerKey
from shared.contracts.base import Message

M = TypeVar("M", bound=Message)

OPERATOR = "operator"
#: The subject of the department's operator signed in on the web page (`Staff.operator` makes it `operator-web`).
OPERATOR_LOGIN = "web"

#: Each role as the pages name it.
ROLE_NAMES = {
    "principal": "Hiệu trưởng",
    "school_admin": "Cán bộ quản lý học bạ",
    "homeroom_teacher": "Giáo viên chủ nhiệm",
    "subject_teacher": "Giáo viên bộ môn",
    OPERATOR: "Cán bộ vận hành Sở GD&ĐT",
}


@dataclass(frozen=True)
class Viewer:
    """The person signed in: a member of the staff register, or the department's operator."""

    subject: str
    name: str
    role: str
    school_code: str = ""
    classes: tuple[str, ...] = ()

    @classmethod
    def of(cls, member: StaffMember) -> Viewer:
        return cls(member.staff_id, member.name, member.role, member.school_code, member.classes)

    @classmethod
    def operator(cls) -> Viewer:
        return cls(f"operator-{OPERATOR_LOGIN}", ROLE_NAMES[OPERATOR], OPERATOR)

    @property
    def is_operator(self) -> bool:
        return self.role == OPERATOR

    @property
    def role_name(self) -> str:
        return ROLE_NAMES.get(self.role, self.role)

    def may_see_school(self, school_code: str) -> bool:
        """The school's page: its principal and records administrator, and the operator."""
        return self.is_operator or (self.school_code == school_code and self.role in ("principal", "school_admin"))

    def may_see_class(self, school_code: str, class_name: str) -> bool:
        """A class's page: its homeroom teacher, and whoever may see the school."""
        if self.may_see_school(school_code):
            return True
        return self.school_code == school_code and self.role == "homeroom_teacher" and class_name in self.classes

    def may_sign_school(self, school_code: str) -> bool:
        """The principal's one click, for their school only (signing checks it again, on the token)."""
        return self.role == "principal" and self.school_code == school_code

    def may_sign_class(self, school_code: str, class_name: str) -> bool:
        return self.role == "homeroom_teacher" and self.school_code == school_code and class_name in self.classes

    def home(self) -> str:
        """The page this person starts from."""
        if self.is_operator:
            return "/operator"
        if self.role == "homeroom_teacher" and self.classes:
            return f"/schools/{self.school_code}/classes/{self.classes[0]}"
        if self.role in ("principal", "school_admin"):
            return f"/schools/{self.school_code}"
        return "/nothing-here"


@dataclass(frozen=True)
class Choice:
    """One line of the development sign-in picker."""

    key: str
    label: str


@dataclass(frozen=True)
class SchoolChoices:
    school_code: str
    school_name: str
    people: tuple[Choice, ...]


def sign_in_choices(register: StaffRegister) -> list[SchoolChoices]:
    """Every enrolled school's staff, principal first, then the records administrator, then the homeroom teachers
    by class, then the subject teachers."""
    order = {"principal": 0, "school_admin": 1, "homeroom_teacher": 2, "subject_teacher": 3}
    schools = sorted({m.school_code for m in register.staff.values()})
    found = []
    for code in schools:
        members = sorted(register.members(code), key=lambda m: (order.get(m.role, 9), m.classes, m.staff_id))
        people = tuple(Choice(m.staff_id, describe(m)) for m in members)
        found.append(SchoolChoices(code, register.schools.get(code, f"Trường {code}"), people))
    return found


def describe(member: StaffMember) -> str:
    """ "Giáo viên chủ nhiệm 6A1 — Nguyễn Văn A" (a name that only repeats the role is not said twice)."""
    role = ROLE_NAMES.get(member.role, member.role)
    if member.role == "homeroom_teacher" and member.classes:
        role = f"{role} {', '.join(member.classes)}"
    return (
        role
        if member.name.startswith(role) or member.name == ROLE_NAMES.get(member.role)
        else f"{role} — {member.name}"
    )


class NotSignedIn(LookupError):
    """The session names nobody the staff register (still) has."""


def viewer_for(key: str, register: StaffRegister) -> Viewer:
    """The person a sign-in (or a session) names: a staff id of the register, or the operator."""
    if key == OPERATOR:
        return Viewer.operator()
    member = register.staff.get(key)
    if member is None:
        raise NotSignedIn(f"'{key}' is not enrolled")
    return Viewer.of(member)


class Voucher(Protocol):
    """Gives a message the signed-in person's actor token for it."""

    def signs(self, viewer: Viewer, message: M) -> M: ...


class DevelopmentVoucher:
    """The development issuer key vouches for the enrolled staff and the operator, one message at a time, as it
    does for the command line. Each message looks the person up in the register again: someone removed from it
    can no longer act."""

    def __init__(self, issuer: IssuerKey, register: Callable[[], StaffRegister]) -> None:
        self.staff = Staff(issuer)
        self.register = register

    def signs(self, viewer: Viewer, message: M) -> M:
        if viewer.is_operator:
            return self.staff.operator(OPERATOR_LOGIN).signs(message)
        member = self.register().staff.get(viewer.subject)
        if member is None:
            raise NotSignedIn(f"'{viewer.subject}' is no longer enrolled")
        return self.staff.enrolled(member).signs(message)
