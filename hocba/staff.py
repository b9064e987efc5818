"""School staff as the school management system vouches for them: actor tokens for demo and tooling, and the
staff register (`hocba pki enrol`) that says who is enrolled at which school in which role.

The register is `staff.json` in the PKI folder (0600): the staff id of each member is the subject id their
actor tokens carry and their signing certificate names (`UID`), so signing finds their certificate by it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal, TypeVar, get_args

from shared.auth import TOKEN_LIFETIME, Actor, IssuerKey, signed_by
from shared.contracts.base import Message
from shared.contracts.signing import seal_subject
from shared.crypto.pki import Holder, write_private
from shared.settings import Settings

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Person:
    """Someone the school management system vouches for: gives each message they send its own token."""

    issuer: IssuerKey
    actor: Actor

    @property
    def subject(self) -> str:
        return self.actor.subject

    def signs(self, message: M, lifetime: timedelta = TOKEN_LIFETIME) -> M:
        """`message` with this person's token for it (good for that message, its service, `lifetime`)."""
        return signed_by(message, self.issuer, self.actor, lifetime)


class Staff:
    """A school's subject teachers, homeroom teachers, administrator and principal, and the department's
    operators, as the issuer vouches for them."""

    def __init__(self, issuer: IssuerKey) -> None:
        self.issuer = issuer

    def person(self, actor: Actor) -> Person:
        return Person(self.issuer, actor)

    def subject_teacher(self, school_code: str, subject: str, classes: Iterable[str]) -> Person:
        return self.person(
            Actor(
                subject=f"gv-{school_code}-{hashlib.sha256(subject.encode()).hexdigest()[:8]}",
                name=f"Giáo viên {subject}",
                roles=frozenset({"subject_teacher"}),
                school_code=school_code,
                classes=frozenset(classes),
                subjects=frozenset({subject}),
            )
        )

    def homeroom_teacher(self, school_code: str, class_name: str) -> Person:
        return self.person(
            Actor(
                subject=homeroom_subject(school_code, class_name),
                name=f"Giáo viên chủ nhiệm {class_name}",
                roles=frozenset({"homeroom_teacher"}),
                school_code=school_code,
                classes=frozenset({class_name}),
                homeroom_class=class_name,
            )
        )

    def principal(self, school_code: str) -> Person:
        return self.person(
            Actor(
                subject=principal_subject(school_code),
                name="Hiệu trưởng",
                roles=frozenset({"principal"}),
                school_code=school_code,
            )
        )

    def school_admin(self, school_code: str) -> Person:
        return self.person(
            Actor(
                subject=school_admin_subject(school_code),
                name="Cán bộ quản lý học bạ",
                roles=frozenset({"school_admin"}),
                school_code=school_code,
            )
        )

    def enrolled(self, member: StaffMember) -> Person:
        """A member of the staff register, as they are enrolled."""
        return self.person(member.actor())

    def operator(self, name: str = "hocba-cli") -> Person:
        """The city department's operator (key rotation, audits, reading any school's records)."""
        return self.person(
            Actor(
                subject=f"operator-{name}",
                name="Cán bộ vận hành Sở Giáo dục và Đào tạo",
                roles=frozenset({"operator"}),
                school_code="",
            )
        )


# --- signing certificates for the same people (development PKI) ------------------------------


def homeroom_subject(school_code: str, class_name: str) -> str:
    """The subject id `Staff.homeroom_teacher` puts in the token; their certificate names it too."""
    return f"gvcn-{school_code}-{class_name}"


def principal_subject(school_code: str) -> str:
    """The subject id `Staff.principal` puts in the token; their certificate names it too."""
    return f"ht-{school_code}"


def certificate_holders(schools: Iterable[tuple[str, str]], classes: Iterable[str]) -> list[Holder]:
    """Who gets a signing certificate at each (school code, school name): every homeroom teacher of
    `classes`, the principal, and the school's seal."""
    class_names = list(classes)
    holders: list[Holder] = []
    for code, name in schools:
        holders += [
            Holder(homeroom_subject(code, c), f"Giáo viên chủ nhiệm {c}", "homeroom_teacher", code, name)
            for c in class_names
        ]
        holders.append(Holder(principal_subject(code), "Hiệu trưởng", "principal", code, name))
        holders.append(Holder(seal_subject(code), name, "school_seal", code, name))
    return holders


def school_admin_subject(school_code: str) -> str:
    """The subject id `Staff.school_admin` puts in the token."""
    return f"admin-{school_code}"


# --- the staff register (hocba pki enrol) ------------------------------------------------------

#: The roles of a school's staff, as actor tokens name them (shared.auth).
StaffRole = Literal["homeroom_teacher", "subject_teacher", "principal", "school_admin"]
STAFF_ROLES: tuple[StaffRole, ...] = get_args(StaffRole)
#: The staff who sign records with a certificate of their own (the school's seal is the third signature).
SIGNING_ROLES: tuple[StaffRole, ...] = ("homeroom_teacher", "principal")
#: What the demo and a school without a `school_name` column call a school.
SCHOOL_NAME = "Trường {code}"


