"""sync's `outbox` and `receipts` collections: a Protocol, the MongoDB implementation and its indexes.

An outbox entry keeps in clear only what sync queries on and reports (its key, kind, record id and
version or checkpoint, digest, school and year, delivery state); the ministry payload, which names
the student, is sealed under sync's key ring (`shared.at_rest`)."""

# Times that queries compare (when an entry is due, when a lease ends) are stored as Unix seconds,
# which every MongoDB-wire server compares as numbers; dates written with `$set` sit inside a
# subdocument (the receipt), so they stay dates.
#
# The outbox only grows (a term end leaves 132,000 delivered entries), so no step of the relay may
# read it whole. Two fields exist for the relay's look-ups, each under a single-field index that
# MongoDB and the embedded server alike answer by a range on the index:
# - `due_ts`: when the entry may next be sent: its next attempt while pending, the end of its lease
#   while being sent, none once delivered or parked. "Due" is one range query, `due_ts <= now`,
#   oldest first, however many entries were delivered before.
# - `waiting_ts`: when a waiting (pending or being sent) entry was taken in, none otherwise; the
#   first in its order is the oldest waiting entry.
# - `unannounced_ts`: when a delivered entry was recorded delivered, until its delivery is announced; none
#   otherwise. It is set in the same write as the delivered state and the receipt's copy in the entry, so a crash
#   after that write leaves the entry found by one index range (`unannounced`): its receipt document is kept again
#   from the copy, and its delivery announced again.
# How many entries wait and how many are parked are running counts in one document of `counts`,
# changed with `$inc` by the writes that move entries between those states (so every sync replica
# sees the same figures) and recounted once at start.

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from pymongo import ReplaceOne, UpdateOne
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
from shared.at_rest import SealedDocuments
from shared.crypto.vault import Vault
from shared.mongo import Index, insert_new

OUTBOX = "outbox"
RECEIPTS = "receipts"
COUNTS = "counts"
#: The `counts` document of the outbox's running counts.
OUTBOX_COUNTS = "outbox"
#: The running largest checkpoint the ministry acknowledged, per log origin (`counts` document id prefix).
HELD_CHECKPOINT = "checkpoint-held:"

INDEXES = [
    # One entry per record version and per checkpoint: (record, id, version) or (checkpoint, origin, tree size).
    Index(OUTBOX, [("kind", 1), ("subject", 1), ("number", 1)], unique=True, name="kind_subject_number_unique"),
    Index(OUTBOX, [("due_ts", 1)], name="due"),
    Index(OUTBOX, [("waiting_ts", 1)], name="waiting"),
    Index(OUTBOX, [("status", 1)], name="status"),
    Index(OUTBOX, [("kind", 1), ("seq", 1)], name="kind_seq"),
    Index(OUTBOX, [("unannounced_ts", 1)], name="unannounced"),
    Index(RECEIPTS, [("kind", 1), ("subject", 1), ("number", 1)], unique=True, name="kind_subject_number_unique"),
]


