"""Actor tokens: who sends a command or a request, as a signed JWT (ES256), good for that one message.

A service never trusts the mere arrival of a message. Every command and request carries an actor
token that names:

* `iss`, `sub`: who vouches (the school management system, or the department's operator tool)
  and for whom;
* `aud`: the service that acts on the message (the first word of its routing key);
* `msg`: the SHA-256 of the message's canonical JSON without the token, so the token is good for
  this message and no other (a redelivery is the same message);
* `iat`, `exp`: when it was made and until when it holds; a token may live at most
  `IssuerKeys.max_lifetime`, minutes, not hours.

People's tokens are issued with the school management system's key (`IssuerKey`, JWKS for the
services). A service that asks another on its own behalf (grades asking identity for the students
of a closing year) signs with its service certificate from the PKI (`ServiceIdentity`); its token
carries the `x5c` chain and is checked against the PKI's trust anchor.

The web gateway acts for a person by delegation. When the person signs in, the school management
system gives them a sign-in token (`issue_sign_in_token`): its key, audience `web`, no `msg`, the
person's claims, living at most `IssuerKeys.sign_in_lifetime` (a working day). For each message
the gateway then signs a token of its own with its service certificate (`svc-web`, `x5c`), good
for that message as every token is, whose `sub` is the person, whose `act` names the gateway as
the party acting for them (RFC 8693 §4.1, the "actor" claim) and whose `signed_in` claim carries
the person's sign-in token whole (`ServiceIdentity.signs_for`). A service accepts it only when
both hold: the outer token as a service token (chain to the PKI's anchor, the gateway's own
certificate, `msg`, `aud`, expiry), the inner one as the school management system's sign-in of
that same subject (`verify_sign_in_token`); the actor is the person the sign-in token names. So
the gateway can act only for someone who signed in, only as them, only while their sign-in lasts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import ECKey, KeySet, KeySetSerialization
from joserfc.jws import JWSRegistry
from joserfc.jwt import JWTClaimsRegistry
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.contracts.base import MAX_TOKEN_LENGTH, Acting, Message
from shared.crypto.canonical import canonical_json, sha256_hex
from shared.crypto.certs import TrustStore, from_x5c
from shared.crypto.jws import b64url, protected_header
from shared.crypto.signer import X509Signer
from shared.errors import Forbidden

Role = Literal["subject_teacher", "homeroom_teacher", "principal", "school_admin", "operator", "service"]
ALGORITHM = "ES256"
DEFAULT_ISSUER = "hocba-school-app"
#: How long a token may live at most, unless configured otherwise (HOCBA_ACTOR_TOKEN_MAX_SECONDS).
MAX_LIFETIME = timedelta(minutes=15)
#: How long a token the command line and the demo issue lives.
TOKEN_LIFETIME = timedelta(minutes=10)
#: Clocks may differ this much between issuer and service.
LEEWAY_SECONDS = 30
#: The `title` of a service's certificate; its subject id is `svc-<service>`.
SERVICE_TITLE = "service"
#: The audience of a sign-in token: the web gateway, which alone may carry it.
SIGN_IN_AUDIENCE = "web"
#: The subject id of the web gateway's certificate (shared.crypto.pki `gateway_holder`).
GATEWAY_SUBJECT = f"svc-{SIGN_IN_AUDIENCE}"
#: The claim of the gateway's token that carries the person's sign-in token.
SIGNED_IN = "signed_in"
#: How long a sign-in may last at most (a working day), unless configured shorter (HOCBA_WEB_SESSION_MAX_SECONDS
#: for the gateway; `IssuerKeys.sign_in_lifetime`).
SIGN_IN_LIFETIME = timedelta(hours=8)

M = TypeVar("M", bound=Message)


class Unauthenticated(Forbidden):
    """No token, a bad signature, an unknown issuer key, the wrong audience or message, or an expired token."""

    reason = "unauthenticated"


class SignInExpired(Unauthenticated):
    """The sign-in token's lifetime is over: the person signs in again."""

    def __init__(self, message: str = "", *, ended_at: datetime | None = None) -> None:
        super().__init__(message)
        #: When the sign-in ended.
        self.ended_at = ended_at


