"""The archive log's formats: what a leaf commits to, and signed checkpoints of the tree.

A leaf is the RFC 8785 JSON of one archived record version with its signatures, grades' seal on its
content (when it has one: an amendment has none), its position and its archiving time (the archive's
clock when it admitted the version, which a checkpoint over the leaf then proves); its RFC 9162 leaf
hash goes into the Merkle tree. A checkpoint states the
tree's size and root at a moment, signed (ES256, detached JWS with the archive's x5c) over the
canonical JSON of {origin, tree_size, root_hash, issued_at}, `issued_at` written as every signed time is
(`shared.contracts.archive.signed_time`: UTC to the millisecond, 2026-05-20T08:00:00.123Z). A copy of a checkpoint
carries that very string, so a verifier can rebuild the signed bytes from the fields as written
(`check_checkpoint_fields`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from shared.contracts.archive import Checkpoint, signed_time
from shared.contracts.record import document_of
from shared.crypto.canonical import canonical_json
from shared.crypto.certs import TrustStore, ec_public_key, from_x5c, identity
from shared.crypto.jws import RawSigner, protected_header, sign_detached, verify_detached
from shared.crypto.merkle import leaf_hash

CHECKPOINT_TYPE = "hocba-checkpoint"


#: A UTC time to the millisecond, as leaves and checkpoints write it: 2026-05-20T08:00:00.000Z.
timestamp = signed_time


@dataclass(frozen=True)
class Leaf:
    """What one log entry commits to: a record version, its signatures, grades' seal, its position and its
    archiving time.

    `seq` is inside, so moving an entry changes its hash. `seal` is inside when there is one, so it cannot be
    taken off or swapped; an entry without one hashes as entries did before seals existed.
    """

    seq: int
    record_id: str
    version: int
    school_code: str
    school_year: str
    student_ref: str
    #: The record document's RFC 8785 canonical bytes, exactly as signed (`shared.contracts.record`).
    content: bytes
    signatures: Sequence[str]
    archived_at: str
    #: grades' seal on the version's content (`shared.crypto.seal.record_claims`); None for an amendment.
    seal: str | None = field(default=None, kw_only=True)

    @cached_property
    def document(self) -> dict[str, Any]:
        """The record document as JSON values, read from `content`."""
        return document_of(self.content)

    def data(self) -> bytes:
        """The RFC 8785 JSON of the entry, written out key by key in RFC 8785 order.

        The document is `content` as it is: those bytes are already its RFC 8785 form, and are
        never written again.
        """
        fields = [
            (b"archived_at", canonical_json(self.archived_at)),
            (b"document", self.content),
            (b"record_id", canonical_json(self.record_id)),
            (b"school_code", canonical_json(self.school_code)),
            (b"school_year", canonical_json(self.school_year)),
            *([(b"seal", canonical_json(self.seal))] if self.seal is not None else []),
            (b"seq", canonical_json(self.seq)),
            (b"signatures", canonical_json(list(self.signatures))),
            (b"student_ref", canonical_json(self.student_ref)),
            (b"version", canonical_json(self.version)),
        ]
        return b"{" + b",".join(b'"' + key + b'":' + value for key, value in fields) + b"}"

    def hash(self) -> bytes:
        """The RFC 9162 leaf hash of `data()`: what the Merkle tree holds for this entry."""
        return leaf_hash(self.data())

    def record(self) -> dict[str, Any]:
        """The record version as a bundle carries it: the document as JSON values, readable by anyone."""
        return {
            "record_id": self.record_id,
            "version": self.version,
            "school_code": self.school_code,
            "school_year": self.school_year,
            "student_ref": self.student_ref,
            "document": self.document,
            **({"seal": self.seal} if self.seal is not None else {}),
        }


def fields_of(leaf: Leaf) -> dict[str, Any]:
    """A leaf's fields by name (what `vars` would give, without what was read from `content` and cached)."""
    return {f.name: getattr(leaf, f.name) for f in fields(Leaf)}


def checkpoint_body(origin: str, tree_size: int, root_hash: str, issued_at: datetime | str) -> bytes:
    """The bytes a checkpoint's signature covers; `issued_at` as a moment, or as the string a copy states."""
    written = issued_at if isinstance(issued_at, str) else signed_time(issued_at)
    return canonical_json({"origin": origin, "tree_size": tree_size, "root_hash": root_hash, "issued_at": written})