@dataclass(frozen=True)
class Backlog:
    """What the outbox still owes the ministry at one moment."""

    #: Entries waiting for delivery: pending, or being sent.
    waiting: int
    #: Entries parked after their last attempt, waiting for an operator.
    parked: int
    #: When the oldest waiting entry was taken into the outbox (None when none waits).
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

    async def record_answers(self, claim: str, receipts: list[Receipt], failures: list[Failure]) -> list[str]:
        """Record the ministry's answers to the sender holding `claim`; returns the keys it newly marked delivered.

        A receipt marks its entry delivered and is kept; a failure sets the entry back to pending
        with a later time, or parks it. Only the sender still holding an entry's claim changes it:
        a stale sender's answers (its lease ran out and another took the entry) are left to the
        current holder.
        """

    async def renew(self, claim: str, lease_until: datetime, renewed_until: datetime) -> int:
        """Extend to `renewed_until` the lease of the entries still held under `claim` (leased to `lease_until`);
        returns how many."""

    async def release(self, claim: str, lease_until: datetime, now: datetime) -> list[str]:
        """Hand back the entries still held under `claim` (taken with a lease to `lease_until`): pending again, due
        `now`, their attempts unchanged. For a round that was cancelled or failed after claiming, whether or not it
        learnt which entries it took; returns the keys released."""

    async def due_now(self, now: datetime) -> int:
        """Make every pending entry whose next attempt is later than `now` due `now` (the ministry is back);
        returns how many."""

    async def keep_receipts(self, receipts: list[Receipt]) -> None:
        """One receipt document per key in the receipts collection; a later delivery of the same key replaces it."""

    async def unannounced(self, before: datetime, limit: int) -> list[Receipt]:
        """Up to `limit` entries recorded delivered before `before` whose delivery was not announced, oldest first,
        each as the receipt its entry holds (one index range, however large the outbox)."""

    async def announced(self, keys: list[str]) -> None:
        """Keep that the deliveries of `keys` were announced."""

    async def entries(self, keys: Iterable[str]) -> dict[str, OutboxEntry]:
        """The stored entries among `keys`, by key."""

    async def receipt_ids(self, keys: Iterable[str]) -> dict[str, str]:
        """The ministry's receipt id kept for each of `keys` it acknowledged (the latest, for a key sent again)."""

    async def backlog(self) -> Backlog:
        """Entries waiting, entries parked, and when the oldest waiting entry was taken in (without reading the outbox whole)."""

    async def recount(self) -> Backlog:
        """At start: count the outbox afresh (the one time it is read whole) and keep those counts running from there."""

    async def resume(self, keys: list[str] | None, now: datetime) -> list[str]:
        """Make entries due again with a fresh count of attempts; returns the keys resumed.

        None resumes every parked entry; named keys are resumed when parked or delivered.
        """

    async def summary(self, parked_limit: int) -> OutboxSummary:
        """Entries by (kind, status), the first `parked_limit` parked ones, the last checkpoint delivered."""

    def holdings(self) -> AsyncIterator[Held]:
        """Every entry as reconciliation sees it, in key order."""

    async def delivered_checkpoint(self, origin: str) -> int | None:
        """The largest tree size of `origin` whose checkpoint the ministry acknowledged (None: none yet)."""

    async def archive_size(self) -> int | None:
        """The largest checkpoint tree size in the outbox (None without checkpoints)."""


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _dt(seconds: float | None) -> datetime:
    return datetime.fromtimestamp(seconds or 0.0, UTC)


def _due(now: float) -> dict[str, Any]:
    """Pending entries whose next attempt has come, and entries whose sender's lease ran out: one index range."""
    return {"due_ts": {"$lte": now}}


def outbox_key(stored: Mapping[str, Any]) -> str:
    """An outbox entry as the owner of its sealed payload: its key."""
    return str(stored["_id"])


