"""A development PKI on disk: a department root CA, school seals, staff and archive certificates, a CRL.

Only for development and tests: production takes certificates from a licensed CA and keys from
its token, through the same `SignerDirectory` and `TrustStore`; a holder's certificate from a
licensed CA is installed here (`install`) beside the CA's root (`add_anchor`) and its CRL
(`add_crl`). Layout of the folder:

    ca/root.crt.pem      the trust anchors: this PKI's root first, then any licensed CA's root added
    ca/root.key.pem      the root's key (encrypted PKCS#8)
    ca/crl.pem           the current CRL, then the licensed CAs' CRLs kept in ca/crls/
    ca/revoked.json      what the CRL lists
    certs/<subject>.crt.pem  the holder's certificate, then any CA certificate between it and an anchor
    keys/<subject>.key.pem   the holder's key (encrypted PKCS#8)
    holders.json         who holds which certificate
    token.json           present when the signing keys live in a PKCS#11 token (no PIN in it); its
                         `labels` name a key imported under a label other than the holder's subject id
    passphrase           development only, when no passphrase is given: a generated one

Every private key file is PKCS#8 encrypted under the passphrase (PBES2, AES-256-CBC); every file is
0600 and every folder 0700. The passphrase and the token's user PIN are secrets given as files
(HOCBA_PKI_PASSPHRASE_FILE, HOCBA_PKCS11_PIN_FILE); development also takes them from the environment
and generates the passphrase when none is given.

A service gets only its part of the folder (`DevPki.export`): the trust anchor, the CRL, the
certificates and the keys it signs with. The root CA's key stays with `hocba pki`, offline.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from shared.contracts.signing import SIGNING_ORDER, seal_subject
from shared.crypto.certs import ARCHIVE_TITLE, TrustStore, load_certificates, load_crls
from shared.crypto.pkcs11 import Pkcs11Token, TokenConfig
from shared.crypto.signer import CachingDirectory, SoftwareKey, UnknownSigner, X509Signer
from shared.settings import SERVICES, Misconfigured, Settings

__all__ = [
    "ARCHIVE_SUBJECT",
    "DevPki",
    "GATEWAY",
    "Holder",
    "PkiRefused",
    "ServicePart",
    "archive_holder",
    "gateway_holder",
    "keys_for",
    "passphrase_from",
    "pin_from",
    "read_secret_file",
    "resolve_passphrase",
    "seal_subject",
    "service_holder",
    "service_holders",
    "tsa_holder",
]

ROOT_NAME = "Sở GD&ĐT — hocba development root CA"
ARCHIVE_SUBJECT = "archive"
#: id-kp-documentSigning (RFC 9336): the certificate signs documents.
DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
#: The development time-stamping authority (hocba.tsa): its certificate's only extended key usage is
#: id-kp-timeStamping, marked critical (RFC 3161 §2.3), so it signs timestamps and nothing else.
TSA_SUBJECT = "tsa"
TSA_TITLE = "time-stamping authority"
ROOT_LIFETIME = timedelta(days=3650)
HOLDER_LIFETIME = timedelta(days=3 * 365)
#: A holder's certificate is valid from this long before it was issued (clocks a little behind still accept it).
HOLDER_BACKDATE = timedelta(hours=1)
CRL_LIFETIME = timedelta(days=30)
#: A CRL this close to its nextUpdate is renewed.
CRL_RENEWAL = timedelta(days=7)
PASSPHRASE_ENV = "HOCBA_PKI_PASSPHRASE"
PASSPHRASE_FILE_ENV = "HOCBA_PKI_PASSPHRASE_FILE"
PIN_ENV = "HOCBA_PKCS11_PIN"
PIN_FILE_ENV = "HOCBA_PKCS11_PIN_FILE"
#: The development passphrase generated beside the keys when none is given.
GENERATED_PASSPHRASE = "passphrase"


class PkiRefused(Misconfigured):
    """What the PKI will not do as configured: use a secret given the wrong way or not at all, serve a service
    from a folder holding the root CA's key, issue without that key, export over files that are not an export."""


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


#: The web gateway: no sixth service (it is not in SERVICES and runs no consumer of its own), but it holds a
#: service certificate, `svc-web`, with which it vouches for each message of a person signed in on the web page.
GATEWAY = "web"


