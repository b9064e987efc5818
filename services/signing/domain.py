"""Signing rules: who may sign what, in which order, how a batch is cut into chunks, what a signature says."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from shared.auth import Actor
from shared.contracts.base import Acting
from shared.contracts.grades import RecordVersion, VersionKey
from shared.contracts.signing import SIGNING_ORDER, RequestSignBatch, Role, Signature, seal_subject
from shared.crypto.canonical import sha256_hex
from shared.crypto.certs import CertIdentity
from shared.crypto.record_signatures import signature_digest
from shared.errors import Forbidden

#: The roles a record version needs, in the order they sign. Each signature names the digest of
#: the one before it, so the chain cannot be reordered or cut.
REQUIRED_ROLES: tuple[Role, ...] = SIGNING_ORDER

#: What one batch of a role signs. The school's seal follows the principal's signature within the
#: same chunk: the principal's one click signs and seals (ký và đóng dấu), as on paper, where the
#: principal holds the school's seal. A `school_seal` batch (requested by the principal) seals what
#: carries the principal's signature but no seal yet.
BATCH_ROLES: dict[Role, tuple[Role, ...]] = {
    "homeroom_teacher": ("homeroom_teacher",),
    "principal": ("principal", "school_seal"),
    "school_seal": ("school_seal",),
}

OPEN = "open"
COMPLETED = "completed"


class SignerRefused(Forbidden):
    """A signature by the wrong person, or with a certificate that may not sign; `reason` says which."""


@dataclass(frozen=True)
class StoredRecord:
    """A record version as signing keeps it: what names it, and its document as the exact bytes that are signed.

    The document is kept as the RFC 8785 canonical bytes the version arrived with, and their digest:
    every signature is made over those bytes, so signing never serialises a document. What a plan
    or a check needs to know about a version (its school year, its class) is kept beside the bytes,
    so nothing has to read the document again to find it.
    """

    record_id: str
    version: int
    school_code: str
    school_year: str
    student_ref: str
    #: grades' seal over the version; None for an amended version (the school's request stands for it).
    seal: str | None
    class_name: str | None
    #: The document's RFC 8785 canonical bytes: what every signature of this version is made over.
    canonical: bytes
    #: SHA-256 (hex) of `canonical`, as received.
    digest: str

    @classmethod
    def of(cls, record: RecordVersion) -> StoredRecord:
        """`record` as it is kept: its content as it came, hashed, and the class it names."""
        return cls(
            record_id=record.record_id,
            version=record.version,
            school_code=record.school_code,
            school_year=record.school_year,
            student_ref=record.student_ref,
            seal=record.seal,
            class_name=record.fields.class_name,
            canonical=record.content,
            digest=sha256_hex(record.content),
        )

    @property
    def key(self) -> VersionKey:
        return (self.record_id, self.version)

    @property
    def scope(self) -> tuple[str, str]:
        """(school_code, school_year): what a batch selects records by."""
        return (self.school_code, self.school_year)

    def record_version(self) -> RecordVersion:
        """The version as messages carry it: the kept bytes as its content.

        Not validated again: the bytes are the ones received, and their digest is checked before
        anything is signed over them.
        """
        return RecordVersion.model_construct(
            record_id=self.record_id,
            version=self.version,
            school_code=self.school_code,
            school_year=self.school_year,
            student_ref=self.student_ref,
            content=self.canonical,
            seal=self.seal,
        )


@dataclass(frozen=True)
class Batch:
    """One "sign all" request: its plan (the chunks), who signs, and how far the workers have got."""

    batch_id: str
    school_code: str
    school_year: str
    role: Role
    #: The plan: each chunk's record versions. Empty when the batch was read without it (counting a
    #: chunk needs only the totals, and a plan grows with the school).
    chunks: tuple[tuple[VersionKey, ...], ...]
    started_at: datetime
    chunks_total: int
    records_total: int
    status: str = OPEN
    done_chunks: frozenset[int] = field(default_factory=frozenset)
    records_signed: int = 0
    completed_at: datetime | None = None
    #: Subject id of the person whose certificate signs the batch's first role.
    signer: str = ""
    class_name: str | None = None
    records_completed: int = 0
    records_waiting: int = 0
    #: Who asked for the batch (their token was checked then): what the batch's events say in `by`.
    requested_by: Acting | None = None

    @property
    def all_chunks_done(self) -> bool:
        return len(self.done_chunks) >= self.chunks_total

    @property
    def roles(self) -> tuple[Role, ...]:
        return BATCH_ROLES[self.role]

    def signer_of(self, role: Role) -> str:
        """Whose certificate makes `role`'s signature in this batch."""
        return signer_subject(role, self.signer, self.school_code)

    def counted(self, chunk_no: int, signed: int, completed: int = 0) -> Batch:
        """The batch after chunk `chunk_no` is counted (unchanged if it was counted before)."""
        if chunk_no in self.done_chunks:
            return self
        return replace(
            self,
            done_chunks=self.done_chunks | {chunk_no},
            records_signed=self.records_signed + signed,
            records_completed=self.records_completed + completed,
        )


def signer_subject(role: Role, person: str, school_code: str) -> str:
    """The subject id whose certificate makes `role`'s signature: the person, or the school's seal."""
    return seal_subject(school_code) if role == "school_seal" else person


