"""sync's `outbox` and `receipts` collections: a Protocol, the MongoDB implementation and its indexes."""

# Times that queries compare (when an entry is due, when a lease ends) are stored as Unix seconds,
# which every MongoDB-wire server compares as numbers; dates written with `$set` sit inside a
# subdocument (the receipt), so they stay dates.

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from services.sync.domain import (
    CHECKPOINT,
    DELIVERED,
    PARKED,
    PENDING,
    SENDING,
    Failure,
    Held,
    OutboxEntry,
    Receipt,
)
from shared.mongo import Index, insert_new, packed, unpacked

OUTBOX = "outbox"
RECEIPTS = "receipts"

INDEXES = [
    # One entry per record version and per checkpoint: (record, id, version) or (checkpoint, origin, tree size).
    Index(OUTBOX, [("kind", 1), ("subject", 1), ("number", 1)], unique=True, name="kind_subject_number_unique"),
    Index(OUTBOX, [("status", 1), ("next_attempt_ts", 1)], name="status_due"),
    Index(OUTBOX, [("kind", 1), ("seq", 1)], name="kind_seq"),
    Index(RECEIPTS, [("kind", 1), ("subject", 1), ("number", 1)], unique=True, name="kind_subject_number_unique"),
]
#: Earlier versions indexed this field uniquely; entries without it (checkpoints) would collide there.
OBSOLETE_INDEX_FIELD = "record_id"


@dataclass(frozen=True)
class OutboxLook:
    """The outbox gauges at one moment."""

    backlog: int
    parked: int
    oldest_waiting: datetime | None


@dataclass(frozen=True)
class OutboxSummary:
    """For the operator: entries by (kind, status), the parked ones, the last checkpoint delivered."""

    counts: dict[tuple[str, str], int]
    parked: list[OutboxEntry]
    oldest_waiting: datetime | None
    last_checkpoint: Receipt | None


class OutboxRepository(Protocol):
    async def add_new(self, entries: list[OutboxEntry]) -> int:
        """Store entries whose key is not in the outbox yet; returns how many were new."""

    async def claim(
        self, keys: list[str] | None, now: datetime, lease_until: datetime, claim: str, limit: int
    ) -> list[OutboxEntry]:
        """Take due entries (pending and due, or sending with an expired lease) for one sender.

        `keys` limits the choice to those entries; None means any, oldest due first, at most `limit`.
        Each entry is taken with a conditional update, so two senders never both hold it.
        """

    async def record(self, claim: str, receipts: list[Receipt], failures: list[Failure]) -> list[str]:
        """Record the answers of the sender holding `claim`; returns the keys it newly marked delivered.

        Only the sender still holding an entry's claim changes it: a stale sender's answers (its
        lease ran out and another took the entry) are left to the current holder.
        """

    async def look(self) -> OutboxLook:
        """Backlog, parked entries and the oldest waiting entry's creation time."""

    async def resume(self, keys: list[str] | None, now: datetime) -> list[str]:
        """Make entries due again with a fresh count of attempts; returns the keys resumed.

        None resumes every parked entry; named keys are resumed when parked or delivered.
        """

    async def summary(self, parked_limit: int) -> OutboxSummary: ...

    def holdings(self) -> AsyncIterator[Held]:
        """Every entry as reconciliation sees it, in key order."""

    async def archive_size(self) -> int | None:
        """The largest checkpoint tree size in the outbox (None without checkpoints)."""


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _dt(seconds: float | None) -> datetime:
    return datetime.fromtimestamp(seconds or 0.0, UTC)


def _due(now: float) -> dict[str, Any]:
    return {
        "$or": [
            {"status": PENDING, "next_attempt_ts": {"$lte": now}},
            {"status": SENDING, "lease_until_ts": {"$lt": now}},
        ]
    }


def _entry(doc: dict[str, Any]) -> OutboxEntry:
    return OutboxEntry(
        key=doc["_id"],
        kind=doc["kind"],
        subject=doc["subject"],
        number=doc["number"],
        payload=unpacked(doc["payload"]),
        status=doc["status"],
        attempts=doc["attempts"],
        created_at=_dt(doc["created_ts"]),
        next_attempt_at=_dt(doc.get("next_attempt_ts")),
        last_error=doc.get("last_error"),
        claim=doc.get("claim"),
        seq=doc.get("seq"),
    )


def _receipt_fields(r: Receipt) -> dict[str, Any]:
    return {"receipt_id": r.receipt_id, "received_at": r.received_at, "delivered_at": r.delivered_at}


