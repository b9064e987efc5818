"""signing's `records`, `signatures`, `batches` and `reviews` collections: a Protocol, MongoDB and in-memory."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from services.signing.domain import (
    COMPLETED,
    COMPLETING_ROLE,
    OPEN,
    REFUSED,
    Batch,
    Held,
    Owed,
    Review,
    StoredRecord,
    latest_reviews,
    missing_entries,
)
from shared.at_rest import owner_of, sealed_records
from shared.contracts.base import Acting
from shared.contracts.grades import VersionKey
from shared.contracts.record import RecordDocument, document_of
from shared.contracts.signing import SIGNING_ORDER, ClassWaiting, MissingEntry, RecordRefused, Role, Signature
from shared.crypto.canonical import canonical_json
from shared.crypto.vault import Vault
from shared.mongo import Index, insert_new, insert_one_new

RECORDS = "records"
SIGNATURES = "signatures"
BATCHES = "batches"
#: The homeroom teachers' confirmations of their classes' reviews: insert-only, a few a class and year.
REVIEWS = "reviews"

# Look-ups go by `_id` or by equality on one indexed field (`scope`, `class_scope`, `role_scope`):
# the forms every MongoDB-wire server serves from an index (the embedded one scans for others).
#
# The signature that completes a record version (`domain.COMPLETING_ROLE`'s) is stored with
# `unannounced_ts` (when it was made, in seconds) and the `batch_id` whose work made it, in the same
# insert as the signature itself; once the completed version is announced to the archive, the mark is
# set to none. A crash (or a chunk dead-lettered) between the two leaves the version found by one index
# range with a limit (`unannounced`), however many signatures are held, and announced again.
INDEXES = [
    Index(RECORDS, [("record_id", 1), ("version", 1)], unique=True, name="record_version_unique"),
    Index(RECORDS, [("scope", 1)], name="scope"),
    Index(RECORDS, [("class_scope", 1)], name="class_scope"),
    Index(
        SIGNATURES, [("record_id", 1), ("version", 1), ("role", 1)], unique=True, name="record_version_role_unique"
    ),
    Index(SIGNATURES, [("role_scope", 1)], name="role_scope"),
    Index(SIGNATURES, [("unannounced_ts", 1)], name="unannounced"),
    # The open batches (a few at a time, whatever the history): what the re-driving loop and a second click look at.
    Index(BATCHES, [("status", 1)], name="status"),
    # A school year's confirmations, a class's latest first: one index for both reads (a school's, a class's).
    Index(
        REVIEWS,
        [("school_code", 1), ("school_year", 1), ("class_name", 1), ("confirmed_at", -1)],
        name="class_latest",
    ),
]


def scope_key(school_code: str, school_year: str, *more: str) -> str:
    """One field that names a school year (and a class, or a role): what plans select by."""
    return "|".join((school_code, school_year, *more))


class SigningRepository(Protocol):
    async def add_records(self, records: list[StoredRecord]) -> int:
        """Store record versions not stored before; returns how many were new."""

    async def records(self, keys: Iterable[VersionKey]) -> dict[VersionKey, StoredRecord]:
        """The stored versions among `keys`."""

    async def replace_record(self, kept: StoredRecord, record: StoredRecord) -> bool:
        """Put `record` in the place of the version `kept`, as long as that version is still kept as it was; False
        when it is not (another delivery replaced it first). Whether it may be replaced is `domain.replacement_refusal`."""

    async def unsigned(
        self, school_code: str, school_year: str, role: Role, class_name: str | None = None, after: Role | None = None
    ) -> tuple[list[VersionKey], int]:
        """Keys of the school year's (or class's) record versions that lack `role`'s signature.

        With `after`, only those that carry `after`'s signature; the second value counts the
        others, which wait for `after` to sign first.
        """

    async def add_signatures(self, signatures: list[tuple[Signature, str, str]], batch_id: str | None = None) -> int:
        """Store (signature, school_code, school_year) rows whose (record, version, role) is new.

        A signature of `domain.COMPLETING_ROLE` completes its version: it is stored owed to the archive, by the work
        of `batch_id`, in the same write, until `announced`.
        """

    async def unannounced(self, before: datetime, limit: int) -> list[Owed]:
        """Up to `limit` versions completed by signatures made before `before` and not announced since, oldest first
        (one index range with a limit, however many signatures are held)."""

    async def announced(self, keys: Iterable[VersionKey]) -> None:
        """Keep that the completed versions `keys` were announced to the archive."""

    async def signatures(self, keys: Iterable[VersionKey]) -> dict[VersionKey, dict[Role, Signature]]:
        """The stored signatures of `keys`, by role."""

    async def signed_by(
        self, role: Role, school_code: str, school_year: str, keys: Iterable[VersionKey]
    ) -> set[VersionKey]:
        """Those of `keys` (record versions of the school year) that carry `role`'s signature, in one read."""

    async def add_batch(self, batch: Batch) -> bool:
        """Store a new batch with its plan; False when the batch id exists."""

    async def batch(self, batch_id: str, plan: bool = True) -> Batch | None:
        """The batch; without its plan (`chunks` empty, the totals kept) unless `plan`."""

    async def count_chunk(
        self, batch_id: str, chunk_no: int, signed: int, completed: int = 0, at: datetime | None = None
    ) -> Batch | None:
        """Count chunk `chunk_no` of the batch's plan once, atomically; the updated batch without its plan. `at` is
        when: the batch has moved then (`Batch.progressed_at`).

        None when the chunk was counted before, or is not one of the batch's, or the batch is unknown.
        """

    async def open_batches(self) -> list[Batch]:
        """Every open batch, without its plan (one index read: a few at a time, however many have been)."""

    async def refuse_batch(self, batch_id: str) -> bool:
        """Mark an open batch refused (`domain.REFUSED`); True only for the one call that did."""

    async def moved(self, batch_id: str, before: datetime | None, at: datetime) -> bool:
        """Keep that the open batch moved `at` (its unfinished chunks published again), as long as it had not moved
        since `before` (None: whenever it last did); False when another process moved it first, or it is closed."""

    async def completed_not_known_announced(self, school_code: str, school_year: str) -> list[VersionKey]:
        """The school year's versions signed by every role that are not known to have been announced to the
        archive: owed one (`unannounced`), or completed before that was kept (nothing says either way)."""

    async def owe_again(self, keys: Iterable[VersionKey]) -> None:
        """Owe the completed versions `keys` an announcement now: `unannounced` finds them first."""

    async def hold_back(self, batch_id: str, chunk_no: int, classes: tuple[ClassWaiting, ...]) -> None:
        """Keep the classes whose records chunk `chunk_no` left unsigned, for the batch's end to name (once a chunk)."""

    async def close_batch(self, batch_id: str, completed_at: datetime) -> bool:
        """Mark an open batch completed; True only for the one call that did."""

    async def held(self, school_code: str, school_year: str, class_name: str | None = None) -> list[Held]:
        """Every record version of the school year (or class) held, without its bytes."""

    async def add_review(self, review: Review) -> bool:
        """Keep a confirmation of a class's review; False when its id is kept already."""

    async def reviews(self, school_code: str, school_year: str, class_name: str | None = None) -> list[Review]:
        """The confirmations of the school year's classes (or one class's), latest first within a class."""

    async def review(self, review_id: str) -> Review | None:
        """One confirmation, by its id."""

    async def latest_reviews(self, school_code: str, school_year: str, class_names: Iterable[str]) -> dict[str, Review]:
        """Each of the classes' latest confirmed review, by class name, in one read (`domain.latest_reviews`)."""


