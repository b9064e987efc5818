"""The offline verification bundle of an archived record version, and the signed QR payload of a printed copy.

A bundle holds everything a verifier needs without asking the system: the record version, its
signatures (each with its certificate chain), where it sits in the archive log with an RFC 9162
inclusion proof, the signed checkpoint the proof leads to, and the CRL as of the export. The
verifier brings only its trust anchor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509

from shared.contracts.archive import Checkpoint
from shared.contracts.grades import RecordVersion
from shared.crypto.archive_log import Leaf, check_checkpoint
from shared.crypto.canonical import canonical_json, sha256_hex
from shared.crypto.certs import TrustStore, ec_public_key, fingerprint, from_x5c
from shared.crypto.jws import RawSigner, b64url, b64url_decode, protected_header, sign_compact, verify_compact
from shared.crypto.merkle import verify_inclusion
from shared.crypto.record_signatures import ROLE_WORDS, check_record

FORMAT = "hocba.verification-bundle.v1"
COPY_TYPE = "hocba-copy"


def make_bundle(
    leaf: Leaf,
    leaf_hash: bytes,
    proof: Sequence[bytes],
    checkpoint: Checkpoint,
    status: dict[str, Any],
    crl_pem: str | None = None,
) -> dict[str, Any]:
    """The offline verification bundle of one log entry: the record, its signatures, where it is in the log, the
    inclusion proof up to `checkpoint`, the record's status (versions, superseded by) and the CRL signatures are
    checked against."""
    return {
        "format": FORMAT,
        "record": leaf.record(),
        "signatures": list(leaf.signatures),
        "log": {
            "origin": checkpoint.origin,
            "leaf_index": leaf.seq,
            "archived_at": leaf.archived_at,
            "leaf_hash": leaf_hash.hex(),
            "tree_size": checkpoint.tree_size,
            "inclusion_proof": [p.hex() for p in proof],
        },
        "checkpoint": checkpoint.model_dump(mode="json"),
        "status": status,
        **({"crl": crl_pem} if crl_pem else {}),
    }


@dataclass
class Section:
    title: str
    lines: list[tuple[bool, str]] = field(default_factory=list)

    def add(self, ok: bool, text: str) -> None:
        self.lines.append((ok, text))

    def extend(self, passed: Sequence[str], failed: Sequence[str]) -> None:
        self.lines += [(True, p) for p in passed] + [(False, f) for f in failed]


@dataclass
class Verdict:
    """What was checked, grouped, each line passed or failed, in plain words."""

    subject: str
    sections: list[Section] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.sections) and all(ok for s in self.sections for ok, _ in s.lines)

    def section(self, title: str) -> Section:
        self.sections.append(Section(title))
        return self.sections[-1]


def trust_with_bundle_crl(trust: TrustStore, bundle: dict[str, Any]) -> TrustStore:
    """The verifier's trust store plus the CRL carried in the bundle (it is signed by the CA, so safe)."""
    if not bundle.get("crl"):
        return trust
    crl = x509.load_pem_x509_crl(bundle["crl"].encode())
    return TrustStore(trust.anchors, [*trust.crls, crl])


def verify_bundle(bundle: dict[str, Any], trust: TrustStore) -> Verdict:
    """Check a bundle offline against `trust`: signatures, chains, order, digest, inclusion, checkpoint."""
    record = bundle.get("record") or {}
    verdict = Verdict(f"{record.get('record_id', '?')} version {record.get('version', '?')}")
    if bundle.get("format") != FORMAT:
        verdict.section("bundle").add(False, f"not a hocba verification bundle (format {bundle.get('format')!r})")
        return verdict
    trust = trust_with_bundle_crl(trust, bundle)
    payload = canonical_json(record["document"])
    _check_signatures(verdict, RecordVersion.model_validate(record), bundle["signatures"], trust, payload)
    _check_log(verdict, bundle, trust, payload)
    return verdict


def _check_signatures(
    verdict: Verdict, record: RecordVersion, signatures: Sequence[str], trust: TrustStore, payload: bytes
) -> None:
    """The record's digest, each signature and its chain, and the order of the signatures."""
    check = check_record(record, signatures, trust, payload=payload)
    summary = verdict.section("record")
    summary.add(True, f"record digest (SHA-256 of its RFC 8785 JSON) is {sha256_hex(payload)}")
    summary.extend(check.passed, check.failed)
    for signature in check.signatures:
        who = signature.signer.describe() if signature.signer else "unknown signer"
        when = f" at {signature.signed_at:%Y-%m-%d %H:%M:%S %Z}" if signature.signed_at else ""
        section = verdict.section(f"{ROLE_WORDS.get(signature.role, signature.role)}'s signature: {who}{when}")
        section.extend(signature.passed, signature.failed)


