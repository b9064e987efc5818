"""archive's `log` and `records` collections: a Protocol, MongoDB and in-memory. Insert-only."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from services.archive.domain import EMPTY, Entry, Head, Key
from shared.mongo import DUPLICATE_KEY, Index, insert_new

LOG = "log"
RECORDS = "records"

INDEXES = [
    Index(LOG, [("record_id", 1), ("version", 1)], unique=True, name="record_version_unique"),
    Index(LOG, [("seq", 1)], unique=True, name="seq_unique"),
    Index(RECORDS, [("record_id", 1), ("version", 1)], unique=True, name="record_version_unique"),
    Index(RECORDS, [("school_code", 1), ("school_year", 1)], name="school_year"),
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
    archived_at: datetime


@dataclass(frozen=True)
class Position:
    seq: int
    entry_hash: str
    appended_at: datetime


class ArchiveRepository(Protocol):
    async def head(self) -> Head:
        """The log's last entry (EMPTY when the log is empty)."""

    async def append(self, entries: list[Entry]) -> int:
        """Insert entries in order, stopping at the first whose seq or version is taken.

        Returns how many were inserted; fewer than given means another appender got there first.
        """

    async def positions(self, keys: Iterable[Key]) -> dict[Key, Position]:
        """Where the archived versions among `keys` sit in the log."""

    async def entries(self, start: int = 0, limit: int = 0) -> list[Entry]:
        """Log entries in seq order from `start` (all of them when limit is 0)."""

    async def add_rows(self, rows: list[ArchivedRow]) -> int:
        """Store per-version rows not stored before; returns how many were new."""


def entry_document(entry: Entry) -> dict[str, Any]:
    return {
        # `_id` is what makes a seq taken once; `seq` repeats it for ordering, as the embedded server
        # sorts an integer `_id` as text (10 before 9) but other integer fields as numbers.
        "_id": entry.seq,
        "seq": entry.seq,
        "record_id": entry.record_id,
        "version": entry.version,
        "prev_hash": entry.prev_hash,
        "content_digest": entry.content_digest,
        "entry_hash": entry.entry_hash,
        "document": entry.document,
        "signatures": list(entry.signatures),
        "appended_at": entry.appended_at,
    }


def entry_from_document(doc: dict[str, Any]) -> Entry:
    return Entry(
        seq=doc["seq"],
        record_id=doc["record_id"],
        version=doc["version"],
        prev_hash=doc["prev_hash"],
        content_digest=doc["content_digest"],
        entry_hash=doc["entry_hash"],
        document=doc["document"],
        signatures=tuple(doc["signatures"]),
        appended_at=doc["appended_at"],
    )


class MongoArchiveRepository:
    def __init__(self, db: AsyncDatabase) -> None:
        self.log = db[LOG]
        self.rows = db[RECORDS]

    async def head(self) -> Head:
        doc = await self.log.find_one({}, {"seq": 1, "entry_hash": 1}, sort=[("seq", -1)])
        return Head(doc["seq"], doc["entry_hash"]) if doc else EMPTY

    async def append(self, entries: list[Entry]) -> int:
        if not entries:
            return 0
        try:
            await self.log.insert_many([entry_document(e) for e in entries], ordered=True)
            return len(entries)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return int(exc.details.get("nInserted", 0))

    async def positions(self, keys: Iterable[Key]) -> dict[Key, Position]:
        wanted = set(keys)
        if not wanted:
            return {}
        cursor = self.log.find(
            {"record_id": {"$in": sorted({k[0] for k in wanted})}},
            {"seq": 1, "record_id": 1, "version": 1, "entry_hash": 1, "appended_at": 1},
        )
        return {
            key: Position(doc["seq"], doc["entry_hash"], doc["appended_at"])
            async for doc in cursor
            if (key := (doc["record_id"], doc["version"])) in wanted
        }

    async def entries(self, start: int = 0, limit: int = 0) -> list[Entry]:
        cursor = self.log.find({"seq": {"$gte": start}}, sort=[("seq", 1)], limit=limit)
        return [entry_from_document(doc) async for doc in cursor]

    async def add_rows(self, rows: list[ArchivedRow]) -> int:
        return await insert_new(
            self.rows, [{"_id": f"{r.record_id}:{r.version}", **asdict(r)} for r in rows]
        )


class InMemoryArchiveRepository:
    """For unit and wiring tests: same behaviour, no database."""

    def __init__(self) -> None:
        self.log: dict[int, Entry] = {}
        self.rows: dict[Key, ArchivedRow] = {}

    async def head(self) -> Head:
        if not self.log:
            return EMPTY
        last = self.log[max(self.log)]
        return Head(last.seq, last.entry_hash)

    async def append(self, entries: list[Entry]) -> int:
        taken = {e.key for e in self.log.values()}
        for n, entry in enumerate(entries):
            if entry.seq in self.log or entry.key in taken:
                return n
            self.log[entry.seq] = entry
            taken.add(entry.key)
        return len(entries)

    async def positions(self, keys: Iterable[Key]) -> dict[Key, Position]:
        wanted = set(keys)
        return {e.key: Position(e.seq, e.entry_hash, e.appended_at) for e in self.log.values() if e.key in wanted}

    async def entries(self, start: int = 0, limit: int = 0) -> list[Entry]:
        found = [self.log[seq] for seq in sorted(self.log) if seq >= start]
        return found[:limit] if limit else found

    async def add_rows(self, rows: list[ArchivedRow]) -> int:
        added = 0
        for row in rows:
            if (row.record_id, row.version) not in self.rows:
                self.rows[(row.record_id, row.version)] = row
                added += 1
        return added
