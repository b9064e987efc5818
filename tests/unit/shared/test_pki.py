"""The development PKI: what it issues, keys encrypted at rest, revocation by reason, and chain validation."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shared.auth import IssuerKey
from shared.crypto.certs import STATED, TRUSTED, Revocation, TrustStore, _Standing, identity
from shared.crypto.jws import sign_detached, verify_detached
from shared.crypto.pki import DevPki, Holder, archive_holder
from shared.crypto.signer import UnknownSigner
from tests.unit.signing.trust import Trust

HOLDERS = [
    Holder("gvcn-79000701-6A1", "Giáo viên chủ nhiệm 6A1", "homeroom_teacher", "79000701", "Trường A"),
    Holder("ht-79000701", "Hiệu trưởng", "principal", "79000701", "Trường A"),
    Holder("seal-79000701", "Trường A", "school_seal", "79000701", "Trường A"),
    archive_holder(),
]


@pytest.fixture
def pki(tmp_path) -> DevPki:
    pki = DevPki(tmp_path / "pki", b"correct horse")
    assert pki.create(HOLDERS) == 4
    return pki


def test_certificates_name_the_holder_role_and_school_and_commit_to_content(pki):
    cert = pki.certificate("ht-79000701")
    holder = identity(cert)
    assert (holder.subject_id, holder.role, holder.school_code, holder.name) == (
        "ht-79000701", "principal", "79000701", "Hiệu trưởng",
    )
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    root = x509.load_pem_x509_certificate(pki.anchor_path.read_bytes())
    cert.verify_directly_issued_by(root)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


#: The PEM label of PKCS#8 EncryptedPrivateKeyInfo (RFC 7468 §11).
PKCS8_ENCRYPTED = "ENCRYPTED PRIVATE KEY"


def pem_label(pem: bytes) -> str:
    first = pem.decode().splitlines()[0]
    return first.removeprefix("-----BEGIN ").removesuffix("-----")


def test_private_keys_are_encrypted_pkcs8_readable_only_with_the_passphrase(pki):
    path = pki.key_path("ht-79000701")
    text = path.read_bytes()
    assert pem_label(text) == PKCS8_ENCRYPTED
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(text, None)
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(text, b"wrong")
    assert serialization.load_pem_private_key(text, b"correct horse")
    assert pem_label((pki.folder / "ca" / "root.key.pem").read_bytes()) == PKCS8_ENCRYPTED


def test_the_passphrase_comes_from_the_environment_or_a_generated_dev_file(tmp_path, monkeypatch):
    monkeypatch.delenv("HOCBA_PKI_PASSPHRASE", raising=False)
    generated = DevPki(tmp_path / "dev")
    generated.create(HOLDERS[:1])
    secret = tmp_path / "dev" / "passphrase"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert serialization.load_pem_private_key(generated.key_path(HOLDERS[0].subject_id).read_bytes(), secret.read_bytes())
    monkeypatch.setenv("HOCBA_PKI_PASSPHRASE", "from the environment")
    given = DevPki(tmp_path / "env")
    given.create(HOLDERS[:1])
    assert not (tmp_path / "env" / "passphrase").exists()
    assert serialization.load_pem_private_key(given.key_path(HOLDERS[0].subject_id).read_bytes(), b"from the environment")


def test_creating_again_issues_only_what_is_missing(pki):
    before = pki.certificate("ht-79000701").serial_number
    extra = Holder("gvcn-79000701-6A2", "Giáo viên chủ nhiệm 6A2", "homeroom_teacher", "79000701", "Trường A")
    assert pki.create([*HOLDERS, extra]) == 1
    assert pki.certificate("ht-79000701").serial_number == before
    assert {h.subject_id for h in pki.holders()} == {h.subject_id for h in HOLDERS} | {extra.subject_id}


def test_a_signer_signs_and_its_certificate_verifies_the_signature(pki):
    signer = pki.directory().signer_for("seal-79000701")
    jws = sign_detached(signer, b"payload", {"role": "school_seal"})
    assert verify_detached(signer.certificate.public_key(), jws, b"payload")
    with pytest.raises(UnknownSigner):
        pki.directory().signer_for("ht-nobody")


def test_validation_checks_anchor_validity_at_signing_time_and_revocation(pki, tmp_path):
    cert = pki.certificate("ht-79000701")
    now = datetime.now(UTC)
    trust = pki.trust_store()
    assert trust.validate([cert], now).ok
    early = trust.validate([cert], now - timedelta(days=2))
    assert not early.ok and "was not valid at" in early.failed[0]
    stranger = DevPki(tmp_path / "other", b"x")
    stranger.create(HOLDERS[:1])
    assert "does not lead to a trusted root" in stranger.trust_store().validate([cert], now).failed[0]
    assert not TrustStore(trust.anchors).validate([cert], now).ok, "no CRL, no certainty"
    pki.revoke("ht-79000701", "affiliation_changed", at=now - timedelta(minutes=1))
    revoked = pki.trust_store().validate([cert], now)
    assert not revoked.ok and revoked.revoked and "affiliation_changed" in revoked.revoked
    assert pki.trust_store().validate([cert], now - timedelta(minutes=30)).ok, "signed before the revocation"
    checkpoint_only = pki.certificate("archive")
    assert pki.trust_store().validate([checkpoint_only], now, purpose="checkpoint").ok



def verdict(check) -> tuple:
    return (check.ok, check.passed, check.failed, check.revoked, check.relied_on)


def test_a_chain_judged_once_gets_the_verdict_a_full_judgement_gives_at_every_time(pki, monkeypatch):
    """A store remembers what its CRLs say of a chain; the verdict at any signing time, trusted time and moment of
    judging is word for word the one a full judgement (every link's CRL read again) gives: inside and outside the
    chain's validity, with the CRL current or past its nextUpdate, with a certificate revoked or not."""
    chain = [pki.certificate("ht-79000701")]
    now = datetime.now(UTC)
    crl_due = pki.trust_store().crls[0].next_update_utc
    moments = [
        (now, now, None),
        (now - timedelta(days=2), now, None),
        (now + timedelta(days=4000), now, None),
        (now, crl_due + timedelta(days=1), None),
        (now - timedelta(hours=2), now, now - timedelta(hours=1)),
    ]
    for revoked in (False, True):
        if revoked:
            pki.revoke("ht-79000701", "key_compromise", at=now - timedelta(minutes=90))
        remembering = pki.trust_store()
        for at, judged, trusted_at in moments:
            again = remembering.validate(chain, at, now=judged, trusted_at=trusted_at)
            with monkeypatch.context() as full:
                full.setattr(_Standing, "settles", lambda *_: False)
                fresh = pki.trust_store().validate(chain, at, now=judged, trusted_at=trusted_at)
            assert verdict(again) == verdict(fresh), (revoked, at, judged, trusted_at)
        assert remembering.validate(chain, now, now=now).ok is not revoked

# --- revocation as RFC 5280 means its reasons ---------------------------------------------------


def test_a_key_compromise_voids_every_signature_no_trusted_time_proves_older(pki):
    """Whoever holds a stolen key writes any signing time: only a trusted time (the archive's admission under a
    signed checkpoint) can show a signature was made before the compromise."""
    cert = pki.certificate("ht-79000701")
    now = datetime.now(UTC)
    pki.revoke("ht-79000701", "key_compromise", at=now - timedelta(minutes=10))
    trust = pki.trust_store()
    stated_before = now - timedelta(minutes=30)
    backdated = trust.validate([cert], stated_before)
    assert not backdated.ok and backdated.relied_on == STATED
    assert "no trusted time proves the signature older than the revocation" in backdated.failed[-1]
    archived_after = trust.validate([cert], stated_before, trusted_at=now - timedelta(minutes=5))
    assert not archived_after.ok and archived_after.relied_on == TRUSTED
    assert "reason key_compromise, before the trusted time" in archived_after.failed[-1]
    archived_before = trust.validate([cert], stated_before, trusted_at=now - timedelta(minutes=20))
    assert archived_before.ok and archived_before.relied_on == TRUSTED
    assert "after the trusted time" in archived_before.passed[-1]
    stated_after = trust.validate([cert], now, trusted_at=now - timedelta(minutes=20))
    assert not stated_after.ok, "a signature that says it was made after the revocation is void whatever else is known"


@pytest.mark.parametrize("reason", ["affiliation_changed", "superseded", "cessation_of_operation", "privilege_withdrawn"])
def test_other_reasons_void_the_signatures_made_after_the_revocation(pki, reason):
    cert = pki.certificate("ht-79000701")
    now = datetime.now(UTC)
    pki.revoke("ht-79000701", reason, at=now - timedelta(minutes=10))
    trust = pki.trust_store()
    before = trust.validate([cert], now - timedelta(minutes=30))
    assert before.ok and before.relied_on == STATED and f"reason {reason}, after the signing time" in before.passed[-1]
    after = trust.validate([cert], now - timedelta(minutes=5), trusted_at=now)
    assert not after.ok and f"reason {reason}, before the signing time" in after.failed[-1]


def test_a_crl_past_its_next_update_fails_the_check_with_that_reason(pki):
    cert = pki.certificate("ht-79000701")
    stale = Trust(pki, IssuerKey.generate("unused")).stale_crl()
    check = TrustStore.from_files(pki.anchor_path, [stale]).validate([cert], datetime.now(UTC))
    assert not check.ok
    assert any("past its nextUpdate" in f and "cannot be checked" in f for f in check.failed)
    assert pki.trust_store().validate([cert], datetime.now(UTC)).ok, "the current CRL is fresh"
    later = pki.trust_store().validate([cert], datetime.now(UTC), now=datetime.now(UTC) + timedelta(days=40))
    assert any("past its nextUpdate" in f for f in later.failed), "the same CRL, once it is due"


def test_a_compromise_counts_from_the_invalidity_date_when_the_crl_names_an_earlier_one():
    now = datetime.now(UTC).replace(microsecond=0)
    entry = (
        x509.RevokedCertificateBuilder()
        .serial_number(7)
        .revocation_date(now)
        .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
        .add_extension(x509.InvalidityDate(now - timedelta(days=2)), critical=False)
        .build()
    )
    revocation = Revocation.of(entry)
    assert revocation.compromised and revocation.at == now - timedelta(days=2)
    plain = x509.RevokedCertificateBuilder().serial_number(8).revocation_date(now).build()
    assert Revocation.of(plain) == Revocation(now, x509.ReasonFlags.unspecified) and not Revocation.of(plain).compromised


def test_a_crl_near_its_next_update_is_renewed_with_its_revocations_and_a_fresh_one_is_left(tmp_path):
    pki = DevPki(tmp_path / "pki", b"test passphrase")
    pki.create(HOLDERS)
    pki.revoke("ht-79000701", "superseded")
    first = x509.load_pem_x509_crl(pki.crl_path.read_bytes())
    assert not pki.renew_crl(), "thirty days ahead: nothing to do"
    assert pki.renew_crl(due_within=timedelta(days=31))
    renewed = x509.load_pem_x509_crl(pki.crl_path.read_bytes())
    assert renewed.next_update_utc >= first.next_update_utc
    assert renewed.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > (
        first.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    )
    assert [e.serial_number for e in renewed] == [e.serial_number for e in first]


def test_a_certificate_issued_again_at_once_outlives_the_one_it_replaces(pki):
    """X.509 times are whole seconds: issued again within the same second, the new one is dated a second later."""
    first = pki.certificate(archive_holder().subject_id)
    pki.create([archive_holder()], renew=[archive_holder().subject_id])
    again = pki.certificate(archive_holder().subject_id)
    assert again.serial_number != first.serial_number
    assert again.not_valid_after_utc > first.not_valid_after_utc
    assert again.not_valid_before_utc > first.not_valid_before_utc