class Actor(BaseModel):
    """The person (or service) behind a message, as the issuer vouches for them."""

    model_config = ConfigDict(frozen=True)

    subject: str
    name: str = ""
    roles: frozenset[Role]
    school_code: str
    classes: frozenset[str] = frozenset()
    subjects: frozenset[str] = frozenset()
    homeroom_class: str | None = None
    #: Until when the token that vouched for the actor holds (None before a token is issued).
    expires_at: datetime | None = None

    def has(self, role: Role) -> bool:
        return role in self.roles

    def teaches(self, class_name: str, subject: str) -> bool:
        return self.has("subject_teacher") and class_name in self.classes and subject in self.subjects

    def is_homeroom_teacher_of(self, class_name: str) -> bool:
        return self.has("homeroom_teacher") and self.homeroom_class == class_name

    def is_principal_of(self, school_code: str) -> bool:
        return self.has("principal") and self.school_code == school_code

    def is_service(self, service: str) -> bool:
        return self.has("service") and self.subject == service_subject(service)

    def acting(self) -> Acting:
        """Who acted, as the events a command causes carry it (never the token itself)."""
        return Acting(subject=self.subject, roles=sorted(self.roles), school_code=self.school_code)


def authorise_review(actor: Actor, school_code: str, class_name: str | None) -> None:
    """A class is reviewed before signing by its homeroom teacher; every class of a school by its principal or
    records administrator. Raises Forbidden otherwise (grades shows the review, signing keeps its confirmation)."""
    if actor.school_code == school_code and (actor.has("principal") or actor.has("school_admin")):
        return
    if class_name and actor.school_code == school_code and actor.is_homeroom_teacher_of(class_name):
        return
    whose = f"class {class_name}" if class_name else f"every class of school {school_code}"
    raise Forbidden(
        f"{actor.subject} may not review {whose}: a class's homeroom teacher reviews it, the school's principal or "
        "records administrator reviews every class"
    )


def service_subject(service: str) -> str:
    """The subject id of a service's certificate: `svc-<service>`."""
    return f"svc-{service}"


def audience_of(message: type[Message] | Message) -> str:
    """The service that acts on a message: the first word of its routing key (`grades.term.close.v1` → grades)."""
    return message.ROUTING_KEY.split(".", 1)[0]


def message_digest(message: Message) -> str:
    """SHA-256 (hex) of the message's RFC 8785 JSON without its actor token: what a token names in `msg`."""
    return sha256_hex(canonical_json(message.model_dump(mode="json", exclude={"actor"})))


class IssuerKeys:
    """What a service accepts tokens from, and for whom: the issuer's public keys (JWKS) and name, this service
    as the audience, the longest lifetime it accepts, and the PKI whose service certificates may sign too."""

    def __init__(
        self,
        key_set: KeySet,
        issuer: str = DEFAULT_ISSUER,
        audience: str = "",
        max_lifetime: timedelta = MAX_LIFETIME,
        services: Callable[[], TrustStore] | None = None,
        sign_in_lifetime: timedelta = SIGN_IN_LIFETIME,
    ) -> None:
        self.key_set = key_set
        self.issuer = issuer
        self.audience = audience
        self.max_lifetime = max_lifetime
        self.services = services
        #: The longest sign-in accepted (from sign-in to expiry), for the web gateway and behind it.
        self.sign_in_lifetime = sign_in_lifetime

    @classmethod
    def from_jwks(cls, jwks: dict, issuer: str = DEFAULT_ISSUER, audience: str = "") -> IssuerKeys:
        public: KeySetSerialization = {"keys": [{k: v for k, v in key.items() if k != "d"} for key in jwks["keys"]]}
        return cls(KeySet.import_key_set(public), issuer, audience)

    @classmethod
    def from_file(cls, path: Path, issuer: str = DEFAULT_ISSUER, audience: str = "") -> IssuerKeys:
        return cls.from_jwks(json.loads(path.read_text()), issuer, audience)

    def for_service(self, audience: str, services: Callable[[], TrustStore] | None = None) -> IssuerKeys:
        """The same issuer's keys, as the service `audience` accepts them (and service tokens checked against `services`)."""
        return IssuerKeys(
            self.key_set, self.issuer, audience, self.max_lifetime, services or self.services, self.sign_in_lifetime
        )

    def for_sign_in(self, lifetime: timedelta = SIGN_IN_LIFETIME) -> IssuerKeys:
        """The same issuer's keys as the web gateway checks a sign-in token with: sign-ins living at most `lifetime`."""
        return IssuerKeys(self.key_set, self.issuer, SIGN_IN_AUDIENCE, self.max_lifetime, self.services, lifetime)


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

    def public_keys(self, audience: str = "") -> IssuerKeys:
        return IssuerKeys.from_jwks({"keys": [self.key.as_dict(private=False)]}, self.issuer, audience)

    def private_jwk(self) -> dict:
        return self.key.as_dict(private=True)


