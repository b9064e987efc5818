"""Checking a record version's signatures: each JWS, each certificate chain, the role order, the digest.

Used where signatures are trusted or shown: the archive before it admits a version, and
`hocba verify` on a bundle. Every check says in plain words what held and what did not, and which
time it relied on: the signer's stated time, or a trusted time at which the signature is known to
exist (the archive's admission time), which alone decides for a certificate revoked for key compromise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from cryptography import x509

from shared.contracts.grades import RecordVersion
from shared.contracts.signing import SIGNING_ORDER
from shared.crypto.canonical import sha256_hex
from shared.crypto.certs import STATED, CertIdentity, TrustStore, ec_public_key, from_x5c, identity
from shared.crypto.jws import b64url, protected_header, verify_detached

ROLE_WORDS = {
    "homeroom_teacher": "homeroom teacher",
    "principal": "principal",
    "school_seal": "school seal",
}


def signature_digest(jws: str) -> str:
    """What the next signature in the chain names as `prev`: SHA-256 (hex) of the compact JWS."""
    return sha256_hex(jws.encode("ascii"))


@dataclass
class SignatureCheck:
    role: str
    signer: CertIdentity | None = None
    signed_at: datetime | None = None
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: The time the verdict on the certificate relied on (`shared.crypto.certs` STATED or TRUSTED).
    relied_on: str = STATED
    #: The certificate is revoked (a verdict for it then rests on when the signature was made).
    revoked: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class RecordCheck:
    record_id: str
    version: int
    digest: str
    signatures: list[SignatureCheck] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and all(s.ok for s in self.signatures)

    def problems(self) -> list[str]:
        return [*self.failed, *(f"{ROLE_WORDS.get(s.role, s.role)}: {p}" for s in self.signatures for p in s.failed)]


class ChainCache:
    """Certificates parsed from x5c, kept by their text (every record of a school shares a few)."""

    def __init__(self) -> None:
        self._chains: dict[tuple[str, ...], list[x509.Certificate]] = {}

    def chain(self, x5c: Sequence[str]) -> list[x509.Certificate]:
        key = tuple(x5c)
        if key not in self._chains:
            self._chains[key] = from_x5c(x5c)
        return self._chains[key]


def check_record(
    record: RecordVersion,
    signatures: Sequence[str],
    trust: TrustStore | None,
    *,
    cache: ChainCache | None = None,
    payload: bytes | None = None,
    trusted_at: datetime | None = None,
) -> RecordCheck:
    """Check compact detached JWS `signatures` (in signing order) over the record's canonical JSON.

    With `trust` None, certificate chains are not validated (the caller does it elsewhere). Every
    role of the signing order must have signed, each naming the signature before it. `payload`
    is the bytes signed, when the caller holds them apart from `record` (its `content` otherwise). `trusted_at` is a time at
    which every signature is known to exist (the archive's admission time): it decides whether a
    signature by a certificate revoked for key compromise still stands.
    """
    payload = payload if payload is not None else record.content
    result = RecordCheck(record.record_id, record.version, sha256_hex(payload))
    checker = _SignatureChecker(record, result.digest, payload, trust, cache or ChainCache(), trusted_at)
    previous: str | None = None
    for jws in signatures:
        result.signatures.append(checker.check(jws, previous))
        previous = jws
    roles = [s.role for s in result.signatures]
    if roles == list(SIGNING_ORDER):
        words = " → ".join(ROLE_WORDS.get(r, r) for r in roles)
        result.passed.append(f"signed in the required order ({words}), each naming the one before it")
    else:
        got = " → ".join(ROLE_WORDS.get(r, r) for r in roles) or "no signature"
        want = " → ".join(ROLE_WORDS.get(r, r) for r in SIGNING_ORDER)
        result.failed.append(f"the signatures are {got}; a complete record needs {want}")
    return result


@dataclass(frozen=True)
class _SignatureChecker:
    """Checks one signature after another over the same record version."""

    record: RecordVersion
    digest: str
    payload: bytes
    trust: TrustStore | None
    cache: ChainCache
    trusted_at: datetime | None = None

    @cached_property
    def encoded_payload(self) -> str:
        """The payload as every signature's signing input holds it (base64url): encoded once for all of them."""
        return b64url(self.payload)

    def check(self, jws: str, previous: str | None) -> SignatureCheck:
        try:
            header = protected_header(jws)
        except (ValueError, UnicodeDecodeError, IndexError):
            return SignatureCheck("?", failed=["the signature is not a compact JWS"])
        check = SignatureCheck(str(header.get("role", "?")))
        if header.get("alg") != "ES256" or not header.get("x5c"):
            check.failed.append("the signature is not ES256 with an x5c certificate chain")
            return check
        try:
            chain = self.cache.chain(header["x5c"])
            check.signer = identity(chain[0])
            check.signed_at = datetime.fromisoformat(str(header.get("signed_at")))
        except (ValueError, TypeError):
            check.failed.append("its certificate or signing time cannot be read")
            return check
        check.failed += self._header_problems(header, previous)
        key = ec_public_key(chain[0])
        if key is not None and verify_detached(key, jws, self.payload, encoded_payload=self.encoded_payload):
            check.passed.append("the ES256 signature over the record's canonical JSON is valid")
        else:
            check.failed.append("the ES256 signature does not verify over the record's canonical JSON")
        check.failed += self._certificate_problems(check.signer, check.role)
        if self.trust is not None:
            chain_check = self.trust.validate(chain, check.signed_at, trusted_at=self.trusted_at)
            check.passed += chain_check.passed
            check.failed += chain_check.failed
            check.relied_on = chain_check.relied_on
            check.revoked = chain_check.revoked is not None
        return check

    def _header_problems(self, header: Mapping[str, Any], previous: str | None) -> list[str]:
        """What the protected header says that does not fit this record version and this place in the chain."""
        record, problems = self.record, []
        if (header.get("record_id"), header.get("version")) != (record.record_id, record.version):
            problems.append(
                f"it names {header.get('record_id')} v{header.get('version')}, not {record.record_id} v{record.version}"
            )
        if header.get("digest") != self.digest:
            problems.append("it is for other content: the record's digest differs from the signed one")
        if header.get("prev") != (signature_digest(previous) if previous is not None else None):
            problems.append("it does not name the previous signature's digest: the chain was cut or reordered")
        return problems

    def _certificate_problems(self, signer: CertIdentity, role: str) -> list[str]:
        problems = []
        if signer.role != role:
            problems.append(f"the certificate is a {signer.role or 'no-role'} certificate, not a {role}'s")
        if signer.school_code != self.record.school_code:
            problems.append(f"the certificate belongs to school {signer.school_code or '?'}, not {self.record.school_code}")
        return problems
