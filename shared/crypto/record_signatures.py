"""Checking a record version's signatures: each JWS, each certificate chain, the role order, the digest.

Used where signatures are trusted or shown: the archive before it admits a version, and
`hocba verify` on a bundle. Every check says in plain words what held and what did not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509

from shared.contracts.signing import SIGNING_ORDER
from shared.crypto.canonical import canonical_json, sha256_hex
from shared.crypto.certs import CertIdentity, TrustStore, from_x5c, identity
from shared.crypto.jws import b64url_decode, verify_detached

ROLE_WORDS = {
    "homeroom_teacher": "homeroom teacher",
    "principal": "principal",
    "school_seal": "school seal",
}


def signature_digest(jws: str) -> str:
    """What the next signature in the chain names as `prev`: SHA-256 (hex) of the compact JWS."""
    return sha256_hex(jws.encode("ascii"))


def header_of(jws: str) -> dict[str, Any]:
    return json.loads(b64url_decode(jws.split(".")[0]))


@dataclass
class SignatureCheck:
    role: str
    signer: CertIdentity | None = None
    signed_at: datetime | None = None
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

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
    record_id: str,
    version: int,
    school_code: str,
    document: Mapping[str, Any],
    signatures: Sequence[str],
    trust: TrustStore | None,
    *,
    order: Sequence[str] = SIGNING_ORDER,
    complete: bool = True,
    cache: ChainCache | None = None,
    payload: bytes | None = None,
) -> RecordCheck:
    """Check compact detached JWS `signatures` (in signing order) over the record's canonical JSON.

    With `trust` None, certificate chains are not validated (the caller does it elsewhere).
    `complete` requires every role of `order`; otherwise a prefix of it is enough.
    """
    payload = payload if payload is not None else canonical_json(document)
    record_digest = sha256_hex(payload)
    result = RecordCheck(record_id, version, record_digest)
    cache = cache or ChainCache()
    roles: list[str] = []
    previous: str | None = None
    for jws in signatures:
        check = _check_one(jws, record_id, version, school_code, record_digest, payload, previous, trust, cache)
        result.signatures.append(check)
        roles.append(check.role)
        previous = jws
    expected = list(order) if complete else list(order[: len(roles)])
    if roles == expected:
        words = " → ".join(ROLE_WORDS.get(r, r) for r in roles)
        result.passed.append(f"signed in the required order ({words}), each naming the one before it")
    else:
        got = " → ".join(ROLE_WORDS.get(r, r) for r in roles) or "no signature"
        want = " → ".join(ROLE_WORDS.get(r, r) for r in expected)
        result.failed.append(f"the signatures are {got}; a complete record needs {want}")
    return result


def _check_one(
    jws: str,
    record_id: str,
    version: int,
    school_code: str,
    record_digest: str,
    payload: bytes,
    previous: str | None,
    trust: TrustStore | None,
    cache: ChainCache,
) -> SignatureCheck:
    try:
        header = header_of(jws)
    except (ValueError, UnicodeDecodeError, IndexError):
        return SignatureCheck("?", failed=["the signature is not a compact JWS"])
    role = str(header.get("role", "?"))
    check = SignatureCheck(role)
    if header.get("alg") != "ES256" or not header.get("x5c"):
        check.failed.append("the signature is not ES256 with an x5c certificate chain")
        return check
    try:
        chain = cache.chain(header["x5c"])
        check.signer = identity(chain[0])
        check.signed_at = datetime.fromisoformat(str(header.get("signed_at")))
    except (ValueError, TypeError):
        check.failed.append("its certificate or signing time cannot be read")
        return check
    if (header.get("record_id"), header.get("version")) != (record_id, version):
        check.failed.append(f"it names {header.get('record_id')} v{header.get('version')}, not {record_id} v{version}")
    if header.get("digest") != record_digest:
        check.failed.append("it is for other content: the record's digest differs from the signed one")
    expected_prev = signature_digest(previous) if previous is not None else None
    if header.get("prev") != expected_prev:
        check.failed.append("it does not name the previous signature's digest: the chain was cut or reordered")
    if verify_detached(chain[0].public_key(), jws, payload):  # type: ignore[arg-type]
        check.passed.append("the ES256 signature over the record's canonical JSON is valid")
    else:
        check.failed.append("the ES256 signature does not verify over the record's canonical JSON")
    signer = check.signer
    if signer.role != role:
        check.failed.append(f"the certificate is a {signer.role or 'no-role'} certificate, not a {role}'s")
    if signer.school_code != school_code:
        check.failed.append(f"the certificate belongs to school {signer.school_code or '?'}, not {school_code}")
    if trust is not None:
        chain_check = trust.validate(chain, check.signed_at)
        check.passed += chain_check.passed
        check.failed += chain_check.failed
    return check
