"""A certificate a licensed CA issued, taken in for an enrolled staff member or a school's seal
(`hocba pki import-cert`): only when it checks out as signing checks it before every signature (it chains to a
configured anchor, is valid now and not revoked, allows signing, names the holder, and the key is its key);
refused otherwise, with the reason, leaving the PKI as it was."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from typer.testing import CliRunner, Result

from hocba.certificate_import import (
    CertificateImport,
    ImportRefused,
    KeyGiven,
    Pkcs11Reference,
    import_certificate,
    read_certificates,
    read_crl,
)
from hocba.cli import app
from hocba.enrolment import enrol_rows, table_rows
from services.archive import handlers as archive_handlers
from services.signing.app import pki_signers
from services.signing.handlers import Signers
from services.sync.domain import vouched_for
from shared.contracts.archive import ExportRecord, ProofReply, RecordsArchived
from shared.contracts.signing import RecordsCompleted, Role
from shared.crypto.bundle import verify_bundle
from shared.crypto.certs import TrustStore, identity, load_crls
from shared.crypto.jws import sign_detached, verify_detached
from shared.crypto.pki import DOCUMENT_SIGNING, DevPki
from shared.settings import Settings
from tests.support import needs
from tests.unit.archive.conftest import archive_deps
from tests.unit.signing.trust import make_trust, signed_record

PASSPHRASE = "the department's passphrase"
SCHOOL = "79012345"
STAFF = [
    {
        "school_code": SCHOOL,
        "staff_id": "GV001",
        "name": "Nguyễn Thị Lan",
        "role": "homeroom_teacher",
        "classes": "6A1",
    },
    {"school_code": SCHOOL, "staff_id": "HT001", "name": "Phạm Minh Châu", "role": "principal"},
    {"school_code": SCHOOL, "staff_id": "GV003", "name": "Lê Văn An", "role": "subject_teacher", "classes": "6A1"},
]
PEM = serialization.Encoding.PEM
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("HOCBA_PKI_DIR", "HOCBA_PKI_PASSPHRASE_FILE", "HOCBA_ENVIRONMENT", "HOCBA_PKCS11_PIN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOCBA_PKI_PASSPHRASE", PASSPHRASE)


# --- a licensed CA: a root, an issuing CA under it, each with its CRL ----------------------------------------------

#: A CA's key: EC, or RSA as Vietnam's licensed CAs' roots and issuing CAs hold.
CaKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
#: RSA-PSS with SHA-256 as CAs sign certificates and CRLs with it (the salt as long as the digest); None is PKCS#1 v1.5.
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _ca_certificate(
    name: x509.Name, key: CaKey, issuer: x509.Name, issuer_key: CaKey, rsa_padding: padding.PSS | None = None
) -> x509.Certificate:
    now = datetime.now(UTC)
    usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=30))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(issuer_key, hashes.SHA256(), rsa_padding=rsa_padding)
    )


def holder_name(uid: str, title: str, school: str, common_name: str) -> x509.Name:
    """A subject as signing reads it: UID the subject id, title the role, organizationIdentifier the school."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, school),
            x509.NameAttribute(NameOID.TITLE, title),
            x509.NameAttribute(NameOID.USER_ID, uid),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass
