"""Signing rules: which roles a record needs, how a batch is cut into chunks, what a signature says."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from shared.contracts.grades import RecordVersion
from shared.contracts.signing import Role, Signature
from shared.crypto.canonical import sha256_hex

#: The roles a record version needs, in the order they sign. Each signature names the digest of
#: the one before it, so the chain cannot be reordered or cut.
REQUIRED_ROLES: tuple[Role, ...] = ("principal",)

#: (record_id, version): one record version.
Key = tuple[str, int]

OPEN = "open"
COMPLETED = "completed"


@dataclass(frozen=True)
class StoredRecord:
    """A record version as signing keeps it: the record and the digest it was received with."""

    record: RecordVersion
    digest: str

    @property
    def key(self) -> Key:
        return (self.record.record_id, self.record.version)

    @property
    def scope(self) -> tuple[str, str]:
        """(school_code, school_year): what a batch selects records by."""
        return (self.record.school_code, self.record.school_year)


@dataclass(frozen=True)
class Batch:
    """One "sign all" request: its plan (the chunks) and how far the workers have got."""

    batch_id: str
    school_code: str
    school_year: str
    role: Role
    chunks: tuple[tuple[Key, ...], ...]
    started_at: datetime
    status: str = OPEN
    done_chunks: frozenset[int] = field(default_factory=frozenset)
    records_signed: int = 0
    completed_at: datetime | None = None

    @property
    def chunks_total(self) -> int:
        return len(self.chunks)

    @property
    def records_total(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)

    @property
    def all_chunks_done(self) -> bool:
        return len(self.done_chunks) >= self.chunks_total

    def counted(self, chunk_no: int, signed: int) -> Batch:
        """The batch after chunk `chunk_no` is counted (unchanged if it was counted before)."""
        if chunk_no in self.done_chunks:
            return self
        return replace(
            self, done_chunks=self.done_chunks | {chunk_no}, records_signed=self.records_signed + signed
        )


def plan_chunks(keys: Iterable[Key], chunk_size: int) -> tuple[tuple[Key, ...], ...]:
    """Cut the keys, in a stable order, into chunks of at most `chunk_size`."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    ordered = sorted(set(keys))
    return tuple(tuple(ordered[i : i + chunk_size]) for i in range(0, len(ordered), chunk_size))


def new_batch(
    batch_id: str,
    school_code: str,
    school_year: str,
    role: Role,
    unsigned: Iterable[Key],
    chunk_size: int,
    started_at: datetime,
) -> Batch:
    """A batch over the records that lack `role`'s signature; with none it is complete at once."""
    chunks = plan_chunks(unsigned, chunk_size)
    return Batch(
        batch_id=batch_id,
        school_code=school_code,
        school_year=school_year,
        role=role,
        chunks=chunks,
        started_at=started_at,
        status=OPEN if chunks else COMPLETED,
        completed_at=None if chunks else started_at,
    )


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


def signature_digest(jws: str) -> str:
    """What the next signature in the chain names as `prev`: SHA-256 (hex) of the compact JWS."""
    return sha256_hex(jws.encode("ascii"))


def prev_digest(
    role: Role, present: Mapping[Role, Signature], order: Sequence[Role] = REQUIRED_ROLES
) -> str | None:
    """`prev` of `role`'s signature: the digest of the previous role's, or None for the first role."""
    before = previous_role(role, order)
    return signature_digest(present[before].jws) if before is not None else None


def whole_milliseconds(moment: datetime) -> datetime:
    """`moment` as the database keeps it (BSON dates hold milliseconds), so header and row agree."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def signature_header(
    record: StoredRecord, role: Role, signed_at: datetime, jwk: Mapping[str, str], prev: str | None
) -> dict[str, Any]:
    """The protected header fields that bind a signature to one record version, role and chain."""
    return {
        "record_id": record.record.record_id,
        "version": record.record.version,
        "role": role,
        "digest": record.digest,
        "signed_at": signed_at.isoformat(),
        "jwk": dict(jwk),
        "prev": prev,
    }