#: Up to this many record versions, a read of their signatures asks for them by id (a class's); more, by the school
#: year's role (a school's).
BY_ID = 200

#: What a read of record versions returns: the fields of a `StoredRecord`, and the sealed bytes with their key id.
RECORD_FIELDS = {"_id": 0, "scope": 0, "class_scope": 0}


def stored_record(doc: dict[str, Any], canonical: bytes) -> StoredRecord:
    complete, missing = completeness(doc, canonical)
    return StoredRecord(
        record_id=doc["record_id"],
        version=doc["version"],
        school_code=doc["school_code"],
        school_year=doc["school_year"],
        student_ref=doc["student_ref"],
        seal=doc.get("seal"),
        class_name=doc.get("class_name"),
        canonical=canonical,
        digest=doc["digest"],
        complete=complete,
        missing=missing,
    )


def completeness(doc: dict[str, Any], canonical: bytes) -> tuple[bool, tuple[MissingEntry, ...]]:
    """Whether the version is complete, and what it lacks: as kept beside the bytes, or (a row an earlier
    release stored without them) as the bytes say."""
    if "complete" in doc:
        return bool(doc["complete"]), tuple(MissingEntry.model_validate(m) for m in doc.get("missing") or ())
    fields = RecordDocument.model_validate(document_of(canonical))
    return fields.complete, missing_entries(fields.missing)