class LicensedCa:
    """A CA outside the PKI, as a licensed CA is: its root, the issuing CA under it, and their CRLs, written to files.

    Its two CAs hold EC keys, or the RSA `keys` given; with RSA, they sign certificates and CRLs with PKCS#1 v1.5, or
    with PSS when `rsa_padding` says so.
    """

    folder: Path
    root_key: CaKey
    root: x509.Certificate
    issuing_key: CaKey
    issuing: x509.Certificate
    rsa_padding: padding.PSS | None = None

    @classmethod
    def create(
        cls,
        folder: Path,
        name: str = "Licensed Root CA",
        keys: tuple[CaKey, CaKey] | None = None,
        rsa_padding: padding.PSS | None = None,
    ) -> LicensedCa:
        folder.mkdir(parents=True, exist_ok=True)
        root_key, issuing_key = keys or (
            ec.generate_private_key(ec.SECP256R1()),
            ec.generate_private_key(ec.SECP256R1()),
        )
        root = _ca_certificate(_name(name), root_key, _name(name), root_key, rsa_padding)
        issuing = _ca_certificate(_name(f"{name} — issuing CA"), issuing_key, root.subject, root_key, rsa_padding)
        ca = cls(folder, root_key, root, issuing_key, issuing, rsa_padding)
        (folder / "root.pem").write_bytes(root.public_bytes(PEM))
        ca.write_crls()
        return ca

    def write_crls(self, revoked: x509.Certificate | None = None, age: timedelta = timedelta(0)) -> None:
        for issuer, key, file in (
            (self.root, self.root_key, "root.crl.pem"),
            (self.issuing, self.issuing_key, "issuing.crl.pem"),
        ):
            now = datetime.now(UTC) - age
            builder = (
                x509.CertificateRevocationListBuilder()
                .issuer_name(issuer.subject)
                .last_update(now - timedelta(minutes=5))
                .next_update(now + timedelta(days=7))
            )
            if revoked is not None and issuer is self.issuing:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder().serial_number(revoked.serial_number).revocation_date(now).build()
                )
            signed = builder.sign(key, hashes.SHA256(), rsa_padding=self.rsa_padding)
            (self.folder / file).write_bytes(signed.public_bytes(PEM))

    def forged_crl(self, key: CaKey) -> Path:
        """A CRL that names the issuing CA as its issuer, signed by `key`, not the issuing CA's: it lists nothing."""
        now = datetime.now(UTC)
        crl = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.issuing.subject)
            .last_update(now - timedelta(minutes=1))
            .next_update(now + timedelta(days=7))
            .sign(key, hashes.SHA256())
        )
        path = self.folder / "forged.crl.pem"
        path.write_bytes(crl.public_bytes(PEM))
        return path

    @property
    def crls(self) -> list[str]:
        return ["--crl", str(self.folder / "root.crl.pem"), "--crl", str(self.folder / "issuing.crl.pem")]

    def issue(  # noqa: PLR0913 - each way a certificate can be wrong is a parameter
        self,
        uid: str,
        title: str,
        school: str = SCHOOL,
        common_name: str = "NGUYEN THI LAN",
        *,
        key=None,
        commitment: bool = True,
        expired: bool = False,
        file: str = "holder",
    ) -> tuple[Path, Path]:
        """A holder's certificate (with the issuing CA's after it) and its key, encrypted under `key.pass`."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        begins, ends = (
            (now - timedelta(days=400), now - timedelta(days=35))
            if expired
            else (now - timedelta(hours=1), now + timedelta(days=365))
        )
        usage = x509.KeyUsage(True, commitment, False, False, False, False, False, False, False)
        cert = (
            x509.CertificateBuilder()
            .subject_name(holder_name(uid, title, school, common_name))
            .issuer_name(self.issuing.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(begins)
            .not_valid_after(ends)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
            )
            .sign(self.issuing_key, hashes.SHA256(), rsa_padding=self.rsa_padding)
        )
        cert_path, key_path = self.folder / f"{file}.crt.pem", self.folder / f"{file}.key.pem"
        cert_path.write_bytes(cert.public_bytes(PEM) + self.issuing.public_bytes(PEM))
        encryption = serialization.BestAvailableEncryption(b"the holder's own passphrase")
        key_path.write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, encryption))
        (self.folder / "key.pass").write_text("the holder's own passphrase\n")
        return cert_path, key_path


@pytest.fixture
def pki(tmp_path) -> DevPki:
    """Our PKI, with the school's staff enrolled (development certificates)."""
    folder = tmp_path / "pki"
    pki = DevPki(folder, PASSPHRASE.encode())
    assert enrol_rows(pki, table_rows(STAFF)).bad == {}
    return pki


@pytest.fixture
def ca(tmp_path) -> LicensedCa:
    return LicensedCa.create(tmp_path / "licensed-ca")


def hocba(pki: DevPki, *args: str) -> Result:
    return CliRunner().invoke(app, ["pki", *args, "--dir", str(pki.folder)], env={"COLUMNS": "240"})


def import_cert(pki: DevPki, ca: LicensedCa, cert: Path, key: Path | None, *more: str) -> Result:
    keys = ["--key", str(key), "--key-passphrase-file", str(ca.folder / "key.pass")] if key else []
    return hocba(pki, "import-cert", str(cert), *keys, *more)


