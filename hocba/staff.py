"""School staff as the school management system vouches for them: actor tokens for demo and tooling."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from shared.auth import TOKEN_LIFETIME, Actor, IssuerKey, signed_by
from shared.contracts.base import Message
from shared.contracts.signing import seal_subject
from shared.crypto.pki import Holder

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
            Actor(subject=principal_subject(school_code), name="Hiệu trưởng", roles=frozenset({"principal"}), school_code=school_code)
        )

    def school_admin(self, school_code: str) -> Person:
        return self.person(
            Actor(
                subject=f"admin-{school_code}",
                name="Cán bộ quản lý học bạ",
                roles=frozenset({"school_admin"}),
                school_code=school_code,
            )
        )

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
