"""archive's `log`, `records` and `checkpoints` collections: a Protocol, MongoDB and in-memory. Insert-only.

No code path updates or deletes a stored entry, row or checkpoint: an amendment is a new entry,
and "superseded" is read from the later versions, never written onto the earlier one. The one
rewrite is a data-key rotation's: an entry's document is kept sealed (the RFC 8785 bytes that were
signed, under the archive's key ring), and re-encryption changes the ciphertext, never those bytes. (The archive's
access log, one `AccessEntry` per export or printed copy, is `shared.access`'s store.)

The one field written after the insert is outside what is archived: a row, or a checkpoint, is stored with its
announcement owed (`unannounced_ts`, in the same insert) and cleared once the announcement is published, so that
one a crash left unpublished is found by one index range and announced again. A checkpoint is likewise stored owed its
RFC 3161 timestamp (`unstamped_ts`), cleared once the first token is kept; the tokens themselves, the first and each
renewal over the one before, are insert-only rows of `checkpoint_timestamps`, one per (tree size, place in the chain).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
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
TIMESTAMPS = "checkpoint_timestamps"
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
    Index(RECORDS, [("unannounced_ts", 1)], name="unannounced"),
    Index(CHECKPOINTS, [("tree_size", 1)], unique=True, name="tree_size_unique"),
    Index(CHECKPOINTS, [("unannounced_ts", 1)], name="unannounced"),
    Index(CHECKPOINTS, [("unstamped_ts", 1)], name="unstamped"),
    Index(TIMESTAMPS, [("tree_size", 1)], name="tree_size"),
]


@dataclass(frozen=True)
class StampRow:
    """One RFC 3161 token of a checkpoint's chain: the first (`index` 0) over the checkpoint, each later one over the
    checkpoint and the token before it (shared.crypto.timestamps); with what the archive read from it when kept."""

    tree_size: int
    index: int
    #: The DER TimeStampToken as the TSA sent it.
    token: bytes
    gen_time: datetime
    tsa: str
    hash_algorithm: str
    #: When the TSA's certificate expires: the token must be renewed before.
    tsa_not_after: datetime


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
    #: When the version was archived, while its announcement is owed (None: announced).
    unannounced_since: datetime | None = None


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

    async def entry_at(self, seq: int) -> Entry | None:
        """The log entry at leaf index `seq`, if the log has one (a look-up by `_id`)."""

    async def entries(self, start: int = 0, limit: int = 0) -> list[Entry]:
        """Log entries in seq order from `start` (all of them when limit is 0); one whose document does not
        decrypt comes back `unreadable`, for the audit to name."""

    async def versions(self, record_ids: Iterable[str]) -> dict[str, list[ArchivedVersion]]:
        """The archived versions of each record."""

    async def add_rows(self, rows: list[ArchivedRow]) -> int:
        """Store per-version rows not stored before; returns how many were new."""

    async def count_batch(self, batch_id: str) -> int:
        """How many archived versions a signing batch completed."""

    async def add_checkpoint(self, checkpoint: Checkpoint, unannounced_since: datetime | None = None) -> bool:
        """Store a checkpoint, its announcement owed since `unannounced_since` (None: none owed); False when one of
        that tree size is stored already (it keeps what it owed)."""

    async def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, smallest tree first."""

    async def checkpoint(self, tree_size: int | None = None) -> Checkpoint | None:
        """The checkpoint of that tree size (the latest when None), if one was issued."""

    async def schools_of(self, student_ref: str) -> set[str]:
        """The schools whose archived records are of this student."""

    async def unannounced(self, before: datetime, limit: int) -> list[Entry]:
        """The log entries of up to `limit` versions archived before `before` whose announcement is still owed, oldest
        first (one index range of the rows, however many are archived, then their entries by position)."""

    async def announced(self, keys: Iterable[VersionKey]) -> None:
        """Keep that the archiving of the versions `keys` was announced."""

    async def unannounced_checkpoints(self, before: datetime, limit: int) -> list[Checkpoint]:
        """Up to `limit` checkpoints stored before `before` whose announcement is still owed, oldest first."""

    async def checkpoints_announced(self, tree_sizes: Iterable[int]) -> None:
        """Keep that the checkpoints of these tree sizes were announced."""

    async def checkpoints_after(self, tree_size: int, limit: int) -> list[Checkpoint]:
        """Up to `limit` checkpoints of tree size above `tree_size`, smallest first."""

    async def count_checkpoints_after(self, tree_size: int) -> int:
        """How many checkpoints there are of tree size above `tree_size`."""

    async def unstamped_checkpoints(self, before: datetime, limit: int) -> list[Checkpoint]:
        """Up to `limit` checkpoints stored before `before` that wait for their first timestamp, oldest first."""

    async def add_timestamp(self, row: StampRow) -> bool:
        """Keep a token of a checkpoint's chain (the first clears the checkpoint's wait); False when that place in the
        chain is taken already (the row stored first stands)."""

    async def timestamps(self, tree_size: int) -> list[StampRow]:
        """The checkpoint's chain of tokens, first to latest."""


