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

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

from cryptography import x509
from pydantic import ValidationError

from shared.contracts.archive import Checkpoint, signed_time
from shared.contracts.grades import RecordVersion
from shared.crypto.archive_log import Leaf, check_checkpoint
from shared.crypto.canonical import canonical_json, sha256_hex
from shared.crypto.certs import TRUSTED, TrustStore, ec_public_key, fingerprint, from_x5c, read_crls
from shared.crypto.jws import RawSigner, b64url, b64url_decode, protected_header, sign_compact, verify_compact
from shared.crypto.merkle import verify_inclusion
from shared.crypto.record_signatures import ROLE_WORDS, SignatureCheck, check_record
from shared.crypto.seal import record_claims, seal_problems
from shared.crypto.timestamps import Timestamp, TimestampInvalid, checkpoint_bytes, verify_chain

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
    checked against (`with_timestamps` adds the checkpoint's timestamps)."""
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


def with_timestamps(bundle: dict[str, Any], stamps: Sequence[bytes]) -> dict[str, Any]:
    """The bundle with its checkpoint's RFC 3161 timestamps (the first, then each renewal; DER, in base64), if any."""
    if not stamps:
        return bundle
    return {**bundle, "checkpoint_timestamps": [base64.b64encode(t).decode() for t in stamps]}


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
    #: What the checkpoint's RFC 3161 timestamps state, the first then each renewal, when they all verify.
    timestamps: list[Timestamp] = field(default_factory=list)

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


def verify_bundle(bundle: dict[str, Any], trust: TrustStore, tsa_anchors: Sequence[x509.Certificate] = ()) -> Verdict:
    """Check a bundle offline against `trust`: where the content comes from, signatures, chains, order, digest,
    inclusion, checkpoint and its timestamps (their TSA chaining to `trust`'s anchors or `tsa_anchors`); and say which
    time each verdict relied on. A bundle with a part missing or of the wrong kind raises `Unreadable`
    (`read_bundle`): it is not checked at all."""
    version, checkpoint = read_bundle(bundle)
    verdict = Verdict(f"{version.record_id} version {version.version}")
    trust = trust_with_bundle_crl(trust, bundle)
    payload = version.content
    log, admission = _check_log(bundle, checkpoint, trust, payload)
    verdict.timestamps = _check_timestamps(log, bundle, trust, tsa_anchors)
    trusted_time_decided = _check_signatures(verdict, version, bundle["signatures"], trust, payload, admission)
    _check_origin(verdict, version, trust, payload, admission)
    verdict.sections.append(log)
    verdict.relied_on = _relied_on(admission, trusted_time_decided) + timestamp_words(verdict.timestamps)
    return verdict


def timestamp_words(stated: Sequence[Timestamp]) -> str:
    """What the checkpoint's timestamps add to the time a verdict relied on, in words (nothing when there are none)."""
    if not stated:
        return ""
    first, last = stated[0], stated[-1]
    renewed = (
        f", renewed {len(stated) - 1} time{'s' if len(stated) > 2 else ''}, last at {last.gen_time:%Y-%m-%d %H:%M:%S}Z "
        f"by {last.tsa}"
        if len(stated) > 1
        else ""
    )
    return (
        f"; the checkpoint existed by {first.gen_time:%Y-%m-%d %H:%M:%S}Z (RFC 3161 timestamp by {first.tsa}{renewed})"
    )


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


def entry_leaf_hash(bundle: dict[str, Any], payload: bytes | None = None) -> bytes:
    """The RFC 9162 leaf hash of the entry a bundle holds, computed from its record, signatures and admission time
    (`payload`: the record's canonical bytes, when already at hand), never read from what the bundle states."""
    record, log = bundle["record"], bundle["log"]
    return Leaf(
        seq=log["leaf_index"],
        record_id=record["record_id"],
        version=record["version"],
        school_code=record["school_code"],
        school_year=record["school_year"],
        student_ref=record["student_ref"],
        content=payload if payload is not None else canonical_json(record["document"]),
        signatures=bundle["signatures"],
        archived_at=log["archived_at"],
        seal=record.get("seal"),
    ).hash()


def _check_log(
    bundle: dict[str, Any], checkpoint: Checkpoint, trust: TrustStore, payload: bytes
) -> tuple[Section, Admission | None]:
    """The entry's leaf hash, its inclusion proof up to the checkpoint's root, the checkpoint's signature, the status;
    and the admission time they prove, when they all hold."""
    log = bundle["log"]
    leaf = entry_leaf_hash(bundle, payload)
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


def _check_timestamps(
    archive: Section, bundle: dict[str, Any], trust: TrustStore, tsa_anchors: Sequence[x509.Certificate]
) -> list[Timestamp]:
    """The checkpoint's timestamp and its renewals (shared.crypto.timestamps.verify_chain): each verifies over what it
    covers, its TSA chains to an anchor and was valid at its time and until the renewal after it. None in the bundle
    is said as information: the checkpoint's time then rests on the archive's own clock and key."""
    written = bundle.get("checkpoint_timestamps")
    if not written:
        archive.inform(
            "not timestamped: the checkpoint's time rests on the archive's own clock and key only (no RFC 3161 "
            "timestamp in the bundle)"
        )
        return []
    try:
        if not isinstance(written, list) or not all(isinstance(t, str) for t in written):
            raise ValueError("not a list of base64 texts")
        tokens = [base64.b64decode(t, validate=True) for t in written]
    except (ValueError, binascii.Error) as exc:
        archive.add(False, f"the checkpoint's timestamps cannot be read: {exc}")
        return []
    try:
        subject = checkpoint_bytes(bundle["checkpoint"])
        stated = verify_chain(subject, tokens, [*trust.anchors, *tsa_anchors], crls=trust.crls)
    except (TimestampInvalid, KeyError) as exc:
        archive.add(False, f"the checkpoint's timestamps do not hold: {exc}")
        return []
    first = stated[0]
    archive.add(
        True,
        f"RFC 3161 timestamp: the signed checkpoint existed by {first.gen_time:%Y-%m-%d %H:%M:%S}Z, stated by "
        f"{first.tsa} ({first.hash_algorithm}), whose certificate was valid then"
        + ("" if len(stated) > 1 else " and is now"),
    )
    for n, renewal in enumerate(stated[1:], start=1):
        archive.add(
            True,
            f"renewal {n} at {renewal.gen_time:%Y-%m-%d %H:%M:%S}Z by {renewal.tsa} ({renewal.hash_algorithm}) "
            "covers the checkpoint and the timestamp before it, whose TSA certificate was still valid then",
        )
    return stated


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
#
# The QR code is one text: the copy's public address, then `#`, then the archive's compact JWS over the claims
# below. A phone opens the address (the verification page of entry `i`); the part after `#` is a URL fragment, so the
# phone never sends it to a server, and `hocba verify` or the page checks it offline. The claims are few because the
# leaf hash commits to everything else (record, version, school, content, signatures, admission time):
#
#   i  the entry's index in the archive log       h  its RFC 9162 leaf hash (base64url, 43 characters)
#   n  the size of the signed checkpoint          t  that checkpoint's root hash (base64url)
#   c  when the copy was issued (`signed_time`: UTC to the millisecond, with Z)
#
# signed with `typ` hocba-copy, so no other statement of the archive's key reads as one. Copies printed before this
# form (with more claims, among them these four) verify the same way.

#: Characters of the leaf hash's base64url that the address carries: 96 bits, too many to guess an entry's address.
ADDRESS_KEY_LENGTH = 16
#: The claims a copy's QR payload states about the archived entry (`c`, its time, is not about the entry).
COPY_CLAIMS = ("i", "h", "n", "t")
_ADDRESS = re.compile(r"^(?P<base>.*)/v/(?P<index>\d+)\.(?P<key>[A-Za-z0-9_-]+)$")


def _b64(hex_text: str) -> str:
    return b64url(bytes.fromhex(hex_text))


def address_key(leaf_hash_hex: str) -> str:
    """The part of a copy's address that only a holder of the copy knows: the start of its leaf hash, base64url."""
    return _b64(leaf_hash_hex)[:ADDRESS_KEY_LENGTH]


def verify_address(base: str, leaf_index: int, leaf_hash_hex: str) -> str:
    """The public address of an archived entry's verification page, as a copy's QR code gives it:
    `{base}/v/{leaf_index}.{key}`, `key` the first 16 characters of the base64url (no padding) of its leaf hash."""
    return f"{base.rstrip('/')}/v/{leaf_index}.{address_key(leaf_hash_hex)}"


def copy_claims(bundle: dict[str, Any]) -> dict[str, Any]:
    """What the QR code of a printed copy states about the bundle's entry, compactly (hashes in base64url)."""
    log, checkpoint = bundle["log"], bundle["checkpoint"]
    return {
        "i": log["leaf_index"],
        "h": _b64(log["leaf_hash"]),
        "n": checkpoint["tree_size"],
        "t": _b64(checkpoint["root_hash"]),
    }


def sign_copy(signer: RawSigner, bundle: dict[str, Any], issued_at: datetime) -> str:
    """The archive's compact JWS over the copy's claims and its time: the part of the QR code after `#`."""
    claims = {**copy_claims(bundle), "c": signed_time(issued_at)}
    return sign_compact(signer, json.dumps(claims, separators=(",", ":")).encode(), {"typ": COPY_TYPE})


def copy_qr(base: str, bundle: dict[str, Any], payload: str) -> str:
    """The text of a printed copy's QR code: the entry's public address, `#`, the archive's signed payload."""
    return f"{verify_address(base, bundle['log']['leaf_index'], bundle['log']['leaf_hash'])}#{payload}"


def split_qr(qr: str) -> tuple[str | None, str]:
    """A QR code's address (None when it has none) and its signed payload."""
    address, mark, payload = qr.rpartition("#")
    return (address, payload) if mark else (None, qr)


def verify_copy(
    qr: str, certificates: Sequence[x509.Certificate], trust: TrustStore, bundle: dict[str, Any] | None = None
) -> Verdict:
    """Check a printed copy's QR code (its address and signed payload, or the payload alone): signed by the archive's
    certificate, and (given) stating the bundle's entry, with the address of that entry."""
    verdict = Verdict("QR code")
    section = verdict.section("QR code of the printed copy")
    address, payload = split_qr(qr.strip())
    try:
        header = protected_header(payload)
        kid = header["kid"]
        claims = json.loads(b64url_decode(payload.split(".")[1]))
        issued = datetime.fromisoformat(claims["c"])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        section.add(False, "the QR payload is not a compact JWS stating a copy of a record")
        return verdict
    if header.get("typ") != COPY_TYPE:
        section.add(False, f"the QR payload is not a statement of a copy (its type is not {COPY_TYPE})")
        return verdict
    if issued.tzinfo is None:
        section.add(False, "the QR payload states the copy's time without its time zone")
        return verdict
    signer = next((c for c in certificates if fingerprint(c) == kid), None)
    if signer is None:
        section.add(False, "the QR payload names a certificate that is not at hand")
        return verdict
    key = ec_public_key(signer)
    if key is None or verify_compact(key, payload) is None:
        section.add(False, "the QR payload's signature does not verify")
        return verdict
    chain_check = trust.validate([signer], issued, purpose="checkpoint")
    verdict.relied_on = f"the archive's stated time of the copy, {claims['c']}"
    section.add(
        True, f"the QR payload is signed by the archive (entry {claims.get('i')} of its log, copy of {claims['c']})"
    )
    section.extend(chain_check.passed, chain_check.failed)
    if bundle is not None:
        _copy_matches(section, claims, address, bundle)
    return verdict


def _copy_matches(section: Section, claims: Mapping[str, Any], address: str | None, bundle: dict[str, Any]) -> None:
    """The QR code's claims, and its address when it has one, against the bundle's entry."""
    expected = copy_claims(bundle)
    try:
        expected["h"] = b64url(entry_leaf_hash(bundle))
    except (KeyError, TypeError, ValueError):
        section.add(False, "the attached bundle's entry cannot be read to compare it with the QR code")
        return
    differs = [k for k in COPY_CLAIMS if claims.get(k) != expected[k]]
    if differs:
        section.add(False, f"the QR code and the attached bundle disagree on {', '.join(differs)}")
    else:
        section.add(
            True,
            "the QR code states the same log entry and checkpoint as the attached bundle, and the leaf hash of its "
            "record and signatures",
        )
    if address is None:
        return
    found = _ADDRESS.match(address)
    log = bundle["log"]
    if found and int(found["index"]) == log["leaf_index"] and found["key"] == address_key(log["leaf_hash"]):
        section.add(True, f"the QR code's address {address} names this entry and its key")
    else:
        section.add(False, f"the QR code's address {address} does not name this entry with its key")


def archive_certificates(bundle: dict[str, Any]) -> list[x509.Certificate]:
    """The archive's certificate chain, as the bundle's checkpoint signature carries it (none when it cannot be read:
    the check of the checkpoint says so)."""
    try:
        return from_x5c(protected_header(bundle["checkpoint"]["signature"])["x5c"])
    except (ValueError, KeyError, IndexError, TypeError):
        return []