def gateway_holder() -> Holder:
    """The web gateway's certificate (`svc-web`): its tokens carry a signed-in person's sign-in token (shared.auth)."""
    return service_holder(GATEWAY)


def tsa_holder() -> Holder:
    """The development time-stamping authority (`hocba up` runs it): production uses a licensed TSA by URL."""
    return Holder(TSA_SUBJECT, "hocba development time-stamping authority", TSA_TITLE)


def service_holders() -> list[Holder]:
    """Every certificate the services themselves hold: the archive's, grades' (it seals the records it assembles),
    the web gateway's (it vouches for the people signed in on the web page), and the development TSA's."""
    return [archive_holder(), service_holder("grades"), gateway_holder(), tsa_holder()]


#: The one certificate whose key a service (or the web gateway) signs with on its own behalf.
OWN_CERTIFICATE = {
    "archive": ARCHIVE_SUBJECT,
    "grades": service_holder("grades").subject_id,
    GATEWAY: gateway_holder().subject_id,
}


def keys_for(service: str, holders: Iterable[Holder]) -> list[Holder]:
    """The holders whose private keys `service` signs with, and no one else's.

    signing signs for the people and schools (homeroom teachers, principals, school seals); the archive
    signs its checkpoints and certified copies; grades seals the records it assembles and signs its
    look-ups as svc-grades; the web gateway (`web`) vouches for people signed in as svc-web. identity and sync
    only verify, so they hold no key at all.
    """
    if service not in (*SERVICES, GATEWAY):
        raise PkiRefused(f"no service '{service}': one of {', '.join((*SERVICES, GATEWAY))}")
    if service == "signing":
        return [h for h in holders if h.role in SIGNING_ORDER]
    return [h for h in holders if h.subject_id == OWN_CERTIFICATE.get(service)]


# -- secrets ------------------------------------------------------------------------------------


def read_secret_file(path: Path, setting: str) -> bytes:
    """A secret mounted as a file: its bytes without the one trailing newline an editor or `echo` leaves.

    A missing, unreadable or empty file is refused: a secret that quietly became empty would
    protect nothing, or unlock nothing, without saying why.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PkiRefused(f"cannot read {path}, named by {setting}: {exc.strerror or exc}") from None
    data = data[:-2] if data.endswith(b"\r\n") else data.removesuffix(b"\n")
    if not data:
        raise PkiRefused(f"{path}, named by {setting}, is empty: an empty secret protects nothing")
    return data


def passphrase_from(settings: Settings, folder: Path) -> bytes | None:
    """The PKI passphrase as `settings` give it: the secret file, else (development only) HOCBA_PKI_PASSPHRASE.

    None when neither is given: development then finds (or `hocba pki init` generates) the one kept
    beside the PKI; production has no such fallback. Production refuses the environment variable (it
    reaches every child process, crash report and `/proc/<pid>/environ`) and the generated file, which
    lies beside the very keys it is meant to protect.
    """
    if settings.production and settings.pki_passphrase is not None:
        raise PkiRefused(
            f"{PASSPHRASE_ENV} is refused in production: mount the passphrase as a file and name it with "
            f"{PASSPHRASE_FILE_ENV}"
        )
    path = settings.pki_passphrase_file
    if path is None:
        return settings.pki_passphrase.encode() if settings.pki_passphrase else None
    if settings.production and path.resolve() == (folder / GENERATED_PASSPHRASE).resolve():
        raise PkiRefused(
            f"{path} is the development passphrase generated beside the keys; production takes one of its own, "
            f"mounted as a file apart from them ({PASSPHRASE_FILE_ENV})"
        )
    return read_secret_file(path, PASSPHRASE_FILE_ENV)


def pin_from(settings: Settings) -> str | None:
    """The PKCS#11 token's user PIN as `settings` give it: the secret file, else (development only) HOCBA_PKCS11_PIN."""
    if settings.production and settings.pkcs11_pin is not None:
        raise PkiRefused(f"{PIN_ENV} is refused in production: mount the PIN as a file and name it with {PIN_FILE_ENV}")
    if settings.pkcs11_pin_file is not None:
        return read_secret_file(settings.pkcs11_pin_file, PIN_FILE_ENV).decode()
    return settings.pkcs11_pin or None


