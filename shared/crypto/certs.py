"""X.509 for signers: who a certificate names, x5c chains, and validation against a trust anchor and CRLs.

A signer's certificate names the person or organisation in its subject: `UID` is the subject id
the school management system uses in actor tokens, `title` the signing role, and
`organizationIdentifier` the school code. Validation checks each link of the chain, validity at
a given moment (the signing time), key usage, and revocation by the issuer's CRL, as RFC 5280 means
its reasons. The signer's own key is P-256, as ES256 takes; the CAs above it may sign with any key
cryptography verifies (the licensed CAs' roots and intermediates are RSA: PKCS#1 v1.5 or PSS), and
so may their CRLs:

* a key compromise (keyCompromise, cACompromise, aACompromise) voids every signature that a
  trusted time (the archive's admission time under a signed checkpoint) does not prove older than
  the revocation: whoever holds a stolen key can write any signing time they like;
* any other reason (affiliationChanged, superseded, ...) voids the signatures made after the
  revocation, as the signer states the time;
* a CRL past its nextUpdate says nothing about what was revoked since: the check fails.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

#: The `title` of the archive's own certificate (a signer's certificate names its role there).
ARCHIVE_TITLE = "archive"

#: RFC 5280 reasons that say the private key is in other hands: no signing time it states can be believed.
COMPROMISE_REASONS = frozenset(
    {x509.ReasonFlags.key_compromise, x509.ReasonFlags.ca_compromise, x509.ReasonFlags.aa_compromise}
)
#: Why a signer's certificate whose key is not P-256 (an RSA key, say) serves no hocba signature, and what to do.
NOT_P256 = (
    "key is not P-256: hocba signs with ES256, which takes P-256 keys only; ask the CA for an ECDSA P-256 "
    "certificate (the CA's root and intermediate may be RSA)"
)
#: Which time a chain's verdict relied on: the signer's stated signing time, or a trusted time.
STATED, TRUSTED = "stated", "trusted"


@dataclass(frozen=True)
class CertIdentity:
    """What a certificate says about its holder."""

    subject_id: str
    name: str
    role: str
    school_code: str
    serial: int
    issuer: str
    fingerprint: str

    def describe(self) -> str:
        where = f", school {self.school_code}" if self.school_code else ""
        return f"{self.name} ({self.subject_id}{where})"


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


@functools.lru_cache(maxsize=8192)
def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, hex: the `x5t#S256` value in hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def ec_public_key(certificate: x509.Certificate) -> ec.EllipticCurvePublicKey | None:
    """A signer's public key when it is an elliptic-curve key, as every signer's key is (P-256); else None.

    For a signer's certificate only: a CA above it may hold an RSA key (`crl_signed_by` checks its CRLs).
    """
    key = certificate.public_key()
    return key if isinstance(key, ec.EllipticCurvePublicKey) else None


def is_p256(certificate: x509.Certificate) -> bool:
    """Whether the certificate's key is a P-256 key, the only key ES256 signs with."""
    key = certificate.public_key()
    return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"


@functools.lru_cache(maxsize=8192)
def identity(cert: x509.Certificate) -> CertIdentity:
    subject = cert.subject
    return CertIdentity(
        subject_id=_attribute(subject, NameOID.USER_ID),
        name=_attribute(subject, NameOID.COMMON_NAME),
        role=_attribute(subject, NameOID.TITLE),
        school_code=_attribute(subject, NameOID.ORGANIZATION_IDENTIFIER),
        serial=cert.serial_number,
        issuer=_attribute(cert.issuer, NameOID.COMMON_NAME),
        fingerprint=fingerprint(cert),
    )


def to_x5c(chain: Sequence[x509.Certificate]) -> list[str]:
    """RFC 7515 §4.1.6: standard (not URL-safe) base64 of each DER certificate, the signer's first."""
    return [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain]


def from_x5c(x5c: Sequence[str]) -> list[x509.Certificate]:
    return [x509.load_der_x509_certificate(base64.b64decode(c)) for c in x5c]


def load_certificates(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)


def load_crls(path: Path) -> list[x509.CertificateRevocationList]:
    """Every CRL in a PEM file, in order (a PKI's own CRL, then those of the certification authorities it trusts)."""
    return read_crls(path.read_bytes())


def read_crls(pem: bytes) -> list[x509.CertificateRevocationList]:
    """Every CRL in PEM text, in order (`x509.load_pem_x509_crl` reads the first only)."""
    return [x509.load_pem_x509_crl(block) for block in _PEM_CRL.findall(pem)]


