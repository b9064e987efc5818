"""Actor tokens: issued by the school management system, verified by the services."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from shared.auth import Actor, IssuerKey, IssuerKeys, Unauthenticated, issue_token, verify_token
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
        "expires_at": datetime.now(UTC) + timedelta(hours=1),
    }
    return Actor(**{**fields, **changes})


def test_a_token_round_trips_to_the_same_actor():
    issuer = IssuerKey.generate("school-app-1")
    actor = teacher()
    verified = verify_token(issue_token(issuer, actor), issuer.public_keys())
    assert verified.subject == "gv-001" and verified.roles == actor.roles
    assert verified.teaches("6A2", "Toán") and not verified.teaches("6A3", "Toán")
    assert not verified.teaches("6A1", "Ngữ văn")
    assert verified.is_homeroom_teacher_of("6A1") and not verified.is_homeroom_teacher_of("6A2")
    assert not verified.is_principal_of("79000701")


def test_unauthenticated_is_a_permanent_forbidden_error():
    assert issubclass(Unauthenticated, Forbidden)


@pytest.mark.parametrize("token", [None, "", "not-a-jwt", "a.b.c"])
def test_missing_or_malformed_tokens_are_rejected(token):
    with pytest.raises(Unauthenticated):
        verify_token(token, IssuerKey.generate("k").public_keys())


def test_a_token_from_another_key_is_rejected():
    trusted, stranger = IssuerKey.generate("k1"), IssuerKey.generate("k1")
    with pytest.raises(Unauthenticated):
        verify_token(issue_token(stranger, teacher()), trusted.public_keys())


def test_an_expired_token_is_rejected():
    issuer = IssuerKey.generate("k1")
    token = issue_token(issuer, teacher(expires_at=datetime.now(UTC) + timedelta(minutes=5)))
    assert verify_token(token, issuer.public_keys()).subject == "gv-001"
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token(token, issuer.public_keys(), now=time.time() + 3600)


def test_a_token_for_another_issuer_name_is_rejected():
    issuer = IssuerKey.generate("k1", issuer="someone-else")
    keys = IssuerKeys(issuer.public_keys().key_set)  # expects the default issuer name
    with pytest.raises(Unauthenticated, match="iss"):
        verify_token(issue_token(issuer, teacher()), keys)


def test_public_keys_never_carry_the_private_part():
    issuer = IssuerKey.generate("k1")
    assert "d" in issuer.private_jwk()
    public = IssuerKeys.from_jwks({"keys": [issuer.private_jwk()]})
    assert all("d" not in key.as_dict(private=False) for key in public.key_set.keys)
    assert verify_token(issue_token(issuer, teacher()), public).subject == "gv-001"