def resolve_passphrase(folder: Path, given: str | None = None, *, create: bool = False) -> bytes:
    """Development: the passphrase from the argument or HOCBA_PKI_PASSPHRASE; else the one kept beside the PKI."""
    value = given or os.environ.get(PASSPHRASE_ENV)
    if value:
        return value.encode()
    path = folder / GENERATED_PASSPHRASE
    if path.exists():
        return path.read_bytes().strip()
    if not create:
        raise PkiRefused(
            f"no PKI passphrase: give it as a file with {PASSPHRASE_FILE_ENV} (or keep {path} in development)"
        )
    _private_folder(folder)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32))
    return path.read_bytes().strip()


# -- files only the owner reads -----------------------------------------------------------------


def _private_folder(path: Path) -> Path:
    """`path` as a folder only its owner may enter (0700), made with its parents when missing."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by its owner only (0600), whole: a reader sees the old file or the new one."""
    _private_folder(path.parent)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _make_private(folder: Path) -> None:
    """Every folder under `folder` 0700 and every file 0600: what an older PKI wrote with the umask's modes."""
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, 0o700 if path.is_dir() else 0o600)


# -- a service's part ---------------------------------------------------------------------------

#: What an exported part holds, by path inside it; anything else in a folder is not an earlier export.
EXPORT_FILES = ("ca/root.crt.pem", "ca/crl.pem", "certs/*.crt.pem", "keys/*.key.pem", "token.json")


@dataclass(frozen=True)
class ServicePart:
    """What `DevPki.export` wrote for a service (counts, never key material)."""

    service: str
    folder: Path
    certificates: int
    #: Private key files (encrypted PKCS#8); none when the keys are in a PKCS#11 token.
    keys: int
    #: token.json: the service's keys are in the PKCS#11 token it names.
    token: bool
    #: Files of an earlier export that this one does not hold, removed.
    removed: int