def _entry(doc: dict[str, Any], payloads: SealedDocuments) -> OutboxEntry:
    return OutboxEntry(
        key=doc["_id"],
        kind=doc["kind"],
        subject=doc["subject"],
        number=doc["number"],
        payload=payloads.opened(doc),
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


def _moment(value: datetime | str) -> datetime:
    """A date kept inside a subdocument, as a date (a server that kept it as text gives it back as ISO text)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _kept_receipt(doc: Mapping[str, Any]) -> Receipt:
    """The receipt a delivered entry holds, as it was recorded with the delivered state."""
    receipt = doc["receipt"]
    return Receipt(
        doc["_id"], doc["kind"], doc["subject"], doc["number"], receipt["receipt_id"],
        receipt.get("received_at", ""), _moment(receipt["delivered_at"]), _dt(doc.get("created_ts")),
    )


def _answer_updates(claim: str, receipts: list[Receipt], failures: list[Failure]) -> list[UpdateOne]:
    """One conditional update per answer, applied only while the entry is still sent under `claim`."""
    delivered = [
        UpdateOne(
            {"_id": r.key, "status": SENDING, "claim": claim},
            {
                "$set": {
                    "status": DELIVERED,
                    "receipt": _receipt_fields(r),
                    "last_error": None,
                    "lease_until_ts": None,
                    "due_ts": None,
                    "waiting_ts": None,
                    "unannounced_ts": _ts(r.delivered_at),
                }
            },
        )
        for r in receipts
    ]
    return delivered + [_failure_update(f) for f in failures]


def _failure_update(f: Failure) -> UpdateOne:
    """Back to pending, due at its next attempt; or parked, due never and no longer waiting."""
    due = _ts(f.next_attempt_at) if f.next_attempt_at else None
    fields: dict[str, Any] = {
        "status": f.status,
        "attempts": f.attempts,
        "last_error": f.last_error,
        "next_attempt_ts": due,
        "lease_until_ts": None,
        "due_ts": due,
    }
    if f.status == PARKED:
        fields["waiting_ts"] = None
    return UpdateOne({"_id": f.key, "status": SENDING, "claim": f.claim}, {"$set": fields})


def _waiting_fields(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The look-up fields of an entry stored before it had them: due at its next attempt, or when its lease ends."""
    due = doc.get("lease_until_ts") if doc["status"] == SENDING else doc.get("next_attempt_ts")
    return {"due_ts": due if due is not None else doc["created_ts"], "waiting_ts": doc["created_ts"]}


class MongoOutboxRepository:
    def __init__(self, db: AsyncDatabase, vault: Vault) -> None:
        self.outbox = db[OUTBOX]
        self.receipts = db[RECEIPTS]
        self.counts = db[COUNTS]
        #: The ministry payloads, sealed under sync's key ring (by outbox key); what a key rotation re-encrypts.
        self.sealed = SealedDocuments(self.outbox, vault, "ministry-payload", outbox_key, (), field="payload")

    def _entry(self, doc: dict[str, Any]) -> OutboxEntry:
        return _entry(doc, self.sealed)

    async def _count(self, waiting: int, parked: int = 0) -> None:
        """Move the running counts by what one write did."""
        if waiting or parked:
            await self.counts.update_one(
                {"_id": OUTBOX_COUNTS}, {"$inc": {"waiting": waiting, "parked": parked}}, upsert=True
            )

    async def add_new(self, entries: list[OutboxEntry]) -> int:
        added = await insert_new(
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
                    **self.sealed.sealed(e.key, e.payload),
                    "status": e.status,
                    "attempts": e.attempts,
                    "created_at": e.created_at,
                    "created_ts": _ts(e.created_at),
                    "next_attempt_ts": _ts(e.next_attempt_at),
                    "due_ts": _ts(e.next_attempt_at),
                    "waiting_ts": _ts(e.created_at),
                    "last_error": None,
                    "lease_until_ts": None,
                    "claim": None,
                    "receipt": None,
                }
                for e in entries
            ],
        )
        await self._count(added)
        return added

    async def claim(
        self, keys: list[str] | None, now: datetime, lease_until: datetime, claim: str, limit: int
    ) -> list[OutboxEntry]:
        moment = _ts(now)
        if keys is None:
            # One more than can match, here and below: the first reply holds them all and closes the cursor.
            cursor = self.outbox.find(_due(moment), {"_id": 1}, batch_size=limit + 1).sort("due_ts", 1).limit(limit)
            keys = [doc["_id"] async for doc in cursor]
        if not keys:
            return []
        until = _ts(lease_until)
        await self.outbox.update_many(
            {"_id": {"$in": keys}, **_due(moment)},
            {"$set": {"status": SENDING, "lease_until_ts": until, "due_ts": until, "claim": claim}},
        )
        taken = self.outbox.find({"_id": {"$in": keys}, "claim": claim, "status": SENDING}, batch_size=len(keys) + 1)
        return [self._entry(doc) async for doc in taken]

    async def record_answers(self, claim: str, receipts: list[Receipt], failures: list[Failure]) -> list[str]:
        parking = [f for f in failures if f.status == PARKED]
        updates = _answer_updates(claim, receipts, [f for f in failures if f.status != PARKED])
        if updates:
            await self.outbox.bulk_write(updates, ordered=False)
        parked = 0
        if parking:
            parked = (await self.outbox.bulk_write([_failure_update(f) for f in parking], ordered=False)).modified_count
        done = await self._delivered(claim, receipts)
        await self._count(-len(done) - parked, parked)
        delivered = set(done)
        for receipt in receipts:
            if receipt.kind == CHECKPOINT and receipt.key in delivered:
                await self._held_at_least(receipt.subject, receipt.number)
        return done

    async def _held_at_least(self, origin: str, size: int) -> None:
        """Keep that the ministry holds `origin`'s checkpoint of `size`: the running largest, never lowered, so the
        relay asks one document for it instead of the outbox."""
        key = f"{HELD_CHECKPOINT}{origin}"
        for _ in range(2):  # raised, or kept first here; else another sender kept one first: raise that
            raised = await self.counts.update_one({"_id": key, "size": {"$lt": size}}, {"$set": {"size": size}})
            if raised.matched_count or await insert_new(self.counts, [{"_id": key, "size": size}]):
                return

    async def _delivered(self, claim: str, receipts: list[Receipt]) -> list[str]:
        """The keys this sender marked delivered with its own receipt; their receipts kept."""
        if not receipts:
            return []
        mine = {r.key: r for r in receipts}
        cursor = self.outbox.find(
            {"_id": {"$in": list(mine)}, "status": DELIVERED, "claim": claim}, {"receipt": 1}, batch_size=len(mine) + 1
        )
        done = {doc["_id"] async for doc in cursor if (doc.get("receipt") or {}).get("receipt_id") == mine[doc["_id"]].receipt_id}
        await self.keep_receipts([mine[k] for k in mine if k in done])
        return sorted(done)

    async def keep_receipts(self, receipts: list[Receipt]) -> None:
        if not receipts:
            return
        docs = {
            r.key: {"_id": r.key, "kind": r.kind, "subject": r.subject, "number": r.number, **_receipt_fields(r)}
            for r in receipts
        }
        if await insert_new(self.receipts, list(docs.values())) == len(docs):
            return
        cursor = self.receipts.find({"_id": {"$in": list(docs)}}, {"receipt_id": 1}, batch_size=len(docs) + 1)
        stale = [doc["_id"] async for doc in cursor if doc["receipt_id"] != docs[doc["_id"]]["receipt_id"]]
        if stale:
            await self.receipts.bulk_write([ReplaceOne({"_id": key}, docs[key]) for key in stale], ordered=False)

    async def renew(self, claim: str, lease_until: datetime, renewed_until: datetime) -> int:
        until = _ts(renewed_until)
        renewed = await self.outbox.update_many(
            {"due_ts": _ts(lease_until), "claim": claim, "status": SENDING},
            {"$set": {"lease_until_ts": until, "due_ts": until}},
        )
        return renewed.modified_count

    async def release(self, claim: str, lease_until: datetime, now: datetime) -> list[str]:
        # A claim sets every entry it takes due at its lease's end: one value of the `due` index finds them all.
        cursor = self.outbox.find({"due_ts": _ts(lease_until)}, {"claim": 1, "status": 1})
        held = sorted([doc["_id"] async for doc in cursor if doc.get("claim") == claim and doc["status"] == SENDING])
        if not held:
            return []
        moment = _ts(now)
        back = {"status": PENDING, "next_attempt_ts": moment, "due_ts": moment, "lease_until_ts": None, "claim": None}
        await self.outbox.bulk_write(
            [UpdateOne({"_id": key, "status": SENDING, "claim": claim}, {"$set": back}) for key in held], ordered=False
        )
        return held

    async def due_now(self, now: datetime) -> int:
        moment = _ts(now)
        cursor = self.outbox.find({"due_ts": {"$gt": moment}}, {"status": 1})
        later = [doc["_id"] async for doc in cursor if doc["status"] == PENDING]
        if not later:
            return 0
        due = {"next_attempt_ts": moment, "due_ts": moment}
        result = await self.outbox.bulk_write(
            [UpdateOne({"_id": key, "status": PENDING}, {"$set": due}) for key in later], ordered=False
        )
        return result.modified_count

    async def unannounced(self, before: datetime, limit: int) -> list[Receipt]:
        projection = {"kind": 1, "subject": 1, "number": 1, "receipt": 1, "created_ts": 1}
        cursor = self.outbox.find({"unannounced_ts": {"$lte": _ts(before)}}, projection, batch_size=limit + 1)
        return [_kept_receipt(doc) async for doc in cursor.sort("unannounced_ts", 1).limit(limit)]

    async def announced(self, keys: list[str]) -> None:
        if keys:
            await self.outbox.update_many({"_id": {"$in": sorted(set(keys))}}, {"$set": {"unannounced_ts": None}})

    async def entries(self, keys: Iterable[str]) -> dict[str, OutboxEntry]:
        return {doc["_id"]: self._entry(doc) async for doc in self.outbox.find({"_id": {"$in": sorted(set(keys))}})}

    async def receipt_ids(self, keys: Iterable[str]) -> dict[str, str]:
        cursor = self.receipts.find({"_id": {"$in": sorted(set(keys))}}, {"receipt_id": 1})
        return {doc["_id"]: doc["receipt_id"] async for doc in cursor}

    async def backlog(self) -> Backlog:
        counts = await self.counts.find_one({"_id": OUTBOX_COUNTS}) or {}
        oldest = None
        async for doc in self.outbox.find({"waiting_ts": {"$gte": 0}}, {"waiting_ts": 1}).sort("waiting_ts", 1).limit(1):
            oldest = _dt(doc["waiting_ts"])
        return Backlog(waiting=int(counts.get("waiting", 0)), parked=int(counts.get("parked", 0)), oldest_waiting=oldest)

    async def recount(self) -> Backlog:
        waiting = parked = 0
        fill: list[UpdateOne] = []
        projection = {"status": 1, "created_ts": 1, "next_attempt_ts": 1, "lease_until_ts": 1, "due_ts": 1, "waiting_ts": 1}
        async for doc in self.outbox.find({"status": {"$in": [PENDING, SENDING, PARKED]}}, projection):
            parked += doc["status"] == PARKED
            waiting += doc["status"] != PARKED
            if doc["status"] != PARKED and ("due_ts" not in doc or "waiting_ts" not in doc):
                fill.append(UpdateOne({"_id": doc["_id"], "status": doc["status"]}, {"$set": _waiting_fields(doc)}))
        if fill:
            await self.outbox.bulk_write(fill, ordered=False)
        await self.counts.replace_one({"_id": OUTBOX_COUNTS}, {"waiting": waiting, "parked": parked}, upsert=True)
        return await self.backlog()

    async def resume(self, keys: list[str] | None, now: datetime) -> list[str]:
        if keys is None:
            match: dict[str, Any] = {"status": PARKED}
        else:
            match = {"_id": {"$in": keys}, "status": {"$in": [PARKED, DELIVERED]}}
        chosen = [doc async for doc in self.outbox.find(match, {"status": 1, "created_ts": 1})]
        if not chosen:
            return []
        moment = _ts(now)
        resumed = [
            UpdateOne(
                {"_id": doc["_id"], "status": doc["status"]},
                {
                    "$set": {
                        "status": PENDING,
                        "attempts": 0,
                        "next_attempt_ts": moment,
                        "due_ts": moment,
                        "waiting_ts": doc["created_ts"],
                        "unannounced_ts": None,
                        "claim": None,
                    }
                },
            )
            for doc in chosen
        ]
        await self.outbox.bulk_write(resumed, ordered=False)
        parked = sum(1 for doc in chosen if doc["status"] == PARKED)
        await self._count(len(chosen), -parked)
        return sorted(doc["_id"] for doc in chosen)

    async def summary(self, parked_limit: int) -> OutboxSummary:
        # One string group key: the embedded MongoDB-wire server does not group by a document.
        cursor = await self.outbox.aggregate(
            [{"$group": {"_id": {"$concat": ["$kind", "/", "$status"]}, "n": {"$sum": 1}}}]
        )
        counts = {tuple(doc["_id"].split("/", 1)): doc["n"] async for doc in cursor}
        parked = [
            self._entry(doc)
            async for doc in self.outbox.find({"status": PARKED}).sort("created_ts", 1).limit(parked_limit)
        ] if parked_limit else []
        backlog = await self.backlog()
        last = None
        async for doc in self.outbox.find({"kind": CHECKPOINT, "status": DELIVERED}).sort("number", -1).limit(1):
            entry, receipt = self._entry(doc), doc["receipt"]
            last = Receipt(
                entry.key, entry.kind, entry.subject, entry.number, receipt["receipt_id"],
                receipt.get("received_at", ""), receipt["delivered_at"], entry.created_at,
            )
        return OutboxSummary(counts, parked, backlog.oldest_waiting, last)

    async def holdings(self) -> AsyncIterator[Held]:
        # The outbox and the receipts collection, both in key order, walked together.
        kept = self.receipts.find({}, {"receipt_id": 1}).sort("_id", 1)
        try:
            receipt = await anext(kept, None)
            projection = {"kind": 1, "status": 1, "digest": 1, "seq": 1, "receipt": 1, "unannounced_ts": 1}
            async for doc in self.outbox.find({}, projection).sort("_id", 1):
                while receipt is not None and receipt["_id"] < doc["_id"]:
                    receipt = await anext(kept, None)
                kept_id = receipt["receipt_id"] if receipt is not None and receipt["_id"] == doc["_id"] else None
                receipt_id = (doc.get("receipt") or {}).get("receipt_id")
                if doc["status"] == DELIVERED and kept_id != receipt_id:
                    # Kept after the receipts cursor read past it: asked again, by key.
                    again = await self.receipts.find_one({"_id": doc["_id"]}, {"receipt_id": 1})
                    kept_id = again["receipt_id"] if again is not None else None
                recorded = doc.get("unannounced_ts")
                yield Held(
                    key=doc["_id"],
                    kind=doc["kind"],
                    status=doc["status"],
                    digest=doc.get("digest") or "",
                    receipt_id=receipt_id,
                    seq=doc.get("seq"),
                    kept_receipt_id=kept_id,
                    recorded_at=_dt(recorded) if recorded is not None else None,
                )
        finally:
            await kept.close()

    async def delivered_checkpoint(self, origin: str) -> int | None:
        held = await self.counts.find_one({"_id": f"{HELD_CHECKPOINT}{origin}"})
        if held is not None:
            return int(held["size"])
        # An outbox kept before the running largest: found once from the outbox, then kept.
        wanted = {"kind": CHECKPOINT, "subject": origin, "status": DELIVERED}
        async for doc in self.outbox.find(wanted, {"number": 1}).sort("number", -1).limit(1):
            await self._held_at_least(origin, int(doc["number"]))
            return int(doc["number"])
        return None

    async def archive_size(self) -> int | None:
        async for doc in self.outbox.find({"kind": CHECKPOINT}, {"number": 1}).sort("number", -1).limit(1):
            return int(doc["number"])
        return None


