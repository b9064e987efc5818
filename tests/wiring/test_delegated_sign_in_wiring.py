"""The services behind the web gateway, as configured (the issuer's JWKS and the PKI from the settings): a message
the gateway vouches for with its certificate and the person's sign-in token is acted on as that person; the
gateway's certificate alone, or another service's carrying a sign-in, is refused and the refusal says why."""

from __future__ import annotations

import json

import pytest

from services.grades.app import build_app as build_grades
from services.grades.repository import InMemoryGradesRepository
from services.signing.app import build_app as build_signing
from services.signing.repository import InMemorySigningRepository
from shared.auth import GATEWAY_SUBJECT, Actor, ServiceIdentity, issue_sign_in_token, verify_sign_in_token
from shared.contracts.grades import ListRecords, RecordList, RecordsReady
from shared.contracts.signing import ClassReviews, ReviewClasses
from shared.errors import Refused
from tests.unit.signing.trust import SCHOOL, YEAR, make_trust

PRINCIPAL = f"ht-{SCHOOL}"


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return make_trust(tmp_path_factory.mktemp("delegated-sign-in-wiring"))


@pytest.fixture
def configured(settings, trust, tmp_path):
    """The settings a service runs with: the school management system's JWKS file and the PKI."""
    jwks = tmp_path / "issuer.jwks.json"
    jwks.write_text(json.dumps({"keys": [trust.issuer.key.as_dict(private=False)]}))
    return settings.model_copy(
        update={
            "actor_issuer_jwks": jwks,
            "actor_issuer": trust.issuer.issuer,
            "pki_dir": trust.pki.folder,
            "pki_passphrase": trust.pki.passphrase.decode(),
        }
    )


def signed_in(trust) -> tuple[Actor, str]:
    """The principal as the gateway holds them once signed in: the verified claims and the sign-in token."""
    person = Actor(subject=PRINCIPAL, name="Hiệu trưởng", roles=frozenset({"principal"}), school_code=SCHOOL)
    token = issue_sign_in_token(trust.issuer, person)
    return verify_sign_in_token(token, trust.issuer.public_keys().for_sign_in()), token


def gateway(trust) -> ServiceIdentity:
    return ServiceIdentity("web", lambda: trust.pki.signer(GATEWAY_SUBJECT))


async def test_signing_answers_the_principal_signed_in_on_the_web_page(configured, trust, wired):
    service = build_signing(configured, repository=InMemorySigningRepository(), signers=trust.checked_signers())
    person, token = signed_in(trust)
    asked = ReviewClasses(school_code=SCHOOL, school_year=YEAR)
    async with wired(service) as wire:
        await wire.send(RecordsReady(school_code=SCHOOL, school_year=YEAR, records=[trust.record(n) for n in range(4)]))
        reviews = await wire.request(gateway(trust).signs_for(asked, person, token), ClassReviews)
        with pytest.raises(Refused, match="carries no sign-in token"):
            await wire.request(gateway(trust).signs(asked), ClassReviews)
        posing = ServiceIdentity("grades", lambda: trust.pki.signer("svc-grades")).signs_for(asked, person, token)
        with pytest.raises(Refused, match="only under the web gateway's certificate"):
            await wire.request(posing, ClassReviews)
    assert sorted((c.class_name, c.records) for c in reviews.classes) == [("6A1", 2), ("6A2", 2)]


async def test_grades_lists_the_records_for_the_principal_signed_in_on_the_web_page(configured, trust, wired):
    service = build_grades(configured, repository=InMemoryGradesRepository())
    person, token = signed_in(trust)
    asked = ListRecords(school_code=SCHOOL, school_year=YEAR, purpose="term-end page")
    async with wired(service) as wire:
        listed = await wire.request(gateway(trust).signs_for(asked, person, token), RecordList)
        with pytest.raises(Refused, match="a sign-in token is not a message's token"):
            await wire.request(asked.model_copy(update={"actor": token}), RecordList)
    assert listed.school_code == SCHOOL and listed.records == []
