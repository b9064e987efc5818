"""Signing in on the web page: the school management system's sign-in token for the web gateway, and the gateway's
token for each message acting for the person signed in. A service accepts it only when the gateway's certificate
signs it for that message and carries the person's own sign-in of the same subject, still running."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import pytest
from joserfc import jwt

from shared.auth import (
    ALGORITHM,
    GATEWAY_SUBJECT,
    SIGNED_IN,
    Actor,
    IssuerKey,
    ServiceIdentity,
    SignInExpired,
    Unauthenticated,
    issue_sign_in_token,
    sign_in_claims,
    signed_by,
    verify_sign_in_token,
    verify_token,
)
from shared.contracts.grades import CloseTerm
from shared.contracts.signing import RequestSignBatch
from shared.crypto.jws import b64url
from shared.crypto.pki import DevPki, service_holders

SCHOOL = "79000701"
ISSUER = IssuerKey.generate("school-app-1")


def principal(**changes) -> Actor:
    fields = {
        "subject": f"ht-{SCHOOL}",
        "name": "Nguyễn Thị Hoa",
        "roles": frozenset({"principal"}),
        "school_code": SCHOOL,
    }
    return Actor(**{**fields, **changes})


def sign_all() -> RequestSignBatch:
    return RequestSignBatch(school_code=SCHOOL, school_year="2025-2026", role="principal")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> DevPki:
    pki = DevPki(tmp_path_factory.mktemp("sign-in-pki") / "pki", b"test passphrase")
    pki.create(service_holders())
    return pki


@pytest.fixture(scope="module")
def gateway(pki) -> ServiceIdentity:
    """The web gateway, signing with its own certificate (svc-web)."""
    return ServiceIdentity("web", lambda: pki.signer(GATEWAY_SUBJECT))


@pytest.fixture(scope="module")
def signing(pki):
    """What signing accepts: the issuer's tokens, and tokens under a certificate of the PKI."""
    return ISSUER.public_keys().for_service("signing", services=pki.trust_store)


def signed_in(person: Actor | None = None, issuer: IssuerKey = ISSUER, lifetime: timedelta = timedelta(hours=8)):
    """The person as the gateway holds them after signing in: the verified claims and the token."""
    token = issue_sign_in_token(issuer, person or principal(), lifetime)
    return verify_sign_in_token(token, issuer.public_keys().for_sign_in()), token


def forged_sign_in(**changes) -> str:
    """A sign-in token signed by the issuer's key with claims of the test's choosing."""
    claims = sign_in_claims(principal(), ISSUER.issuer, timedelta(hours=8)) | changes
    return jwt.encode({"alg": ALGORITHM, "kid": ISSUER.kid}, claims, ISSUER.key)


# --- the sign-in token -------------------------------------------------------------------------


def test_a_sign_in_token_names_the_person_for_the_web_gateway_and_no_message():
    token = issue_sign_in_token(ISSUER, principal(), timedelta(hours=8))
    claims = jwt.decode(token, ISSUER.key).claims
    assert claims["aud"] == "web" and "msg" not in claims
    assert claims["exp"] - claims["iat"] == 8 * 3600
    person = verify_sign_in_token(token, ISSUER.public_keys().for_sign_in())
    assert person == principal().model_copy(update={"expires_at": person.expires_at})


def test_a_sign_in_longer_than_the_configured_session_is_refused():
    token = issue_sign_in_token(ISSUER, principal(), timedelta(hours=8))
    with pytest.raises(Unauthenticated, match="longer than the 3600s a sign-in may last"):
        verify_sign_in_token(token, ISSUER.public_keys().for_sign_in(timedelta(hours=1)))


def test_an_ended_sign_in_is_refused_as_expired():
    token = issue_sign_in_token(ISSUER, principal(), timedelta(hours=1))
    with pytest.raises(SignInExpired, match="sign in again"):
        verify_sign_in_token(token, ISSUER.public_keys().for_sign_in(), now=time.time() + 2 * 3600)


def test_a_message_token_is_no_sign_in():
    token = signed_by(sign_all(), ISSUER, principal()).actor
    with pytest.raises(Unauthenticated, match="names a message"):
        verify_sign_in_token(token, ISSUER.public_keys().for_sign_in())


# --- the gateway acting for the person ----------------------------------------------------------


def test_a_service_accepts_the_gateways_token_as_the_person_signed_in(gateway, signing):
    person, token = signed_in()
    command = gateway.signs_for(sign_all(), person, token)
    actor = verify_token(command, signing)
    assert actor.subject == f"ht-{SCHOOL}" and actor.roles == {"principal"}
    assert actor.is_principal_of(SCHOOL) and not actor.has("service")


def test_the_gateways_token_names_the_person_the_gateway_as_actor_and_carries_the_sign_in(gateway):
    person, token = signed_in()
    outer = json.loads(_payload(gateway.signs_for(sign_all(), person, token).actor))
    assert outer["iss"] == GATEWAY_SUBJECT and outer["sub"] == f"ht-{SCHOOL}" and outer["aud"] == "signing"
    assert outer["act"] == {"sub": GATEWAY_SUBJECT} and outer[SIGNED_IN] == token
    assert outer["exp"] - outer["iat"] <= 600


