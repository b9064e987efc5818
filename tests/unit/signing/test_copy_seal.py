"""The school's seal on a certified copy (`SealCopy`): who may ask, for which record version, over which bytes; each
answer in signing's access log."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pyhanko.sign.general import simple_cms_attribute

from services.signing import domain, handlers
from services.signing.domain import SignerRefused, StoredRecord
from shared.auth import Unauthenticated
from shared.contracts.signing import SealCopy, seal_subject
from shared.crypto.certs import from_x5c
from shared.errors import Forbidden, InvalidMessage, NotFound
from tests.unit.signing.trust import OTHER_SCHOOL, SCHOOL, signed_record

PURPOSE = "certified copy for a transfer"


def attributes(digest: bytes = b"\x17" * 32, content_type: str = "data", *, extra: tuple = ()) -> bytes:
    """DER CMS signed attributes as a PAdES signature carries them: content type and the PDF's message digest."""
    return cms.CMSAttributes(
        [simple_cms_attribute("content_type", content_type), simple_cms_attribute("message_digest", digest), *extra]
    ).dump()


def request(data: bytes | str = b"", record_id: str = "rec-0001", version: int = 1, school: str = SCHOOL) -> SealCopy:
    encoded = data if isinstance(data, str) else base64.b64encode(data or attributes()).decode()
    return SealCopy(
        school_code=school, record_id=record_id, version=version, signed_attributes=encoded, purpose=PURPOSE
    )


async def holding(
    deps, trust, n: int = 1, roles: tuple[str, ...] = ("homeroom_teacher", "principal", "school_seal"), school=SCHOOL
):
    """signing holding record n with the signatures of `roles` (all three by default: signed, sealed, archived)."""
    record = signed_record(trust, n, roles=roles, school_code=school)
    stored = StoredRecord.of(record.record)
    await deps.repo.add_records([stored])
    await deps.repo.add_signatures([(s, *stored.scope) for s in record.signatures], "batch-1")
    return record


@pytest.fixture
async def sealed(deps, trust):
    return await holding(deps, trust)