def person_claims(actor: Actor) -> dict[str, Any]:
    """Who `actor` is, as a token says it: name, roles, school, classes, subjects, homeroom class."""
    return {
        "name": actor.name,
        "roles": sorted(actor.roles),
        "school": actor.school_code,
        "classes": sorted(actor.classes),
        "subjects": sorted(actor.subjects),
        "homeroom_class": actor.homeroom_class,
    }


def token_claims(actor: Actor, message: Message, issuer: str, lifetime: timedelta) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": issuer,
        "sub": actor.subject,
        "aud": audience_of(message),
        "msg": message_digest(message),
        "iat": now,
        "exp": now + int(lifetime.total_seconds()),
        **person_claims(actor),
    }


def issue_token(issuer: IssuerKey, actor: Actor, message: Message, lifetime: timedelta = TOKEN_LIFETIME) -> str:
    """A token by `issuer` for `actor`, good for `message` only, living `lifetime`."""
    claims = token_claims(actor, message, issuer.issuer, lifetime)
    return jwt.encode({"alg": ALGORITHM, "kid": issuer.kid}, claims, issuer.key)


def signed_by(message: M, issuer: IssuerKey, actor: Actor, lifetime: timedelta = TOKEN_LIFETIME) -> M:
    """`message` carrying `actor`'s token for it."""
    return message.model_copy(update={"actor": issue_token(issuer, actor, message, lifetime)})


def sign_in_claims(actor: Actor, issuer: str, lifetime: timedelta) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": issuer,
        "sub": actor.subject,
        "aud": SIGN_IN_AUDIENCE,
        "iat": now,
        "exp": now + int(lifetime.total_seconds()),
        **person_claims(actor),
    }


def issue_sign_in_token(issuer: IssuerKey, actor: Actor, lifetime: timedelta = SIGN_IN_LIFETIME) -> str:
    """The school management system's word that `actor` signed in: for the web gateway (`aud` web), for no message
    (no `msg`: it is no message's token), living `lifetime`, the length of the session."""
    return jwt.encode(
        {"alg": ALGORITHM, "typ": "JWT", "kid": issuer.kid}, sign_in_claims(actor, issuer.issuer, lifetime), issuer.key
    )