def sign_checkpoint(signer: RawSigner, origin: str, tree_size: int, root: bytes, issued_at: datetime) -> Checkpoint:
    issued_at = issued_at.astimezone(UTC).replace(microsecond=issued_at.microsecond // 1000 * 1000)
    body = checkpoint_body(origin, tree_size, root.hex(), issued_at)
    return Checkpoint(
        origin=origin,
        tree_size=tree_size,
        root_hash=root.hex(),
        issued_at=issued_at,
        signature=sign_detached(signer, body, {"typ": CHECKPOINT_TYPE}),
    )


@dataclass
class CheckpointCheck:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def check_checkpoint(checkpoint: Checkpoint, trust: TrustStore | None) -> CheckpointCheck:
    """Is the checkpoint signed by a certificate that chains to the trust anchor (an archive certificate)?"""
    body = checkpoint_body(checkpoint.origin, checkpoint.tree_size, checkpoint.root_hash, checkpoint.issued_at)
    return _checked(body, checkpoint.signature, checkpoint.tree_size, checkpoint.issued_at, trust)


#: The fields of a checkpoint as a copy states them (a bundle's, the ministry's payload, the archive's HTTP answer).
CHECKPOINT_FIELDS = ("origin", "tree_size", "root_hash", "issued_at", "signature")


def check_checkpoint_fields(fields: Mapping[str, Any], trust: TrustStore | None) -> CheckpointCheck:
    """Is a checkpoint, read as written (JSON values), signed over exactly these fields by the archive's certificate?

    The signed bytes are rebuilt from the strings as they stand, `issued_at` included, as an independent verifier
    would: a copy that wrote the time in another form than the signed one does not verify.
    """
    result = CheckpointCheck()
    missing = [name for name in CHECKPOINT_FIELDS if fields.get(name) in (None, "")]
    if missing:
        result.failed.append(f"the checkpoint lacks {', '.join(missing)}: an unsigned checkpoint proves nothing")
        return result
    origin, size, root, written, signature = (fields[name] for name in CHECKPOINT_FIELDS)
    if not (isinstance(origin, str) and isinstance(root, str) and isinstance(written, str) and isinstance(signature, str)
            and isinstance(size, int) and not isinstance(size, bool)):
        result.failed.append("the checkpoint's origin, root_hash, issued_at and signature must be strings, tree_size a number")
        return result
    try:
        issued_at = datetime.fromisoformat(written)
    except ValueError:
        result.failed.append(f"the checkpoint's issued_at {written[:40]!r} is not a time")
        return result
    if issued_at.tzinfo is None:
        result.failed.append(f"the checkpoint's issued_at {written[:40]!r} names no time zone")
        return result
    return _checked(checkpoint_body(origin, size, root, written), signature, size, issued_at, trust)


def _checked(body: bytes, signature: str, tree_size: int, issued_at: datetime, trust: TrustStore | None) -> CheckpointCheck:
    """Does `signature` (an archive certificate's ES256 checkpoint JWS) cover `body`, its chain good at `issued_at`?"""
    result = CheckpointCheck()
    try:
        header = protected_header(signature)
        chain = from_x5c(header["x5c"])
    except (ValueError, KeyError, TypeError, IndexError):
        result.failed.append("the checkpoint's signature or certificate cannot be read")
        return result
    if header.get("alg") != "ES256" or header.get("typ") != CHECKPOINT_TYPE:
        result.failed.append("the checkpoint's signature is not an ES256 checkpoint signature")
    key = ec_public_key(chain[0])
    if key is not None and verify_detached(key, signature, body):
        who = identity(chain[0])
        result.passed.append(f"checkpoint of size {tree_size} is signed by '{who.name}'")
        if who.role != "archive":
            result.failed.append(f"the checkpoint is signed by a {who.role or 'no-role'} certificate, not the archive's")
    else:
        result.failed.append(f"the signature of the checkpoint of size {tree_size} does not verify")
    if trust is not None:
        chain_check = trust.validate(chain, issued_at, purpose="checkpoint")
        result.passed += chain_check.passed
        result.failed += chain_check.failed
    return result