def _valid_at(cert: x509.Certificate, moment: datetime) -> bool:
    return cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """Whether `issuer` signed `crl`: with an EC key (ECDSA) or an RSA key (PKCS#1 v1.5 or PSS), as CAs sign."""
    key = issuer.public_key()
    if crl.issuer != issuer.subject or not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        return False
    try:
        return crl.is_signature_valid(key)
    except (TypeError, ValueError, UnsupportedAlgorithm):  # a signature algorithm that does not fit the key
        return False


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


@dataclass
class ChainCheck:
    """The outcome of validating one chain: what held, what did not, in plain words."""

    identity: CertIdentity | None
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: Set when the certificate is revoked: when, and why.
    revoked: str | None = None
    #: The time the verdict on revocation relied on: the signer's stated time (STATED), or the trusted
    #: time given (TRUSTED), which is what decides for a key compromise.
    relied_on: str = STATED

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass(frozen=True)
class _Path:
    """What does not depend on the moment: the chain's links, its anchor, its key usage."""

    path: tuple[x509.Certificate, ...]
    anchor: x509.Certificate | None
    passed: tuple[str, ...]
    failed: tuple[str, ...]


def _chain_key(chain: Sequence[x509.Certificate], purpose: str) -> tuple[str, str]:
    """Which chain, for which use: the fingerprints of its certificates, signer first, and the purpose."""
    return "/".join(fingerprint(c) for c in chain), purpose


@dataclass(frozen=True)
class _Standing:
    """What a store's CRLs say of one chain, for every signing time at once.

    A chain that no CRL of the store lists (`clean`) has the same verdict for every signing time in the
    window all its certificates are valid, while the CRLs are not past their nextUpdate: that verdict
    needs no CRL read again. Anything else (a revoked certificate, whose verdict rests on when the
    signature was made and on a trusted time; a time outside the window; a stale CRL) is judged in full.
    """

    clean: bool
    valid_from: datetime
    valid_until: datetime
    #: The earliest nextUpdate of the CRLs the chain is checked against (None: none states one).
    crl_due: datetime | None
    #: What each link's CRL says, in the chain's order: not revoked.
    not_revoked: tuple[str, ...]

    def settles(self, at: datetime, now: datetime) -> bool:
        """True when the chain's verdict at signing time `at`, judged `now`, is the clean one."""
        return (
            self.clean
            and self.valid_from <= at <= self.valid_until
            and (self.crl_due is None or self.crl_due >= now)
        )


