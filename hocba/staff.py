"""School staff as the school management system vouches for them: actor tokens for demo and tooling."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import cache

from shared.auth import Actor, IssuerKey, issue_token
from shared.contracts.signing import seal_subject
from shared.crypto.pki import Holder

TOKEN_LIFETIME = timedelta(hours=8)


class Staff:
    """Issues tokens for a school's subject teachers, homeroom teachers and principal."""

    def __init__(self, issuer: IssuerKey) -> None:
        self.issuer = issuer
        self.token = cache(self._token)

    def _token(self, actor: Actor) -> str:
        return issue_token(self.issuer, actor)

    @staticmethod
    def _expiry() -> datetime:
        # Rounded so the same person gets the same (cached) token within a run.
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        return now + TOKEN_LIFETIME

    def subject_teacher(self, school_code: str, subject: str, classes: Iterable[str]) -> str:
        return self.token(
            Actor(
                subject=f"gv-{school_code}-{hashlib.sha256(subject.encode()).hexdigest()[:8]}",
                name=f"Giáo viên {subject}",
                roles=frozenset({"subject_teacher"}),
                school_code=school_code,
                classes=frozenset(classes),
                subjects=frozenset({subject}),
                expires_at=self._expiry(),
            )
        )

    def homeroom_teacher(self, school_code: str, class_name: str) -> str:
        return self.token(
            Actor(
                subject=f"gvcn-{school_code}-{class_name}",
                name=f"Giáo viên chủ nhiệm {class_name}",
                roles=frozenset({"homeroom_teacher"}),
                school_code=school_code,
                classes=frozenset({class_name}),
                homeroom_class=class_name,
                expires_at=self._expiry(),
            )
        )

    def principal(self, school_code: str) -> str:
        return self.token(
            Actor(
                subject=f"ht-{school_code}",
                name="Hiệu trưởng",
                roles=frozenset({"principal"}),
                school_code=school_code,
                expires_at=self._expiry(),
            )
        )

    def school_admin(self, school_code: str) -> str:
        return self.token(
            Actor(
                subject=f"admin-{school_code}",
                name="Cán bộ quản lý học bạ",
                roles=frozenset({"school_admin"}),
                school_code=school_code,
                expires_at=self._expiry(),
            )
        )

    def operator(self, name: str = "hocba-cli") -> str:
        """The city department's operator (key rotation, reading any school's records)."""
        return self.token(
            Actor(
                subject=f"operator-{name}",
                name="Cán bộ vận hành Sở Giáo dục và Đào tạo",
                roles=frozenset({"operator"}),
                school_code="",
                expires_at=self._expiry(),
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