def held_version(doc: dict[str, Any]) -> Held:
    return Held(
        record_id=doc["record_id"],
        version=doc["version"],
        class_name=doc.get("class_name"),
        digest=doc["digest"],
        complete=bool(doc["complete"]),
        missing=tuple(MissingEntry.model_validate(m) for m in doc.get("missing") or ()),
    )


def review_document(review: Review) -> dict[str, Any]:
    """A confirmation as MongoDB keeps it: digests as 32-byte binaries, the time as a date."""
    return {
        "_id": review.review_id,
        "school_code": review.school_code,
        "school_year": review.school_year,
        "class_name": review.class_name,
        "confirmed_at": review.confirmed_at,
        "confirmed_by": review.confirmed_by.model_dump(),
        "records": [
            {"record_id": rid, "version": version, "digest": bytes.fromhex(digest)}
            for rid, version, digest in review.records
        ],
        "fingerprint": bytes.fromhex(review.fingerprint),
    }


def review_from_document(doc: dict[str, Any]) -> Review:
    return Review(
        review_id=doc["_id"],
        school_code=doc["school_code"],
        school_year=doc["school_year"],
        class_name=doc["class_name"],
        records=tuple((r["record_id"], int(r["version"]), bytes(r["digest"]).hex()) for r in doc["records"]),
        confirmed_by=Acting.model_validate(doc["confirmed_by"]),
        confirmed_at=doc["confirmed_at"],
    )


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
        # When the batch last moved, in seconds (a number every MongoDB-wire server keeps and compares alike).
        "progress_ts": batch.last_progress.timestamp(),
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
        "refused": [r.model_dump() for r in batch.refused],
        "classes_waiting": [c.model_dump() for c in batch.classes_waiting],
        "held_back": {str(n): [c.model_dump() for c in classes] for n, classes in batch.held_back.items()},
    }


#: What a read of a batch without its plan leaves out.
WITHOUT_PLAN = {"chunks": 0}


def batch_from_document(doc: dict[str, Any]) -> Batch:
    return Batch(
        batch_id=doc["_id"],
        school_code=doc["school_code"],
        school_year=doc["school_year"],
        role=doc["role"],
        chunks=tuple(tuple((rid, int(version)) for rid, version in chunk) for chunk in doc.get("chunks", ())),
        started_at=doc["started_at"],
        chunks_total=doc["chunks_total"],
        records_total=doc["records_total"],
        status=doc["status"],
        done_chunks=frozenset(doc.get("done_chunks", [])),
        records_signed=doc.get("records_signed", 0),
        completed_at=(doc.get("closed") or {}).get("at"),
        signer=doc.get("signer", ""),
        class_name=doc.get("class_name"),
        records_completed=doc.get("records_completed", 0),
        records_waiting=doc.get("records_waiting", 0),
        requested_by=Acting.model_validate(doc["requested_by"]) if doc.get("requested_by") else None,
        refused=tuple(RecordRefused.model_validate(r) for r in doc.get("refused") or ()),
        classes_waiting=tuple(ClassWaiting.model_validate(c) for c in doc.get("classes_waiting") or ()),
        held_back={
            int(n): tuple(ClassWaiting.model_validate(c) for c in classes)
            for n, classes in (doc.get("held_back") or {}).items()
        },
        progressed_at=datetime.fromtimestamp(doc["progress_ts"], UTC) if doc.get("progress_ts") is not None else None,
    )


def owed_fields(signature: Signature, batch_id: str | None) -> dict[str, Any]:
    """What marks a completing signature's version owed to the archive: when the signature was made (seconds, a
    number every MongoDB-wire server keeps and ranges over alike), and the batch whose work made it."""
    return {"unannounced_ts": signature.signed_at.timestamp(), "batch_id": batch_id}