class TrustStore:
    """Trust anchors (root certificates) and the CRLs of the CAs under them.

    Chain links and CRL signatures are checked once per chain and remembered, so validating the
    signatures of a whole school year costs one look-up per signature after the first. A store holds
    one set of CRLs for its whole life (a new CRL makes a new store: `ReloadingTrust`), so what those
    CRLs say of a chain (its `_Standing`) is worked out once per chain too.
    """

    def __init__(self, anchors: Iterable[x509.Certificate], crls: Iterable[x509.CertificateRevocationList] = ()) -> None:
        self.anchors = list(anchors)
        self.crls = list(crls)
        self._paths: dict[tuple[str, str], _Path] = {}
        self._crl_of: dict[str, x509.CertificateRevocationList | None] = {}
        self._standings: dict[tuple[str, str], _Standing] = {}

    @classmethod
    def from_files(cls, anchor: Path, crls: Iterable[Path] = ()) -> TrustStore:
        """Every anchor in the `anchor` file and every CRL in the `crls` files (those that exist)."""
        return cls(load_certificates(anchor), [crl for p in crls if p.exists() for crl in load_crls(p)])

    def crl_for(self, issuer: x509.Certificate) -> x509.CertificateRevocationList | None:
        """The newest CRL that `issuer` signed, if any."""
        key = fingerprint(issuer)
        if key not in self._crl_of:
            mine = [crl for crl in self.crls if crl_signed_by(crl, issuer)]
            self._crl_of[key] = max(mine, key=lambda c: c.last_update_utc, default=None)
        return self._crl_of[key]

    def _structure(self, chain: Sequence[x509.Certificate], purpose: str, key: tuple[str, str] | None = None) -> _Path:
        key = key or _chain_key(chain, purpose)
        if key in self._paths:
            return self._paths[key]
        leaf = chain[0]
        passed: list[str] = []
        failed: list[str] = []
        usage = _key_usage(leaf)
        needs = ["digital_signature", "content_commitment"] if purpose == "signing" else ["digital_signature"]
        if usage is None or not all(getattr(usage, n) for n in needs):
            words = "digitalSignature and nonRepudiation" if purpose == "signing" else "digitalSignature"
            failed.append(f"the certificate is not for this use: its key usage lacks {words}")
        if not is_p256(leaf):
            failed.append(f"the certificate's {NOT_P256}")
        path = list(chain)
        for cert, issuer in zip(path, path[1:], strict=False):
            if not _issued_by(cert, issuer) or not _is_ca(issuer):
                failed.append(f"'{identity(cert).name}' is not issued by '{identity(issuer).name}' in the chain")
        top = path[-1]
        anchor = next((a for a in self.anchors if a == top), None) or next(
            (a for a in self.anchors if top.issuer == a.subject and _issued_by(top, a)), None
        )
        if anchor is None:
            failed.append(f"the chain does not lead to a trusted root (top: '{identity(top).issuer}')")
        else:
            if anchor != top:
                path.append(anchor)
            passed.append(f"chains to the trust anchor '{identity(anchor).name}'")
        result = _Path(tuple(path), anchor, tuple(passed), tuple(failed))
        self._paths[key] = result
        return result

    def validate(
        self,
        chain: Sequence[x509.Certificate],
        at: datetime,
        *,
        purpose: str = "signing",
        now: datetime | None = None,
        trusted_at: datetime | None = None,
    ) -> ChainCheck:
        """Validate `chain` (signer first) to an anchor as of `at`, the time the signer states; revocation by
        the CRLs held now.

        `purpose` "signing" needs digitalSignature and nonRepudiation (contentCommitment), as a
        record signature is a commitment; "checkpoint" needs digitalSignature. `trusted_at` is a time
        at which the signature is known to exist, from a source other than the signer (the archive's
        admission time under a signed checkpoint, or the moment of signing for the signer itself):
        only it can save a signature from a key-compromise revocation.
        """
        if not chain:
            return ChainCheck(None, failed=["no certificate"])
        key = _chain_key(chain, purpose)
        structure = self._structure(chain, purpose, key)
        check = ChainCheck(identity(chain[0]), list(structure.passed), list(structure.failed))
        if structure.anchor is None:
            return check
        at = at.astimezone(UTC)
        now = now or datetime.now(UTC)
        standing = self._standings.get(key) or self._standing(key, structure)
        if standing.settles(at, now):
            check.passed.append(f"every certificate in the chain was valid at {at:%Y-%m-%d %H:%M:%S}Z")
            check.passed += standing.not_revoked
            return check
        path = list(structure.path)
        stale = [c for c in path if not _valid_at(c, at)]
        for cert in stale:
            check.failed.append(
                f"'{identity(cert).name}' was not valid at {at:%Y-%m-%d %H:%M:%S}Z "
                f"(valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})"
            )
        if not stale:
            check.passed.append(f"every certificate in the chain was valid at {at:%Y-%m-%d %H:%M:%S}Z")
        moments = _Moments(at, trusted_at.astimezone(UTC) if trusted_at is not None else None, now)
        for cert, issuer in zip(path, path[1:], strict=False):
            self._check_revocation(cert, issuer, moments, check)
        return check

    def _standing(self, key: tuple[str, str], structure: _Path) -> _Standing:
        """What this store's CRLs say of the chain `structure` leads along, worked out once and remembered."""
        path = structure.path
        crls = [self.crl_for(issuer) for issuer in path[1:]]
        links = [(cert, crl) for cert, crl in zip(path, crls, strict=False) if crl is not None]
        listed = any(crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None for cert, crl in links)
        dues = [crl.next_update_utc for _, crl in links if crl.next_update_utc is not None]
        standing = _Standing(
            clean=len(links) == len(crls) and not listed,
            valid_from=max(c.not_valid_before_utc for c in path),
            valid_until=min(c.not_valid_after_utc for c in path),
            crl_due=min(dues, default=None),
            not_revoked=tuple(
                f"'{identity(cert).name}' is not revoked (CRL of {crl.last_update_utc:%Y-%m-%d %H:%M}Z)"
                for cert, crl in links
            ),
        )
        self._standings[key] = standing
        return standing


    def _check_revocation(
        self, cert: x509.Certificate, issuer: x509.Certificate, moments: _Moments, check: ChainCheck
    ) -> None:
        """Is `cert` revoked, by its issuer's CRL as held now, in a way that voids this signature?"""
        crl = self.crl_for(issuer)
        name = identity(cert).name
        if crl is None:
            check.failed.append(f"no CRL from '{identity(issuer).name}': cannot tell whether '{name}' is revoked")
            return
        due = crl.next_update_utc
        if due is not None and due < moments.now:
            check.failed.append(
                f"the CRL of '{identity(issuer).name}' is past its nextUpdate ({due:%Y-%m-%d %H:%M}Z): it may not "
                f"list a revocation of '{name}' since, so '{name}' cannot be checked"
            )
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is None:
            check.passed.append(f"'{name}' is not revoked (CRL of {crl.last_update_utc:%Y-%m-%d %H:%M}Z)")
            return
        revocation = Revocation.of(entry)
        text = f"'{name}' was revoked on {revocation.at:%Y-%m-%d %H:%M:%S}Z, reason {revocation.reason.name}"
        check.revoked = text
        if revocation.at <= moments.at:
            check.failed.append(f"{text}, before the signing time {moments.at:%Y-%m-%d %H:%M:%S}Z")
        elif revocation.compromised:
            _judge_compromise(text, revocation, moments, check)
        else:
            check.passed.append(f"{text}, after the signing time {moments.at:%Y-%m-%d %H:%M:%S}Z")


