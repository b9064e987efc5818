"""Who uses the web page: the people who may sign in, what each may see, and whose token each message carries.

The gateway is no trust boundary: every message it sends carries a token for that one message that the service
acting on it checks as it checks the command line's. The gateway only keeps a person from opening pages that are
not theirs, so that nobody sees more than they may.

A person signs in in one of two ways:

* with a sign-in token (always, and the only way in production): the school management system gives the person a
  sign-in token (shared.auth `issue_sign_in_token`: its key, audience `web`, living at most the session) and the
  person pastes it into the sign-in page, or the system posts it there (`/sign-in/token`). The gateway checks it
  with the system's public keys (`SignIn`), takes the person from its claims (not from the staff register), keeps
  it in the session, and vouches for each message with its own certificate, `svc-web`, carrying the sign-in token
  (`DelegatingVoucher`); the service checks both, so the gateway can act only for someone who signed in, only as
  them, only while their sign-in lasts. When it ends, the person is sent back to sign in.
* in development only, with a choice among the enrolled staff (`hocba pki enrol`) and the department's operator:
  each message is then vouched for by the local development issuer key, which stands in for the school management
  system, exactly as the command line's are (`DevelopmentVoucher`, `hocba.staff`). `hocba web token --as STAFF_ID`
  gives a development sign-in token for the token form.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from hocba.staff import Staff, StaffMember, StaffRegister
from shared.auth import (
    Actor,
    IssuerKey,
    IssuerKeys,
    ServiceIdentity,
    SignInExpired,
    Unauthenticated,
    verify_sign_in_token,
)
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


#: The role a page treats a person of several roles as: the widest first.
ROLE_ORDER = (OPERATOR, "principal", "school_admin", "homeroom_teacher", "subject_teacher")


@dataclass(frozen=True)
class Viewer:
    """The person signed in: a member of the staff register or the department's operator (the development picker),
    or whoever a sign-in token names."""

    subject: str
    name: str
    role: str
    school_code: str = ""
    classes: tuple[str, ...] = ()
    #: Signed in with a token: the person as the token names them, and the token (the session keeps it).
    person: Actor | None = field(default=None, repr=False, compare=False)
    sign_in_token: str = field(default="", repr=False, compare=False)

    @classmethod
    def of(cls, member: StaffMember) -> Viewer:
        return cls(member.staff_id, member.name, member.role, member.school_code, member.classes)

    @classmethod
    def signed_in(cls, person: Actor, token: str) -> Viewer:
        """Whoever a verified sign-in token names, in their widest role; a homeroom teacher's class is the one the
        token names as theirs (the services decide by it too)."""
        role = next((r for r in ROLE_ORDER if r in person.roles), sorted(person.roles)[0] if person.roles else "")
        if role == "homeroom_teacher" and person.homeroom_class:
            classes: tuple[str, ...] = (person.homeroom_class,)
        else:
            classes = tuple(sorted(person.classes))
        name = person.name or ROLE_NAMES.get(role, person.subject)
        return cls(person.subject, name, role, person.school_code, classes, person, token)

    @property
    def ends_at(self) -> datetime | None:
        """When a sign-in by token ends (None for the development picker's)."""
        return self.person.expires_at if self.person else None

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
    """The session names nobody the staff register (still) has, or a sign-in token that no longer holds."""


class SignInEnded(NotSignedIn):
    """The sign-in token's lifetime is over: the person signs in again."""

    def __init__(self, message: str, ended_at: datetime | None = None) -> None:
        super().__init__(message)
        #: When the sign-in ended.
        self.ended_at = ended_at


class SignInRefused(NotSignedIn):
    """A sign-in token that is not the school management system's sign-in for the web page (the reason in words)."""


class SignIn:
    """Checks sign-in tokens with the school management system's public keys: for the web gateway, unexpired, living
    no longer than the session may (`keys.sign_in_lifetime`)."""

    def __init__(self, keys: IssuerKeys, clock: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self.clock = clock

    def viewer(self, token: str) -> Viewer:
        """The person `token` signs in; SignInEnded once it has expired, SignInRefused for any other reason."""
        try:
            return Viewer.signed_in(verify_sign_in_token(token.strip(), self.keys, self.clock()), token.strip())
        except SignInExpired as exc:
            raise SignInEnded(str(exc), exc.ended_at) from None
        except Unauthenticated as exc:
            raise SignInRefused(str(exc)) from None


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


class DelegatingVoucher:
    """The web gateway vouches for each message of a person signed in with a token: its own certificate (svc-web)
    signs a token for that message naming the person and carrying their sign-in token (shared.auth
    `ServiceIdentity.signs_for`). Nobody else: a person of the development picker has no sign-in token."""

    def __init__(self, gateway: ServiceIdentity) -> None:
        self.gateway = gateway

    def signs(self, viewer: Viewer, message: M) -> M:
        if viewer.person is None or not viewer.sign_in_token:
            raise NotSignedIn(f"'{viewer.subject}' did not sign in with a sign-in token")
        ends = viewer.ends_at
        if ends is not None and ends <= datetime.now(UTC):
            raise SignInEnded(f"the sign-in of '{viewer.subject}' ended at {ends:%Y-%m-%d %H:%M} UTC", ends)
        return self.gateway.signs_for(message, viewer.person, viewer.sign_in_token)


class GatewayVoucher:
    """Vouches for a message as its sender signed in: by delegation for a sign-in token, by the development issuer
    key for the development picker (present in development only)."""

    def __init__(self, delegating: DelegatingVoucher | None, development: DevelopmentVoucher | None = None) -> None:
        self.delegating = delegating
        self.development = development

    def signs(self, viewer: Viewer, message: M) -> M:
        if viewer.sign_in_token:
            if self.delegating is None:
                raise NotSignedIn("the gateway has no certificate of its own to act for a person signed in by token")
            return self.delegating.signs(viewer, message)
        if self.development is None:
            raise NotSignedIn(f"'{viewer.subject}' did not sign in with a sign-in token")
        return self.development.signs(viewer, message)