def _utc(moment: datetime) -> datetime:
    """A stored datetime as an aware UTC one (the driver gives naive UTC back)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _ts(moment: datetime | None) -> float | None:
    """A moment as the owed marks keep it: seconds since the epoch, which every MongoDB-wire server ranges alike."""
    return moment.timestamp() if moment is not None else None


def row_document(row: ArchivedRow) -> dict[str, Any]:
    fields = asdict(row)
    return {"_id": f"{row.record_id}:{row.version}", **fields, "unannounced_ts": _ts(fields.pop("unannounced_since"))}


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


def checkpoint_document(checkpoint: Checkpoint, unannounced_since: datetime | None = None) -> dict[str, Any]:
    # A checkpoint owed its announcement (any but an empty log's) is owed its timestamp from the same moment.
    owed = _ts(unannounced_since)
    return {
        "_id": checkpoint_id(checkpoint.tree_size),
        **checkpoint.model_dump(),
        "unannounced_ts": owed,
        "unstamped_ts": owed,
    }


def stamp_document(row: StampRow) -> dict[str, Any]:
    return {"_id": f"{checkpoint_id(row.tree_size)}:{row.index:04d}", **asdict(row)}


def checkpoint_id(tree_size: int) -> str:
    return f"{tree_size:012d}"


class MongoArchiveRepository:
    def __init__(self, db: AsyncDatabase, vault: Vault) -> None:
        self.log = db[LOG]
        self.rows = db[RECORDS]
        self.checkpoint_rows = db[CHECKPOINTS]
        self.stamp_rows = db[TIMESTAMPS]
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

    async def entry_at(self, seq: int) -> Entry | None:
        doc = await self.log.find_one({"_id": seq})
        return entry_from_document(doc, self.sealed) if doc is not None else None

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
        return await insert_new(self.rows, [row_document(r) for r in rows])

    async def count_batch(self, batch_id: str) -> int:
        return len([doc async for doc in self.rows.find({"batch_id": batch_id}, {"_id": 1})])

    async def add_checkpoint(self, checkpoint: Checkpoint, unannounced_since: datetime | None = None) -> bool:
        return await insert_one_new(self.checkpoint_rows, checkpoint_document(checkpoint, unannounced_since))

    async def checkpoints(self) -> list[Checkpoint]:
        cursor = self.checkpoint_rows.find({}, sort=[("tree_size", 1)])
        return [Checkpoint.model_validate(doc) async for doc in cursor]

    async def checkpoint(self, tree_size: int | None = None) -> Checkpoint | None:
        if tree_size is not None:
            doc = await self.checkpoint_rows.find_one({"_id": checkpoint_id(tree_size)})
            return Checkpoint.model_validate(doc) if doc is not None else None
        async for doc in self.checkpoint_rows.find({}, sort=[("tree_size", -1)], limit=1):
            return Checkpoint.model_validate(doc)
        return None

    async def schools_of(self, student_ref: str) -> set[str]:
        return {doc["school_code"] async for doc in self.rows.find({"student_ref": student_ref}, {"school_code": 1})}

    async def unannounced(self, before: datetime, limit: int) -> list[Entry]:
        owed = self.rows.find({"unannounced_ts": {"$lte": _ts(before)}}, {"seq": 1}, batch_size=limit + 1)
        seqs = [doc["seq"] async for doc in owed.sort("unannounced_ts", 1).limit(limit)]
        if not seqs:
            return []
        found = {doc["seq"]: doc async for doc in self.log.find({"_id": {"$in": seqs}}, batch_size=len(seqs) + 1)}
        return [entry_from_document(found[seq], self.sealed) for seq in seqs if seq in found]

    async def announced(self, keys: Iterable[VersionKey]) -> None:
        ids = [f"{rid}:{version}" for rid, version in sorted(set(keys))]
        if ids:
            await self.rows.update_many({"_id": {"$in": ids}}, {"$set": {"unannounced_ts": None}})

    async def unannounced_checkpoints(self, before: datetime, limit: int) -> list[Checkpoint]:
        owed = self.checkpoint_rows.find({"unannounced_ts": {"$lte": _ts(before)}}, batch_size=limit + 1)
        return [Checkpoint.model_validate(doc) async for doc in owed.sort("unannounced_ts", 1).limit(limit)]

    async def checkpoints_announced(self, tree_sizes: Iterable[int]) -> None:
        ids = [checkpoint_id(size) for size in sorted(set(tree_sizes))]
        if ids:
            await self.checkpoint_rows.update_many({"_id": {"$in": ids}}, {"$set": {"unannounced_ts": None}})

    async def checkpoints_after(self, tree_size: int, limit: int) -> list[Checkpoint]:
        cursor = self.checkpoint_rows.find({"tree_size": {"$gt": tree_size}}, sort=[("tree_size", 1)], limit=limit)
        return [Checkpoint.model_validate(doc) async for doc in cursor]

    async def count_checkpoints_after(self, tree_size: int) -> int:
        return await self.checkpoint_rows.count_documents({"tree_size": {"$gt": tree_size}})

    async def unstamped_checkpoints(self, before: datetime, limit: int) -> list[Checkpoint]:
        owed = self.checkpoint_rows.find({"unstamped_ts": {"$lte": _ts(before)}}, batch_size=limit + 1)
        return [Checkpoint.model_validate(doc) async for doc in owed.sort("unstamped_ts", 1).limit(limit)]

    async def add_timestamp(self, row: StampRow) -> bool:
        added = await insert_one_new(self.stamp_rows, stamp_document(row))
        if row.index == 0:  # kept now or before a crash: either way the checkpoint no longer waits
            await self.checkpoint_rows.update_one(
                {"_id": checkpoint_id(row.tree_size)}, {"$set": {"unstamped_ts": None}}
            )
        return added

    async def timestamps(self, tree_size: int) -> list[StampRow]:
        rows = [doc async for doc in self.stamp_rows.find({"tree_size": tree_size})]
        fields = StampRow.__dataclass_fields__
        stamps = [StampRow(**{k: v for k, v in doc.items() if k in fields}) for doc in rows]
        read = [
            replace(r, token=bytes(r.token), gen_time=_utc(r.gen_time), tsa_not_after=_utc(r.tsa_not_after))
            for r in stamps
        ]
        return sorted(read, key=lambda r: r.index)


class InMemoryArchiveRepository:
    """For unit and wiring tests: same behaviour, no database."""

    def __init__(self) -> None:
        self.log: dict[int, Entry] = {}
        self.rows: dict[VersionKey, ArchivedRow] = {}
        self.stored_checkpoints: dict[int, Checkpoint] = {}
        #: Stored checkpoints whose announcement is owed: since when, by tree size.
        self.unannounced_since: dict[int, datetime] = {}
        #: ...and those waiting for their first timestamp; the chains of tokens, by tree size.
        self.unstamped_since: dict[int, datetime] = {}
        self.stamps: dict[int, dict[int, StampRow]] = {}

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

    async def entry_at(self, seq: int) -> Entry | None:
        return self.log.get(seq)

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

    async def add_checkpoint(self, checkpoint: Checkpoint, unannounced_since: datetime | None = None) -> bool:
        if checkpoint.tree_size in self.stored_checkpoints:
            return False
        self.stored_checkpoints[checkpoint.tree_size] = checkpoint
        if unannounced_since is not None:
            self.unannounced_since[checkpoint.tree_size] = unannounced_since
            self.unstamped_since[checkpoint.tree_size] = unannounced_since
        return True

    async def checkpoints(self) -> list[Checkpoint]:
        return [self.stored_checkpoints[size] for size in sorted(self.stored_checkpoints)]

    async def checkpoint(self, tree_size: int | None = None) -> Checkpoint | None:
        if tree_size is None:
            tree_size = max(self.stored_checkpoints, default=None)
        return self.stored_checkpoints.get(tree_size) if tree_size is not None else None

    async def schools_of(self, student_ref: str) -> set[str]:
        return {r.school_code for r in self.rows.values() if r.student_ref == student_ref}

    async def unannounced(self, before: datetime, limit: int) -> list[Entry]:
        owed = sorted(
            (row.unannounced_since, row.seq) for row in self.rows.values()
            if row.unannounced_since is not None and row.unannounced_since <= before
        )
        return [self.log[seq] for _, seq in owed[:limit] if seq in self.log]

    async def announced(self, keys: Iterable[VersionKey]) -> None:
        for key in set(keys):
            if key in self.rows:
                self.rows[key] = replace(self.rows[key], unannounced_since=None)

    async def unannounced_checkpoints(self, before: datetime, limit: int) -> list[Checkpoint]:
        owed = sorted((at, size) for size, at in self.unannounced_since.items() if at <= before)
        return [self.stored_checkpoints[size] for _, size in owed[:limit]]

    async def checkpoints_announced(self, tree_sizes: Iterable[int]) -> None:
        for size in tree_sizes:
            self.unannounced_since.pop(size, None)

    async def checkpoints_after(self, tree_size: int, limit: int) -> list[Checkpoint]:
        return [self.stored_checkpoints[s] for s in sorted(self.stored_checkpoints) if s > tree_size][:limit]

    async def count_checkpoints_after(self, tree_size: int) -> int:
        return sum(1 for size in self.stored_checkpoints if size > tree_size)

    async def unstamped_checkpoints(self, before: datetime, limit: int) -> list[Checkpoint]:
        owed = sorted((at, size) for size, at in self.unstamped_since.items() if at <= before)
        return [self.stored_checkpoints[size] for _, size in owed[:limit]]

    async def add_timestamp(self, row: StampRow) -> bool:
        chain = self.stamps.setdefault(row.tree_size, {})
        if row.index == 0:
            self.unstamped_since.pop(row.tree_size, None)
        if row.index in chain:
            return False
        chain[row.index] = row
        return True

    async def timestamps(self, tree_size: int) -> list[StampRow]:
        chain = self.stamps.get(tree_size, {})
        return [chain[i] for i in sorted(chain)]