class MongoOutboxRepository:
    def __init__(self, db: AsyncDatabase) -> None:
        self.outbox = db[OUTBOX]
        self.receipts = db[RECEIPTS]

    async def drop_obsolete_indexes(self) -> None:
        """Drop the unique (record_id, version) indexes of earlier versions: checkpoints have no record id."""
        for collection in (self.outbox, self.receipts):
            for name, info in (await collection.index_information()).items():
                if any(name_ == OBSOLETE_INDEX_FIELD for name_, _ in info["key"]):
                    await collection.drop_index(name)

    async def add_new(self, entries: list[OutboxEntry]) -> int:
        return await insert_new(
            self.outbox,
            [
                {
                    "_id": e.key,
                    "kind": e.kind,
                    "subject": e.subject,
                    "number": e.number,
                    "seq": e.seq,
                    "digest": e.digest,
                    "school_code": e.payload.get("school_code"),
                    "school_year": e.payload.get("school_year"),
                    "payload": packed(e.payload),
                    "status": e.status,
                    "attempts": e.attempts,
                    "created_at": e.created_at,
                    "created_ts": _ts(e.created_at),
                    "next_attempt_ts": _ts(e.next_attempt_at),
                    "last_error": None,
                    "lease_until_ts": None,
                    "claim": None,
                    "receipt": None,
                }
                for e in entries
            ],
        )

    async def claim(
        self, keys: list[str] | None, now: datetime, lease_until: datetime, claim: str, limit: int
    ) -> list[OutboxEntry]:
        moment = _ts(now)
        if keys is None:
            cursor = self.outbox.find(_due(moment), {"_id": 1}).sort("next_attempt_ts", 1).limit(limit)
            keys = [doc["_id"] async for doc in cursor]
        if not keys:
            return []
        await self.outbox.update_many(
            {"_id": {"$in": keys}, **_due(moment)},
            {"$set": {"status": SENDING, "lease_until_ts": _ts(lease_until), "claim": claim}},
        )
        return [_entry(doc) async for doc in self.outbox.find({"_id": {"$in": keys}, "claim": claim, "status": SENDING})]

    async def record(self, claim: str, receipts: list[Receipt], failures: list[Failure]) -> list[str]:
        updates = [
            UpdateOne(
                {"_id": r.key, "status": SENDING, "claim": claim},
                {
                    "$set": {
                        "status": DELIVERED,
                        "receipt": _receipt_fields(r),
                        "last_error": None,
                        "lease_until_ts": None,
                    }
                },
            )
            for r in receipts
        ]
        updates += [
            UpdateOne(
                {"_id": f.key, "status": SENDING, "claim": f.claim},
                {
                    "$set": {
                        "status": f.status,
                        "attempts": f.attempts,
                        "last_error": f.last_error,
                        "next_attempt_ts": _ts(f.next_attempt_at) if f.next_attempt_at else None,
                        "lease_until_ts": None,
                    }
                },
            )
            for f in failures
        ]
        if updates:
            await self.outbox.bulk_write(updates, ordered=False)
        if not receipts:
            return []
        mine = {r.key: r for r in receipts}
        cursor = self.outbox.find({"_id": {"$in": list(mine)}, "status": DELIVERED, "claim": claim}, {"receipt": 1})
        done = {doc["_id"] async for doc in cursor if (doc.get("receipt") or {}).get("receipt_id") == mine[doc["_id"]].receipt_id}
        await self._keep_receipts([mine[k] for k in mine if k in done])
        return sorted(done)

    async def _keep_receipts(self, receipts: list[Receipt]) -> None:
        """One receipt document per key; a later delivery of the same key (sent again) replaces it."""
        docs = {
            r.key: {"_id": r.key, "kind": r.kind, "subject": r.subject, "number": r.number, **_receipt_fields(r)}
            for r in receipts
        }
        if await insert_new(self.receipts, list(docs.values())) == len(docs):
            return
        cursor = self.receipts.find({"_id": {"$in": list(docs)}}, {"receipt_id": 1})
        stale = [doc["_id"] async for doc in cursor if doc["receipt_id"] != docs[doc["_id"]]["receipt_id"]]
        for key in stale:
            await self.receipts.replace_one({"_id": key}, docs[key])

    async def look(self) -> OutboxLook:
        cursor = await self.outbox.aggregate(
            [
                {"$match": {"status": {"$in": [PENDING, SENDING, PARKED]}}},
                {"$group": {"_id": "$status", "n": {"$sum": 1}, "oldest": {"$min": "$created_ts"}}},
            ]
        )
        groups = {doc["_id"]: doc async for doc in cursor}
        waiting = [groups[s] for s in (PENDING, SENDING) if s in groups]
        oldest = min((g["oldest"] for g in waiting if g.get("oldest") is not None), default=None)
        return OutboxLook(
            backlog=sum(g["n"] for g in waiting),
            parked=groups.get(PARKED, {}).get("n", 0),
            oldest_waiting=_dt(oldest) if oldest is not None else None,
        )

    async def resume(self, keys: list[str] | None, now: datetime) -> list[str]:
        if keys is None:
            match: dict[str, Any] = {"status": PARKED}
        else:
            match = {"_id": {"$in": keys}, "status": {"$in": [PARKED, DELIVERED]}}
        chosen = [doc["_id"] async for doc in self.outbox.find(match, {"_id": 1})]
        if not chosen:
            return []
        await self.outbox.update_many(
            {"_id": {"$in": chosen}, "status": {"$in": [PARKED, DELIVERED]}},
            {"$set": {"status": PENDING, "attempts": 0, "next_attempt_ts": _ts(now), "claim": None}},
        )
        return sorted(chosen)

    async def summary(self, parked_limit: int) -> OutboxSummary:
        # One string group key: the embedded MongoDB-wire server does not group by a document.
        cursor = await self.outbox.aggregate(
            [{"$group": {"_id": {"$concat": ["$kind", "/", "$status"]}, "n": {"$sum": 1}}}]
        )
        counts = {tuple(doc["_id"].split("/", 1)): doc["n"] async for doc in cursor}
        parked = [
            _entry(doc)
            async for doc in self.outbox.find({"status": PARKED}).sort("created_ts", 1).limit(parked_limit)
        ] if parked_limit else []
        look = await self.look()
        last = None
        async for doc in self.outbox.find({"kind": CHECKPOINT, "status": DELIVERED}).sort("number", -1).limit(1):
            entry, receipt = _entry(doc), doc["receipt"]
            last = Receipt(
                entry.key, entry.kind, entry.subject, entry.number, receipt["receipt_id"],
                receipt.get("received_at", ""), receipt["delivered_at"], entry.created_at,
            )
        return OutboxSummary(counts, parked, look.oldest_waiting, last)

    async def holdings(self) -> AsyncIterator[Held]:
        projection = {"kind": 1, "status": 1, "digest": 1, "seq": 1, "receipt": 1}
        async for doc in self.outbox.find({}, projection).sort("_id", 1):
            yield Held(
                key=doc["_id"],
                kind=doc["kind"],
                status=doc["status"],
                digest=doc.get("digest") or "",
                receipt_id=(doc.get("receipt") or {}).get("receipt_id"),
                seq=doc.get("seq"),
            )

    async def archive_size(self) -> int | None:
        async for doc in self.outbox.find({"kind": CHECKPOINT}, {"number": 1}).sort("number", -1).limit(1):
            return int(doc["number"])
        return None