def verify_sign_in_token(token: str, keys: IssuerKeys, now: float | None = None) -> Actor:
    """The person a sign-in token names, when the issuer's key signed it for the web gateway, it has not expired and
    it lives no longer than `keys.sign_in_lifetime`; raises Unauthenticated (SignInExpired once over) saying why."""
    try:
        header = protected_header(token)
    except (ValueError, UnicodeDecodeError, IndexError):
        raise Unauthenticated("the sign-in token is not a compact JWT") from None
    if "x5c" in header:
        raise Unauthenticated(
            "the sign-in token is signed with a certificate: the school management system's key signs it"
        )
    try:
        claims = jwt.decode(token, keys.key_set, algorithms=[ALGORITHM]).claims
    except (JoseError, ValueError) as exc:
        raise Unauthenticated(
            f"the sign-in token is not signed by the school management system's key ({type(exc).__name__}): an "
            "unknown key, or a token changed after it was signed"
        ) from None
    at = int(now if now is not None else time.time())
    if "msg" in claims:
        raise Unauthenticated("the sign-in token names a message: it is a message's token, not a sign-in")
    if claims.get("aud") != SIGN_IN_AUDIENCE:
        raise Unauthenticated(
            f"the sign-in token is for {claims.get('aud')!r}, not for the web gateway ({SIGN_IN_AUDIENCE!r})"
        )
    registry = JWTClaimsRegistry(
        now=at,
        leeway=LEEWAY_SECONDS,
        iss={"essential": True, "value": keys.issuer},
        sub={"essential": True},
        aud={"essential": True, "value": SIGN_IN_AUDIENCE},
        iat={"essential": True},
        exp={"essential": True},
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        ended = datetime.fromtimestamp(claims["exp"], UTC)
        raise SignInExpired(f"the sign-in ended at {ended:%Y-%m-%d %H:%M} UTC: sign in again", ended_at=ended) from None
    except JoseError as exc:
        raise Unauthenticated(f"sign-in token rejected: {exc.description or type(exc).__name__}") from None
    _check_times(claims, at, keys.sign_in_lifetime, "sign-in token", "a sign-in may last")
    return _actor(claims, "sign-in")


class ServiceIdentity:
    """A service acting on its own behalf: tokens signed with its certificate's key, the chain in `x5c`."""

    def __init__(self, service: str, signer: Callable[[], X509Signer]) -> None:
        self.service = service
        self.signer = signer

    def actor(self) -> Actor:
        return Actor(subject=service_subject(self.service), roles=frozenset({"service"}), school_code="")

    def signs(self, message: M, lifetime: timedelta = TOKEN_LIFETIME) -> M:
        claims = token_claims(self.actor(), message, service_subject(self.service), lifetime)
        return message.model_copy(update={"actor": self._token(claims)})

    def signs_for(self, message: M, person: Actor, sign_in_token: str, lifetime: timedelta = TOKEN_LIFETIME) -> M:
        """`message` carrying this service's token for it, acting for `person` by their sign-in token: `sub` is the
        person, `act` this service (RFC 8693 §4.1), `signed_in` the sign-in token; it ends when the sign-in does,
        if that is sooner. Only the web gateway's certificate is accepted so (`verify_token`)."""
        now = int(time.time())
        ends = now + int(lifetime.total_seconds())
        if person.expires_at is not None:
            ends = min(ends, int(person.expires_at.timestamp()))
        claims: dict[str, Any] = {
            "iss": service_subject(self.service),
            "sub": person.subject,
            "aud": audience_of(message),
            "msg": message_digest(message),
            "iat": now,
            "exp": ends,
            "act": {"sub": service_subject(self.service)},
            SIGNED_IN: sign_in_token,
        }
        return message.model_copy(update={"actor": self._token(claims)})

    def _token(self, claims: dict[str, Any]) -> str:
        signer = self.signer()
        header = {"alg": ALGORITHM, "typ": "JWT", "kid": signer.key_id, "x5c": signer.x5c}
        protected = b64url(json.dumps(header, separators=(",", ":")).encode())
        body = b64url(json.dumps(claims, separators=(",", ":")).encode())
        signature = b64url(signer.sign_raw(f"{protected}.{body}".encode()))
        return f"{protected}.{body}.{signature}"


def verify_token(message: Message, keys: IssuerKeys, now: float | None = None) -> Actor:
    """The actor whose token `message` carries; raises Unauthenticated saying why it is not accepted."""
    token = message.actor
    if not token:
        raise Unauthenticated("the message carries no actor token")
    try:
        header = protected_header(token)
    except (ValueError, UnicodeDecodeError, IndexError):
        raise Unauthenticated("the actor token is not a compact JWT") from None
    if "x5c" in header:
        decoded, certified = _service_token(token, header, keys)
        if SIGNED_IN in decoded.claims:
            return _delegated(decoded.claims, certified, keys, message, now)
        if certified == GATEWAY_SUBJECT:
            raise Unauthenticated(
                "the web gateway's token carries no sign-in token: the gateway acts only for a person signed in"
            )
        if decoded.claims.get("sub") != certified:
            raise Unauthenticated("the service token names another service than its certificate")
        claims, issuer = decoded.claims, certified
    else:
        claims, issuer = _person_token(token, keys).claims, keys.issuer
        if claims.get("aud") == SIGN_IN_AUDIENCE and "msg" not in claims:
            raise Unauthenticated(
                "a sign-in token is not a message's token: it names no message and is for the web gateway, not for "
                f"{keys.audience or 'this service'}"
            )
    _check_claims(claims, issuer, keys, message, now)
    return _actor(claims, "actor")


def _actor(claims: dict[str, Any], token: str) -> Actor:
    """The person (or service) `claims` name; `token` says which token, for the refusal."""
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
    except (ValidationError, TypeError) as exc:
        what = exc.errors()[0]["type"] if isinstance(exc, ValidationError) else "not a list"
        raise Unauthenticated(f"the {token} token has malformed claims: {what}") from None


def _delegated(claims: dict[str, Any], certified: str, keys: IssuerKeys, message: Message, now: float | None) -> Actor:
    """The person the web gateway acts for: its token good for this message and service, the sign-in token it
    carries the issuer's, for the gateway, unexpired, of the same subject."""
    if certified != GATEWAY_SUBJECT:
        raise Unauthenticated(
            f"a sign-in token is carried only under the web gateway's certificate ({GATEWAY_SUBJECT}); this token is "
            f"signed with {certified}'s"
        )
    act = claims.get("act")
    if not isinstance(act, dict) or act.get("sub") != certified:
        raise Unauthenticated(f"the web gateway's token does not name the gateway ({certified}) as the actor (`act`)")
    _check_claims(claims, certified, keys, message, now)
    inner = claims[SIGNED_IN]
    if not isinstance(inner, str):
        raise Unauthenticated("the web gateway's token carries a sign-in token that is not a compact JWT")
    refused = "the web gateway's token carries a sign-in token that is refused"
    try:
        person = verify_sign_in_token(inner, keys, now)
    except SignInExpired as exc:
        raise SignInExpired(f"{refused}: {exc}", ended_at=exc.ended_at) from None
    except Unauthenticated as exc:
        raise Unauthenticated(f"{refused}: {exc}") from None
    if claims["sub"] != person.subject:
        raise Unauthenticated(
            f"the web gateway's token is for {claims['sub']!r} but the sign-in token it carries is {person.subject!r}'s"
        )
    ends = min(claims["exp"], int(person.expires_at.timestamp())) if person.expires_at else claims["exp"]
    return person.model_copy(update={"expires_at": datetime.fromtimestamp(ends, UTC)})


def _person_token(token: str, keys: IssuerKeys) -> jwt.Token:
    try:
        return jwt.decode(token, keys.key_set, algorithms=[ALGORITHM])
    except (JoseError, ValueError) as exc:
        raise Unauthenticated(f"actor token rejected: {type(exc).__name__}") from None


#: A service token's header carries its certificate chain: larger than joserfc's default header limit.
_WITH_CHAIN = JWSRegistry(algorithms=[ALGORITHM])
_WITH_CHAIN.max_header_length = MAX_TOKEN_LENGTH


def _service_token(token: str, header: dict[str, Any], keys: IssuerKeys) -> tuple[jwt.Token, str]:
    """A token signed with a service certificate, and the service the certificate names: its chain leads to the
    PKI's anchor and names a service (whom the token may be for is the caller's to check)."""
    if keys.services is None:
        raise Unauthenticated("service tokens are not accepted here")
    try:
        chain = from_x5c(header["x5c"])
    except (ValueError, TypeError):
        raise Unauthenticated("the service token's certificate cannot be read") from None
    holder = chain[0]
    try:
        trusted = keys.services()
    except OSError as exc:
        raise Unauthenticated(f"service tokens cannot be checked here: {exc}") from None
    check = trusted.validate(chain, datetime.now(UTC), purpose="checkpoint")
    if not check.ok:
        raise Unauthenticated(f"the service token's certificate is not trusted: {'; '.join(check.failed)}")
    if check.identity is None or check.identity.role != SERVICE_TITLE:
        raise Unauthenticated("the token's certificate is not a service certificate")
    public = holder.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    try:
        decoded = jwt.decode(token, ECKey.import_key(public), algorithms=[ALGORITHM], registry=_WITH_CHAIN)
    except (JoseError, ValueError) as exc:
        raise Unauthenticated(f"service token rejected: {type(exc).__name__}") from None
    return decoded, check.identity.subject_id


def _check_claims(claims: dict[str, Any], issuer: str, keys: IssuerKeys, message: Message, now: float | None) -> None:
    at = int(now if now is not None else time.time())
    registry = JWTClaimsRegistry(
        now=at,
        leeway=LEEWAY_SECONDS,
        iss={"essential": True, "value": issuer},
        sub={"essential": True},
        aud={"essential": True, "value": keys.audience},
        iat={"essential": True},
        exp={"essential": True},
        msg={"essential": True, "value": message_digest(message)},
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise Unauthenticated(f"actor token rejected: {exc.description or type(exc).__name__}") from None
    _check_times(claims, at, keys.max_lifetime, "actor token", "accepted")


def _check_times(claims: dict[str, Any], at: int, longest: timedelta, token: str, limit: str) -> None:
    """A token issued no later than now (with leeway) and living no longer than `longest`."""
    if claims["iat"] > at + LEEWAY_SECONDS:
        raise Unauthenticated(f"{token} rejected: issued in the future")
    if claims["exp"] - claims["iat"] > longest.total_seconds():
        raise Unauthenticated(
            f"{token} rejected: it lives {claims['exp'] - claims['iat']}s, longer than the "
            f"{int(longest.total_seconds())}s {limit}"
        )


def issuer_keys_for(
    jwks_path: Path | None, issuer: str, audience: str, services: Callable[[], TrustStore] | None = None
) -> IssuerKeys | None:
    """The configured issuer keys as `audience` accepts them, or None when none are configured (every actor is then
    refused); with `services` (the PKI's trust anchor), tokens under a service certificate too: a service asking on
    its own behalf, and the web gateway acting for a person signed in."""
    if not jwks_path:
        return None
    return IssuerKeys.from_file(jwks_path, issuer, audience).for_service(audience, services)


def require_actor(message: Message, keys: IssuerKeys | None) -> Actor:
    """The verified actor of `message`: refused (Unauthenticated) unless its token is good for it and this service."""
    if keys is None:
        raise Unauthenticated("no actor-token issuer keys are configured (HOCBA_ACTOR_ISSUER_JWKS)")
    return verify_token(message, keys)
