"""Actor tokens: who caused a command, as a signed JWT (ES256) from the school management system.

A service that acts on a person's command verifies the token against the configured issuer
keys; it never trusts the mere arrival of a message. The school management system (and, locally,
the `hocba` command line) issues tokens with `issue_token`.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, KeySetSerialization
from joserfc.jwt import JWTClaimsRegistry
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.errors import Forbidden

Role = Literal["subject_teacher", "homeroom_teacher", "principal", "school_admin", "operator"]
ALGORITHM = "ES256"
DEFAULT_ISSUER = "hocba-school-app"


class Unauthenticated(Forbidden):
    """No token, a bad signature, an unknown issuer key, or an expired token."""

    reason = "unauthenticated"


class Actor(BaseModel):
    """The person behind a command, as the issuer vouches for them."""

    model_config = ConfigDict(frozen=True)

    subject: str
    name: str = ""
    roles: frozenset[Role]
    school_code: str
    classes: frozenset[str] = frozenset()
    subjects: frozenset[str] = frozenset()
    homeroom_class: str | None = None
    expires_at: datetime

    def has(self, role: Role) -> bool:
        return role in self.roles

    def teaches(self, class_name: str, subject: str) -> bool:
        return self.has("subject_teacher") and class_name in self.classes and subject in self.subjects

    def is_homeroom_teacher_of(self, class_name: str) -> bool:
        return self.has("homeroom_teacher") and self.homeroom_class == class_name

    def is_principal_of(self, school_code: str) -> bool:
        return self.has("principal") and self.school_code == school_code


class IssuerKeys:
    """The public keys (JWKS) whose tokens services accept, and the expected issuer name."""

    def __init__(self, key_set: KeySet, issuer: str = DEFAULT_ISSUER) -> None:
        self.key_set = key_set
        self.issuer = issuer

    @classmethod
    def from_jwks(cls, jwks: dict, issuer: str = DEFAULT_ISSUER) -> IssuerKeys:
        public: KeySetSerialization = {"keys": [{k: v for k, v in key.items() if k != "d"} for key in jwks["keys"]]}
        return cls(KeySet.import_key_set(public), issuer)

    @classmethod
    def from_file(cls, path: Path, issuer: str = DEFAULT_ISSUER) -> IssuerKeys:
        return cls.from_jwks(json.loads(path.read_text()), issuer)


class IssuerKey:
    """A private key that issues actor tokens (the school management system holds it)."""

    def __init__(self, key: ECKey, issuer: str = DEFAULT_ISSUER) -> None:
        self.key = key
        self.issuer = issuer

    @classmethod
    def generate(cls, kid: str, issuer: str = DEFAULT_ISSUER) -> IssuerKey:
        return cls(ECKey.generate_key("P-256", parameters={"kid": kid}), issuer)

    @property
    def kid(self) -> str:
        return str(self.key.kid)

    def public_keys(self) -> IssuerKeys:
        return IssuerKeys.from_jwks({"keys": [self.key.as_dict(private=False)]}, self.issuer)

    def private_jwk(self) -> dict:
        return self.key.as_dict(private=True)


def issue_token(issuer: IssuerKey, actor: Actor) -> str:
    claims = {
        "iss": issuer.issuer,
        "sub": actor.subject,
        "name": actor.name,
        "roles": sorted(actor.roles),
        "school": actor.school_code,
        "classes": sorted(actor.classes),
        "subjects": sorted(actor.subjects),
        "homeroom_class": actor.homeroom_class,
        "iat": int(time.time()),
        "exp": int(actor.expires_at.timestamp()),
    }
    return jwt.encode({"alg": ALGORITHM, "kid": issuer.kid}, claims, issuer.key)


def verify_token(token: str | None, keys: IssuerKeys, now: float | None = None) -> Actor:
    """The actor a token vouches for; raises Unauthenticated saying why it is not accepted."""
    if not token:
        raise Unauthenticated("the command carries no actor token")
    try:
        decoded = jwt.decode(token, keys.key_set, algorithms=[ALGORITHM])
    except (JoseError, ValueError) as exc:
        raise Unauthenticated(f"actor token rejected: {exc}") from exc
    registry = JWTClaimsRegistry(
        now=int(now if now is not None else time.time()),
        leeway=30,
        iss={"essential": True, "value": keys.issuer},
        sub={"essential": True},
        exp={"essential": True},
    )
    try:
        registry.validate(decoded.claims)
    except JoseError as exc:
        raise Unauthenticated(f"actor token rejected: {exc.description or exc}") from exc
    claims = decoded.claims
    try:
        return Actor(
            subject=claims["sub"],
            name=claims.get("name", ""),
            roles=frozenset(claims.get("roles", ())),
            school_code=claims.get("school", ""),
            classes=frozenset(claims.get("classes", ())),
            subjects=frozenset(claims.get("subjects", ())),
            homeroom_class=claims.get("homeroom_class"),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )
    except ValidationError as exc:
        raise Unauthenticated(f"actor token has malformed claims: {exc.errors()[0]['msg']}") from exc


def issuer_keys_for(jwks_path: Path | None, issuer: str) -> IssuerKeys | None:
    """The configured issuer keys, or None when none are configured (every actor is then refused)."""
    return IssuerKeys.from_file(jwks_path, issuer) if jwks_path else None


def require_actor(token: str | None, keys: IssuerKeys | None) -> Actor:
    if keys is None:
        raise Unauthenticated("no actor-token issuer keys are configured (HOCBA_ACTOR_ISSUER_JWKS)")
    return verify_token(token, keys)
