"""The offline verification bundle of an archived record version, and the signed QR payload of a printed copy.

A bundle holds everything a verifier needs without asking the system: the record version with
grades' seal on its content (where the content comes from; an amendment has none and names who asked
for it), its signatures (each with its certificate chain), where it sits in the archive log with an
RFC 9162 inclusion proof, the signed checkpoint the proof leads to, and the CRL as of the export. The
verifier brings only its trust anchor.

Every verdict says which time it relied on. When the entry's inclusion proof leads to a checkpoint
the archive signed, the archive's admission time written in the entry is proven: it is a trusted
time at which the signatures existed, and only it can save a signature whose certificate was later
revoked for key compromise. Otherwise only the signers' stated times are at hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

from cryptography import x509
from pydantic import ValidationError

from shared.contracts.archive import Checkpoint
from shared.contracts.grades import RecordVersion
from shared.crypto.archive_log import Leaf, check_checkpoint
from shared.crypto.canonical import canonical_json, sha256_hex
from shared.crypto.certs import TRUSTED, TrustStore, ec_public_key, fingerprint, from_x5c, read_crls
from shared.crypto.jws import RawSigner, b64url, b64url_decode, protected_header, sign_compact, verify_compact
from shared.crypto.merkle import verify_inclusion
from shared.crypto.record_signatures import ROLE_WORDS, SignatureCheck, check_record
from shared.crypto.seal import record_claims, seal_problems

FORMAT = "hocba.verification-bundle.v1"
COPY_TYPE = "hocba-copy"
#: Who seals the content of a record version it assembles.
GRADES = "svc-grades"
#: How far a signer's stated time may run ahead of the archive's clock (the archive refuses more at admission).
ADMISSION_SKEW = timedelta(minutes=10)


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


class Mark(IntEnum):
    """What a line of a verdict says: a check that failed or passed, one that could not be made, or information.

    A failed check is the only false mark: `not mark` picks out the failures, as it did when lines held True or
    False."""

    FAILED = 0
    PASSED = 1
    #: The check could not be made (a tool is missing, a part cannot be read): it neither passed nor failed.
    NOT_CHECKED = 2
    #: Not a check: which time a verdict relied on, or what the file states without a signature over it.
    INFORMATION = 3


@dataclass
class Section:
    title: str
    lines: list[tuple[Mark, str]] = field(default_factory=list)
    #: What could not be checked (each also a line, with why).
    unchecked: list[str] = field(default_factory=list)

    def add(self, ok: bool, text: str) -> None:
        self.lines.append((Mark.PASSED if ok else Mark.FAILED, text))

    def extend(self, passed: Sequence[str], failed: Sequence[str]) -> None:
        self.lines += [(Mark.PASSED, p) for p in passed] + [(Mark.FAILED, f) for f in failed]

    def not_checked(self, what: str, why: str) -> None:
        """A check of `what` that could not be made, and why."""
        self.lines.append((Mark.NOT_CHECKED, f"{what}: {why}"))
        self.unchecked.append(what)

    def inform(self, text: str) -> None:
        self.lines.append((Mark.INFORMATION, text))


@dataclass
class Verdict:
    """What was checked, grouped, each line passed, failed, not checked or information, in plain words, and which
    time it relied on."""

    subject: str
    sections: list[Section] = field(default_factory=list)
    #: The time the verdict relied on, in words: a trusted time and what proves it, or stated times.
    relied_on: str = ""

    @property
    def ok(self) -> bool:
        """At least one check passed and none failed (what could not be checked is in `not_checked`)."""
        marks = [mark for s in self.sections for mark, _ in s.lines]
        return Mark.PASSED in marks and Mark.FAILED not in marks

    def section(self, title: str) -> Section:
        self.sections.append(Section(title))
        return self.sections[-1]

    def marked(self, mark: Mark) -> list[str]:
        """The lines of every section with `mark`."""
        return [text for s in self.sections for m, text in s.lines if m == mark]

    @property
    def failed(self) -> list[str]:
        return self.marked(Mark.FAILED)

    @property
    def not_checked(self) -> list[str]:
        """What could not be checked, each in a few words (the lines say why)."""
        return [what for s in self.sections for what in s.unchecked]


class Unreadable(ValueError):
    """The input is not a verification bundle that can be checked: one sentence says what was found and what was
    expected."""


#: The parts of a bundle a verifier reads, the JSON type each must have, and whether a bundle must carry it.
_PARTS: tuple[tuple[str, type, bool], ...] = (
    ("record", dict, True),
    ("record.document", dict, True),
    ("signatures", list, True),
    ("log", dict, True),
    ("log.origin", str, True),
    ("log.leaf_index", int, True),
    ("log.archived_at", str, True),
    ("log.leaf_hash", str, True),
    ("log.tree_size", int, True),
    ("log.inclusion_proof", list, True),
    ("checkpoint", dict, True),
    ("status", dict, False),
    ("crl", str, False),
)
_WORDS = {dict: "an object", list: "a list", str: "a string", int: "a whole number"}
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def read_bundle(data: object) -> tuple[RecordVersion, Checkpoint]:
    """The record version and checkpoint a bundle states, once every part a verifier reads is there with its
    type; `Unreadable` says which part is missing or wrong otherwise."""
    if not isinstance(data, dict):
        found = "a JSON list" if isinstance(data, list) else f"a JSON {type(data).__name__}"
        raise Unreadable(f"it holds {found}, not a verification bundle (a JSON object of format {FORMAT})")
    if data.get("format") != FORMAT:
        raise Unreadable(f"its format is {data.get('format')!r}, not {FORMAT!r}: it is not a hocba verification bundle")
    _check_parts(data)
    try:
        content = canonical_json(data["record"]["document"])
    except (ValueError, TypeError):
        raise Unreadable("the bundle's `record.document` is not plain JSON (RFC 8785 cannot write it)") from None
    try:
        version = RecordVersion.model_validate({**data["record"], "content": content})
    except ValidationError as exc:
        raise Unreadable(_first_error("record", exc)) from None
    try:
        checkpoint = Checkpoint.model_validate(data["checkpoint"])
    except ValidationError as exc:
        raise Unreadable(_first_error("checkpoint", exc)) from None
    if not _HEX.fullmatch(checkpoint.root_hash):
        raise Unreadable("the bundle's `checkpoint.root_hash` is not hexadecimal")
    try:
        read_crls((data.get("crl") or "").encode())
    except ValueError:
        raise Unreadable("the bundle's `crl` holds a block that is not a readable CRL") from None
    return version, checkpoint


def _check_parts(data: dict[str, Any]) -> None:
    """Each part of `_PARTS` there (when a bundle must carry it) with its JSON type; the signatures text, the hashes
    hexadecimal."""
    for name, kind, required in _PARTS:
        value: Any = data
        for key in name.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            if required:
                raise Unreadable(f"the bundle has no `{name}`: a verification bundle carries it")
        elif not isinstance(value, kind) or isinstance(value, bool):
            raise Unreadable(f"the bundle's `{name}` is not {_WORDS[kind]}")
    if not all(isinstance(s, str) for s in data["signatures"]):
        raise Unreadable("the bundle's `signatures` are not all compact JWS text")
    log = data["log"]
    if not all(isinstance(h, str) and _HEX.fullmatch(h) for h in [log["leaf_hash"], *log["inclusion_proof"]]):
        raise Unreadable("the bundle's `log.leaf_hash` or `log.inclusion_proof` is not hexadecimal")


def _first_error(part: str, exc: ValidationError) -> str:
    """The first thing wrong in a part of a bundle, in one sentence."""
    error = exc.errors()[0]
    where = ".".join(str(p) for p in (part, *error["loc"]))
    return f"the bundle's `{where}` cannot be read: {error['msg'][:1].lower()}{error['msg'][1:]}"


def trust_with_bundle_crl(trust: TrustStore, bundle: dict[str, Any]) -> TrustStore:
    """The verifier's trust store plus the CRLs carried in the bundle: the PKI's own and each licensed CA's (each is
    taken only for the CA that signed it, so safe)."""
    if not bundle.get("crl"):
        return trust
    return TrustStore(trust.anchors, [*trust.crls, *read_crls(bundle["crl"].encode())])


@dataclass(frozen=True)
class Admission:
    """When the archive admitted the version, by its own clock, as the entry states it under a signed checkpoint."""

    at: datetime
    tree_size: int

    def describe(self) -> str:
        return (
            f"the archive's admission time {self.at:%Y-%m-%d %H:%M:%S}Z, proven by the signed checkpoint of size "
            f"{self.tree_size}"
        )


def verify_bundle(bundle: dict[str, Any], trust: TrustStore) -> Verdict:
    """Check a bundle offline against `trust`: where the content comes from, signatures, chains, order, digest,
    inclusion, checkpoint; and say which time each verdict relied on. A bundle with a part missing or of the wrong
    kind raises `Unreadable` (`read_bundle`): it is not checked at all."""
    version, checkpoint = read_bundle(bundle)
    verdict = Verdict(f"{version.record_id} version {version.version}")
    trust = trust_with_bundle_crl(trust, bundle)
    payload = version.content
    log, admission = _check_log(bundle, checkpoint, trust, payload)
    trusted_time_decided = _check_signatures(verdict, version, bundle["signatures"], trust, payload, admission)
    _check_origin(verdict, version, trust, payload, admission)
    verdict.sections.append(log)
    verdict.relied_on = _relied_on(admission, trusted_time_decided)
    return verdict


def _relied_on(admission: Admission | None, trusted_time_decided: bool) -> str:
    """The time the verdict on the signatures relied on, in words."""
    if admission is None:
        return "the signers' stated times only: no signed checkpoint proves when the archive admitted this version"
    if trusted_time_decided:
        return (
            f"{admission.describe()}, for the signatures whose certificates are revoked for a key compromise; "
            "the signers' stated times, no later than it, for the others"
        )
    return f"the signers' stated times, each no later than {admission.describe()}"


def _check_signatures(
    verdict: Verdict,
    record: RecordVersion,
    signatures: Sequence[str],
    trust: TrustStore,
    payload: bytes,
    admission: Admission | None,
) -> bool:
    """The record's digest, each signature and its chain, and the order of the signatures; True when the admission
    time decided for a signature (its certificate is revoked for a key compromise)."""
    trusted_at = admission.at if admission is not None else None
    check = check_record(record, signatures, trust, payload=payload, trusted_at=trusted_at)
    summary = verdict.section("record")
    _digest(summary, check.digest, signatures)
    summary.extend(check.passed, check.failed)
    for signature in check.signatures:
        who = signature.signer.describe() if signature.signer else "unknown signer"
        when = f" at {signature.signed_at:%Y-%m-%d %H:%M:%S %Z}" if signature.signed_at else ""
        section = verdict.section(f"{ROLE_WORDS.get(signature.role, signature.role)}'s signature: {who}{when}")
        section.extend(signature.passed, signature.failed)
        _time_relied_on(section, signature, admission)
    return any(signature.relied_on == TRUSTED for signature in check.signatures)


def _digest(section: Section, digest: str, signatures: Sequence[str]) -> None:
    """The record's digest, passed only when the bytes of the record hash to the digest every signature signs."""
    signed = set()
    for jws in signatures:
        try:
            signed.add(protected_header(jws).get("digest"))
        except (ValueError, UnicodeDecodeError, IndexError, AttributeError):
            continue
    said = f"the record's digest (SHA-256 of its RFC 8785 JSON) {digest}"
    if not signed:
        section.not_checked(said, "no signature states a digest to compare it with")
    elif signed == {digest}:
        section.add(True, f"{said} is the one its signatures sign")
    else:
        others = ", ".join(sorted(str(d) for d in signed - {digest})) or "none"
        section.add(
            False, f"{said} is not the one its signatures sign ({others}): the record was changed after signing"
        )


