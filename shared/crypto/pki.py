"""A development PKI on disk: a department root CA, school seals, staff and archive certificates, a CRL.

Only for development and tests: production takes certificates from a licensed CA and keys from
its token, through the same `SignerDirectory` and `TrustStore`. Layout of the folder:

    ca/root.crt.pem      the trust anchor          ca/root.key.pem   its key (encrypted PKCS#8)
    ca/crl.pem           the current CRL           ca/revoked.json   what the CRL lists
    certs/<subject>.crt.pem                        keys/<subject>.key.pem (encrypted PKCS#8)
    holders.json         who holds which certificate
    token.json           present when the signing keys live in a PKCS#11 token (no PIN in it)
    passphrase           only when HOCBA_PKI_PASSPHRASE is unset: a generated dev passphrase (0600)

Every private key file is PKCS#8 encrypted under the passphrase (PBES2, AES-256-CBC).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from shared.contracts.signing import seal_subject
from shared.crypto.certs import ARCHIVE_TITLE, TrustStore, load_certificates
from shared.crypto.pkcs11 import Pkcs11Token, TokenConfig
from shared.crypto.signer import CachingDirectory, SoftwareKey, UnknownSigner, X509Signer
from shared.settings import Settings

__all__ = [
    "ARCHIVE_SUBJECT",
    "DevPki",
    "Holder",
    "archive_holder",
    "resolve_passphrase",
    "seal_subject",
    "service_holder",
    "service_holders",
]

ROOT_NAME = "Sở GD&ĐT — hocba development root CA"
ARCHIVE_SUBJECT = "archive"
#: id-kp-documentSigning (RFC 9336): the certificate signs documents.
DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
ROOT_LIFETIME = timedelta(days=3650)
HOLDER_LIFETIME = timedelta(days=3 * 365)
CRL_LIFETIME = timedelta(days=30)
#: A CRL this close to its nextUpdate is renewed.
CRL_RENEWAL = timedelta(days=7)
PASSPHRASE_ENV = "HOCBA_PKI_PASSPHRASE"


@dataclass(frozen=True)
class Holder:
    """Someone (or some school, or the archive) who gets a signing certificate."""

    subject_id: str
    name: str
    role: str
    school_code: str = ""
    school_name: str = ""


def archive_holder() -> Holder:
    return Holder(ARCHIVE_SUBJECT, "hocba archive log", ARCHIVE_TITLE)


def service_holder(service: str) -> Holder:
    """A service's own certificate (`svc-<service>`): its seals on what it produces and its tokens when it asks."""
    return Holder(f"svc-{service}", f"hocba {service} service", "service")


def service_holders() -> list[Holder]:
    """Every certificate the services themselves hold: the archive's, and grades' (it seals the records it assembles)."""
    return [archive_holder(), service_holder("grades")]


def resolve_passphrase(folder: Path, given: str | None = None, *, create: bool = False) -> bytes:
    """The passphrase from the argument or HOCBA_PKI_PASSPHRASE; else the dev one kept beside the PKI."""
    value = given or os.environ.get(PASSPHRASE_ENV)
    if value:
        return value.encode()
    path = folder / "passphrase"
    if path.exists():
        return path.read_bytes().strip()
    if not create:
        raise FileNotFoundError(f"no PKI passphrase: set {PASSPHRASE_ENV} (or keep {path})")
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32))
    return path.read_bytes().strip()


def _name(holder: Holder) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")]
    if holder.school_name:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, holder.school_name))
    if holder.school_code:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, holder.school_code))
    attributes += [
        x509.NameAttribute(NameOID.TITLE, holder.role),
        x509.NameAttribute(NameOID.USER_ID, holder.subject_id),
        x509.NameAttribute(NameOID.COMMON_NAME, holder.name),
    ]
    return x509.Name(attributes)