class InMemoryOutboxRepository:
    """For unit and wiring tests: same behaviour, no database."""

    def __init__(self) -> None:
        self.outbox: dict[str, OutboxEntry] = {}
        self.leases: dict[str, datetime] = {}
        #: The receipts collection.
        self.receipts: dict[str, Receipt] = {}
        #: The receipt each delivered entry holds, recorded with its delivered state.
        self.held_receipts: dict[str, Receipt] = {}
        #: Delivered entries whose delivery was not announced yet: when they were recorded delivered.
        self.unannounced_since: dict[str, datetime] = {}

    async def add_new(self, entries: list[OutboxEntry]) -> int:
        added = 0
        for entry in entries:
            if entry.key not in self.outbox:
                self.outbox[entry.key] = entry
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
            due = sorted((e for e in self.outbox.values() if self._is_due(e, now)), key=lambda e: e.next_attempt_at)
            keys = [e.key for e in due[:limit]]
        taken = []
        for key in keys:
            entry = self.outbox.get(key)
            if entry is not None and self._is_due(entry, now):
                entry = replace(entry, status=SENDING, claim=claim)
                self.outbox[key] = entry
                self.leases[key] = lease_until
                taken.append(entry)
        return taken

    def _held_by(self, key: str, claim: str) -> OutboxEntry | None:
        entry = self.outbox[key]
        return entry if entry.status == SENDING and entry.claim == claim else None

    async def record_answers(self, claim: str, receipts: list[Receipt], failures: list[Failure]) -> list[str]:
        done = []
        for receipt in receipts:
            if (entry := self._held_by(receipt.key, claim)) is not None:
                self.outbox[receipt.key] = replace(entry, status=DELIVERED, last_error=None)
                self.held_receipts[receipt.key] = receipt
                self.unannounced_since[receipt.key] = receipt.delivered_at
                done.append(receipt.key)
        for failure in failures:
            if (entry := self._held_by(failure.key, failure.claim)) is not None:
                self.outbox[failure.key] = replace(
                    entry,
                    status=failure.status,
                    attempts=failure.attempts,
                    last_error=failure.last_error,
                    next_attempt_at=failure.next_attempt_at or entry.next_attempt_at,
                )
        await self.keep_receipts([r for r in receipts if r.key in done])
        return sorted(done)

    async def keep_receipts(self, receipts: list[Receipt]) -> None:
        for receipt in receipts:
            self.receipts[receipt.key] = receipt

    async def unannounced(self, before: datetime, limit: int) -> list[Receipt]:
        oldest = sorted((at, key) for key, at in self.unannounced_since.items() if at <= before)
        return [self.held_receipts[key] for _, key in oldest[:limit]]

    async def announced(self, keys: list[str]) -> None:
        for key in keys:
            self.unannounced_since.pop(key, None)

    async def renew(self, claim: str, lease_until: datetime, renewed_until: datetime) -> int:
        held = [k for k, e in self.outbox.items() if e.status == SENDING and e.claim == claim and self.leases[k] == lease_until]
        for key in held:
            self.leases[key] = renewed_until
        return len(held)

    async def release(self, claim: str, lease_until: datetime, now: datetime) -> list[str]:
        held = sorted(k for k, e in self.outbox.items() if e.status == SENDING and e.claim == claim)
        for key in held:
            self.outbox[key] = replace(self.outbox[key], status=PENDING, next_attempt_at=now, claim=None)
        return held

    async def due_now(self, now: datetime) -> int:
        later = [k for k, e in self.outbox.items() if e.status == PENDING and e.next_attempt_at > now]
        for key in later:
            self.outbox[key] = replace(self.outbox[key], next_attempt_at=now)
        return len(later)

    async def entries(self, keys: Iterable[str]) -> dict[str, OutboxEntry]:
        return {k: self.outbox[k] for k in sorted(set(keys)) if k in self.outbox}

    async def receipt_ids(self, keys: Iterable[str]) -> dict[str, str]:
        return {k: self.receipts[k].receipt_id for k in sorted(set(keys)) if k in self.receipts}

    async def backlog(self) -> Backlog:
        waiting = [e for e in self.outbox.values() if e.status in (PENDING, SENDING)]
        return Backlog(
            waiting=len(waiting),
            parked=sum(1 for e in self.outbox.values() if e.status == PARKED),
            oldest_waiting=min((e.created_at for e in waiting), default=None),
        )

    async def recount(self) -> Backlog:
        return await self.backlog()

    async def resume(self, keys: list[str] | None, now: datetime) -> list[str]:
        if keys is None:
            chosen = [k for k, e in self.outbox.items() if e.status == PARKED]
        else:
            chosen = [k for k in keys if k in self.outbox and self.outbox[k].status in (PARKED, DELIVERED)]
        for key in chosen:
            self.outbox[key] = replace(self.outbox[key], status=PENDING, attempts=0, next_attempt_at=now, claim=None)
            self.unannounced_since.pop(key, None)
        return sorted(set(chosen))

    async def summary(self, parked_limit: int) -> OutboxSummary:
        counts: dict[tuple[str, str], int] = {}
        for e in self.outbox.values():
            counts[(e.kind, e.status)] = counts.get((e.kind, e.status), 0) + 1
        parked = sorted((e for e in self.outbox.values() if e.status == PARKED), key=lambda e: e.created_at)
        checkpoints = [
            self.held_receipts[k] for k, e in self.outbox.items() if e.kind == CHECKPOINT and e.status == DELIVERED
        ]
        last = max(checkpoints, key=lambda r: r.number, default=None)
        return OutboxSummary(counts, parked[:parked_limit], (await self.backlog()).oldest_waiting, last)

    async def holdings(self) -> AsyncIterator[Held]:
        for key in sorted(self.outbox):
            e = self.outbox[key]
            held, kept = self.held_receipts.get(key), self.receipts.get(key)
            yield Held(
                key, e.kind, e.status, e.digest, held.receipt_id if held else None, e.seq,
                kept.receipt_id if kept else None, self.unannounced_since.get(key),
            )

    async def delivered_checkpoint(self, origin: str) -> int | None:
        return max(
            (e.number for e in self.outbox.values() if e.kind == CHECKPOINT and e.subject == origin and e.status == DELIVERED),
            default=None,
        )

    async def archive_size(self) -> int | None:
        return max((e.number for e in self.outbox.values() if e.kind == CHECKPOINT), default=None)