class MongoSigningRepository:
    def __init__(self, db: AsyncDatabase, vault: Vault) -> None:
        self.record_rows = db[RECORDS]
        self.signature_rows = db[SIGNATURES]
        self.batch_rows = db[BATCHES]
        self.review_rows = db[REVIEWS]
        #: The record documents' canonical bytes, sealed under signing's key ring; what a key rotation re-encrypts.
        self.sealed = sealed_records(self.record_rows, vault, encode=canonical_json)

    async def add_records(self, records: list[StoredRecord]) -> int:
        return await insert_new(self.record_rows, [self._row(r) for r in records])

    async def replace_record(self, kept: StoredRecord, record: StoredRecord) -> bool:
        kept_as_it_was = {"_id": record_id(kept.key), "digest": kept.digest}
        # Field by field ($set): the embedded server takes no whole-document replacement carrying bytes.
        row = {name: value for name, value in self._row(record).items() if name != "_id"}
        found = await self.record_rows.update_one(kept_as_it_was, {"$set": row})
        return found.matched_count == 1

    def _row(self, r: StoredRecord) -> dict[str, Any]:
        return {
            "_id": record_id(r.key),
            "record_id": r.record_id,
            "version": r.version,
            "school_code": r.school_code,
            "school_year": r.school_year,
            "student_ref": r.student_ref,
            "seal": r.seal,
            **self.sealed.sealed_bytes(owner_of(r.key), r.canonical),
            "digest": r.digest,
            "class_name": r.class_name,
            # Names of what the document lacks (a subject and term), no values: a plan reads them unopened.
            "complete": r.complete,
            "missing": [m.model_dump() for m in r.missing],
            "scope": scope_key(*r.scope),
            "class_scope": scope_key(*r.scope, r.class_name or ""),
        }

    async def records(self, keys: Iterable[VersionKey]) -> dict[VersionKey, StoredRecord]:
        """One read for all of `keys`, in one reply (however many there are); the bytes opened, never parsed."""
        wanted = set(keys)
        if not wanted:
            return {}
        found: dict[VersionKey, StoredRecord] = {}
        ids = [record_id(k) for k in sorted(wanted)]
        # One more than can match: the first reply holds them all, and says the cursor is done (a server
        # whose reply is exactly full may leave the cursor open and cost another round trip to find it empty).
        async for doc in self.record_rows.find({"_id": {"$in": ids}}, RECORD_FIELDS, batch_size=len(ids) + 1):
            key = (doc["record_id"], doc["version"])
            if key in wanted:
                found[key] = stored_record(doc, self.sealed.opened_bytes(doc))
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

    async def add_signatures(self, signatures: list[tuple[Signature, str, str]], batch_id: str | None = None) -> int:
        return await insert_new(
            self.signature_rows,
            [
                {
                    "_id": f"{record_id((s.record_id, s.version))}:{s.role}",
                    **s.model_dump(),
                    "school_code": school_code,
                    "school_year": school_year,
                    "role_scope": scope_key(school_code, school_year, s.role),
                    **(owed_fields(s, batch_id) if s.role == COMPLETING_ROLE else {}),
                }
                for s, school_code, school_year in signatures
            ],
        )

    async def unannounced(self, before: datetime, limit: int) -> list[Owed]:
        projection = {"_id": 0, "record_id": 1, "version": 1, "batch_id": 1}
        found = self.signature_rows.find({"unannounced_ts": {"$lte": before.timestamp()}}, projection)
        cursor = found.sort("unannounced_ts", 1).limit(limit).batch_size(limit + 1)  # one reply, as below
        return [Owed((doc["record_id"], doc["version"]), doc.get("batch_id")) async for doc in cursor]

    async def announced(self, keys: Iterable[VersionKey]) -> None:
        ids = sorted({f"{record_id(k)}:{COMPLETING_ROLE}" for k in keys})
        if ids:
            await self.signature_rows.update_many({"_id": {"$in": ids}}, {"$set": {"unannounced_ts": None}})

    async def signatures(self, keys: Iterable[VersionKey]) -> dict[VersionKey, dict[Role, Signature]]:
        wanted = set(keys)
        ids = [f"{record_id(k)}:{role}" for k in sorted(wanted) for role in SIGNING_ORDER]
        found: dict[VersionKey, dict[Role, Signature]] = {}
        if not ids:
            return found
        async for doc in self.signature_rows.find({"_id": {"$in": ids}}, batch_size=len(ids) + 1):  # one reply, as above
            key = (doc["record_id"], doc["version"])
            if key in wanted:
                found.setdefault(key, {})[doc["role"]] = Signature.model_validate(doc)
        return found

    async def signed_by(
        self, role: Role, school_code: str, school_year: str, keys: Iterable[VersionKey]
    ) -> set[VersionKey]:
        wanted = set(keys)
        if not wanted:
            return set()
        # A class's few versions by id; a school's by the role's scope (one index read, not thousands of ids).
        query = (
            {"_id": {"$in": [f"{record_id(k)}:{role}" for k in sorted(wanted)]}}
            if len(wanted) <= BY_ID
            else {"role_scope": scope_key(school_code, school_year, role)}
        )
        projection = {"_id": 0, "record_id": 1, "version": 1}
        found = {(d["record_id"], d["version"]) async for d in self.signature_rows.find(query, projection)}
        return found & wanted

    async def add_batch(self, batch: Batch) -> bool:
        return await insert_one_new(self.batch_rows, batch_document(batch))

    async def batch(self, batch_id: str, plan: bool = True) -> Batch | None:
        doc = await self.batch_rows.find_one({"_id": batch_id}, None if plan else WITHOUT_PLAN)
        return batch_from_document(doc) if doc else None

    async def count_chunk(
        self, batch_id: str, chunk_no: int, signed: int, completed: int = 0, at: datetime | None = None
    ) -> Batch | None:
        # `$nin` rather than `$ne`: both mean "not among the array's elements" on MongoDB, and the
        # embedded server honours only `$nin` in an update filter.
        update: dict[str, Any] = {
            "$push": {"done_chunks": chunk_no},
            "$inc": {"records_signed": signed, "records_completed": completed},
        }
        if at is not None:
            update["$set"] = {"progress_ts": at.timestamp()}
        doc = await self.batch_rows.find_one_and_update(
            {"_id": batch_id, "done_chunks": {"$nin": [chunk_no]}, "chunks_total": {"$gt": chunk_no}},
            update,
            projection=WITHOUT_PLAN,
            return_document=ReturnDocument.AFTER,
        )
        return batch_from_document(doc) if doc else None

    async def open_batches(self) -> list[Batch]:
        return [batch_from_document(doc) async for doc in self.batch_rows.find({"status": OPEN}, WITHOUT_PLAN)]

    async def refuse_batch(self, batch_id: str) -> bool:
        result = await self.batch_rows.update_one({"_id": batch_id, "status": OPEN}, {"$set": {"status": REFUSED}})
        return result.modified_count == 1

    async def moved(self, batch_id: str, before: datetime | None, at: datetime) -> bool:
        unmoved: dict[str, Any] = {"_id": batch_id, "status": OPEN}
        if before is not None:
            unmoved["progress_ts"] = {"$lte": before.timestamp()}
        found = await self.batch_rows.update_one(unmoved, {"$set": {"progress_ts": at.timestamp()}})
        return found.modified_count == 1

    async def completed_not_known_announced(self, school_code: str, school_year: str) -> list[VersionKey]:
        # One index read of the completing role's signatures of the school year; a version announced has the mark
        # set to none, one owed has it set, one completed before the mark was kept has none at all.
        in_scope = {"role_scope": scope_key(school_code, school_year, COMPLETING_ROLE)}
        projection = {"_id": 0, "record_id": 1, "version": 1, "unannounced_ts": 1}
        found = [
            (doc["record_id"], doc["version"])
            async for doc in self.signature_rows.find(in_scope, projection)
            if doc.get("unannounced_ts", NOT_KEPT) is not None
        ]
        return sorted(found)

    async def owe_again(self, keys: Iterable[VersionKey]) -> None:
        ids = sorted({f"{record_id(k)}:{COMPLETING_ROLE}" for k in keys})
        for start in range(0, len(ids), OWED_PER_WRITE):
            chosen = ids[start : start + OWED_PER_WRITE]
            await self.signature_rows.update_many({"_id": {"$in": chosen}}, {"$set": {"unannounced_ts": OWED_FIRST}})

    async def hold_back(self, batch_id: str, chunk_no: int, classes: tuple[ClassWaiting, ...]) -> None:
        held = {f"held_back.{chunk_no}": [c.model_dump() for c in classes]}
        await self.batch_rows.update_one({"_id": batch_id}, {"$set": held})

    async def close_batch(self, batch_id: str, completed_at: datetime) -> bool:
        # The time sits in a subdocument: the embedded server stores a date `$set` on a top-level
        # field as a string, but keeps dates inside subdocuments.
        result = await self.batch_rows.update_one(
            {"_id": batch_id, "status": OPEN}, {"$set": {"status": COMPLETED, "closed": {"at": completed_at}}}
        )
        return result.modified_count == 1

    async def held(self, school_code: str, school_year: str, class_name: str | None = None) -> list[Held]:
        projection = {"_id": 0, "record_id": 1, "version": 1, "class_name": 1, "digest": 1, "complete": 1, "missing": 1}
        in_scope = (
            {"class_scope": scope_key(school_code, school_year, class_name)}
            if class_name
            else {"scope": scope_key(school_code, school_year)}
        )
        rows = [doc async for doc in self.record_rows.find(in_scope, projection)]
        # Rows an earlier release stored say nothing of completeness: their documents do.
        unsaid = await self.records((d["record_id"], d["version"]) for d in rows if "complete" not in d)
        return [held_version(d) if "complete" in d else unsaid[(d["record_id"], d["version"])].held() for d in rows]

    async def add_review(self, review: Review) -> bool:
        return await insert_one_new(self.review_rows, review_document(review))

    async def reviews(self, school_code: str, school_year: str, class_name: str | None = None) -> list[Review]:
        wanted: dict[str, Any] = {"school_code": school_code, "school_year": school_year}
        if class_name:
            wanted["class_name"] = class_name
        cursor = self.review_rows.find(wanted).sort([("class_name", 1), ("confirmed_at", -1)])
        return [review_from_document(doc) async for doc in cursor]

    async def review(self, review_id: str) -> Review | None:
        doc = await self.review_rows.find_one({"_id": review_id})
        return review_from_document(doc) if doc else None

    async def latest_reviews(self, school_code: str, school_year: str, class_names: Iterable[str]) -> dict[str, Review]:
        wanted = sorted(set(class_names))
        if not wanted:
            return {}
        # A few confirmations a class and year: the chunk's classes' all come in one read, the latest kept.
        query = {"school_code": school_code, "school_year": school_year, "class_name": {"$in": wanted}}
        return latest_reviews([review_from_document(doc) async for doc in self.review_rows.find(query)])