def plan_chunks(keys: Iterable[VersionKey], per_chunk: int) -> tuple[tuple[VersionKey, ...], ...]:
    """Cut the keys, in a stable order, into chunks of at most `per_chunk` record versions."""
    if per_chunk < 1:
        raise ValueError("a chunk holds at least one record version")
    ordered = sorted(set(keys))
    return tuple(tuple(ordered[i : i + per_chunk]) for i in range(0, len(ordered), per_chunk))


def new_batch(
    request: RequestSignBatch, signer: str, unsigned: Iterable[VersionKey], per_chunk: int, started_at: datetime, waiting: int = 0
) -> Batch:
    """The plan of `request`: chunks over the records that lack its role's signature; with none it is complete at once.

    `signer` is the person whose certificate signs the batch's first role; `waiting` counts the
    records that cannot be signed yet (the role before has not signed them).
    """
    chunks = plan_chunks(unsigned, per_chunk)
    return Batch(
        batch_id=request.batch_id,
        school_code=request.school_code,
        school_year=request.school_year,
        role=request.role,
        chunks=chunks,
        started_at=started_at,
        chunks_total=len(chunks),
        records_total=sum(len(chunk) for chunk in chunks),
        status=OPEN if chunks else COMPLETED,
        completed_at=None if chunks else started_at,
        signer=signer,
        class_name=request.class_name,
        records_waiting=waiting,
    )


# --- who may sign ----------------------------------------------------------------------------


def authorise(actor: Actor, role: Role, school_code: str, class_name: str | None) -> None:
    """Refuse a request by anyone but that class's homeroom teacher or that school's principal."""
    if role == "homeroom_teacher":
        if not class_name:
            raise SignerRefused("a homeroom teacher's batch names the class it signs", reason="invalid")
        if actor.school_code != school_code or not actor.is_homeroom_teacher_of(class_name):
            raise SignerRefused(
                f"{actor.subject} is not the homeroom teacher of class {class_name} at school {school_code}",
                reason="wrong-signer",
            )
        return
    if not actor.is_principal_of(school_code):
        raise SignerRefused(f"{actor.subject} is not the principal of school {school_code}", reason="wrong-signer")


def authorise_amendment(actor: Actor, school_code: str, record_id: str) -> None:
    """Refuse an amendment asked for by anyone but the issuing school's principal or records administrator."""
    if actor.school_code != school_code or not (actor.has("principal") or actor.has("school_admin")):
        raise SignerRefused(
            f"{actor.subject} may not amend {record_id}: only the issuing school ({school_code}) "
            "may, through its principal or records administrator",
            reason="wrong-school",
        )


def certificate_problem(holder: CertIdentity, subject_id: str, role: Role, school_code: str) -> str | None:
    """Why a certificate may not make `role`'s signature for `subject_id` at `school_code`, if it may not."""
    if holder.subject_id != subject_id:
        return f"the certificate names {holder.subject_id or 'nobody'}, not {subject_id}"
    if holder.role != role:
        return f"{subject_id}'s certificate is for {holder.role or 'no role'}, not {role}"
    if holder.school_code != school_code:
        return f"{subject_id}'s certificate is for school {holder.school_code or '?'}, not {school_code}"
    return None


# --- the order of signatures -----------------------------------------------------------------


def previous_role(role: Role, order: Sequence[Role] = REQUIRED_ROLES) -> Role | None:
    """The role that signs just before `role`, or None when `role` signs first."""
    if role not in order:
        return None
    index = order.index(role)
    return order[index - 1] if index else None


def may_sign(role: Role, present: Mapping[Role, Signature], order: Sequence[Role] = REQUIRED_ROLES) -> bool:
    """`role` may sign once, and only after every role before it in `order`."""
    if role in present:
        return False
    before = order[: order.index(role)] if role in order else ()
    return all(r in present for r in before)


def is_complete(present: Mapping[Role, Signature], required: Sequence[Role] = REQUIRED_ROLES) -> bool:
    return all(role in present for role in required)


def in_role_order(present: Mapping[Role, Signature], order: Sequence[Role] = REQUIRED_ROLES) -> list[Signature]:
    """The signatures in signing order; roles outside `order` follow by name."""
    rank = {role: i for i, role in enumerate(order)}
    return [present[r] for r in sorted(present, key=lambda r: (rank.get(r, len(rank)), r))]


def prev_digest(
    role: Role, present: Mapping[Role, Signature], order: Sequence[Role] = REQUIRED_ROLES
) -> str | None:
    """`prev` of `role`'s signature: the digest of the previous role's, or None for the first role."""
    before = previous_role(role, order)
    return signature_digest(present[before].jws) if before is not None else None


def whole_milliseconds(moment: datetime) -> datetime:
    """`moment` as the database keeps it (BSON dates hold milliseconds), so header and row agree."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def signature_header(record: StoredRecord, role: Role, signed_at: datetime, prev: str | None) -> dict[str, Any]:
    """The protected header fields that bind a signature to one record version, role, time and chain."""
    return {
        "record_id": record.record_id,
        "version": record.version,
        "role": role,
        "digest": record.digest,
        "signed_at": signed_at.isoformat(),
        "prev": prev,
    }


def amended_document(document: Mapping[str, Any], supersedes: int, reason_code: str, note: str, by: str) -> dict[str, Any]:
    """The amended version's document: it names the version it supersedes and why, under the signatures."""
    return {**document, "amendment": {"supersedes": supersedes, "reason": reason_code, "note": note, "requested_by": by}}
