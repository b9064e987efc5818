"""School staff as the school management system vouches for them: actor tokens for demo and tooling."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import cache

from shared.auth import Actor, IssuerKey, issue_token

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