@dataclass(frozen=True)
class _Moments:
    """The times one validation weighs: the signer's stated time, a trusted time if any, and now (for the CRL)."""

    at: datetime
    trusted_at: datetime | None
    now: datetime


@dataclass(frozen=True)
class Revocation:
    """One CRL entry as it matters to a signature: since when the certificate is void, and why."""

    at: datetime
    reason: x509.ReasonFlags

    @property
    def compromised(self) -> bool:
        return self.reason in COMPROMISE_REASONS

    @classmethod
    def of(cls, entry: x509.RevokedCertificate) -> Revocation:
        """The entry's reason (unspecified when absent) and time: the revocation date, or the earlier date
        since which the key is known or suspected to be compromised, or the certificate otherwise invalid
        (RFC 5280 invalidityDate)."""
        at = entry.revocation_date_utc
        reason = x509.ReasonFlags.unspecified
        with contextlib.suppress(x509.ExtensionNotFound):
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        with contextlib.suppress(x509.ExtensionNotFound):
            invalid = entry.extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc
            at = min(at, invalid)
        return cls(at, reason)


def _judge_compromise(text: str, revocation: Revocation, moments: _Moments, check: ChainCheck) -> None:
    """A key compromise: the signature stands only if a trusted time proves it older than the revocation."""
    if moments.trusted_at is None:
        check.failed.append(
            f"{text}: no trusted time proves the signature older than the revocation, and a compromised key "
            f"can state any time (it states {moments.at:%Y-%m-%d %H:%M:%S}Z)"
        )
        return
    check.relied_on = TRUSTED
    when = f"{moments.trusted_at:%Y-%m-%d %H:%M:%S}Z"
    if moments.trusted_at < revocation.at:
        check.passed.append(f"{text}, after the trusted time {when} at which the signature is known to exist")
    else:
        check.failed.append(f"{text}, before the trusted time {when}, the earliest at which the signature is known to exist")


class ReloadingTrust:
    """A trust store read from files, read again when the anchor or CRL files change (a new CRL)."""

    def __init__(self, anchor: Path, crls: Sequence[Path], check_every: float = 2.0) -> None:
        self.anchor = anchor
        self.crl_paths = list(crls)
        self.check_every = check_every
        self._store: TrustStore | None = None
        self._stamp: tuple[float, ...] = ()
        self._checked = 0.0

    def _mtimes(self) -> tuple[float, ...]:
        return tuple(p.stat().st_mtime if p.exists() else 0.0 for p in [self.anchor, *self.crl_paths])

    def __call__(self) -> TrustStore:
        now = time.monotonic()
        if self._store is None or now - self._checked >= self.check_every:
            self._checked = now
            if not self.anchor.exists():
                raise FileNotFoundError(f"no trust anchor at {self.anchor}: run `hocba pki init`")
            stamp = self._mtimes()
            if self._store is None or stamp != self._stamp:
                self._store = TrustStore.from_files(self.anchor, self.crl_paths)
                self._stamp = stamp
        return self._store