class InMemoryOutboxRepository:
    """For unit and wiring tests: same behaviour, no database."""

    def __init__(self) -> None:
        self.entries: dict[str, OutboxEntry] = {}
        self.leases: dict[str, datetime] = {}
        self.receipts: dict[str, Receipt] = {}
        self.delivered: dict[str, Receipt] = {}

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

    async def record(self, claim: str, receipts: list[Receipt], failures: list[Failure]) -> list[str]:
        done = []
        for receipt in receipts:
            entry = self.entries[receipt.key]
            if entry.status == SENDING and entry.claim == claim:
                self.entries[receipt.key] = replace(entry, status=DELIVERED, last_error=None)
                self.delivered[receipt.key] = receipt
                self.receipts[receipt.key] = receipt
                done.append(receipt.key)
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
        return sorted(done)

    async def look(self) -> OutboxLook:
        waiting = [e for e in self.entries.values() if e.status in (PENDING, SENDING)]
        return OutboxLook(
            backlog=len(waiting),
            parked=sum(1 for e in self.entries.values() if e.status == PARKED),
            oldest_waiting=min((e.created_at for e in waiting), default=None),
        )

    async def resume(self, keys: list[str] | None, now: datetime) -> list[str]:
        if keys is None:
            chosen = [k for k, e in self.entries.items() if e.status == PARKED]
        else:
            chosen = [k for k in keys if k in self.entries and self.entries[k].status in (PARKED, DELIVERED)]
        for key in chosen:
            self.entries[key] = replace(self.entries[key], status=PENDING, attempts=0, next_attempt_at=now, claim=None)
        return sorted(set(chosen))

    async def summary(self, parked_limit: int) -> OutboxSummary:
        counts: dict[tuple[str, str], int] = {}
        for e in self.entries.values():
            counts[(e.kind, e.status)] = counts.get((e.kind, e.status), 0) + 1
        parked = sorted((e for e in self.entries.values() if e.status == PARKED), key=lambda e: e.created_at)
        checkpoints = [
            self.delivered[k] for k, e in self.entries.items() if e.kind == CHECKPOINT and e.status == DELIVERED
        ]
        last = max(checkpoints, key=lambda r: r.number, default=None)
        return OutboxSummary(counts, parked[:parked_limit], (await self.look()).oldest_waiting, last)

    async def holdings(self) -> AsyncIterator[Held]:
        for key in sorted(self.entries):
            e = self.entries[key]
            receipt = self.delivered.get(key)
            yield Held(key, e.kind, e.status, e.digest, receipt.receipt_id if receipt else None, e.seq)

    async def archive_size(self) -> int | None:
        return max((e.number for e in self.entries.values() if e.kind == CHECKPOINT), default=None)