async def test_the_records_administrator_gets_the_seal_over_the_copys_signed_attributes(deps, trust, sealed):
    data = attributes()
    reply = (await handlers.seal_copy(trust.staff.school_admin(SCHOOL).signs(request(data)), deps)).reply
    chain = from_x5c(reply.chain)
    assert chain == list(trust.pki.chain(seal_subject(SCHOOL)))
    raw = base64.b64decode(reply.signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public = chain[0].public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(der, data, ec.ECDSA(hashes.SHA256()))  # raises when it is not the seal's signature over them


async def test_each_seal_is_in_signings_access_log_with_who_and_why(deps, trust, sealed):
    await handlers.seal_copy(trust.staff.principal(SCHOOL).signs(request()), deps)
    [entry] = await deps.access_log.of("student-0001", 10)
    assert (entry.service, entry.action, entry.subject, entry.record_id, entry.purpose) == (
        "signing",
        "print",
        "ht-79000701",
        "rec-0001",
        PURPOSE,
    )


@pytest.mark.parametrize(
    "who",
    [
        lambda staff: staff.homeroom_teacher(SCHOOL, "6A2"),
        lambda staff: staff.school_admin(OTHER_SCHOOL),
        lambda staff: staff.principal(OTHER_SCHOOL),
        lambda staff: staff.operator("an-operator"),
    ],
    ids=["homeroom-teacher", "other-schools-admin", "other-schools-principal", "operator"],
)
async def test_only_the_schools_records_administrator_or_principal_may_ask(deps, trust, sealed, who):
    with pytest.raises(Forbidden) as refused:
        await handlers.seal_copy(who(trust.staff).signs(request()), deps)
    assert "only that school's records administrator or principal may" in str(refused.value)
    assert await deps.access_log.of("student-0001", 10) == []


async def test_a_request_without_a_token_for_it_is_refused(deps, trust, sealed):
    with pytest.raises(Unauthenticated):
        await handlers.seal_copy(request(), deps)


async def test_a_version_of_another_school_is_refused_as_if_it_did_not_exist(deps, trust):
    await holding(deps, trust, 3, school=OTHER_SCHOOL)
    admin = trust.staff.school_admin(SCHOOL)
    with pytest.raises(NotFound) as elsewhere:
        await handlers.seal_copy(admin.signs(request(record_id="rec-0003")), deps)
    with pytest.raises(NotFound) as nowhere:
        await handlers.seal_copy(admin.signs(request(record_id="rec-0009")), deps)
    assert str(elsewhere.value).replace("rec-0003", "X") == str(nowhere.value).replace("rec-0009", "X")


async def test_a_version_not_signed_and_sealed_yet_is_not_archived_and_refused(deps, trust):
    await holding(deps, trust, roles=("homeroom_teacher", "principal"))
    with pytest.raises(Forbidden) as refused:
        await handlers.seal_copy(trust.staff.school_admin(SCHOOL).signs(request()), deps)
    assert refused.value.reason == "not-archived" and "lacks the signature of school_seal" in str(refused.value)


async def test_a_version_named_that_signing_does_not_hold_is_refused(deps, trust, sealed):
    with pytest.raises(NotFound):
        await handlers.seal_copy(trust.staff.school_admin(SCHOOL).signs(request(version=2)), deps)


async def test_the_seal_never_signs_a_records_jws_signing_input(deps, trust, sealed):
    """A JWS signing input the seal signed would be a seal signature over any record: it is not signed attributes."""
    seal = sealed.signatures[-1].jws
    protected = seal.split(".")[0]
    forged_input = f"{protected}.{base64.urlsafe_b64encode(b'{}').rstrip(b'=').decode()}".encode()
    with pytest.raises(InvalidMessage) as refused:
        await handlers.seal_copy(trust.staff.school_admin(SCHOOL).signs(request(forged_input)), deps)
    assert "not a DER SET OF attributes" in str(refused.value)
    assert await deps.access_log.of("student-0001", 10) == []


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x31\x00", "lack content_type, message_digest"),
        (attributes(b"\x01" * 20), "not one SHA-256 digest"),
        (attributes(content_type="signed_data"), "content type is not id-data"),
        (attributes() + b"\x00", "cannot be read as DER CMS attributes"),
        (hashlib.sha256(b"anything").digest(), "not a DER SET OF attributes"),
    ],
    ids=["empty-set", "short-digest", "other-content-type", "trailing-bytes", "bare-digest"],
)
async def test_bytes_that_are_not_a_copys_signed_attributes_are_refused(deps, trust, sealed, data, why):
    with pytest.raises(InvalidMessage) as refused:
        await handlers.seal_copy(trust.staff.school_admin(SCHOOL).signs(request(data)), deps)
    assert why in str(refused.value)


async def test_signed_attributes_that_are_not_base64_are_refused(deps, trust, sealed):
    with pytest.raises(InvalidMessage, match="not standard base64"):
        await handlers.seal_copy(trust.staff.school_admin(SCHOOL).signs(request("not base64!")), deps)


async def test_a_revoked_seal_puts_no_seal_on_a_copy(repo, metrics, own_trust):
    deps = own_trust.deps(repo, metrics)
    await holding(deps, own_trust)
    own_trust.pki.revoke(seal_subject(SCHOOL), "key_compromise", at=datetime.now(UTC) - timedelta(minutes=1))
    with pytest.raises(SignerRefused) as refused:
        await handlers.seal_copy(own_trust.staff.school_admin(SCHOOL).signs(request()), deps)
    assert refused.value.reason == "certificate-revoked"


def test_signed_attributes_with_an_attribute_twice_are_refused():
    twice = cms.CMSAttributes(
        [
            simple_cms_attribute("content_type", "data"),
            simple_cms_attribute("message_digest", b"\x01" * 32),
            simple_cms_attribute("message_digest", b"\x02" * 32),
        ]
    ).dump()
    assert domain.signed_attributes_problem(twice) == "the signed attributes name an attribute twice"
    assert domain.signed_attributes_problem(attributes()) is None
