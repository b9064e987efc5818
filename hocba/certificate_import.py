"""Taking in a signing certificate that a licensed CA issued, for an enrolled staff member or a school's seal.

Before the PKI takes it, the certificate is checked as signing checks it before every signature, so one
that signing would refuse is refused here, with the reason:

* it chains to a trust anchor: the PKI's own root, one added before, or the licensed CA's root given with
  `--anchor` (added to the PKI's anchors once the certificate checks out); the CAs of the chain may sign with
  EC or RSA keys (the licensed CAs' roots and intermediates are RSA), the certificate's own key is P-256;
* it is valid now and not revoked, by its CA's CRL (given with `--crl`, kept and published with the PKI's CRL);
  each CRL given is signed by a CA of the chain;
* its key usage allows signing records (digitalSignature and nonRepudiation), and its key is P-256 (ES256);
* its subject names the holder as signing reads it: UID the staff id (or seal-<school>), title the role,
  organizationIdentifier the school code;
* the key given is the certificate's: a PEM file (kept encrypted under the PKI's passphrase), or a key in the
  PKI's PKCS#11 token named by a PKCS#11 URI (RFC 7512; the PIN is never part of it, it is the secret file
  HOCBA_PKCS11_PIN_FILE); without either, the key the PKI holds for the holder already.

A development certificate the holder had is revoked as superseded: signatures made with it stay valid.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hocba.staff import StaffRegister, seal_holder
from shared.crypto.certs import NOT_P256, TrustStore, crl_signed_by, fingerprint, identity, is_p256
from shared.crypto.jws import sign_compact, verify_compact
from shared.crypto.pkcs11 import Pkcs11Token
from shared.crypto.pki import DevPki, Holder, PkiRefused
from shared.crypto.signer import KeyBackend, SoftwareKey, X509Signer


class ImportRefused(ValueError):
    """Why a certificate is not taken in, in words the operator can act on."""


@dataclass(frozen=True)
class Pkcs11Reference:
    """A key in a PKCS#11 token as a PKCS#11 URI names it (RFC 7512): the module, the token's and the key's labels."""

    module: str | None
    token: str | None
    label: str | None

    @classmethod
    def parse(cls, uri: str) -> Pkcs11Reference:
        if not uri.startswith("pkcs11:"):
            raise ImportRefused(f"'{uri}' is not a PKCS#11 URI: expected pkcs11:token=<label>;object=<key label>")
        path, _, query = uri.removeprefix("pkcs11:").partition("?")
        attributes: dict[str, str] = {}
        for part in filter(None, path.split(";")):
            name, _, value = part.partition("=")
            attributes[name] = unquote(value)
        queries = {name: values[-1] for name, values in parse_qs(query).items()}
        if "pin-value" in queries or "pin-source" in queries:
            raise ImportRefused(
                "the PKCS#11 URI carries a PIN: leave it out; the token's PIN is a secret file (HOCBA_PKCS11_PIN_FILE)"
            )
        if attributes.get("type", "private") != "private":
            raise ImportRefused(
                f"the PKCS#11 URI names a {attributes['type']} object: name the private key (type=private)"
            )
        if "id" in attributes and "object" not in attributes:
            raise ImportRefused("name the key by its label (object=<label>): hocba finds keys in a token by label")
        return cls(queries.get("module-path"), attributes.get("token"), attributes.get("object"))


@dataclass
class Imported:
    """What the import did."""

    holder: Holder
    certificate: x509.Certificate
    anchor_added: x509.Certificate | None = None
    crls_kept: int = 0
    superseded: bool = False
    #: Where the key is: "file" (encrypted PKCS#8 in the PKI), "token" (a PKCS#11 token), "kept" (held already).
    key: str = "kept"
    notes: list[str] = field(default_factory=list)


def read_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM file (or the one of a DER file), in order."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportRefused(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise ImportRefused(
            f"{path.name} holds no certificate: expected PEM (-----BEGIN CERTIFICATE-----) or DER"
        ) from None