class DevPki:
    """Creates, extends and revokes in a development PKI folder; loads its signers and trust store."""

    def __init__(self, folder: Path, passphrase: bytes | None = None, token_pin: str | None = None) -> None:
        self.folder = folder
        self._passphrase = passphrase
        self.token_pin = token_pin

    @classmethod
    def from_settings(cls, settings: Settings) -> DevPki:
        """The PKI a process is configured with: HOCBA_PKI_DIR (or <data dir>/pki), its passphrase and token PIN."""
        passphrase = settings.pki_passphrase.encode() if settings.pki_passphrase else None
        return cls(settings.pki_path(), passphrase, settings.pkcs11_pin)

    # -- paths ----------------------------------------------------------------------------------

    @property
    def anchor_path(self) -> Path:
        return self.folder / "ca" / "root.crt.pem"

    @property
    def crl_path(self) -> Path:
        return self.folder / "ca" / "crl.pem"

    def cert_path(self, subject_id: str) -> Path:
        return self.folder / "certs" / f"{subject_id}.crt.pem"

    def key_path(self, subject_id: str) -> Path:
        return self.folder / "keys" / f"{subject_id}.key.pem"

    @property
    def passphrase(self) -> bytes:
        if self._passphrase is None:
            self._passphrase = resolve_passphrase(self.folder)
        return self._passphrase

    def exists(self) -> bool:
        return self.anchor_path.exists() and self.crl_path.exists()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        with open(self.folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- token ----------------------------------------------------------------------------------

    def token_config(self) -> TokenConfig | None:
        path = self.folder / "token.json"
        if not path.exists():
            return None
        config = json.loads(path.read_text())
        pin = self.token_pin or os.environ.get("HOCBA_PKCS11_PIN")
        if not pin:
            raise UnknownSigner("the signing keys are in a PKCS#11 token: set HOCBA_PKCS11_PIN")
        return TokenConfig(config["module"], config["token_label"], pin, config.get("env", {}))

    # -- creating -------------------------------------------------------------------------------

    def create(self, holders: Iterable[Holder], token: TokenConfig | None = None) -> int:
        """Create the root CA and CRL if absent, then issue every holder not issued yet.

        With `token`, the holders' keys are generated inside that PKCS#11 token (the root CA's key
        stays an encrypted file: a CA's root is never a signing key). Returns how many were issued.
        """
        with self._locked():
            if token is not None and not (self.folder / "token.json").exists():
                (self.folder / "token.json").write_text(
                    json.dumps({"module": token.module, "token_label": token.token_label, "env": token.env}, indent=2)
                )
            if self._passphrase is None:
                self._passphrase = resolve_passphrase(self.folder, create=True)
            if not self.anchor_path.exists():
                self._create_root()
            issued = 0
            known = self._holders()
            root = self._root()
            keys = token or self.token_config()
            for holder in holders:
                if holder.subject_id in known and self.cert_path(holder.subject_id).exists():
                    continue
                self._issue(holder, keys, root)
                known[holder.subject_id] = holder
                issued += 1
            if issued:
                self._write_holders(known)
            if not self.crl_path.exists():
                self._write_crl()
            return issued

    def _create_root(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"), x509.NameAttribute(NameOID.COMMON_NAME, ROOT_NAME)])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + ROOT_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        self._write_key(self.folder / "ca" / "root.key.pem", key)
        self.anchor_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _root(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = load_certificates(self.anchor_path)[0]
        key = serialization.load_pem_private_key((self.folder / "ca" / "root.key.pem").read_bytes(), self.passphrase)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key

    def _issue(
        self, holder: Holder, token: TokenConfig | None, root: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
    ) -> None:
        root_cert, root_key = root
        if token is not None:
            public = Pkcs11Token.shared(token).generate(holder.subject_id)
        else:
            private = ec.generate_private_key(ec.SECP256R1())
            public = private.public_key()
            self._write_key(self.key_path(holder.subject_id), private)
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(holder))
            .issuer_name(root_cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + HOLDER_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(commitment=True), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False
            )
        )
        cert = builder.sign(root_key, hashes.SHA256())
        path = self.cert_path(holder.subject_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _write_key(self, path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self.passphrase),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)

    def _holders(self) -> dict[str, Holder]:
        path = self.folder / "holders.json"
        if not path.exists():
            return {}
        return {h["subject_id"]: Holder(**h) for h in json.loads(path.read_text())}

    def _write_holders(self, holders: dict[str, Holder]) -> None:
        rows = [asdict(h) for h in sorted(holders.values(), key=lambda h: h.subject_id)]
        temporary = self.folder / "holders.json.tmp"
        temporary.write_text(json.dumps(rows, ensure_ascii=False, indent=1))
        temporary.replace(self.folder / "holders.json")

    def holders(self) -> list[Holder]:
        return sorted(self._holders().values(), key=lambda h: h.subject_id)

    # -- revoking -------------------------------------------------------------------------------

    def revoke(self, subject_id: str, reason: str = "key_compromise", at: datetime | None = None) -> datetime:
        """Put the holder's certificate on the CRL (as of `at`, default now) and re-issue the CRL."""
        with self._locked():
            path = self.cert_path(subject_id)
            if not path.exists():
                raise UnknownSigner(f"no certificate for '{subject_id}'")
            cert = load_certificates(path)[0]
            when = (at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
            x509.ReasonFlags[reason]  # refuse unknown reasons early (KeyError)
            revoked = self._revoked()
            revoked[str(cert.serial_number)] = {"subject_id": subject_id, "at": when.isoformat(), "reason": reason}
            (self.folder / "ca" / "revoked.json").write_text(json.dumps(revoked, indent=1))
            self._write_crl()
            return when

    def renew_crl(self, due_within: timedelta = CRL_RENEWAL) -> bool:
        """Re-issue the CRL (same entries, a new nextUpdate) when it falls due within `due_within`; True if it did.

        A CRL past its nextUpdate fails every certificate check (a revocation since would not be on it), so
        the CRL is renewed well before: `hocba up` does it at start, `hocba pki crl` on demand.
        """
        with self._locked():
            current = x509.load_pem_x509_crl(self.crl_path.read_bytes())
            due = current.next_update_utc
            if due is not None and due - datetime.now(UTC) > due_within:
                return False
            self._write_crl()
            return True

    def _next_crl_number(self, now: datetime) -> int:
        """A CRL number greater than the current CRL's (RFC 5280 §5.2.3: monotonically increasing)."""
        number = int(now.timestamp() * 1000)
        if self.crl_path.exists():
            current = x509.load_pem_x509_crl(self.crl_path.read_bytes())
            number = max(number, current.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1)
        return number

    def _revoked(self) -> dict[str, dict[str, str]]:
        path = self.folder / "ca" / "revoked.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _write_crl(self) -> None:
        root, key = self._root()
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(root.subject)
            .last_update(now - timedelta(minutes=1))
            .next_update(now + CRL_LIFETIME)
            .add_extension(x509.CRLNumber(self._next_crl_number(now)), critical=False)
        )
        for serial, row in self._revoked().items():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(int(serial))
                .revocation_date(datetime.fromisoformat(row["at"]))
                .add_extension(x509.CRLReason(x509.ReasonFlags[row["reason"]]), critical=False)
                .build()
            )
        crl = builder.sign(key, hashes.SHA256())
        temporary = self.crl_path.with_suffix(".tmp")
        temporary.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        temporary.replace(self.crl_path)

    # -- using ----------------------------------------------------------------------------------

    def trust_store(self) -> TrustStore:
        return TrustStore.from_files(self.anchor_path, [self.crl_path])

    def certificate(self, subject_id: str) -> x509.Certificate:
        path = self.cert_path(subject_id)
        if not path.exists():
            raise UnknownSigner(f"no certificate for '{subject_id}' in the PKI at {self.folder}")
        return load_certificates(path)[0]

    def signer(self, subject_id: str, token: Pkcs11Token | None = None) -> X509Signer:
        """The holder's signer: the certificate (the root is the anchor, so not in the chain) and key."""
        cert = self.certificate(subject_id)
        config = self.token_config()
        if config is not None:
            token = token or Pkcs11Token.shared(config)
            try:
                return X509Signer(token.key(subject_id), (cert,))
            except LookupError as exc:
                raise UnknownSigner(str(exc)) from None
        path = self.key_path(subject_id)
        if not path.exists():
            raise UnknownSigner(f"no key for '{subject_id}' in the PKI at {self.folder}")
        key = serialization.load_pem_private_key(path.read_bytes(), self.passphrase)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return X509Signer(SoftwareKey(key), (cert,))

    def directory(self) -> CachingDirectory:
        """Signers by subject id, loaded on first use (one token session shared by all of them)."""
        config = self.token_config()
        token = Pkcs11Token.shared(config) if config is not None else None
        return CachingDirectory(lambda subject: self.signer(subject, token))


def _usage(*, cert_sign: bool = False, commitment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