def unchanged(pki: DevPki) -> dict[str, bytes]:
    """What an import would change: the anchors, the CRL, the certificates, the keys, the token's labels."""
    return {
        str(p.relative_to(pki.folder)): p.read_bytes()
        for p in sorted(pki.folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


# --- a good chain -------------------------------------------------------------------------------------------------


def test_a_licensed_cas_certificate_is_taken_in_and_signing_signs_with_it(pki, ca, tmp_path):
    development = pki.certificate("GV001")
    cert, key = ca.issue("GV001", "homeroom_teacher")

    done = import_cert(pki, ca, cert, key, "--staff", "GV001", "--anchor", str(ca.folder / "root.pem"), *ca.crls)

    assert done.exit_code == 0, done.output
    assert "GV001 signs with 'NGUYEN THI LAN'" in done.stdout and "trust anchor added" in done.stdout
    assert pki.chain("GV001") == (x509.load_pem_x509_certificates(cert.read_bytes())[0], ca.issuing)
    assert ca.root in pki.anchors() and pki.anchors()[0] != ca.root, "the PKI's own root stays the first anchor"
    now = datetime.now(UTC)
    signer = Signers(pki.directory(), pki.trust_store).valid_signer("GV001", "homeroom_teacher", SCHOOL, now)
    jws = sign_detached(signer, b"the record", {"role": "homeroom_teacher"})
    assert verify_detached(signer.certificate.public_key(), jws, b"the record")
    assert len(signer.x5c) == 2, "the signature carries the issuing CA's certificate to its anchor"
    crl = pki.trust_store().crl_for(pki.anchors()[0])
    assert crl.get_revoked_certificate_by_serial_number(development.serial_number) is not None, (
        "the development certificate it replaces is revoked"
    )
    assert "revoked (superseded)" in done.stdout
    shown = {line.split("│")[1].strip(): line for line in hocba(pki, "show").stdout.splitlines() if line.count("│") > 3}
    assert "valid" in shown["GV001"] and "NGUYEN THI LAN" in shown["GV001"]
    assert "the certificate names 'NGUYEN THI LAN'; the staff register names 'Nguyễn Thị Lan'" not in done.stdout, (
        "the same name, without accents and in capitals, is the same name"
    )


def test_signing_signs_with_it_from_its_own_part_of_the_pki(pki, ca, tmp_path):
    cert, key = ca.issue("GV001", "homeroom_teacher")
    assert (
        import_cert(pki, ca, cert, key, "--staff", "GV001", "--anchor", str(ca.folder / "root.pem"), *ca.crls).exit_code
        == 0
    )

    part = pki.export("signing", tmp_path / "signing-part")
    signers = pki_signers(Settings(pki_dir=part.folder, pki_passphrase=PASSPHRASE))

    signer = signers.valid_signer("GV001", "homeroom_teacher", SCHOOL, datetime.now(UTC))
    assert identity(signer.certificate).issuer == "Licensed Root CA — issuing CA"


def test_a_school_seal_certificate_is_taken_in(pki, ca):
    cert, key = ca.issue(f"seal-{SCHOOL}", "school_seal", common_name="Trường 79012345")

    done = import_cert(pki, ca, cert, key, "--seal", SCHOOL, "--anchor", str(ca.folder / "root.pem"), *ca.crls)

    assert done.exit_code == 0, done.output
    assert Signers(pki.directory(), pki.trust_store).valid_signer(
        f"seal-{SCHOOL}", "school_seal", SCHOOL, datetime.now(UTC)
    )


def test_enrolling_again_keeps_the_licensed_cas_certificate(pki, ca):
    cert, key = ca.issue("GV001", "homeroom_teacher")
    import_cert(pki, ca, cert, key, "--staff", "GV001", "--anchor", str(ca.folder / "root.pem"), *ca.crls)
    imported = pki.cert_path("GV001").read_bytes()

    outcome = enrol_rows(pki, table_rows(STAFF))

    assert (outcome.certificates, outcome.unchanged) == (0, 3)
    assert pki.cert_path("GV001").read_bytes() == imported


def test_a_second_certificate_from_an_anchor_added_before_needs_no_anchor(pki, ca):
    first, key = ca.issue("GV001", "homeroom_teacher")
    import_cert(pki, ca, first, key, "--staff", "GV001", "--anchor", str(ca.folder / "root.pem"), *ca.crls)
    second, key = ca.issue("HT001", "principal", common_name="PHAM MINH CHAU", file="principal")

    done = import_cert(pki, ca, second, key, "--staff", "HT001")

    assert done.exit_code == 0, done.output
    assert "trust anchor added" not in done.stdout


# --- refused, with the reason, and the PKI left as it was ---------------------------------------------------------


def refused(pki: DevPki, result: Result, *reasons: str) -> None:
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    for reason in reasons:
        assert reason in message, message


def test_a_certificate_under_another_anchor_is_refused(pki, ca, tmp_path):
    stranger = LicensedCa.create(tmp_path / "another-ca", "Another Root CA")
    cert, key = ca.issue("GV001", "homeroom_teacher")
    before = unchanged(pki)

    result = import_cert(
        pki, ca, cert, key, "--staff", "GV001", "--anchor", str(stranger.folder / "root.pem"), *ca.crls
    )

    refused(pki, result, "the certificate for GV001 is refused", "the chain does not lead to a trusted root")
    assert unchanged(pki) == before


def test_a_certificate_without_an_anchor_for_it_is_refused_and_told_to_give_one(pki, ca):
    cert, key = ca.issue("GV001", "homeroom_teacher")

    result = import_cert(pki, ca, cert, key, "--staff", "GV001", *ca.crls)

    refused(pki, result, "does not lead to a trusted root", "give the licensed CA's root certificate with --anchor")


def test_an_expired_certificate_is_refused(pki, ca):
    cert, key = ca.issue("GV001", "homeroom_teacher", expired=True)
    before = unchanged(pki)

    result = import_cert(pki, ca, cert, key, "--staff", "GV001", "--anchor", str(ca.folder / "root.pem"), *ca.crls)

    refused(pki, result, "'NGUYEN THI LAN' was not valid at")
    assert unchanged(pki) == before


def test_a_certificate_naming_someone_else_is_refused(pki, ca):
    cert, key = ca.issue("GV999", "principal", school="79000701")

    result = import_cert(pki, ca, cert, key, "--staff", "GV001", "--anchor", str(ca.folder / "root.pem"), *ca.crls)

    refused(
        pki,
        result,
        "its subject's UID is 'GV999', not GV001",
        "its subject's title is 'principal', not homeroom_teacher",
        "its subject's organizationIdentifier is '79000701', not 79012345",
    )


def test_a_certificate_whose_key_usage_does_not_allow_signing_records_is_refused(pki, ca):
    cert, key = ca.issue("GV001", "homeroom_teacher", commitment=False)

    result = import_cert(pki, ca, cert, key, "--staff", "GV001", "--anchor", str(ca.folder / "root.pem"), *ca.crls)

    refused(pki, result, "its key usage lacks digitalSignature and nonRepudiation")


def test_a_certificate_whose_revocation_cannot_be_checked_is_refused_and_told_to_give_the_crl(pki, ca):
    cert, key = ca.issue("GV001", "homeroom_teacher")

    result = import_cert(pki, ca, cert, key, "--staff", "GV001", "--anchor", str(ca.folder / "root.pem"))

    refused(pki, result, "no CRL from 'Licensed Root CA — issuing CA'", "give the CA's current CRL with --crl")


def test_a_revoked_certificate_is_refused(pki, ca):
    cert, key = ca.issue("GV001", "homeroom_teacher")
    ca.write_crls(revoked=x509.load_pem_x509_certificates(cert.read_bytes())[0])

    result = import_cert(pki, ca, cert, key, "--staff", "GV001", "--anchor", str(ca.folder / "root.pem"), *ca.crls)

    refused(pki, result, "'NGUYEN THI LAN' was revoked on")


def test_a_key_that_is_not_the_certificates_is_refused(pki, ca):
    cert, _ = ca.issue("GV001", "homeroom_teacher")
    _, other_key = ca.issue("GV001", "homeroom_teacher", file="other")
    before = unchanged(pki)

    result = import_cert(
        pki, ca, cert, other_key, "--staff", "GV001", "--anchor", str(ca.folder / "root.pem"), *ca.crls
    )

    refused(pki, result, "the key given is not the key of the certificate for GV001")
    assert unchanged(pki) == before


def test_without_a_key_the_pki_must_hold_the_certificates_key_already(pki, ca):
    cert, _ = ca.issue("GV001", "homeroom_teacher")

    refused(
        pki,
        import_cert(pki, ca, cert, None, "--staff", "GV001", "--anchor", str(ca.folder / "root.pem"), *ca.crls),
        "the key the PKI holds for GV001 is not the certificate's: give the certificate's key with --key KEY.pem or "
        "--pkcs11-uri URI",
    )

    held = DevPki(pki.folder, PASSPHRASE.encode()).signer("HT001").backend.key  # a certificate for the key held
    cert, _ = ca.issue("HT001", "principal", common_name="Phạm Minh Châu", key=held, file="principal")
    done = import_cert(pki, ca, cert, None, "--staff", "HT001", "--anchor", str(ca.folder / "root.pem"), *ca.crls)
    assert done.exit_code == 0, done.output
    assert "the key held already" in done.stdout


def test_an_rsa_certificate_is_refused_for_es256(pki, ca, rsa_keys):
    cert, key = ca.issue("GV001", "homeroom_teacher", key=rsa_keys[2])

    result = import_cert(pki, ca, cert, key, "--staff", "GV001", "--anchor", str(ca.folder / "root.pem"), *ca.crls)

    refused(
        pki,
        result,
        "its key is not P-256: hocba signs with ES256, which takes P-256 keys only; ask the CA for an ECDSA P-256 "
        "certificate",
    )


def test_only_enrolled_signers_and_schools_take_a_certificate(pki, ca):
    cert, key = ca.issue("GV003", "subject_teacher")
    anchor = ["--anchor", str(ca.folder / "root.pem"), *ca.crls]

    refused(
        pki,
        import_cert(pki, ca, cert, key, "--staff", "GV003", *anchor),
        "GV003 is enrolled as subject_teacher, who signs no record",
    )
    refused(
        pki, import_cert(pki, ca, cert, key, "--staff", "GV404", *anchor), "GV404 is not enrolled: enrol them first"
    )
    refused(pki, import_cert(pki, ca, cert, key, "--seal", "48123456", *anchor), "school 48123456 is not enrolled")
    refused(
        pki,
        import_cert(pki, ca, cert, key, *anchor),
        "say whose certificate it is: --staff STAFF_ID or --seal SCHOOL_CODE",
    )


def test_a_file_that_is_no_certificate_is_refused(pki, ca, tmp_path):
    text = tmp_path / "not-a-certificate.pem"
    text.write_text("-----BEGIN NOTHING-----\n")

    refused(pki, import_cert(pki, ca, text, None, "--staff", "GV001"), "not-a-certificate.pem holds no certificate")


# --- the CA's CRL, renewed ---------------------------------------------------------------------------------------


def test_a_cas_newer_crl_replaces_the_one_kept_and_an_older_one_is_refused(pki, ca):
    cert, key = ca.issue("GV001", "homeroom_teacher")
    import_cert(pki, ca, cert, key, "--staff", "GV001", "--anchor", str(ca.folder / "root.pem"), *ca.crls)
    ca.write_crls(revoked=x509.load_pem_x509_certificates(cert.read_bytes())[0])

    assert hocba(pki, "import-crl", str(ca.folder / "issuing.crl.pem")).exit_code == 0
    check = pki.trust_store().validate(pki.chain("GV001"), datetime.now(UTC))
    assert check.revoked and not check.ok, "the services read the new CRL with the PKI's own"

    ca.write_crls(age=timedelta(days=1))
    older = hocba(pki, "import-crl", str(ca.folder / "issuing.crl.pem"))
    assert older.exit_code == 2 and "before the one kept" in older.stderr


def test_a_crl_naming_a_known_ca_but_signed_by_another_key_is_refused_and_the_kept_one_stays(pki, ca):
    cert, key = ca.issue("GV001", "homeroom_teacher")
    import_cert(pki, ca, cert, key, "--staff", "GV001", "--anchor", str(ca.folder / "root.pem"), *ca.crls)
    ca.write_crls(revoked=x509.load_pem_x509_certificates(cert.read_bytes())[0])
    assert hocba(pki, "import-crl", str(ca.folder / "issuing.crl.pem")).exit_code == 0

    forged = hocba(pki, "import-crl", str(ca.forged_crl(ec.generate_private_key(ec.SECP256R1()))))

    assert forged.exit_code == 1 and "not signed by that CA's key" in " ".join(forged.stderr.split())
    check = pki.trust_store().validate(pki.chain("GV001"), datetime.now(UTC))
    assert check.revoked, "the CRL kept (the CA's own, listing the revocation) was not replaced by the forged one"


def test_a_crl_of_a_ca_the_pki_does_not_know_is_refused(pki, tmp_path):
    stranger = LicensedCa.create(tmp_path / "another-ca", "Another Root CA")

    result = hocba(pki, "import-crl", str(stranger.folder / "root.crl.pem"))

    assert result.exit_code == 1 and "not from a CA this PKI trusts" in " ".join(result.stderr.split())


# --- a licensed CA whose root and issuing CA hold RSA keys, as Vietnam's licensed CAs do -----------------------------


@pytest.fixture(scope="module")
def rsa_keys() -> list[rsa.RSAPrivateKey]:
    """RSA 2048 keys for this module's CAs (and a holder's RSA key), made once: making one takes a while."""
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]


@pytest.fixture
def rsa_ca(tmp_path, rsa_keys) -> LicensedCa:
    """A licensed CA whose root and issuing CA sign certificates and CRLs with RSA (PKCS#1 v1.5, SHA-256)."""
    return LicensedCa.create(tmp_path / "rsa-ca", "Licensed RSA Root CA", keys=(rsa_keys[0], rsa_keys[1]))


@pytest.mark.parametrize("rsa_padding", [None, PSS], ids=["PKCS#1 v1.5", "PSS"])
def test_a_p256_certificate_under_an_rsa_root_and_issuing_ca_is_taken_in_and_signing_signs_with_it(
    pki, tmp_path, rsa_keys, rsa_padding
):
    ca = LicensedCa.create(tmp_path / "rsa-ca", "Licensed RSA Root CA", (rsa_keys[0], rsa_keys[1]), rsa_padding)
    assert isinstance(ca.root.public_key(), rsa.RSAPublicKey) and isinstance(ca.issuing.public_key(), rsa.RSAPublicKey)
    cert, key = ca.issue("GV001", "homeroom_teacher")

    done = import_cert(pki, ca, cert, key, "--staff", "GV001", "--anchor", str(ca.folder / "root.pem"), *ca.crls)

    assert done.exit_code == 0, done.output
    now = datetime.now(UTC)
    signer = Signers(pki.directory(), pki.trust_store).valid_signer("GV001", "homeroom_teacher", SCHOOL, now)
    jws = sign_detached(signer, b"the record", {"role": "homeroom_teacher"})
    public = signer.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and verify_detached(public, jws, b"the record")
    check = pki.trust_store().validate(pki.chain("GV001"), now)
    assert check.ok, check.failed
    assert any(p.startswith("'NGUYEN THI LAN' is not revoked (CRL of") for p in check.passed), (
        "the issuing CA's RSA-signed CRL is read"
    )
    assert any(p.startswith("'Licensed RSA Root CA — issuing CA' is not revoked") for p in check.passed), (
        "the root's RSA-signed CRL is read"
    )


def test_a_certificate_the_rsa_cas_crl_revokes_is_refused(pki, rsa_ca):
    cert, key = rsa_ca.issue("GV001", "homeroom_teacher")
    rsa_ca.write_crls(revoked=x509.load_pem_x509_certificates(cert.read_bytes())[0])
    before = unchanged(pki)

    result = import_cert(
        pki, rsa_ca, cert, key, "--staff", "GV001", "--anchor", str(rsa_ca.folder / "root.pem"), *rsa_ca.crls
    )

    refused(pki, result, "the certificate for GV001 is refused", "'NGUYEN THI LAN' was revoked on")
    assert unchanged(pki) == before


@pytest.mark.parametrize("forger", ["another RSA key", "an EC key"])
def test_a_crl_the_rsa_ca_did_not_sign_is_refused_and_not_read(pki, rsa_ca, rsa_keys, forger):
    """A CRL that names the issuing CA but that another key signed says nothing for the CA: were it read, it would
    leave out every revocation."""
    cert, key = rsa_ca.issue("GV001", "homeroom_teacher")
    rsa_ca.write_crls(revoked=x509.load_pem_x509_certificates(cert.read_bytes())[0])
    forged = rsa_ca.forged_crl(rsa_keys[2] if forger == "another RSA key" else ec.generate_private_key(ec.SECP256R1()))
    before = unchanged(pki)

    result = import_cert(
        pki, rsa_ca, cert, key, "--staff", "GV001", "--anchor", str(rsa_ca.folder / "root.pem"),
        "--crl", str(rsa_ca.folder / "root.crl.pem"), "--crl", str(forged),
    )  # fmt: skip

    refused(
        pki,
        result,
        "the CRL of 'CN=Licensed RSA Root CA — issuing CA,C=VN' is not signed by a CA of this certificate's chain",
        "no CRL from 'Licensed RSA Root CA — issuing CA'",
    )
    assert unchanged(pki) == before


def test_an_rsa_certificate_under_an_rsa_ca_is_refused_and_told_to_ask_for_a_p256_one(pki, rsa_ca, rsa_keys):
    cert, key = rsa_ca.issue("GV001", "homeroom_teacher", key=rsa_keys[2])

    result = import_cert(
        pki, rsa_ca, cert, key, "--staff", "GV001", "--anchor", str(rsa_ca.folder / "root.pem"), *rsa_ca.crls
    )

    refused(
        pki,
        result,
        "its key is not P-256: hocba signs with ES256, which takes P-256 keys only; ask the CA for an ECDSA P-256 "
        "certificate",
    )
    assert " ".join(result.stderr.split()).count("not P-256") == 1, "the reason is given once"


def test_a_chain_under_an_rsa_ca_is_valid_for_checkpoints_and_seals_too(rsa_ca):
    """The chain checks of sync and of seals (purpose "checkpoint") read an RSA CA's chain and CRLs as signing does."""
    cert_path, _ = rsa_ca.issue("svc-archive", "archive", common_name="hocba archive log")
    chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    crls = [*load_crls(rsa_ca.folder / "root.crl.pem"), *load_crls(rsa_ca.folder / "issuing.crl.pem")]

    check = TrustStore([rsa_ca.root], crls).validate(chain, datetime.now(UTC), purpose="checkpoint")

    assert check.ok, check.failed
    without_crls = TrustStore([rsa_ca.root]).validate(chain, datetime.now(UTC), purpose="checkpoint")
    assert "no CRL from 'Licensed RSA Root CA — issuing CA'" in " ".join(without_crls.failed)


#: Who signs a record of school 79000701, class 6A1 (`tests.unit.signing.trust`), and the name their certificate gives.
SIGNERS_OF_6A1: dict[Role, tuple[str, str]] = {
    "homeroom_teacher": ("gvcn-79000701-6A1", "NGUYEN THI LAN"),
    "principal": ("ht-79000701", "PHAM MINH CHAU"),
    "school_seal": ("seal-79000701", "Trường THCS thử nghiệm"),
}


async def test_records_signed_under_an_rsa_ca_are_archived_announced_and_their_certified_copy_verifies(
    tmp_path, rsa_keys
):
    """After the import, every check downstream takes the RSA CA's chain: signing's before each signature, the
    archive's before it admits a version, sync's on what the archive announces, and a certified copy verified
    offline with only the trust anchors (the CA's CRLs travel in the bundle)."""
    trust = make_trust(tmp_path / "trust")
    ca = LicensedCa.create(tmp_path / "rsa-ca", "Licensed RSA Root CA", keys=(rsa_keys[0], rsa_keys[1]))
    holders = {h.subject_id: h for h in trust.pki.holders()}
    crls = [read_crl(ca.folder / "root.crl.pem"), read_crl(ca.folder / "issuing.crl.pem")]
    for role, (subject, name) in SIGNERS_OF_6A1.items():
        cert, key = ca.issue(subject, role, "79000701", name, file=subject)
        request = CertificateImport(trust.pki, holders[subject], read_certificates(cert), ca.root, crls)
        import_certificate(request, KeyGiven(file=key, passphrase_file=ca.folder / "key.pass"))
    now = datetime.now(UTC)
    for role, (subject, _) in SIGNERS_OF_6A1.items():
        signer = trust.checked_signers().valid_signer(subject, role, "79000701", now)
        assert identity(signer.certificate).issuer == "Licensed RSA Root CA — issuing CA"
    deps = archive_deps(trust)

    archived = await archive_handlers.archive_records(
        RecordsCompleted(records=[signed_record(trust, n) for n in (0, 2)]), deps
    )

    [announced] = archived.publish
    assert isinstance(announced, RecordsArchived)
    assert len(vouched_for(announced, trust.pki.trust_store(), now).records) == 2
    export = trust.staff.principal("79000701").signs(ExportRecord(record_id="rec-0002", certified_copy=True))
    copy = (await archive_handlers.export_record(export, deps)).reply
    assert isinstance(copy, ProofReply) and copy.bundle is not None
    verdict = verify_bundle(copy.bundle, TrustStore(trust.pki.anchors()))
    assert verdict.ok, [text for section in verdict.sections for ok, text in section.lines if not ok]
    assert any(
        "'Licensed RSA Root CA — issuing CA' is not revoked" in text for s in verdict.sections for _, text in s.lines
    )


# --- keys in a PKCS#11 token --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("token=hocba;object=k", "is not a PKCS#11 URI"),
        ("pkcs11:token=hocba;object=k?pin-value=1234", "the PKCS#11 URI carries a PIN"),
        ("pkcs11:token=hocba;object=k;type=cert", "names a cert object"),
        ("pkcs11:token=hocba;id=%01", "name the key by its label"),
    ],
)
def test_a_pkcs11_uri_names_a_private_key_by_label_and_never_carries_the_pin(uri, reason):
    with pytest.raises(ImportRefused, match=reason):
        Pkcs11Reference.parse(uri)


