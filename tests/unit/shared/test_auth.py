"""Actor tokens: issued for one message and one service, verified by that service, living minutes."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from joserfc import jwt

from shared.auth import (
    Actor,
    IssuerKey,
    IssuerKeys,
    ServiceIdentity,
    Unauthenticated,
    authorise_review,
    issue_token,
    signed_by,
    token_claims,
    verify_token,
)
from shared.contracts.grades import CloseTerm
from shared.contracts.identity import FindStudents, LookupStudents
from shared.crypto.pki import DevPki, service_holders
from shared.errors import Forbidden


def teacher(**changes) -> Actor:
    fields = {
        "subject": "gv-001",
        "name": "Lê Thị Hoa",
        "roles": frozenset({"subject_teacher", "homeroom_teacher"}),
        "school_code": "79000701",
        "classes": frozenset({"6A1", "6A2"}),
        "subjects": frozenset({"Toán"}),
        "homeroom_class": "6A1",
    }
    return Actor(**{**fields, **changes})


def close_term(term: int = 1) -> CloseTerm:
    return CloseTerm(school_code="79000701", school_year="2025-2026", term=term)


ISSUER = IssuerKey.generate("school-app-1")
GRADES = ISSUER.public_keys("grades")


def test_a_token_round_trips_to_the_same_actor():
    command = signed_by(close_term(), ISSUER, teacher())
    verified = verify_token(command, GRADES)
    assert verified.subject == "gv-001" and verified.roles == teacher().roles
    assert verified.teaches("6A2", "Toán") and not verified.teaches("6A3", "Toán")
    assert not verified.teaches("6A1", "Ngữ văn")
    assert verified.is_homeroom_teacher_of("6A1") and not verified.is_homeroom_teacher_of("6A2")
    assert not verified.is_principal_of("79000701")
    assert verified.expires_at is not None


def test_unauthenticated_is_a_permanent_forbidden_error():
    assert issubclass(Unauthenticated, Forbidden)


@pytest.mark.parametrize("token", [None, "", "not-a-jwt", "a.b.c"])
def test_missing_or_malformed_tokens_are_rejected(token):
    with pytest.raises(Unauthenticated):
        verify_token(close_term().model_copy(update={"actor": token}), GRADES)


def test_a_token_from_another_key_is_rejected():
    stranger = IssuerKey.generate("school-app-1")
    with pytest.raises(Unauthenticated):
        verify_token(signed_by(close_term(), stranger, teacher()), GRADES)


def test_a_token_is_good_for_its_own_message_only():
    """Taken from one command and put on another (even of the same kind), a token is refused."""
    token = signed_by(close_term(1), ISSUER, teacher()).actor
    with pytest.raises(Unauthenticated, match="msg"):
        verify_token(close_term(2).model_copy(update={"actor": token}), GRADES)


def test_a_token_is_good_for_the_service_that_acts_only():
    """A school administrator's token for grades does not open identity's register."""
    command = signed_by(close_term(), ISSUER, teacher())
    with pytest.raises(Unauthenticated, match="aud"):
        verify_token(command, ISSUER.public_keys("identity"))
    lookup = LookupStudents(student_refs=["s1"])
    with pytest.raises(Unauthenticated, match="aud"):
        verify_token(lookup.model_copy(update={"actor": command.actor}), ISSUER.public_keys("identity"))


def test_a_token_for_a_foreign_audience_is_refused():
    claims = token_claims(teacher(), close_term(), ISSUER.issuer, timedelta(minutes=5)) | {"aud": "elsewhere"}
    token = jwt.encode({"alg": "ES256", "kid": ISSUER.kid}, claims, ISSUER.key)
    with pytest.raises(Unauthenticated, match="aud"):
        verify_token(close_term().model_copy(update={"actor": token}), GRADES)


@pytest.mark.parametrize("missing", ["iat", "exp", "aud", "msg"])
def test_a_token_without_iat_exp_aud_or_msg_is_refused(missing):
    command = close_term()
    claims = token_claims(teacher(), command, ISSUER.issuer, timedelta(minutes=5))
    del claims[missing]
    token = jwt.encode({"alg": "ES256", "kid": ISSUER.kid}, claims, ISSUER.key)
    with pytest.raises(Unauthenticated, match=missing):
        verify_token(command.model_copy(update={"actor": token}), GRADES)


def test_an_expired_token_is_rejected():
    command = signed_by(close_term(), ISSUER, teacher(), lifetime=timedelta(minutes=5))
    assert verify_token(command, GRADES).subject == "gv-001"
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token(command, GRADES, now=time.time() + 3600)


def test_a_token_that_lives_hours_is_refused():
    """Tokens live minutes: an eight-hour token taken from a message is no lasting key."""
    command = signed_by(close_term(), ISSUER, teacher(), lifetime=timedelta(hours=8))
    with pytest.raises(Unauthenticated, match="longer than"):
        verify_token(command, GRADES)


def test_a_token_issued_in_the_future_is_refused():
    command = close_term()
    claims = token_claims(teacher(), command, ISSUER.issuer, timedelta(minutes=5))
    claims |= {"iat": claims["iat"] + 600, "exp": claims["exp"] + 600}
    token = jwt.encode({"alg": "ES256", "kid": ISSUER.kid}, claims, ISSUER.key)
    with pytest.raises(Unauthenticated, match="future|iat"):
        verify_token(command.model_copy(update={"actor": token}), GRADES)


def test_a_token_for_another_issuer_name_is_rejected():
    issuer = IssuerKey.generate("k1", issuer="someone-else")
    keys = IssuerKeys(issuer.public_keys().key_set, audience="grades")  # expects the default issuer name
    with pytest.raises(Unauthenticated, match="iss"):
        verify_token(signed_by(close_term(), issuer, teacher()), keys)


def test_public_keys_never_carry_the_private_part():
    assert "d" in ISSUER.private_jwk()
    public = IssuerKeys.from_jwks({"keys": [ISSUER.private_jwk()]}, audience="grades")
    assert all("d" not in key.as_dict(private=False) for key in public.key_set.keys)
    assert verify_token(signed_by(close_term(), ISSUER, teacher()), public).subject == "gv-001"


def test_a_raw_token_names_the_message_and_the_service():
    command = close_term()
    claims = jwt.decode(issue_token(ISSUER, teacher(), command), ISSUER.key).claims
    assert claims["aud"] == "grades" and len(claims["msg"]) == 64
    assert claims["exp"] - claims["iat"] == 600


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> DevPki:
    pki = DevPki(tmp_path_factory.mktemp("auth-pki") / "pki", b"test passphrase")
    pki.create(service_holders())
    return pki


def test_a_service_asks_another_with_a_token_of_its_own_certificate(pki):
    grades = ServiceIdentity("grades", lambda: pki.signer("svc-grades"))
    identity = ISSUER.public_keys().for_service("identity", services=pki.trust_store)
    asked = grades.signs(LookupStudents(student_refs=["s1", "s2"]))
    actor = verify_token(asked, identity)
    assert actor.is_service("grades") and not actor.is_service("archive")
    with pytest.raises(Unauthenticated, match="msg"):
        verify_token(asked.model_copy(update={"student_refs": ["s3"]}), identity)


def test_a_service_token_is_refused_where_service_tokens_are_not_expected_or_not_trusted(pki, tmp_path):
    asked = ServiceIdentity("grades", lambda: pki.signer("svc-grades")).signs(FindStudents(personal_ids=["079214000123"]))
    with pytest.raises(Unauthenticated, match="not accepted"):
        verify_token(asked, ISSUER.public_keys("identity"))
    other = DevPki(tmp_path / "other", b"p")
    other.create(service_holders())
    with pytest.raises(Unauthenticated, match="not trusted"):
        verify_token(asked, ISSUER.public_keys().for_service("identity", services=other.trust_store))


def test_a_certificate_that_is_not_a_service_certificate_cannot_sign_as_a_service(pki):
    posing = ServiceIdentity("archive", lambda: pki.signer("archive"))
    asked = posing.signs(LookupStudents(student_refs=["s1"]))
    with pytest.raises(Unauthenticated, match="not a service certificate"):
        verify_token(asked, ISSUER.public_keys().for_service("identity", services=pki.trust_store))


def person(role: str, school_code: str = "s", homeroom_class: str | None = None) -> Actor:
    return Actor(subject=role, roles=frozenset({role}), school_code=school_code, homeroom_class=homeroom_class)


@pytest.mark.parametrize(
    ("who", "class_name", "may"),
    [
        (person("principal"), None, True),
        (person("school_admin"), "6A1", True),
        (person("homeroom_teacher", homeroom_class="6A1"), "6A1", True),
        (person("homeroom_teacher", homeroom_class="6A1"), None, False),
        (person("homeroom_teacher", homeroom_class="6A2"), "6A1", False),
        (person("principal", school_code="t"), None, False),
    ],
)
def test_a_class_is_reviewed_by_its_homeroom_teacher_and_a_school_by_its_leads(who, class_name, may):
    if may:
        authorise_review(who, "s", class_name)
    else:
        with pytest.raises(Forbidden):
            authorise_review(who, "s", class_name)