def _time_relied_on(section: Section, signature: SignatureCheck, admission: Admission | None) -> None:
    """Which time the signature's verdict relied on; and a stated time after the proven admission fails."""
    if signature.signed_at is None:
        return
    stated = f"the signer's stated time {signature.signed_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"
    if admission is None:
        section.inform(f"time relied on: {stated} only: no signed checkpoint proves when the archive admitted it")
        return
    if signature.signed_at > admission.at + ADMISSION_SKEW:
        section.add(False, f"{stated} is after {admission.describe()}: the signature cannot be that late")
    if signature.relied_on == TRUSTED:
        section.inform(
            f"time relied on: {admission.describe()} (the certificate is revoked for a key compromise, so the "
            "signer's stated time does not count)",
        )
    else:
        section.inform(f"time relied on: {stated}, no later than {admission.describe()}")


def _check_origin(
    verdict: Verdict, record: RecordVersion, trust: TrustStore, payload: bytes, admission: Admission | None
) -> None:
    """Where the content comes from: grades' seal on it, or an amendment that names who at the school asked."""
    section = verdict.section("where the content comes from")
    amendment = _amendment(record.document)
    if record.seal:
        at = admission.at if admission is not None else datetime.now(UTC)
        problems = seal_problems(record.seal, record_claims(record, sha256_hex(payload)), trust, GRADES, at)
        if problems:
            section.extend([], [f"grades' seal: {p}" for p in problems])
        else:
            section.add(True, "content sealed by grades (svc-grades): assembled by grades from the school's entries")
    elif amendment is not None:
        section.add(
            True,
            f"an amendment requested by the issuing school ({amendment.get('requested_by')}), replacing version "
            f"{amendment.get('supersedes')} ({amendment.get('reason')}): its school's signatures vouch for it",
        )
    else:
        section.add(False, "the content carries no seal by grades and is not an amendment requested by its school")


