"""archive's `log`, `records` and `checkpoints` collections: a Protocol, MongoDB and in-memory. Insert-only.

No code path updates or deletes a stored entry, row or checkpoint: an amendment is a new entry,
and "superseded" is read from the later versions, never written onto the earlier one. The one
rewrite is a data-key rotation's: an entry's document is kept sealed (the RFC 8785 bytes that were
signed, under the archive's key ring), and re-encryption changes the ciphertext, never those bytes. (The archive's
access log, one `AccessEntry` per export or printed copy, is `shared.access`'s store.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from services.archive.domain import ArchivedVersion, Entry
from shared.at_rest import SealedDocuments, owner_of, sealed_records
from shared.contracts.archive import Checkpoint
from shared.contracts.grades import VersionKey
from shared.crypto.canonical import canonical_json
from shared.crypto.fields import DecryptionError
from shared.crypto.vault import Vault
from shared.errors import Unavailable
from shared.mongo import DUPLICATE_KEY, Index, insert_new, insert_one_new

LOG = "log"
RECORDS = "records"
CHECKPOINTS = "checkpoints"
#: Rows a read whose number of matches is not known asks for in its first reply: far more than every archived version
#: of a chunk's records (a record has a few), far fewer than fill a reply's 16 MB with the few fields read.
ONE_REPLY = 100_000

# Look-ups go by `_id` or by equality on one indexed field: the forms every MongoDB-wire server
# serves from an index (the embedded one scans the collection for others).
INDEXES = [
    Index(LOG, [("record_id", 1), ("version", 1)], unique=True, name="record_version_unique"),
    Index(LOG, [("seq", 1)], unique=True, name="seq_unique"),
    Index(LOG, [("record_id", 1)], name="record"),
    Index(RECORDS, [("record_id", 1), ("version", 1)], unique=True, name="record_version_unique"),
    Index(RECORDS, [("record_id", 1)], name="record"),
    Index(RECORDS, [("school_code", 1), ("school_year", 1)], name="school_year"),
    Index(RECORDS, [("batch_id", 1)], name="batch"),
    Index(RECORDS, [("student_ref", 1)], name="student"),
    Index(CHECKPOINTS, [("tree_size", 1)], unique=True, name="tree_size_unique"),
]


@dataclass(frozen=True)
class ArchivedRow:
    """Where a record version sits in the log, with what routing and look-ups need."""

    record_id: str
    version: int
    seq: int
    school_code: str
    school_year: str
    student_ref: str
    archived_at: str
    batch_id: str | None = None
    supersedes: int | None = None
    leaf_hash: str = ""


@dataclass(frozen=True)
class Position:
    """Where a version sits in the log: its leaf index, leaf hash and time of archiving."""

    seq: int
    leaf_hash: str
    archived_at: str


class ArchiveRepository(Protocol):
    async def leaf_hashes(self) -> list[bytes]:
        """Every entry's stored leaf hash in log order: what the in-memory tree is rebuilt from."""

    async def append(self, entries: list[Entry]) -> int:
        """Insert entries in order, stopping at the first whose seq or version is taken.

        Returns how many were inserted; fewer than given means another appender got there first.
        """

    async def positions(self, keys: Iterable[VersionKey]) -> dict[VersionKey, Position]:
        """Where the archived versions among `keys` sit in the log (from their rows: the quick look-up)."""

    async def log_positions(self, keys: Iterable[VersionKey]) -> dict[VersionKey, Position]:
        """The same from the log itself, for versions appended just before a crash left their rows unwritten."""

    async def entry(self, record_id: str, version: int | None = None) -> Entry | None:
        """One archived version (the latest when `version` is None)."""

    async def entries(self, start: int = 0, limit: int = 0) -> list[Entry]:
        """Log entries in seq order from `start` (all of them when limit is 0); one whose document does not
        decrypt comes back `unreadable`, for the audit to name."""

    async def versions(self, record_ids: Iterable[str]) -> dict[str, list[ArchivedVersion]]:
        """The archived versions of each record."""

    async def add_rows(self, rows: list[ArchivedRow]) -> int:
        """Store per-version rows not stored before; returns how many were new."""

    async def count_batch(self, batch_id: str) -> int:
        """How many archived versions a signing batch completed."""

    async def add_checkpoint(self, checkpoint: Checkpoint) -> bool:
        """Store a checkpoint; False when one of that tree size is stored already."""

    async def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, smallest tree first."""

    async def checkpoint(self, tree_size: int | None = None) -> Checkpoint | None:
        """The checkpoint of that tree size (the latest when None), if one was issued."""

    async def schools_of(self, student_ref: str) -> set[str]:
        """The schools whose archived records are of this student."""


def entry_document(entry: Entry, sealed: SealedDocuments) -> dict[str, Any]:
    """The stored form of a log entry: its fields in clear but the document, sealed as the exact bytes signed."""
    # `_id` is what makes a seq taken once; `seq` repeats it for ordering, as the embedded server
    # sorts an integer `_id` as text (10 before 9) but other integer fields as numbers.
    return {
        "_id": entry.seq,
        "seq": entry.seq,
        "record_id": entry.record_id,
        "version": entry.version,
        "school_code": entry.school_code,
        "school_year": entry.school_year,
        "student_ref": entry.student_ref,
        **sealed.sealed_bytes(owner_of(entry.key), entry.content),
        "signatures": list(entry.signatures),
        "archived_at": entry.archived_at,
        "leaf_hash": entry.leaf_hash,
        "batch_id": entry.batch_id,
        "seal": entry.seal,
    }


def entry_from_document(doc: dict[str, Any], sealed: SealedDocuments, audit: bool = False) -> Entry:
    """The entry a stored one holds. Its document must decrypt, but for an audit, which reports the entry that
    does not (`Entry.unreadable`) among the others."""
    try:
        content, unreadable = sealed.opened_bytes(doc), False
    except DecryptionError:
        if not audit:
            raise Unavailable(
                f"{doc['record_id']} v{doc['version']} does not decrypt: run `hocba archive audit`", reason="unreadable"
            ) from None
        content, unreadable = b"", True
    return Entry(
        seq=doc["seq"],
        record_id=doc["record_id"],
        version=doc["version"],
        school_code=doc["school_code"],
        school_year=doc["school_year"],
        student_ref=doc["student_ref"],
        content=content,
        signatures=tuple(doc["signatures"]),
        archived_at=doc["archived_at"],
        leaf_hash=doc["leaf_hash"],
        batch_id=doc.get("batch_id"),
        seal=doc.get("seal"),
        unreadable=unreadable,
    )


def checkpoint_document(checkpoint: Checkpoint) -> dict[str, Any]:
    return {"_id": f"{checkpoint.tree_size:012d}", **checkpoint.model_dump()}


class MongoArchiveRepository:
    def __init__(self, db: AsyncDatabase, vault: Vault) -> None:
        self.log = db[LOG]
        self.rows = db[RECORDS]
        self.checkpoint_rows = db[CHECKPOINTS]
        #: The log entries' documents, sealed under the archive's key ring; what a key rotation re-encrypts.
        self.sealed = sealed_records(self.log, vault, encode=canonical_json)

    async def leaf_hashes(self) -> list[bytes]:
        cursor = self.log.find({}, {"_id": 0, "seq": 1, "leaf_hash": 1}, sort=[("seq", 1)])
        return [bytes.fromhex(doc["leaf_hash"]) async for doc in cursor]

    async def append(self, entries: list[Entry]) -> int:
        if not entries:
            return 0
        try:
            await self.log.insert_many([entry_document(e, self.sealed) for e in entries], ordered=True)
            return len(entries)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return int(exc.details.get("nInserted", 0))

    async def positions(self, keys: Iterable[VersionKey]) -> dict[VersionKey, Position]:
        ids = [f"{rid}:{version}" for rid, version in sorted(set(keys))]
        if not ids:
            return {}
        # One more than can match: the first reply holds them all and closes the cursor, however many there are.
        cursor = self.rows.find(
            {"_id": {"$in": ids}},
            {"seq": 1, "record_id": 1, "version": 1, "leaf_hash": 1, "archived_at": 1},
            batch_size=len(ids) + 1,
        )
        return {(doc["record_id"], doc["version"]): Position(doc["seq"], doc["leaf_hash"], doc["archived_at"]) async for doc in cursor}

    async def log_positions(self, keys: Iterable[VersionKey]) -> dict[VersionKey, Position]:
        wanted = set(keys)
        found: dict[VersionKey, Position] = {}
        for rid in sorted({k[0] for k in wanted}):
            async for doc in self.log.find({"record_id": rid}, {"seq": 1, "version": 1, "leaf_hash": 1, "archived_at": 1}):
                if (rid, doc["version"]) in wanted:
                    found[(rid, doc["version"])] = Position(doc["seq"], doc["leaf_hash"], doc["archived_at"])
        return found

    async def entry(self, record_id: str, version: int | None = None) -> Entry | None:
        docs = [doc async for doc in self.log.find({"record_id": record_id})]
        matching = [d for d in docs if version in (None, d["version"])]
        return entry_from_document(max(matching, key=lambda d: d["version"]), self.sealed) if matching else None

    async def entries(self, start: int = 0, limit: int = 0) -> list[Entry]:
        cursor = self.log.find({"seq": {"$gte": start}}, sort=[("seq", 1)], limit=limit)
        return [entry_from_document(doc, self.sealed, audit=True) async for doc in cursor]

    async def versions(self, record_ids: Iterable[str]) -> dict[str, list[ArchivedVersion]]:
        ids = sorted(set(record_ids))
        found: dict[str, list[ArchivedVersion]] = {rid: [] for rid in ids}
        if not ids:
            return found
        # One read for all the records, in one reply, never one per record. One record is asked by equality, which
        # the embedded server answers from the index (it scans the collection for an `$in`; MongoDB does not).
        wanted = {"record_id": ids[0]} if len(ids) == 1 else {"record_id": {"$in": ids}}
        async for doc in self.rows.find(wanted, {"record_id": 1, "version": 1, "school_code": 1}, batch_size=ONE_REPLY):
            found[doc["record_id"]].append(ArchivedVersion(doc["version"], doc["school_code"]))
        return found

    async def add_rows(self, rows: list[ArchivedRow]) -> int:
        return await insert_new(self.rows, [{"_id": f"{r.record_id}:{r.version}", **asdict(r)} for r in rows])

    async def count_batch(self, batch_id: str) -> int:
        return len([doc async for doc in self.rows.find({"batch_id": batch_id}, {"_id": 1})])

    async def add_checkpoint(self, checkpoint: Checkpoint) -> bool:
        return await insert_one_new(self.checkpoint_rows, checkpoint_document(checkpoint))

    async def checkpoints(self) -> list[Checkpoint]:
        cursor = self.checkpoint_rows.find({}, sort=[("tree_size", 1)])
        return [Checkpoint.model_validate(doc) async for doc in cursor]

    async def checkpoint(self, tree_size: int | None = None) -> Checkpoint | None:
        if tree_size is not None:
            doc = await self.checkpoint_rows.find_one({"_id": f"{tree_size:012d}"})
            return Checkpoint.model_validate(doc) if doc is not None else None
        async for doc in self.checkpoint_rows.find({}, sort=[("tree_size", -1)], limit=1):
            return Checkpoint.model_validate(doc)
        return None

    async def schools_of(self, student_ref: str) -> set[str]:
        return {doc["school_code"] async for doc in self.rows.find({"student_ref": student_ref}, {"school_code": 1})}


class InMemoryArchiveRepository:
    """For unit and wiring tests: same behaviour, no database."""

    def __init__(self) -> None:
        self.log: dict[int, Entry] = {}
        self.rows: dict[VersionKey, ArchivedRow] = {}
        self.stored_checkpoints: dict[int, Checkpoint] = {}

    async def leaf_hashes(self) -> list[bytes]:
        return [bytes.fromhex(self.log[seq].leaf_hash) for seq in sorted(self.log)]

    async def append(self, entries: list[Entry]) -> int:
        taken = {e.key for e in self.log.values()}
        for n, entry in enumerate(entries):
            if entry.seq in self.log or entry.key in taken:
                return n
            self.log[entry.seq] = entry
            taken.add(entry.key)
        return len(entries)

    async def positions(self, keys: Iterable[VersionKey]) -> dict[VersionKey, Position]:
        wanted = set(keys)
        return {k: Position(r.seq, r.leaf_hash, r.archived_at) for k, r in self.rows.items() if k in wanted}

    async def log_positions(self, keys: Iterable[VersionKey]) -> dict[VersionKey, Position]:
        wanted = set(keys)
        return {e.key: Position(e.seq, e.leaf_hash, e.archived_at) for e in self.log.values() if e.key in wanted}

    async def entry(self, record_id: str, version: int | None = None) -> Entry | None:
        matching = [e for e in self.log.values() if e.record_id == record_id and version in (None, e.version)]
        return max(matching, key=lambda e: e.version, default=None)

    async def entries(self, start: int = 0, limit: int = 0) -> list[Entry]:
        found = [self.log[seq] for seq in sorted(self.log) if seq >= start]
        return found[:limit] if limit else found

    async def versions(self, record_ids: Iterable[str]) -> dict[str, list[ArchivedVersion]]:
        ids = set(record_ids)
        found: dict[str, list[ArchivedVersion]] = {rid: [] for rid in ids}
        for (rid, version), row in self.rows.items():
            if rid in ids:
                found[rid].append(ArchivedVersion(version, row.school_code))
        return found

    async def add_rows(self, rows: list[ArchivedRow]) -> int:
        added = 0
        for row in rows:
            if (row.record_id, row.version) not in self.rows:
                self.rows[(row.record_id, row.version)] = row
                added += 1
        return added

    async def count_batch(self, batch_id: str) -> int:
        return sum(1 for r in self.rows.values() if r.batch_id == batch_id)

    async def add_checkpoint(self, checkpoint: Checkpoint) -> bool:
        if checkpoint.tree_size in self.stored_checkpoints:
            return False
        self.stored_checkpoints[checkpoint.tree_size] = checkpoint
        return True

    async def checkpoints(self) -> list[Checkpoint]:
        return [self.stored_checkpoints[size] for size in sorted(self.stored_checkpoints)]

    async def checkpoint(self, tree_size: int | None = None) -> Checkpoint | None:
        if tree_size is None:
            tree_size = max(self.stored_checkpoints, default=None)
        return self.stored_checkpoints.get(tree_size) if tree_size is not None else None

    async def schools_of(self, student_ref: str) -> set[str]:
        return {r.school_code for r in self.rows.values() if r.student_ref == student_ref}