def test_a_pkcs11_uri_is_read_as_rfc_7512_writes_it():
    reference = Pkcs11Reference.parse("pkcs11:token=Viettel%20CA;object=ky%20so;type=private?module-path=/usr/lib/x.so")
    assert reference == Pkcs11Reference("/usr/lib/x.so", "Viettel CA", "ky so")


def test_a_pkcs11_key_needs_a_pki_whose_keys_are_in_that_token(pki, ca):
    cert, _ = ca.issue("GV001", "homeroom_teacher")

    result = hocba(
        pki,
        "import-cert",
        str(cert),
        "--staff",
        "GV001",
        "--pkcs11-uri",
        "pkcs11:token=hocba;object=k",
        "--anchor",
        str(ca.folder / "root.pem"),
        *ca.crls,
    )

    refused(pki, result, "keeps its signing keys in encrypted files, not a PKCS#11 token")


def test_a_certificate_for_a_key_in_the_token_is_taken_in_by_its_pkcs11_uri(tmp_path, ca):
    """In processes of their own: SoftHSM2 reads its configuration once per process."""
    needs(Path(SOFTHSM).exists() and shutil.which("softhsm2-util") is not None, "SoftHSM2 (Debian's softhsm2)")
    folder = tmp_path / "token-pki"
    env = {
        **os.environ,
        "HOCBA_PKI_PASSPHRASE": PASSPHRASE,
        "HOCBA_PKCS11_PIN": "246810",
        "COLUMNS": "240",
        "SOFTHSM2_CONF": str(folder / "softhsm" / "softhsm2.conf"),  # the PKI's own token, whatever ran before
    }

    def succeeds(*command: str) -> str:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{' '.join(command[:3])}: {done.stdout}{done.stderr}"
        return done.stdout

    hocba_cli = str(Path(sys.executable).with_name("hocba"))
    enrolled = tmp_path / "staff.csv"
    enrolled.write_text("school_code,staff_id,name,role,classes\n79012345,GV001,Nguyễn Thị Lan,homeroom_teacher,6A1\n")
    succeeds(hocba_cli, "pki", "init", "--dir", str(folder), "--schools", "1", "--classes", "1", "--softhsm")
    succeeds(hocba_cli, "pki", "enrol", str(enrolled), "--dir", str(folder))
    key = ec.generate_private_key(ec.SECP256R1())
    clear = tmp_path / "token-key.pem"
    clear.write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    token = ["--token", "hocba", "--label", "ca-issued", "--id", "0a", "--pin", "246810"]
    succeeds("softhsm2-util", "--import", str(clear), *token)
    cert, _ = ca.issue("GV001", "homeroom_teacher", key=key)

    said = succeeds(
        hocba_cli, "pki", "import-cert", str(cert), "--staff", "GV001", "--pkcs11-uri",
        "pkcs11:token=hocba;object=ca-issued", "--anchor", str(ca.folder / "root.pem"), *ca.crls, "--dir", str(folder),
    )  # fmt: skip

    assert "key in the PKCS#11 token" in said
    assert json.loads((folder / "token.json").read_text())["labels"] == {"GV001": "ca-issued"}
    assert succeeds(sys.executable, "-c", SIGN_WITH_GV001, str(folder)).strip() == "signed with the certificate's key"


#: In a process of its own: GV001's signer from the PKI signs with the token's key that the certificate names.
SIGN_WITH_GV001 = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from services.signing.handlers import Signers
from shared.crypto.jws import sign_detached, verify_detached
from shared.crypto.pki import DevPki
pki = DevPki(Path(sys.argv[1]), token_pin="246810")
signer = Signers(pki.directory(), pki.trust_store).valid_signer("GV001", "homeroom_teacher", "79012345", datetime.now(UTC))
jws = sign_detached(signer, b"the record", {})
assert verify_detached(signer.certificate.public_key(), jws, b"the record")
print("signed with the certificate's key")
"""