def read_crl(path: Path) -> x509.CertificateRevocationList:
    try:
        data = path.read_bytes()
        return x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
    except OSError as exc:
        raise ImportRefused(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise ImportRefused(f"{path.name} holds no CRL: expected PEM (-----BEGIN X509 CRL-----) or DER") from None


def read_key(path: Path, passphrase_file: Path | None) -> ec.EllipticCurvePrivateKey:
    """A private key from a PEM file, decrypted with the passphrase in `passphrase_file` when it is encrypted."""
    try:
        data = path.read_bytes()
        password = passphrase_file.read_bytes().rstrip(b"\r\n") if passphrase_file else None
    except OSError as exc:
        raise ImportRefused(f"cannot read {exc.filename}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password)
    except TypeError:
        raise ImportRefused(
            f"{path.name} is encrypted: give its passphrase as a file with --key-passphrase-file"
            if password is None
            else f"{path.name} is not encrypted: leave out --key-passphrase-file"
        ) from None
    except ValueError:
        raise ImportRefused(
            f"{path.name} cannot be read as a PEM private key (or the passphrase given does not decrypt it)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ImportRefused(
            f"{path.name} is not a P-256 key: hocba signs with ES256, which takes P-256 keys only; give the "
            "certificate's own key"
        )
    return key


def expected_holder(register: StaffRegister, staff: str | None, seal: str | None) -> Holder:
    """Who the certificate must name: an enrolled staff member who signs, or an enrolled school's seal."""
    if (staff is None) == (seal is None):
        raise ImportRefused("say whose certificate it is: --staff STAFF_ID or --seal SCHOOL_CODE")
    if seal is not None:
        if seal not in register.schools:
            raise ImportRefused(
                f"school {seal} is not enrolled: enrol its staff first (`hocba pki enrol staff.csv`), then import "
                "its seal's certificate"
            )
        return seal_holder(seal, register.schools[seal])
    assert staff is not None
    member = register.staff.get(staff)
    if member is None:
        raise ImportRefused(f"{staff} is not enrolled: enrol them first (`hocba pki enrol staff.csv`)")
    if not member.signs:
        raise ImportRefused(
            f"{staff} is enrolled as {member.role}, who signs no record: only homeroom teachers, principals and "
            "school seals hold signing certificates"
        )
    return member.holder(register.schools.get(member.school_code, ""))


def _plain(name: str) -> str:
    """A name compared as written by hand or by a CA: no accents, one case, single spaces."""
    decomposed = unicodedata.normalize("NFD", name.replace("Đ", "D").replace("đ", "d"))
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).casefold().split())


def subject_problems(certificate: x509.Certificate, holder: Holder) -> list[str]:
    """How the certificate's subject fails to name `holder` as signing reads it (UID, title, organizationIdentifier)."""
    who = identity(certificate)
    problems = []
    if who.subject_id != holder.subject_id:
        problems.append(f"its subject's UID is '{who.subject_id or 'missing'}', not {holder.subject_id}")
    if who.role != holder.role:
        problems.append(f"its subject's title is '{who.role or 'missing'}', not {holder.role}")
    if who.school_code != holder.school_code:
        problems.append(
            f"its subject's organizationIdentifier is '{who.school_code or 'missing'}', not {holder.school_code}"
        )
    return problems


@dataclass
class CertificateImport:
    """One certificate to take in, and what it is checked against."""

    pki: DevPki
    holder: Holder
    chain: Sequence[x509.Certificate]
    anchor: x509.Certificate | None = None
    crls: Sequence[x509.CertificateRevocationList] = ()

    def trust(self) -> TrustStore:
        """The PKI's anchors and CRLs, with the anchor and CRLs given."""
        current = self.pki.trust_store()
        anchors = [*current.anchors, *([self.anchor] if self.anchor is not None else [])]
        return TrustStore(anchors, [*current.crls, *self.crls])

    def check(self) -> None:
        """Refuse (`ImportRefused`) a certificate signing would refuse, saying every reason."""
        if not self.chain:
            raise ImportRefused("no certificate given")
        if self.anchor is not None and not _is_ca(self.anchor):
            raise ImportRefused(f"the anchor '{identity(self.anchor).name}' is not a CA certificate (basicConstraints)")
        leaf = self.chain[0]
        problems = subject_problems(leaf, self.holder)
        if not is_p256(leaf):
            problems.append(f"its {NOT_P256}")
        trust = self.trust()
        problems += [
            p
            for p in trust.validate(self.chain, datetime.now(UTC), purpose="signing").failed
            if p not in problems and not p.endswith(NOT_P256)
        ]
        problems += self.crl_problems(trust)
        if any(p.startswith("no CRL from") for p in problems):
            problems.append("give the CA's current CRL with --crl (each CA's in the chain)")
        if any("does not lead to a trusted root" in p for p in problems) and self.anchor is None:
            problems.append("give the licensed CA's root certificate with --anchor")
        if problems:
            raise ImportRefused(f"the certificate for {self.holder.subject_id} is refused: " + "; ".join(problems))

    def crl_problems(self, trust: TrustStore) -> list[str]:
        """Each CRL given that no CA of the chain (or anchor) signed, by its EC or RSA key: it is not that CA's word."""
        cas = [*trust.anchors, *self.chain[1:]]
        return [
            f"the CRL of '{crl.issuer.rfc4514_string()}' is not signed by a CA of this certificate's chain: give the CRL "
            "that CA published"
            for crl in self.crls
            if not any(crl_signed_by(crl, ca) for ca in cas)
        ]

    def stored_chain(self) -> list[x509.Certificate]:
        """The chain as the PKI keeps it: without the anchors, which the services hold already."""
        anchors = self.trust().anchors
        return [c for n, c in enumerate(self.chain) if n == 0 or c not in anchors]


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _same_key(backend: KeyBackend, certificate: x509.Certificate) -> bool:
    """Whether `backend` holds the private key of `certificate`: it signs a fresh challenge the certificate verifies."""
    public = certificate.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return False
    challenge = secrets.token_bytes(32)
    jws = sign_compact(X509Signer(backend, (certificate,)), challenge, {})
    return verify_compact(public, jws) == challenge