def test_the_gateways_token_ends_when_the_sign_in_does(gateway, signing):
    person, token = signed_in(lifetime=timedelta(minutes=2))
    command = gateway.signs_for(sign_all(), person, token)
    assert verify_token(command, signing).expires_at == person.expires_at
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token(command, signing, now=time.time() + 300)


def test_an_expired_sign_in_is_refused_behind_the_gateway(gateway, signing):
    """A gateway that kept an ended sign-in cannot use it: its own fresh token does not revive it."""
    now = int(time.time())
    ended = forged_sign_in(iat=now - 2 * 3600, exp=now - 3600)
    command = gateway.signs_for(sign_all(), principal(), ended)
    with pytest.raises(SignInExpired, match="carries a sign-in token that is refused: the sign-in ended"):
        verify_token(command, signing)


def test_a_sign_in_for_another_audience_is_refused_behind_the_gateway(gateway, signing):
    person, _ = signed_in()
    for_grades = forged_sign_in(aud="grades")
    with pytest.raises(Unauthenticated, match="sign-in token is for 'grades', not for the web gateway"):
        verify_token(gateway.signs_for(sign_all(), person, for_grades), signing)


def test_the_gateway_without_a_sign_in_acts_for_nobody(gateway, signing):
    """Its certificate alone is no one's word: the gateway's own service token is refused."""
    command = gateway.signs(sign_all())
    with pytest.raises(Unauthenticated, match="carries no sign-in token"):
        verify_token(command, signing)


def test_a_sign_in_token_under_another_services_certificate_is_refused(pki, signing):
    grades = ServiceIdentity("grades", lambda: pki.signer("svc-grades"))
    person, token = signed_in()
    with pytest.raises(Unauthenticated, match="only under the web gateway's certificate .* signed with svc-grades's"):
        verify_token(grades.signs_for(sign_all(), person, token), signing)


def test_the_gateway_cannot_act_as_someone_else_than_the_person_signed_in(gateway, signing):
    """A teacher's sign-in does not make the gateway's word the principal's."""
    teacher = principal(subject=f"gvcn-{SCHOOL}-6A1", roles=frozenset({"homeroom_teacher"}), homeroom_class="6A1")
    _, teachers_token = signed_in(teacher)
    posing, _ = signed_in(principal())
    with pytest.raises(Unauthenticated, match=f"is for 'ht-{SCHOOL}' but the sign-in token it carries is 'gvcn-"):
        verify_token(gateway.signs_for(sign_all(), posing, teachers_token), signing)


def test_a_sign_in_by_an_unknown_key_is_refused_behind_the_gateway(gateway, signing):
    stranger = IssuerKey.generate("school-app-1")
    person, token = signed_in(issuer=stranger)
    with pytest.raises(Unauthenticated, match="not signed by the school management system's key"):
        verify_token(gateway.signs_for(sign_all(), person, token), signing)


def test_a_tampered_sign_in_is_refused_behind_the_gateway(gateway, signing):
    """The teacher's sign-in made to say principal: its signature no longer holds."""
    teacher = principal(roles=frozenset({"homeroom_teacher"}), homeroom_class="6A1")
    person, token = signed_in(teacher)
    header, body, signature = token.split(".")
    claims = json.loads(_decode(body)) | {"roles": ["principal"]}
    tampered = ".".join([header, b64url(json.dumps(claims).encode()), signature])
    with pytest.raises(Unauthenticated, match="changed after it was signed"):
        verify_token(gateway.signs_for(sign_all(), person, tampered), signing)


def test_the_gateways_token_is_good_for_its_own_message_and_service_only(gateway, signing, pki):
    person, token = signed_in()
    command = gateway.signs_for(sign_all(), person, token)
    other = sign_all().model_copy(update={"school_year": "2026-2027", "actor": command.actor})
    with pytest.raises(Unauthenticated, match="msg"):
        verify_token(other, signing)
    grades = ISSUER.public_keys().for_service("grades", services=pki.trust_store)
    close = CloseTerm(school_code=SCHOOL, school_year="2025-2026", term=1)
    with pytest.raises(Unauthenticated, match="aud"):
        verify_token(gateway.signs_for(close, person, token).model_copy(update={"actor": command.actor}), grades)


def test_a_service_without_the_pkis_anchor_refuses_the_gateways_token(gateway):
    person, token = signed_in()
    with pytest.raises(Unauthenticated, match="not accepted here"):
        verify_token(gateway.signs_for(sign_all(), person, token), ISSUER.public_keys("signing"))


def test_a_sign_in_token_sent_as_a_messages_token_is_refused(signing):
    """Taken from the gateway, a sign-in token opens no service directly: it names no message, and is for the web."""
    _, token = signed_in()
    with pytest.raises(Unauthenticated, match="a sign-in token is not a message's token"):
        verify_token(sign_all().model_copy(update={"actor": token}), signing)


# --- helpers -------------------------------------------------------------------------------------


def _decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _payload(token: str) -> bytes:
    return _decode(token.split(".")[1])