@dataclass(frozen=True)
class StaffMember:
    """One person enrolled at a school in one role. `staff_id` is their subject id (tokens, certificate)."""

    staff_id: str
    name: str
    role: StaffRole
    school_code: str
    classes: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()

    @property
    def signs(self) -> bool:
        return self.role in SIGNING_ROLES

    def actor(self) -> Actor:
        homeroom = self.classes[0] if self.role == "homeroom_teacher" and self.classes else None
        return Actor(
            subject=self.staff_id,
            name=self.name,
            roles=frozenset({self.role}),
            school_code=self.school_code,
            classes=frozenset(self.classes),
            subjects=frozenset(self.subjects),
            homeroom_class=homeroom,
        )

    def holder(self, school_name: str) -> Holder:
        """Their signing certificate's holder: the name in the subject is the signer's name."""
        return Holder(self.staff_id, self.name, self.role, self.school_code, school_name)


def seal_holder(school_code: str, school_name: str) -> Holder:
    """The school's seal: the school signs as an organisation, under its name."""
    return Holder(seal_subject(school_code), school_name, "school_seal", school_code, school_name)


@dataclass
class StaffRegister:
    """Who is enrolled: the schools by code (their names) and their staff by staff id."""

    path: Path
    schools: dict[str, str] = field(default_factory=dict)
    staff: dict[str, StaffMember] = field(default_factory=dict)

    FILE = "staff.json"

    @classmethod
    def load(cls, pki_folder: Path) -> StaffRegister:
        """The register kept in the PKI folder (empty when nobody was enrolled there)."""
        path = pki_folder / cls.FILE
        if not path.exists():
            return cls(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        staff = {}
        for row in data.get("staff", []):
            row = {**row, "classes": tuple(row.get("classes", ())), "subjects": tuple(row.get("subjects", ()))}
            staff[row["staff_id"]] = StaffMember(**row)
        return cls(path, dict(data.get("schools", {})), staff)

    @classmethod
    def configured(cls, data_dir: Path | None = None) -> StaffRegister:
        """The register of the configured PKI (HOCBA_PKI_DIR, or <data dir>/pki)."""
        settings = Settings()
        if data_dir is not None:
            settings = settings.model_copy(update={"data_dir": data_dir})
        return cls.load(settings.pki_path())

    def save(self) -> None:
        """Write the register whole, readable by its owner only (0600 in a 0700 folder)."""
        rows = [asdict(m) for m in sorted(self.staff.values(), key=lambda m: (m.school_code, m.staff_id))]
        data = json.dumps({"schools": dict(sorted(self.schools.items())), "staff": rows}, ensure_ascii=False, indent=1)
        write_private(self.path, data.encode())

    def members(self, school_code: str) -> list[StaffMember]:
        return [m for m in self.staff.values() if m.school_code == school_code]

    def principal_of(self, school_code: str) -> StaffMember | None:
        return next((m for m in self.members(school_code) if m.role == "principal"), None)

    def homeroom_teacher_of(self, school_code: str, class_name: str) -> StaffMember | None:
        return next(
            (m for m in self.members(school_code) if m.role == "homeroom_teacher" and class_name in m.classes), None
        )

    def lead(self, school_code: str, class_name: str | None) -> StaffMember:
        """Who acts for a class (its homeroom teacher) or, without one, for the school (its principal), as enrolled.

        Raises NotEnrolled saying who is missing and how to enrol them.
        """
        if not self.members(school_code):
            raise NotEnrolled(
                f"school {school_code} is not enrolled: the staff register ({self.path}) has none of its staff; {ENROL}"
            )
        if class_name is not None:
            member = self.homeroom_teacher_of(school_code, class_name)
            if member is None:
                raise NotEnrolled(
                    f"class {class_name} of school {school_code} has no homeroom teacher enrolled: add a row with role "
                    f"homeroom_teacher and classes {class_name} to the school's staff table and run `hocba pki enrol` "
                    "again"
                )
            return member
        member = self.principal_of(school_code)
        if member is None:
            raise NotEnrolled(
                f"school {school_code} has no principal enrolled: add a row with role principal to the school's staff "
                "table and run `hocba pki enrol` again"
            )
        return member


#: How a school's staff is enrolled, as the messages that find someone missing say it.
ENROL = "enrol the school's staff with `hocba pki enrol staff.csv` (columns school_code, staff_id, name, role, classes)"


class NotEnrolled(LookupError):
    """Whoever would act (sign, review) is not in the staff register."""



def demo_staff_table(schools: Iterable[tuple[str, str, Iterable[str]]]) -> list[Mapping[str, str]]:
    """The staff table of the demo's schools, each (code, name, classes), as a school's CSV file has it: the
    principal, the records administrator and a homeroom teacher for each class, with the subject ids the demo's
    tokens carry (`Staff`)."""
    rows: list[Mapping[str, str]] = []
    for code, name, classes in schools:
        school = {"school_code": code, "school_name": name}
        rows.append({**school, "staff_id": principal_subject(code), "name": "Hiệu trưởng", "role": "principal"})
        rows.append(
            {**school, "staff_id": school_admin_subject(code), "name": "Cán bộ quản lý học bạ", "role": "school_admin"}
        )
        rows += [
            {
                **school,
                "staff_id": homeroom_subject(code, c),
                "name": f"Giáo viên chủ nhiệm {c}",
                "role": "homeroom_teacher",
                "classes": c,
            }
            for c in sorted(set(classes))
        ]
    return rows