def _is_export_file(relative: PurePosixPath) -> bool:
    """Whether a file at `relative` inside a folder is one an export writes (or the temporary of a write cut short)."""
    if relative.name.startswith(".") and relative.name.endswith(".tmp"):
        return True
    return any(
        relative.match(pattern) and len(relative.parts) == len(PurePosixPath(pattern).parts) for pattern in EXPORT_FILES
    )


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
    """Creates, extends and revokes in a development PKI folder; loads its signers and trust store.

    `production` takes the passphrase and the PIN only as given (files): it never generates a passphrase,
    never reads one beside the keys, never reads the PIN from the environment.
    """

    def __init__(
        self, folder: Path, passphrase: bytes | None = None, token_pin: str | None = None, *, production: bool = False
    ) -> None:
        self.folder = folder
        self._passphrase = passphrase
        self.token_pin = token_pin
        self.production = production

    @classmethod
    def configured(cls, settings: Settings, folder: Path | None = None) -> DevPki:
        """The PKI at `folder` (default HOCBA_PKI_DIR, or <data dir>/pki) with the secrets `settings` give, under
        their environment's rules (`passphrase_from`, `pin_from`): what `hocba pki` works on."""
        folder = folder or settings.pki_path()
        return cls(folder, passphrase_from(settings, folder), pin_from(settings), production=settings.production)

    @classmethod
    def from_settings(cls, settings: Settings) -> DevPki:
        """The PKI a service is configured with.

        In production the service checks at start what it would otherwise learn at its first signature:
        that it was given its part of the PKI (`export`), not the whole, and the secrets its keys need.
        """
        pki = cls.configured(settings)
        if settings.production:
            pki.check_service_part()
        return pki

    # -- paths ----------------------------------------------------------------------------------

    @property
    def anchor_path(self) -> Path:
        return self.folder / "ca" / "root.crt.pem"

    @property
    def root_key_path(self) -> Path:
        return self.folder / "ca" / "root.key.pem"

    @property
    def crl_path(self) -> Path:
        return self.folder / "ca" / "crl.pem"

    @property
    def token_path(self) -> Path:
        return self.folder / "token.json"

    def cert_path(self, subject_id: str) -> Path:
        return self.folder / "certs" / f"{subject_id}.crt.pem"

    def key_path(self, subject_id: str) -> Path:
        return self.folder / "keys" / f"{subject_id}.key.pem"

    @property
    def passphrase(self) -> bytes:
        if self._passphrase is None:
            self._passphrase = self._generated_passphrase(create=False)
        return self._passphrase

    def _generated_passphrase(self, *, create: bool) -> bytes:
        """The passphrase kept beside the keys, made on first need: development only."""
        if self.production:
            raise PkiRefused(
                f"no PKI passphrase: in production mount it as a file and name it with {PASSPHRASE_FILE_ENV}"
            )
        return resolve_passphrase(self.folder, create=create)

    def exists(self) -> bool:
        return self.anchor_path.exists() and self.crl_path.exists()

    def check_service_part(self) -> None:
        """Refuse a folder a service must not run from, and keys whose secret is not given (`PkiRefused`).

        A service holds the trust anchor, the CRL, the certificates and its own keys; the root CA's key
        and a passphrase kept beside the keys mean it was given the whole PKI.
        """
        if self.root_key_path.exists():
            raise PkiRefused(
                f"the PKI folder {self.folder} holds the root CA's key, which never leaves `hocba pki`: give the "
                "service its own part (`hocba pki export --service <name> --to <folder>`)"
            )
        if (self.folder / GENERATED_PASSPHRASE).exists():
            raise PkiRefused(
                f"the PKI folder {self.folder} keeps a development passphrase beside its keys: give the service its "
                f"own part (`hocba pki export`) and the passphrase as a file ({PASSPHRASE_FILE_ENV})"
            )
        if self._passphrase is None and any(self.folder.glob("keys/*.key.pem")):
            raise PkiRefused(
                f"the service's keys are encrypted: mount the passphrase as a file and name it with "
                f"{PASSPHRASE_FILE_ENV}"
            )
        if self.token_path.exists():
            self.user_pin()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the PKI for a change or a consistent read; only the offline PKI (the one with the root CA's key)."""
        if self.anchor_path.exists() and not self.root_key_path.exists():
            raise self._no_root_key()
        _private_folder(self.folder)
        fd = os.open(self.folder / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- token ----------------------------------------------------------------------------------

    def user_pin(self) -> str:
        """The token's user PIN: as given (a PIN file), or in development HOCBA_PKCS11_PIN."""
        pin = self.token_pin or (None if self.production else os.environ.get(PIN_ENV))
        if not pin:
            otherwise = "" if self.production else f" (or {PIN_ENV} in development)"
            raise PkiRefused(
                f"the keys are in a PKCS#11 token: give its user PIN as a file with {PIN_FILE_ENV}{otherwise}"
            )
        return pin

    def token_config(self) -> TokenConfig | None:
        if not self.token_path.exists():
            return None
        config = json.loads(self.token_path.read_text())
        return TokenConfig(config["module"], config["token_label"], self.user_pin(), config.get("env", {}))

    # -- creating -------------------------------------------------------------------------------

    def create(self, holders: Iterable[Holder], token: TokenConfig | None = None, *, renew: Iterable[str] = ()) -> int:
        """Create the root CA and CRL if absent, then issue every holder not issued yet, and those in `renew`
        (subject ids whose certificate no longer serves: revoked, expired) again with a new key.

        With `token`, the holders' keys are generated inside that PKCS#11 token (the root CA's key
        stays an encrypted file: a CA's root is never a signing key). Returns how many were issued.
        Everything in the folder ends up readable by its owner only, what an older version wrote included.
        """
        again = set(renew)
        with self._locked():
            if token is not None and not self.token_path.exists():
                config = {"module": token.module, "token_label": token.token_label, "env": token.env}
                write_private(self.token_path, json.dumps(config, indent=2).encode())
            if self._passphrase is None:
                self._passphrase = self._generated_passphrase(create=True)
            if not self.anchor_path.exists():
                self._create_root()
            issued = 0
            known = self._holders()
            root = self._root()
            keys = token or self.token_config()
            for holder in holders:
                issued_before = holder.subject_id in known and self.cert_path(holder.subject_id).exists()
                if issued_before and holder.subject_id not in again:
                    continue
                self._issue(holder, keys, root)
                known[holder.subject_id] = holder
                issued += 1
            if issued:
                self._write_holders(known)
            if not self.crl_path.exists():
                self._write_crl()
            _make_private(self.folder)
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
        self._write_key(self.root_key_path, key)
        write_private(self.anchor_path, cert.public_bytes(serialization.Encoding.PEM))

    def _root(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """The root CA's certificate and key: only the offline PKI has the key (a service's part never does)."""
        if not self.root_key_path.exists():
            raise self._no_root_key()
        cert = load_certificates(self.anchor_path)[0]
        key = serialization.load_pem_private_key(self.root_key_path.read_bytes(), self.passphrase)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key

    def _no_root_key(self) -> PkiRefused:
        return PkiRefused(
            f"no root CA key in {self.folder}: certificates and CRLs are issued, and parts exported, on the offline "
            "PKI; then each service's part is exported again"
        )

    def _issue(
        self, holder: Holder, token: TokenConfig | None, root: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
    ) -> None:
        root_cert, root_key = root
        if token is not None:
            try:
                public = Pkcs11Token.shared(token).generate(holder.subject_id)
            except ValueError as exc:
                raise PkiRefused(f"cannot issue {holder.subject_id} a new key: {exc}") from None
        else:
            private = ec.generate_private_key(ec.SECP256R1())
            public = private.public_key()
            self._write_key(self.key_path(holder.subject_id), private)
        now = datetime.now(UTC)
        if self.cert_path(holder.subject_id).exists():
            # X.509 times are whole seconds: a certificate issued again within the second of the one it replaces
            # would end with it. The new one is dated a second later, so it always outlives the old.
            replaced = self.certificate(holder.subject_id).not_valid_before_utc + HOLDER_BACKDATE
            now = max(now, replaced + timedelta(seconds=1))
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(holder))
            .issuer_name(root_cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - HOLDER_BACKDATE)
            .not_valid_after(now + HOLDER_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(commitment=True), critical=True)
            .add_extension(*_extended_usage(holder))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False
            )
        )
        cert = builder.sign(root_key, hashes.SHA256())
        write_private(self.cert_path(holder.subject_id), cert.public_bytes(serialization.Encoding.PEM))

    def _write_key(self, path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self.passphrase),
        )
        write_private(path, data)

    def _holders(self) -> dict[str, Holder]:
        path = self.folder / "holders.json"
        if not path.exists():
            return {}
        return {h["subject_id"]: Holder(**h) for h in json.loads(path.read_text())}

    def _write_holders(self, holders: dict[str, Holder]) -> None:
        rows = [asdict(h) for h in sorted(holders.values(), key=lambda h: h.subject_id)]
        write_private(self.folder / "holders.json", json.dumps(rows, ensure_ascii=False, indent=1).encode())

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
            write_private(self.folder / "ca" / "revoked.json", json.dumps(revoked, indent=1).encode())
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
        self._publish_crls(crl.public_bytes(serialization.Encoding.PEM))

    @property
    def kept_crls_folder(self) -> Path:
        return self.folder / "ca" / "crls"

    def _publish_crls(self, own: bytes) -> None:
        """ca/crl.pem: this PKI's CRL first (what `renew_crl` reads), then each licensed CA's CRL kept in ca/crls/."""
        kept = [path.read_bytes() for path in sorted(self.kept_crls_folder.glob("*.crl.pem"))]
        write_private(self.crl_path, b"".join([own, *kept]))

    # -- using ----------------------------------------------------------------------------------

    def trust_store(self) -> TrustStore:
        return TrustStore.from_files(self.anchor_path, [self.crl_path])

    def certificate(self, subject_id: str) -> x509.Certificate:
        path = self.cert_path(subject_id)
        if not path.exists():
            raise UnknownSigner(f"no certificate for '{subject_id}' in the PKI at {self.folder}")
        return load_certificates(path)[0]

    def chain(self, subject_id: str) -> tuple[x509.Certificate, ...]:
        """The holder's certificate and any CA certificate between it and an anchor (an anchor is not in the chain)."""
        self.certificate(subject_id)
        return tuple(load_certificates(self.cert_path(subject_id)))

    def signer(self, subject_id: str, token: Pkcs11Token | None = None) -> X509Signer:
        """The holder's signer: the certificate chain (the root is the anchor, so not in the chain) and key."""
        chain = self.chain(subject_id)
        config = self.token_config()
        if config is not None:
            token = token or Pkcs11Token.shared(config)
            try:
                return X509Signer(token.key(self.key_label(subject_id)), chain)
            except LookupError as exc:
                raise UnknownSigner(str(exc)) from None
        path = self.key_path(subject_id)
        if not path.exists():
            raise UnknownSigner(f"no key for '{subject_id}' in the PKI at {self.folder}")
        key = serialization.load_pem_private_key(path.read_bytes(), self.passphrase)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return X509Signer(SoftwareKey(key), chain)

    def key_label(self, subject_id: str) -> str:
        """The label of the holder's key in the PKCS#11 token: its subject id, unless installed under another."""
        if not self.token_path.exists():
            return subject_id
        labels: dict[str, str] = json.loads(self.token_path.read_text()).get("labels", {})
        return labels.get(subject_id, subject_id)

    # -- certificates from a licensed CA --------------------------------------------------------

    def anchors(self) -> list[x509.Certificate]:
        """The trust anchors: this PKI's root first, then the licensed CAs' roots added."""
        return load_certificates(self.anchor_path)

    def issued_here(self, cert: x509.Certificate) -> bool:
        """Whether this PKI's root CA issued `cert` (a development certificate, not a licensed CA's)."""
        root = self.anchors()[0]
        try:
            cert.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def add_anchor(self, anchor: x509.Certificate) -> bool:
        """Trust `anchor` (a licensed CA's root) beside this PKI's root; False when it is one already."""
        with self._locked():
            anchors = self.anchors()
            if anchor in anchors:
                return False
            write_private(self.anchor_path, b"".join(_pem(c) for c in [*anchors, anchor]))
            return True

    def add_crl(self, crl: x509.CertificateRevocationList) -> None:
        """Keep a licensed CA's CRL, in place of the one of that CA kept before, and publish it in ca/crl.pem.

        Refuses (`PkiRefused`) a CRL older than the one kept: it could leave out a revocation since.
        """
        with self._locked():
            name = hashlib.sha256(crl.issuer.public_bytes()).hexdigest()[:16]
            path = self.kept_crls_folder / f"{name}.crl.pem"
            if path.exists():
                kept = load_crls(path)[0]
                if crl.last_update_utc < kept.last_update_utc:
                    raise PkiRefused(
                        f"the CRL given was issued {crl.last_update_utc:%Y-%m-%d %H:%M}Z, before the one kept "
                        f"({kept.last_update_utc:%Y-%m-%d %H:%M}Z): give the CA's current CRL"
                    )
            write_private(path, crl.public_bytes(serialization.Encoding.PEM))
            own = x509.load_pem_x509_crl(self.crl_path.read_bytes())
            self._publish_crls(own.public_bytes(serialization.Encoding.PEM))

    def install(
        self,
        holder: Holder,
        chain: Sequence[x509.Certificate],
        key: ec.EllipticCurvePrivateKey | None = None,
        token_label: str | None = None,
    ) -> None:
        """Make `chain` (the holder's certificate first) the holder's, signing with `key` (kept encrypted under the
        passphrase) or the token's key labelled `token_label`, or with the key the PKI holds for them already."""
        with self._locked():
            if key is not None:
                self._write_key(self.key_path(holder.subject_id), key)
            if token_label is not None:
                config = json.loads(self.token_path.read_text())
                labels = {**config.get("labels", {}), holder.subject_id: token_label}
                if token_label == holder.subject_id:
                    del labels[holder.subject_id]
                write_private(self.token_path, json.dumps({**config, "labels": labels}, indent=2).encode())
            write_private(self.cert_path(holder.subject_id), b"".join(_pem(c) for c in chain))
            known = self._holders()
            known[holder.subject_id] = holder
            self._write_holders(known)

    def directory(self) -> CachingDirectory:
        """Signers by subject id, loaded on first use (one token session shared by all of them)."""
        config = self.token_config()
        token = Pkcs11Token.shared(config) if config is not None else None
        return CachingDirectory(lambda subject: self.signer(subject, token))

    # -- a service's part -----------------------------------------------------------------------

    def export(self, service: str, destination: Path, *, replace: bool = False) -> ServicePart:
        """Write `service`'s part of the PKI to `destination`, and nothing else.

        The part is the trust anchor, the CRL, every certificate (public: the services verify chains)
        and the private keys `keys_for` the service, or token.json when the keys are in a PKCS#11 token.
        Never the root CA's key, the passphrase, the holders list or anyone else's keys. The key files
        are copied as they are, encrypted: exporting needs no secret.

        Each file is replaced whole inside the existing folder, so a service that has it mounted reads
        the new CRL as soon as it lands. `replace` writes over an earlier export and removes the files
        of it this one does not hold; anything that is not an export's is refused, `replace` or not.
        """
        if not self.exists():
            raise PkiRefused(f"no PKI at {self.folder}: run `hocba pki init`")
        self._check_destination(destination, replace)
        with self._locked():
            files, keys = self._part(service)
            _private_folder(destination)
            for relative, source in files.items():
                write_private(destination / relative, source.read_bytes())
            removed = _remove_all_but(destination, set(files))
        certificates = sum(1 for relative in files if relative.parts[0] == "certs")
        return ServicePart(service, destination, certificates, keys, self.token_path.exists(), removed)

    def _part(self, service: str) -> tuple[dict[PurePosixPath, Path], int]:
        """The files of `service`'s part (path inside the part → file in this PKI), and how many are keys."""
        holders = keys_for(service, self.holders())
        own = OWN_CERTIFICATE.get(service)
        if own is not None and not holders:
            raise PkiRefused(f"the PKI at {self.folder} has no certificate for '{own}': run `hocba pki init`")
        files = {
            PurePosixPath("ca/root.crt.pem"): self.anchor_path,
            PurePosixPath("ca/crl.pem"): self.crl_path,
            **{PurePosixPath("certs", p.name): p for p in sorted((self.folder / "certs").glob("*.crt.pem"))},
        }
        if self.token_path.exists():
            return {**files, PurePosixPath("token.json"): self.token_path}, 0
        keys = {PurePosixPath("keys", self.key_path(h.subject_id).name): self.key_path(h.subject_id) for h in holders}
        if missing := [h.subject_id for h in holders if not self.key_path(h.subject_id).exists()]:
            raise PkiRefused(f"no key for {', '.join(missing[:5])} in the PKI at {self.folder}")
        return {**files, **keys}, len(keys)

    def _check_destination(self, destination: Path, replace: bool) -> None:
        """Refuse to write into this PKI, around it, over anything without `replace`, or over what no export wrote."""
        source, target = self.folder.resolve(), destination.resolve()
        if target == source or source in target.parents or target in source.parents:
            raise PkiRefused(f"{destination} overlaps the PKI at {self.folder}: export to a folder of its own")
        if not destination.exists():
            return
        if not destination.is_dir():
            raise PkiRefused(f"{destination} is not a folder")
        present = [p.relative_to(destination) for p in destination.rglob("*") if not p.is_dir()]
        if present and not replace:
            raise PkiRefused(f"{destination} is not empty: pass --force to replace the part exported to it before")
        if foreign := [p for p in present if not _is_export_file(PurePosixPath(p.as_posix()))]:
            raise PkiRefused(
                f"{destination} holds {foreign[0]}, which no export writes: refusing to replace it (a PKI or other "
                "files are never overwritten)"
            )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


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


def _extended_usage(holder: Holder) -> tuple[x509.ExtendedKeyUsage, bool]:
    """The holder's extended key usage and whether it is critical: timeStamping alone and critical for the TSA
    (RFC 3161 §2.3), document signing and e-mail protection for everyone else."""
    if holder.role == TSA_TITLE:
        return x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), True
    return x509.ExtendedKeyUsage([DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION]), False


def _remove_all_but(folder: Path, kept: set[PurePosixPath]) -> int:
    """Remove every file under `folder` not in `kept` (by path inside it) and the folders left empty; how many files."""
    removed = 0
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):
                path.rmdir()
        elif PurePosixPath(path.relative_to(folder).as_posix()) not in kept:
            path.unlink()
            removed += 1
    return removed