def _check_log(verdict: Verdict, bundle: dict[str, Any], trust: TrustStore, payload: bytes) -> None:
    """The entry's leaf hash, its inclusion proof up to the checkpoint's root, the checkpoint's signature, the status."""
    record, log = bundle["record"], bundle["log"]
    leaf = Leaf(
        seq=log["leaf_index"],
        record_id=record["record_id"],
        version=record["version"],
        school_code=record["school_code"],
        school_year=record["school_year"],
        student_ref=record["student_ref"],
        document=record["document"],
        signatures=bundle["signatures"],
        archived_at=log["archived_at"],
    ).hash(payload)
    archive = verdict.section(f"archive log '{log['origin']}'")
    if leaf.hex() == log["leaf_hash"]:
        archive.add(True, f"the entry's leaf hash matches the record and signatures (entry {log['leaf_index']})")
    else:
        archive.add(False, "the entry's leaf hash does not match the record and signatures in the bundle")
    checkpoint = Checkpoint.model_validate(bundle["checkpoint"])
    proof = [bytes.fromhex(p) for p in log["inclusion_proof"]]
    root = bytes.fromhex(checkpoint.root_hash)
    if log["tree_size"] == checkpoint.tree_size and verify_inclusion(log["leaf_index"], log["tree_size"], leaf, proof, root):
        archive.add(
            True,
            f"the RFC 9162 inclusion proof puts entry {log['leaf_index']} in the tree of {checkpoint.tree_size} "
            f"entries whose root the checkpoint states",
        )
    else:
        archive.add(False, "the inclusion proof does not lead from this entry to the checkpoint's root")
    checkpoint_check = check_checkpoint(checkpoint, trust)
    archive.extend(checkpoint_check.passed, checkpoint_check.failed)
    status = bundle.get("status") or {}
    if status.get("superseded_by"):
        archive.add(True, f"note: this version is superseded by version {status['superseded_by']} (still verifiable)")


# --- the QR code of a printed copy -----------------------------------------------------------


def _b64(hex_text: str) -> str:
    return b64url(bytes.fromhex(hex_text))


def copy_claims(bundle: dict[str, Any]) -> dict[str, Any]:
    """What the QR code of a printed copy states, compactly (hashes in base64url)."""
    record, log = bundle["record"], bundle["log"]
    return {
        "o": log["origin"],
        "r": record["record_id"],
        "v": record["version"],
        "s": record["school_code"],
        "d": _b64(sha256_hex(canonical_json(record["document"]))),
        "i": log["leaf_index"],
        "h": _b64(log["leaf_hash"]),
        "n": bundle["checkpoint"]["tree_size"],
        "t": _b64(bundle["checkpoint"]["root_hash"]),
        "a": log["archived_at"],
    }


def sign_copy(signer: RawSigner, bundle: dict[str, Any], issued_at: datetime) -> str:
    claims = {**copy_claims(bundle), "c": issued_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return sign_compact(signer, json.dumps(claims, separators=(",", ":")).encode(), {"typ": COPY_TYPE})


def verify_copy(
    qr: str, certificates: Sequence[x509.Certificate], trust: TrustStore, bundle: dict[str, Any] | None = None
) -> Verdict:
    """Check a printed copy's QR payload: signed by the archive's certificate, and (given) matching the bundle."""
    verdict = Verdict("QR code")
    section = verdict.section("QR code of the printed copy")
    try:
        kid = protected_header(qr)["kid"]
        claims_text = b64url_decode(qr.split(".")[1])
        claims = json.loads(claims_text)
    except (ValueError, KeyError, IndexError):
        section.add(False, "the QR payload is not a compact JWS")
        return verdict
    signer = next((c for c in certificates if fingerprint(c) == kid), None)
    if signer is None:
        section.add(False, "the QR payload names a certificate that is not at hand")
        return verdict
    key = ec_public_key(signer)
    if key is None or verify_compact(key, qr) is None:
        section.add(False, "the QR payload's signature does not verify")
        return verdict
    chain_check = trust.validate([signer], datetime.fromisoformat(claims["c"]), purpose="checkpoint")
    section.add(True, f"the QR payload is signed by the archive ({claims['r']} v{claims['v']}, copy of {claims['c']})")
    section.extend(chain_check.passed, chain_check.failed)
    if bundle is not None:
        expected = copy_claims(bundle)
        differs = [k for k, v in expected.items() if claims.get(k) != v]
        if differs:
            section.add(False, f"the QR code and the attached bundle disagree on {', '.join(differs)}")
        else:
            section.add(True, "the QR code states the same record digest, log entry and checkpoint as the attached bundle")
    return verdict


def archive_certificates(bundle: dict[str, Any]) -> list[x509.Certificate]:
    """The archive's certificate chain, as the bundle's checkpoint signature carries it."""
    return from_x5c(protected_header(bundle["checkpoint"]["signature"])["x5c"])