def _amendment(document: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The amendment a document states (the version it supersedes, the reason, who asked), if it is one."""
    amendment = document.get("amendment")
    if isinstance(amendment, Mapping) and isinstance(amendment.get("supersedes"), int) and amendment.get("requested_by"):
        return amendment
    return None


def _check_log(
    bundle: dict[str, Any], checkpoint: Checkpoint, trust: TrustStore, payload: bytes
) -> tuple[Section, Admission | None]:
    """The entry's leaf hash, its inclusion proof up to the checkpoint's root, the checkpoint's signature, the status;
    and the admission time they prove, when they all hold."""
    record, log = bundle["record"], bundle["log"]
    leaf = Leaf(
        seq=log["leaf_index"],
        record_id=record["record_id"],
        version=record["version"],
        school_code=record["school_code"],
        school_year=record["school_year"],
        student_ref=record["student_ref"],
        content=payload,
        signatures=bundle["signatures"],
        archived_at=log["archived_at"],
        seal=record.get("seal"),
    ).hash()
    archive = Section(f"archive log '{log['origin']}'")
    leaf_ok = leaf.hex() == log["leaf_hash"]
    if leaf_ok:
        archive.add(True, f"the entry's leaf hash matches the record and signatures (entry {log['leaf_index']})")
    else:
        archive.add(False, "the entry's leaf hash does not match the record and signatures in the bundle")
    proof = [bytes.fromhex(p) for p in log["inclusion_proof"]]
    root = bytes.fromhex(checkpoint.root_hash)
    included = log["tree_size"] == checkpoint.tree_size and verify_inclusion(
        log["leaf_index"], log["tree_size"], leaf, proof, root
    )
    if included:
        archive.add(
            True,
            f"the RFC 9162 inclusion proof puts entry {log['leaf_index']} in the tree of {checkpoint.tree_size} "
            f"entries whose root the checkpoint states",
        )
    else:
        archive.add(False, "the inclusion proof does not lead from this entry to the checkpoint's root")
    checkpoint_check = check_checkpoint(checkpoint, trust)
    archive.extend(checkpoint_check.passed, checkpoint_check.failed)
    admission = None
    if leaf_ok and included and checkpoint_check.ok:
        admission = _admission(archive, log["archived_at"], checkpoint)
    status = bundle.get("status") or {}
    if status.get("superseded_by"):
        archive.inform(
            f"not signed: information only: the archive stated at export that version {status['superseded_by']} "
            "supersedes this one (no signature covers the bundle's status)"
        )
    return archive, admission


def _admission(archive: Section, archived_at: str, checkpoint: Checkpoint) -> Admission | None:
    """The admission time the entry states, proven by the checkpoint that covers it (issued no earlier)."""
    try:
        at = datetime.fromisoformat(archived_at).astimezone(UTC)
    except (TypeError, ValueError):
        archive.add(False, "the entry's admission time cannot be read")
        return None
    if at > checkpoint.issued_at:
        archive.add(False, "the entry states an admission time after the checkpoint that covers it was issued")
        return None
    admission = Admission(at, checkpoint.tree_size)
    archive.add(True, f"the archive admitted this version at {at:%Y-%m-%d %H:%M:%S}Z (proven by the signed checkpoint)")
    return admission


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
        claims = json.loads(b64url_decode(qr.split(".")[1]))
        issued = datetime.fromisoformat(claims["c"])
    except (ValueError, KeyError, IndexError, TypeError):
        section.add(False, "the QR payload is not a compact JWS stating a copy of a record")
        return verdict
    if issued.tzinfo is None:
        section.add(False, "the QR payload states the copy's time without its time zone")
        return verdict
    signer = next((c for c in certificates if fingerprint(c) == kid), None)
    if signer is None:
        section.add(False, "the QR payload names a certificate that is not at hand")
        return verdict
    key = ec_public_key(signer)
    if key is None or verify_compact(key, qr) is None:
        section.add(False, "the QR payload's signature does not verify")
        return verdict
    chain_check = trust.validate([signer], issued, purpose="checkpoint")
    verdict.relied_on = f"the archive's stated time of the copy, {claims['c']}"
    section.add(
        True, f"the QR payload is signed by the archive ({claims.get('r')} v{claims.get('v')}, copy of {claims['c']})"
    )
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
    """The archive's certificate chain, as the bundle's checkpoint signature carries it (none when it cannot be read:
    the check of the checkpoint says so)."""
    try:
        return from_x5c(protected_header(bundle["checkpoint"]["signature"])["x5c"])
    except (ValueError, KeyError, IndexError, TypeError):
        return []
