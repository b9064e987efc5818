"""sync's `outbox` and `receipts` collections: a Protocol, the MongoDB implementation and its indexes."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from services.sync.domain import DELIVERED, PENDING, SENDING, Failure, OutboxEntry, Receipt
from shared.mongo import Index, insert_new

OUTBOX = "outbox"
RECEIPTS = "receipts"

INDEXES = [
    Index(OUTBOX, [("record_id", 1), ("version", 1)], unique=True, name="record_version_unique"),
    Index(OUTBOX, [("status", 1), ("next_attempt_at", 1)], name="status_due"),
    Index(RECEIPTS, [("record_id", 1), ("version", 1)], unique=True, name="record_version_unique"),
]


class OutboxRepository(Protocol):
    async def add_new(self, entries: list[OutboxEntry]) -> int:
        """Store entries whose record version is not in the outbox yet; returns how many were new."""

    async def claim(
        self, keys: list[str] | None, now: datetime, lease_until: datetime, claim: str, limit: int
    ) -> list[OutboxEntry]:
        """Take due entries (pending and due, or sending with an expired lease) for one sender.

        `keys` limits the choice to those entries; None means any, oldest due first, at most `limit`.
        Each entry is taken with a conditional update, so two senders never both hold it.
        """

    async def record(self, receipts: list[Receipt], failures: list[Failure]) -> None:
        """Store receipts (once per record version) and mark their entries delivered; record failures."""

    async def backlog(self) -> int:
        """Entries not yet delivered nor parked."""


def _due(now: datetime) -> dict[str, Any]:
    return {
        "$or": [
            {"status": PENDING, "next_attempt_at": {"$lte": now}},
            {"status": SENDING, "lease_until": {"$lt": now}},
        ]
    }


def _entry(doc: dict[str, Any]) -> OutboxEntry:
    return OutboxEntry(
        key=doc["_id"],
        record_id=doc["record_id"],
        version=doc["version"],
        payload=doc["payload"],
        status=doc["status"],
        attempts=doc["attempts"],
        created_at=doc["created_at"],
        next_attempt_at=doc["next_attempt_at"],
        last_error=doc.get("last_error"),
        claim=doc.get("claim"),
    )


class MongoOutboxRepository:
    def __init__(self, db: AsyncDatabase) -> None:
        self.outbox = db[OUTBOX]
        self.receipts = db[RECEIPTS]

    async def add_new(self, entries: list[OutboxEntry]) -> int:
        return await insert_new(
            self.outbox,
            [
                {
                    "_id": e.key,
                    "idempotency_key": e.key,
                    "record_id": e.record_id,
                    "version": e.version,
                    "school_code": e.payload.get("school_code"),
                    "school_year": e.payload.get("school_year"),
                    "payload": e.payload,
                    "status": e.status,
                    "attempts": e.attempts,
                    "created_at": e.created_at,
                    "next_attempt_at": e.next_attempt_at,
                    "last_error": None,
                    "lease_until": None,
                    "claim": None,
                }
                for e in entries
            ],
        )

    async def claim(
        self, keys: list[str] | None, now: datetime, lease_until: datetime, claim: str, limit: int
    ) -> list[OutboxEntry]:
        if keys is None:
            cursor = self.outbox.find(_due(now), {"_id": 1}).sort("next_attempt_at", 1).limit(limit)
            keys = [doc["_id"] async for doc in cursor]
        if not keys:
            return []
        await self.outbox.update_many(
            {"_id": {"$in": keys}, **_due(now)},
            {"$set": {"status": SENDING, "lease_until": lease_until, "claim": claim}},
        )
        return [_entry(doc) async for doc in self.outbox.find({"_id": {"$in": keys}, "claim": claim})]

    async def record(self, receipts: list[Receipt], failures: list[Failure]) -> None:
        await insert_new(
            self.receipts,
            [
                {
                    "_id": r.key,
                    "record_id": r.record_id,
                    "version": r.version,
                    "receipt_id": r.receipt_id,
                    "received_at": r.received_at,
                    "delivered_at": r.delivered_at,
                }
                for r in receipts
            ],
        )
        updates = [
            UpdateOne(
                {"_id": r.key, "status": {"$ne": DELIVERED}},
                {
                    "$set": {
                        "status": DELIVERED,
                        "delivered_at": r.delivered_at,
                        "receipt_id": r.receipt_id,
                        "last_error": None,
                        "lease_until": None,
                    }
                },
            )
            for r in receipts
        ]
        # A failure is written only by the sender still holding the claim, never over a later one.
        updates += [
            UpdateOne(
                {"_id": f.key, "status": SENDING, "claim": f.claim},
                {
                    "$set": {
                        "status": f.status,
                        "attempts": f.attempts,
                        "last_error": f.last_error,
                        "next_attempt_at": f.next_attempt_at,
                        "lease_until": None,
                    }
                },
            )
            for f in failures
        ]
        if updates:
            await self.outbox.bulk_write(updates, ordered=False)

    async def backlog(self) -> int:
        return await self.outbox.count_documents({"status": {"$in": [PENDING, SENDING]}})


class InMemoryOutboxRepository:
    """For unit and wiring tests: same behaviour, no database."""

    def __init__(self) -> None:
        self.entries: dict[str, OutboxEntry] = {}
        self.leases: dict[str, datetime] = {}
        self.receipts: dict[str, Receipt] = {}
        self.delivered: dict[str, tuple[datetime, str]] = {}

    async def add_new(self, entries: list[OutboxEntry]) -> int:
        added = 0
        for entry in entries:
            if entry.key not in self.entries:
                self.entries[entry.key] = entry
                added += 1
        return added

    def _is_due(self, entry: OutboxEntry, now: datetime) -> bool:
        if entry.status == PENDING:
            return entry.next_attempt_at <= now
        return entry.status == SENDING and self.leases[entry.key] < now

    async def claim(
        self, keys: list[str] | None, now: datetime, lease_until: datetime, claim: str, limit: int
    ) -> list[OutboxEntry]:
        if keys is None:
            due = sorted((e for e in self.entries.values() if self._is_due(e, now)), key=lambda e: e.next_attempt_at)
            keys = [e.key for e in due[:limit]]
        taken = []
        for key in keys:
            entry = self.entries.get(key)
            if entry is not None and self._is_due(entry, now):
                entry = replace(entry, status=SENDING, claim=claim)
                self.entries[key] = entry
                self.leases[key] = lease_until
                taken.append(entry)
        return taken

    async def record(self, receipts: list[Receipt], failures: list[Failure]) -> None:
        for receipt in receipts:
            self.receipts.setdefault(receipt.key, receipt)
            entry = self.entries[receipt.key]
            if entry.status != DELIVERED:
                self.entries[receipt.key] = replace(entry, status=DELIVERED, last_error=None)
                self.delivered[receipt.key] = (receipt.delivered_at, receipt.receipt_id)
        for failure in failures:
            entry = self.entries[failure.key]
            if entry.status == SENDING and entry.claim == failure.claim:
                self.entries[failure.key] = replace(
                    entry,
                    status=failure.status,
                    attempts=failure.attempts,
                    last_error=failure.last_error,
                    next_attempt_at=failure.next_attempt_at or entry.next_attempt_at,
                )

    async def backlog(self) -> int:
        return sum(1 for e in self.entries.values() if e.status in (PENDING, SENDING))