#: What a completing signature stored before announcements were kept has instead of a mark.
NOT_KEPT = object()
#: The mark of a version owed again by hand (a second click): older than any signature, so announced first.
OWED_FIRST = 0.0
#: Versions owed again per write.
OWED_PER_WRITE = 1000


class InMemorySigningRepository:
    """For unit and wiring tests: same behaviour, no database."""

    def __init__(self) -> None:
        self.stored: dict[VersionKey, StoredRecord] = {}
        self.signed: dict[tuple[str, int, Role], tuple[Signature, str, str]] = {}
        self.batches: dict[str, Batch] = {}
        self.confirmed: dict[str, Review] = {}
        #: Versions completed and not announced yet: when their completing signature was made, and by which batch.
        self.owed: dict[VersionKey, tuple[datetime, str | None]] = {}
        #: Versions completed and announced.
        self.told: set[VersionKey] = set()

    async def add_records(self, records: list[StoredRecord]) -> int:
        added = 0
        for record in records:
            if record.key not in self.stored:
                self.stored[record.key] = record
                added += 1
        return added

    async def records(self, keys: Iterable[VersionKey]) -> dict[VersionKey, StoredRecord]:
        return {k: self.stored[k] for k in set(keys) if k in self.stored}

    async def replace_record(self, kept: StoredRecord, record: StoredRecord) -> bool:
        current = self.stored.get(kept.key)
        if current is None or current.digest != kept.digest:
            return False
        self.stored[kept.key] = record
        return True

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

    async def add_signatures(self, signatures: list[tuple[Signature, str, str]], batch_id: str | None = None) -> int:
        added = 0
        for row in signatures:
            s = row[0]
            if (s.record_id, s.version, s.role) not in self.signed:
                self.signed[(s.record_id, s.version, s.role)] = row
                if s.role == COMPLETING_ROLE:
                    self.owed[(s.record_id, s.version)] = (s.signed_at, batch_id)
                added += 1
        return added

    async def unannounced(self, before: datetime, limit: int) -> list[Owed]:
        oldest = sorted((at, key) for key, (at, _) in self.owed.items() if at <= before)
        return [Owed(key, self.owed[key][1]) for _, key in oldest[:limit]]

    async def announced(self, keys: Iterable[VersionKey]) -> None:
        for key in keys:
            self.owed.pop(key, None)
            self.told.add(key)

    async def completed_not_known_announced(self, school_code: str, school_year: str) -> list[VersionKey]:
        return sorted(
            (rid, v)
            for (rid, v, role), (_, code, year) in self.signed.items()
            if role == COMPLETING_ROLE and (code, year) == (school_code, school_year) and (rid, v) not in self.told
        )

    async def owe_again(self, keys: Iterable[VersionKey]) -> None:
        first = datetime.fromtimestamp(OWED_FIRST, UTC)
        for key in keys:
            self.told.discard(key)
            self.owed[key] = (first, self.owed.get(key, (first, None))[1])

    async def signatures(self, keys: Iterable[VersionKey]) -> dict[VersionKey, dict[Role, Signature]]:
        wanted = set(keys)
        found: dict[VersionKey, dict[Role, Signature]] = {}
        for (rid, version, role), (s, _, _) in self.signed.items():
            if (rid, version) in wanted:
                found.setdefault((rid, version), {})[role] = s
        return found

    async def signed_by(
        self, role: Role, school_code: str, school_year: str, keys: Iterable[VersionKey]
    ) -> set[VersionKey]:
        return {(rid, v) for rid, v, r in self.signed if r == role} & set(keys)

    async def add_batch(self, batch: Batch) -> bool:
        if batch.batch_id in self.batches:
            return False
        self.batches[batch.batch_id] = batch
        return True

    async def batch(self, batch_id: str, plan: bool = True) -> Batch | None:
        batch = self.batches.get(batch_id)
        return batch if batch is None or plan else replace(batch, chunks=())

    async def count_chunk(
        self, batch_id: str, chunk_no: int, signed: int, completed: int = 0, at: datetime | None = None
    ) -> Batch | None:
        batch = self.batches.get(batch_id)
        if batch is None or chunk_no in batch.done_chunks or not 0 <= chunk_no < batch.chunks_total:
            return None
        counted = batch.counted(chunk_no, signed, completed)
        self.batches[batch_id] = replace(counted, progressed_at=at) if at is not None else counted
        return replace(self.batches[batch_id], chunks=())

    async def open_batches(self) -> list[Batch]:
        return [replace(b, chunks=()) for b in self.batches.values() if b.status == OPEN]

    async def refuse_batch(self, batch_id: str) -> bool:
        batch = self.batches.get(batch_id)
        if batch is None or batch.status != OPEN:
            return False
        self.batches[batch_id] = replace(batch, status=REFUSED)
        return True

    async def moved(self, batch_id: str, before: datetime | None, at: datetime) -> bool:
        batch = self.batches.get(batch_id)
        if batch is None or batch.status != OPEN or (before is not None and batch.last_progress > before):
            return False
        self.batches[batch_id] = replace(batch, progressed_at=at)
        return True

    async def hold_back(self, batch_id: str, chunk_no: int, classes: tuple[ClassWaiting, ...]) -> None:
        if batch_id in self.batches:
            self.batches[batch_id] = self.batches[batch_id].holding_back(chunk_no, classes)

    async def close_batch(self, batch_id: str, completed_at: datetime) -> bool:
        batch = self.batches.get(batch_id)
        if batch is None or batch.status != OPEN:
            return False
        self.batches[batch_id] = replace(batch, status=COMPLETED, completed_at=completed_at)
        return True

    async def held(self, school_code: str, school_year: str, class_name: str | None = None) -> list[Held]:
        return [
            r.held()
            for r in self.stored.values()
            if r.scope == (school_code, school_year) and (class_name is None or r.class_name == class_name)
        ]

    async def add_review(self, review: Review) -> bool:
        if review.review_id in self.confirmed:
            return False
        self.confirmed[review.review_id] = review
        return True

    async def reviews(self, school_code: str, school_year: str, class_name: str | None = None) -> list[Review]:
        found = [
            r
            for r in self.confirmed.values()
            if (r.school_code, r.school_year) == (school_code, school_year) and class_name in (None, r.class_name)
        ]
        return sorted(found, key=lambda r: (r.class_name, -r.confirmed_at.timestamp()))

    async def review(self, review_id: str) -> Review | None:
        return self.confirmed.get(review_id)

    async def latest_reviews(self, school_code: str, school_year: str, class_names: Iterable[str]) -> dict[str, Review]:
        wanted = set(class_names)
        return latest_reviews(
            r
            for r in self.confirmed.values()
            if (r.school_code, r.school_year) == (school_code, school_year) and r.class_name in wanted
        )