def token_key(pki: DevPki, reference: Pkcs11Reference, subject_id: str) -> tuple[KeyBackend, str]:
    """The key a PKCS#11 URI names in the PKI's token, and its label; refused unless it is in that token."""
    config = pki.token_config()
    if config is None:
        raise ImportRefused(
            f"the PKI at {pki.folder} keeps its signing keys in encrypted files, not a PKCS#11 token: a key in a token "
            "needs a PKI whose keys are in that token (`hocba pki init --pkcs11-module MODULE --token-label LABEL`), "
            "or give the key as a file (--key)"
        )
    if reference.module is not None and Path(reference.module).resolve() != Path(config.module).resolve():
        raise ImportRefused(f"the URI names the module {reference.module}; the PKI's token is in {config.module}")
    if reference.token is not None and reference.token != config.token_label:
        raise ImportRefused(f"the URI names the token '{reference.token}'; the PKI's token is '{config.token_label}'")
    label = reference.label or subject_id
    try:
        return Pkcs11Token.shared(config).key(label), label
    except LookupError as exc:
        raise ImportRefused(str(exc)) from None


def held_key(pki: DevPki, subject_id: str) -> KeyBackend:
    """The key the PKI holds for the holder already; refused when it holds none."""
    try:
        return pki.signer(subject_id).backend
    except LookupError:
        raise ImportRefused(
            f"the PKI holds no key for {subject_id}: give the certificate's key with --key KEY.pem or --pkcs11-uri URI"
        ) from None


@dataclass(frozen=True)
class KeyGiven:
    """The certificate's key as given on the command line (at most one of the two)."""

    file: Path | None = None
    passphrase_file: Path | None = None
    pkcs11_uri: str | None = None


def import_certificate(request: CertificateImport, given: KeyGiven) -> Imported:
    """Check the certificate (`CertificateImport.check`) and its key, then install them in the PKI."""
    pki, holder = request.pki, request.holder
    if given.file is not None and given.pkcs11_uri is not None:
        raise ImportRefused("give the key either as a file (--key) or in a token (--pkcs11-uri), not both")
    request.check()
    leaf = request.chain[0]
    key: ec.EllipticCurvePrivateKey | None = None
    label: str | None = None
    outcome = Imported(holder, leaf)
    if given.file is not None:
        if pki.token_path.exists():
            raise ImportRefused("the PKI keeps its signing keys in a PKCS#11 token: give the key with --pkcs11-uri")
        key = read_key(given.file, given.passphrase_file)
        backend: KeyBackend = SoftwareKey(key)
        outcome.key = "file"
    elif given.pkcs11_uri is not None:
        backend, label = token_key(pki, Pkcs11Reference.parse(given.pkcs11_uri), holder.subject_id)
        outcome.key = "token"
    else:
        backend = held_key(pki, holder.subject_id)
    if not _same_key(backend, leaf):
        raise ImportRefused(
            f"the key given is not the key of the certificate for {holder.subject_id}"
            if outcome.key != "kept"
            else f"the key the PKI holds for {holder.subject_id} is not the certificate's: give the certificate's key "
            "with --key KEY.pem or --pkcs11-uri URI"
        )
    who = identity(leaf)
    if _plain(who.name) != _plain(holder.name):
        outcome.notes.append(f"the certificate names '{who.name}'; the staff register names '{holder.name}'")
    _install(request, outcome, key, label)
    return outcome


def _install(
    request: CertificateImport, outcome: Imported, key: ec.EllipticCurvePrivateKey | None, label: str | None
) -> None:
    pki, holder = request.pki, request.holder
    try:
        if request.anchor is not None and pki.add_anchor(request.anchor):
            outcome.anchor_added = request.anchor
        for crl in request.crls:
            pki.add_crl(crl)
            outcome.crls_kept += 1
        if pki.cert_path(holder.subject_id).exists():
            previous = pki.certificate(holder.subject_id)
            if previous != outcome.certificate and pki.issued_here(previous) and not _revoked(pki, previous):
                pki.revoke(holder.subject_id, "superseded")
                outcome.superseded = True
        who = identity(outcome.certificate)
        pki.install(
            Holder(holder.subject_id, who.name or holder.name, holder.role, holder.school_code, holder.school_name),
            request.stored_chain(),
            key=key,
            token_label=label,
        )
    except PkiRefused as exc:
        raise ImportRefused(str(exc)) from None


def _revoked(pki: DevPki, certificate: x509.Certificate) -> bool:
    crl = pki.trust_store().crl_for(pki.anchors()[0])
    return crl is not None and crl.get_revoked_certificate_by_serial_number(certificate.serial_number) is not None


def describe(certificate: x509.Certificate) -> str:
    """A certificate in one line: who, by whom, until when, its SHA-256 fingerprint."""
    who = identity(certificate)
    return (
        f"'{who.name}' ({who.subject_id or certificate.subject.rfc4514_string()}), issued by '{who.issuer}', "
        f"valid until {certificate.not_valid_after_utc:%Y-%m-%d}, SHA-256 {fingerprint(certificate)}"
    )
