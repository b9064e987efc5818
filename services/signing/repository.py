"""signing's `records`, `signatures` and `batches` collections: a Protocol, MongoDB and in-memory."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from services.signing.domain import COMPLETED, OPEN, Batch, StoredRecord
from shared.at_rest import owner_of, sealed_records
from shared.contracts.base import Acting
from shared.contracts.grades import RecordVersion, VersionKey
from shared.contracts.signing import SIGNING_ORDER, Role, Signature
from shared.crypto.vault import Vault
from shared.mongo import Index, insert_new, insert_one_new

RECORDS = "records"
SIGNATURES = "signatures"
BATCHES = "batches"

# Look-ups go by `_id` or by equality on one indexed field (`scope`, `class_scope`, `role_scope`):
# the forms every MongoDB-wire server serves from an index (the embedded one scans for others).
INDEXES = [
    Index(RECORDS, [("record_id", 1), ("version", 1)], unique=True, name="record_version_unique"),
    Index(RECORDS, [("scope", 1)], name="scope"),
    Index(RECORDS, [("class_scope", 1)], name="class_scope"),
    Index(
        SIGNATURES, [("record_id", 1), ("version", 1), ("role", 1)], unique=True, name="record_version_role_unique"
    ),
    Index(SIGNATURES, [("role_scope", 1)], name="role_scope"),
]


def scope_key(school_code: str, school_year: str, *more: str) -> str:
    """One field that names a school year (and a class, or a role): what plans select by."""
    return "|".join((school_code, school_year, *more))


class SigningRepository(Protocol):
    async def add_records(self, records: list[StoredRecord]) -> int:
        """Store record versions not stored before; returns how many were new."""

    async def records(self, keys: Iterable[VersionKey]) -> dict[VersionKey, StoredRecord]:
        """The stored versions among `keys`."""

    async def unsigned(
        self, school_code: str, school_year: str, role: Role, class_name: str | None = None, after: Role | None = None
    ) -> tuple[list[VersionKey], int]:
        """Keys of the school year's (or class's) record versions that lack `role`'s signature.

        With `after`, only those that carry `after`'s signature; the second value counts the
        others, which wait for `after` to sign first.
        """

    async def add_signatures(self, signatures: list[tuple[Signature, str, str]]) -> int:
        """Store (signature, school_code, school_year) rows whose (record, version, role) is new."""

    async def signatures(self, keys: Iterable[VersionKey]) -> dict[VersionKey, dict[Role, Signature]]:
        """The stored signatures of `keys`, by role."""

    async def add_batch(self, batch: Batch) -> bool:
        """Store a new batch with its plan; False when the batch id exists."""

    async def batch(self, batch_id: str) -> Batch | None: ...

    async def count_chunk(self, batch_id: str, chunk_no: int, signed: int, completed: int = 0) -> Batch | None:
        """Count a chunk once, atomically; the updated batch, or None if counted before (or unknown)."""

    async def close_batch(self, batch_id: str, completed_at: datetime) -> bool:
        """Mark an open batch completed; True only for the one call that did."""


def record_id(key: VersionKey) -> str:
    return f"{key[0]}:{key[1]}"


def split_ready(unsigned: Iterable[VersionKey], signed_before: set[VersionKey] | None) -> tuple[list[VersionKey], int]:
    """(the keys whose earlier role has signed, sorted; how many others wait for it)."""
    keys = sorted(set(unsigned))
    if signed_before is None:
        return keys, 0
    ready = [k for k in keys if k in signed_before]
    return ready, len(keys) - len(ready)


def batch_document(batch: Batch) -> dict[str, Any]:
    return {
        "_id": batch.batch_id,
        "school_code": batch.school_code,
        "school_year": batch.school_year,
        "role": batch.role,
        "chunks": [[[rid, version] for rid, version in chunk] for chunk in batch.chunks],
        "chunks_total": batch.chunks_total,
        "records_total": batch.records_total,
        "started_at": batch.started_at,
        "status": batch.status,
        "done_chunks": sorted(batch.done_chunks),
        "records_signed": batch.records_signed,
        "records_completed": batch.records_completed,
        "records_waiting": batch.records_waiting,
        "signer": batch.signer,
        "class_name": batch.class_name,
        "closed": {"at": batch.completed_at},
        "requested_by": batch.requested_by.model_dump() if batch.requested_by is not None else None,
    }


def batch_from_document(doc: dict[str, Any]) -> Batch:
    return Batch(
        batch_id=doc["_id"],
        school_code=doc["school_code"],
        school_year=doc["school_year"],
        role=doc["role"],
        chunks=tuple(tuple((rid, int(version)) for rid, version in chunk) for chunk in doc["chunks"]),
        started_at=doc["started_at"],
        status=doc["status"],
        done_chunks=frozenset(doc.get("done_chunks", [])),
        records_signed=doc.get("records_signed", 0),
        completed_at=(doc.get("closed") or {}).get("at"),
        signer=doc.get("signer", ""),
        class_name=doc.get("class_name"),
        records_completed=doc.get("records_completed", 0),
        records_waiting=doc.get("records_waiting", 0),
        requested_by=Acting.model_validate(doc["requested_by"]) if doc.get("requested_by") else None,
    )


class MongoSigningRepository:
    def __init__(self, db: AsyncDatabase, vault: Vault) -> None:
        self.record_rows = db[RECORDS]
        self.signature_rows = db[SIGNATURES]
        self.batch_rows = db[BATCHES]
        #: The record documents, sealed under signing's key ring; what a key rotation re-encrypts.
        self.sealed = sealed_records(self.record_rows, vault)

    async def add_records(self, records: list[StoredRecord]) -> int:
        return await insert_new(
            self.record_rows,
            [
                {
                    "_id": record_id(r.key),
                    **r.record.model_dump(mode="json", exclude={"document"}),
                    **self.sealed.sealed(owner_of(r.key), r.record.document),
                    "digest": r.digest,
                    "class_name": r.class_name,
                    "scope": scope_key(*r.scope),
                    "class_scope": scope_key(*r.scope, r.class_name or ""),
                }
                for r in records
            ],
        )

    async def records(self, keys: Iterable[VersionKey]) -> dict[VersionKey, StoredRecord]:
        wanted = set(keys)
        found: dict[VersionKey, StoredRecord] = {}
        async for doc in self.record_rows.find({"_id": {"$in": [record_id(k) for k in sorted(wanted)]}}, {"_id": 0}):
            key = (doc["record_id"], doc["version"])
            if key in wanted:
                record = RecordVersion.model_validate({**doc, "document": self.sealed.opened(doc)})
                found[key] = StoredRecord(record, doc["digest"])
        return found

    async def unsigned(
        self, school_code: str, school_year: str, role: Role, class_name: str | None = None, after: Role | None = None
    ) -> tuple[list[VersionKey], int]:
        projection = {"_id": 0, "record_id": 1, "version": 1, "role": 1}
        roles = [role] if after is None else [role, after]
        in_scope = (
            {"class_scope": scope_key(school_code, school_year, class_name)}
            if class_name
            else {"scope": scope_key(school_code, school_year)}
        )
        keys = [(d["record_id"], d["version"]) async for d in self.record_rows.find(in_scope, projection)]
        signed: dict[Role, set[VersionKey]] = {r: set() for r in roles}
        if class_name:  # a class: its few records' signatures by id
            ids = [f"{record_id(k)}:{r}" for k in keys for r in roles]
            query: list[dict[str, Any]] = [{"_id": {"$in": ids}}] if ids else []
        else:  # a school: every signature of the role
            query = [{"role_scope": scope_key(school_code, school_year, r)} for r in roles]
        for q in query:
            async for d in self.signature_rows.find(q, projection):
                signed[d["role"]].add((d["record_id"], d["version"]))
        unsigned = [key for key in keys if key not in signed[role]]
        return split_ready(unsigned, signed[after] if after is not None else None)

    async def add_signatures(self, signatures: list[tuple[Signature, str, str]]) -> int:
        return await insert_new(
            self.signature_rows,
            [
                {
                    "_id": f"{record_id((s.record_id, s.version))}:{s.role}",
                    **s.model_dump(),
                    "school_code": school_code,
                    "school_year": school_year,
                    "role_scope": scope_key(school_code, school_year, s.role),
                }
                for s, school_code, school_year in signatures
            ],
        )

    async def signatures(self, keys: Iterable[VersionKey]) -> dict[VersionKey, dict[Role, Signature]]:
        wanted = set(keys)
        ids = [f"{record_id(k)}:{role}" for k in sorted(wanted) for role in SIGNING_ORDER]
        found: dict[VersionKey, dict[Role, Signature]] = {}
        async for doc in self.signature_rows.find({"_id": {"$in": ids}}):
            key = (doc["record_id"], doc["version"])
            if key in wanted:
                found.setdefault(key, {})[doc["role"]] = Signature.model_validate(doc)
        return found

    async def add_batch(self, batch: Batch) -> bool:
        return await insert_one_new(self.batch_rows, batch_document(batch))

    async def batch(self, batch_id: str) -> Batch | None:
        doc = await self.batch_rows.find_one({"_id": batch_id})
        return batch_from_document(doc) if doc else None

    async def count_chunk(self, batch_id: str, chunk_no: int, signed: int, completed: int = 0) -> Batch | None:
        # `$nin` rather than `$ne`: both mean "not among the array's elements" on MongoDB, and the
        # embedded server honours only `$nin` in an update filter.
        doc = await self.batch_rows.find_one_and_update(
            {"_id": batch_id, "done_chunks": {"$nin": [chunk_no]}},
            {"$push": {"done_chunks": chunk_no}, "$inc": {"records_signed": signed, "records_completed": completed}},
            return_document=ReturnDocument.AFTER,
        )
        return batch_from_document(doc) if doc else None

    async def close_batch(self, batch_id: str, completed_at: datetime) -> bool:
        # The time sits in a subdocument: the embedded server stores a date `$set` on a top-level
        # field as a string, but keeps dates inside subdocuments.
        result = await self.batch_rows.update_one(
            {"_id": batch_id, "status": OPEN}, {"$set": {"status": COMPLETED, "closed": {"at": completed_at}}}
        )
        return result.modified_count == 1


class InMemorySigningRepository:
    """For unit and wiring tests: same behaviour, no database."""

    def __init__(self) -> None:
        self.stored: dict[VersionKey, StoredRecord] = {}
        self.signed: dict[tuple[str, int, Role], tuple[Signature, str, str]] = {}
        self.batches: dict[str, Batch] = {}

    async def add_records(self, records: list[StoredRecord]) -> int:
        added = 0
        for record in records:
            if record.key not in self.stored:
                self.stored[record.key] = record
                added += 1
        return added

    async def records(self, keys: Iterable[VersionKey]) -> dict[VersionKey, StoredRecord]:
        return {k: self.stored[k] for k in set(keys) if k in self.stored}

    async def unsigned(
        self, school_code: str, school_year: str, role: Role, class_name: str | None = None, after: Role | None = None
    ) -> tuple[list[VersionKey], int]:
        unsigned = [
            key
            for key, r in self.stored.items()
            if r.scope == (school_code, school_year)
            and (class_name is None or r.class_name == class_name)
            and (*key, role) not in self.signed
        ]
        ready = {(rid, v) for rid, v, r in self.signed if r == after} if after is not None else None
        return split_ready(unsigned, ready)

    async def add_signatures(self, signatures: list[tuple[Signature, str, str]]) -> int:
        added = 0
        for row in signatures:
            s = row[0]
            if (s.record_id, s.version, s.role) not in self.signed:
                self.signed[(s.record_id, s.version, s.role)] = row
                added += 1
        return added

    async def signatures(self, keys: Iterable[VersionKey]) -> dict[VersionKey, dict[Role, Signature]]:
        wanted = set(keys)
        found: dict[VersionKey, dict[Role, Signature]] = {}
        for (rid, version, role), (s, _, _) in self.signed.items():
            if (rid, version) in wanted:
                found.setdefault((rid, version), {})[role] = s
        return found

    async def add_batch(self, batch: Batch) -> bool:
        if batch.batch_id in self.batches:
            return False
        self.batches[batch.batch_id] = batch
        return True

    async def batch(self, batch_id: str) -> Batch | None:
        return self.batches.get(batch_id)

    async def count_chunk(self, batch_id: str, chunk_no: int, signed: int, completed: int = 0) -> Batch | None:
        batch = self.batches.get(batch_id)
        if batch is None or chunk_no in batch.done_chunks:
            return None
        self.batches[batch_id] = batch.counted(chunk_no, signed, completed)
        return self.batches[batch_id]

    async def close_batch(self, batch_id: str, completed_at: datetime) -> bool:
        batch = self.batches.get(batch_id)
        if batch is None or batch.status != OPEN:
            return False
        self.batches[batch_id] = replace(batch, status=COMPLETED, completed_at=completed_at)
        return True
