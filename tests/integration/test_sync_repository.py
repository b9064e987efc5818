"""sync's repository contract: the in-memory and the MongoDB outbox keep the same promises."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.sync.domain import (
    CHECKPOINT,
    DELIVERED,
    PARKED,
    PENDING,
    RECORD,
    SENDING,
    Answer,
    Attempt,
    DeliveryPolicy,
    OutboxEntry,
    Receipt,
    after_failure,
    new_checkpoint_entry,
    new_entry,
    receipt_from,
)
from services.sync.repository import INDEXES, InMemoryOutboxRepository, MongoOutboxRepository, OutboxSummary
from shared.contracts.archive import ArchivedRecord, Checkpoint
from shared.contracts.record import content_of
from shared.crypto.vault import Vault
from tests.integration.conftest import service_database
from tests.records import identity, record_document

NOW = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
POLICY = DeliveryPolicy(max_attempts=50, base_seconds=0.2, cap_seconds=0.5, lease_seconds=30.0)


@pytest.fixture
async def repo(backend, mongo_client, settings):
    if backend == "in-memory":
        return InMemoryOutboxRepository()
    return MongoOutboxRepository(await service_database(mongo_client, settings, "sync", INDEXES), Vault.ephemeral())


def record(i: int, school: str = "79000702") -> ArchivedRecord:
    return ArchivedRecord(
        record_id=f"hb-{school}-{i:04d}",
        version=1,
        school_code=school,
        school_year="2025-2026",
        student_ref=f"s-{i}",
        seq=i,
        entry_hash=f"{i:064x}",
        digest=f"{i + 11:064x}",
        content=content_of(record_document(
            f"hb-{school}-{i:04d}", 1, school, "2025-2026", f"s-{i}", learning_result={"year": "Tốt"},
            student={"student_ref": f"s-{i}", "identity": identity(f"0792120{i:05d}")},
        )),
    )


def checkpoint(tree_size: int) -> Checkpoint:
    return Checkpoint(
        origin="hocba.test/archive",
        tree_size=tree_size,
        root_hash=f"{tree_size:064x}",
        issued_at=datetime(2026, 5, 20, tzinfo=UTC),
        signature="e30..c2ln",
    )


def records(n: int):
    return [new_entry(record(i), NOW) for i in range(n)]


async def test_an_entry_is_stored_once_per_record_version_and_per_checkpoint(repo):
    entries = records(3)
    checkpoints = [new_checkpoint_entry(checkpoint(n), NOW) for n in (2, 4)]
    assert await repo.add_new(entries + checkpoints) == 5
    assert await repo.add_new([*entries[:2], new_checkpoint_entry(checkpoint(4), NOW)]) == 0
    stored = await repo.entries([entries[0].key, checkpoints[1].key, "unknown:1"])
    assert list(stored) == sorted([entries[0].key, checkpoints[1].key])
    assert stored[entries[0].key] == entries[0]
    assert stored[checkpoints[1].key].payload == checkpoints[1].payload
    assert (stored[checkpoints[1].key].kind, stored[checkpoints[1].key].number) == (CHECKPOINT, 4)


async def test_claims_are_exclusive_and_an_expired_lease_is_taken_again(repo):
    entries = records(20)
    assert await repo.add_new(entries) == 20
    keys = [e.key for e in entries]
    first, second = await asyncio.gather(
        repo.claim(keys, NOW, NOW + LEASE, "a", 20), repo.claim(keys, NOW, NOW + LEASE, "b", 20)
    )
    assert not {e.key for e in first} & {e.key for e in second}
    assert {e.key for e in first} | {e.key for e in second} == set(keys)
    assert {e.status for e in first + second} == {SENDING}
    assert await repo.claim(None, NOW + timedelta(seconds=10), NOW + LEASE, "c", 100) == []

    later = NOW + timedelta(seconds=31)
    taken = await repo.claim(None, later, later + LEASE, "d", 5)
    assert len(taken) == 5 and {e.claim for e in taken} == {"d"}
    assert (await repo.backlog()).waiting == 20


async def test_a_stale_sender_does_not_overwrite_a_newer_claim(repo):
    [entry] = records(1)
    await repo.add_new([entry])
    [stale] = await repo.claim(None, NOW, NOW, "stale", 10)
    await repo.claim(None, NOW + timedelta(seconds=1), NOW + LEASE, "fresh", 10)

    late_failure = after_failure(stale, Attempt(Answer.RETRY, 0.1, error="late"), NOW, 0.0, POLICY)
    assert await repo.record_answers("stale", [], [late_failure]) == []
    late_receipt = receipt_from(stale, {"receipt_id": "r-late"}, NOW)
    assert await repo.record_answers("stale", [late_receipt], []) == []

    held = (await repo.entries([entry.key]))[entry.key]
    assert (held.claim, held.status, held.attempts) == ("fresh", SENDING, 0)
    assert await repo.receipt_ids([entry.key]) == {}


async def test_answers_are_recorded_and_the_outbox_answers_operators(repo):
    entries = records(4)
    checkpoints = [new_checkpoint_entry(checkpoint(n), NOW) for n in (2, 4)]
    await repo.add_new(entries + checkpoints)
    by_key = {e.key: e for e in await repo.claim(None, NOW, NOW + LEASE, "a", 10)}
    assert len(by_key) == 6

    receipt = receipt_from(by_key[entries[0].key], {"receipt_id": "r-0", "received_at": "t"}, NOW)
    stale = receipt_from(by_key[entries[1].key], {"receipt_id": "r-1"}, NOW)
    acknowledged = receipt_from(by_key[checkpoints[1].key], {"receipt_id": "r-cp"}, NOW)
    parked = after_failure(by_key[entries[2].key], Attempt(Answer.PARK, 0.1, error="HTTP 422"), NOW, 0.0, POLICY)
    later = after_failure(by_key[entries[3].key], Attempt(Answer.RETRY, 0.1, error="HTTP 503"), NOW, 0.0, POLICY)
    newly = await repo.record_answers("a", [receipt, acknowledged], [parked, later])
    assert newly == sorted([receipt.key, acknowledged.key])
    assert await repo.record_answers("someone-else", [stale], []) == []

    stored = await repo.entries(by_key)
    assert (stored[entries[0].key].status, stored[entries[0].key].last_error) == (DELIVERED, None)
    assert (stored[entries[2].key].status, stored[entries[2].key].attempts) == (PARKED, 1)
    waiting = stored[entries[3].key]
    assert (waiting.status, waiting.attempts, waiting.last_error) == (PENDING, 1, "HTTP 503")
    assert waiting.next_attempt_at == later.next_attempt_at
    assert await repo.receipt_ids(by_key) == {entries[0].key: "r-0", checkpoints[1].key: "r-cp"}

    backlog = await repo.backlog()
    # One failed and waiting; the stale one and a checkpoint still being sent.
    assert (backlog.waiting, backlog.parked, backlog.oldest_waiting) == (3, 1, NOW)

    summary = await repo.summary(parked_limit=10)
    assert summary.counts == {
        (RECORD, DELIVERED): 1, (RECORD, PARKED): 1, (RECORD, PENDING): 1, (RECORD, SENDING): 1,
        (CHECKPOINT, DELIVERED): 1, (CHECKPOINT, SENDING): 1,
    }
    assert [e.key for e in summary.parked] == [entries[2].key] and summary.parked[0].last_error == "HTTP 422"
    assert summary.oldest_waiting == NOW
    last = summary.last_checkpoint
    assert (last.number, last.receipt_id, last.delivered_at) == (4, "r-cp", NOW)
    assert await repo.summary(parked_limit=0) == OutboxSummary(summary.counts, [], NOW, last)


async def test_reconciliation_sees_every_entry_in_key_order_and_the_archive_size(repo):
    entries = records(3)
    checkpoints = [new_checkpoint_entry(checkpoint(n), NOW) for n in (2, 5)]
    await repo.add_new([*reversed(entries), *checkpoints])
    claimed = await repo.claim([entries[1].key], NOW, NOW + LEASE, "a", 1)
    await repo.record_answers("a", [receipt_from(claimed[0], {"receipt_id": "r-1"}, NOW)], [])

    held = [h async for h in repo.holdings()]
    assert [h.key for h in held] == sorted(e.key for e in entries + checkpoints)
    by_key = {h.key: h for h in held}
    assert {e.key: by_key[e.key].seq for e in entries} == {e.key: e.seq for e in entries}
    assert (by_key[entries[1].key].status, by_key[entries[1].key].receipt_id) == (DELIVERED, "r-1")
    assert (by_key[entries[0].key].status, by_key[entries[0].key].receipt_id) == (PENDING, None)
    assert by_key[entries[0].key].digest == entries[0].digest
    assert by_key["checkpoint:hocba.test/archive:5"].digest == f"{5:064x}"
    assert await repo.archive_size() == 5


async def test_without_checkpoints_there_is_no_archive_size(repo):
    await repo.add_new(records(2))
    assert await repo.archive_size() is None


async def test_operators_resume_parked_entries_and_resend_delivered_ones_under_a_new_receipt(repo):
    entries = records(3)
    await repo.add_new(entries)
    by_key = {e.key: e for e in await repo.claim(None, NOW, NOW + LEASE, "a", 10)}
    delivered = receipt_from(by_key[entries[0].key], {"receipt_id": "r-0"}, NOW)
    parked = after_failure(by_key[entries[1].key], Attempt(Answer.PARK, 0.1, error="HTTP 422"), NOW, 0.0, POLICY)
    await repo.record_answers("a", [delivered], [parked])

    resume_at = NOW + timedelta(seconds=5)
    assert await repo.resume(None, resume_at) == [entries[1].key]
    assert await repo.resume([entries[0].key, entries[2].key, "unknown"], resume_at) == [entries[0].key]
    resumed = await repo.entries([entries[0].key, entries[1].key])
    assert {(e.status, e.attempts, e.next_attempt_at, e.claim) for e in resumed.values()} == {
        (PENDING, 0, resume_at, None)
    }
    assert (await repo.entries([entries[2].key]))[entries[2].key].status == SENDING, "an entry on its way is left alone"

    # Sent again, the same key gets a new receipt: the one kept is the new one.
    [again] = await repo.claim([entries[0].key], resume_at, resume_at + LEASE, "b", 1)
    renewed = receipt_from(again, {"receipt_id": "r-0-again"}, resume_at)
    assert await repo.record_answers("b", [renewed], []) == [entries[0].key]
    assert await repo.receipt_ids([entries[0].key]) == {entries[0].key: "r-0-again"}


async def test_the_largest_checkpoint_delivered_of_an_origin_is_what_the_ministry_holds(repo):
    """What a checkpoint's consistency proof starts from: the largest of its origin the ministry acknowledged."""
    assert await repo.delivered_checkpoint("hocba.test/archive") is None
    other = new_checkpoint_entry(checkpoint(9).model_copy(update={"origin": "another/archive"}), NOW)
    await repo.add_new([new_checkpoint_entry(checkpoint(n), NOW) for n in (2, 4, 7)] + [other])
    by_key = {e.key: e for e in await repo.claim(None, NOW, NOW + LEASE, "a", 10)}
    acknowledged = [receipt_from(by_key[k], {"receipt_id": f"r-{k}"}, NOW) for k in sorted(by_key) if not k.endswith(":7")]
    await repo.record_answers("a", acknowledged, [])
    assert await repo.delivered_checkpoint("hocba.test/archive") == 4, "7 is still being sent"
    assert await repo.delivered_checkpoint("another/archive") == 9


async def test_a_delivery_is_owed_an_announcement_until_it_is_kept_announced(repo):
    """Recorded delivered, an entry is found (by when it was recorded) with the receipt it holds, until it is kept
    announced or sent again."""
    entries = records(3)
    await repo.add_new(entries)
    claimed = await repo.claim(None, NOW, NOW + LEASE, "a", 10)
    answered = [
        receipt_from(e, {"receipt_id": f"r-{e.key}", "received_at": "t"}, NOW + timedelta(seconds=i))
        for i, e in enumerate(claimed)
    ]
    await repo.record_answers("a", answered, [])

    assert await repo.unannounced(NOW - timedelta(seconds=1), 10) == []
    assert await repo.unannounced(NOW + timedelta(minutes=1), 10) == answered
    assert await repo.unannounced(NOW + timedelta(minutes=1), 2) == answered[:2], "oldest first, at most the limit"

    await repo.announced([answered[0].key])
    await repo.resume([answered[1].key], NOW + timedelta(minutes=1))
    assert await repo.unannounced(NOW + timedelta(minutes=1), 10) == answered[2:]


async def delivered(repo, n: int) -> tuple[list[OutboxEntry], dict[str, Receipt]]:
    """`n` entries delivered with receipt ids `r-<key>`, and their receipts by key."""
    entries = records(n)
    await repo.add_new(entries)
    claimed = await repo.claim(None, NOW, NOW + LEASE, "a", 10)
    await repo.record_answers("a", [receipt_from(e, {"receipt_id": f"r-{e.key}"}, NOW) for e in claimed], [])
    return entries, {r.key: r for r in await repo.unannounced(NOW, 10)}


async def test_reconciliation_sees_the_receipt_kept_beside_the_one_an_entry_holds(repo):
    entries, receipts = await delivered(repo, 2)
    kept = receipts[entries[0].key]
    await repo.keep_receipts([replace(kept, receipt_id="r-other")])

    held = {h.key: (h.receipt_id, h.kept_receipt_id) async for h in repo.holdings()}
    assert held == {
        entries[0].key: (f"r-{entries[0].key}", "r-other"),
        entries[1].key: (f"r-{entries[1].key}", f"r-{entries[1].key}"),
    }


async def test_a_receipt_kept_while_reconciliation_walks_the_outbox_is_seen_with_its_entry(repo):
    """The receipts collection is read beside the outbox; one kept after that read passed it is asked for by key."""
    entries, receipts = await delivered(repo, 2)
    late = receipts[entries[1].key]
    if isinstance(repo, InMemoryOutboxRepository):
        del repo.receipts[late.key]
    else:
        await repo.receipts.delete_one({"_id": late.key})

    walk = repo.holdings()
    first = await anext(walk)
    await repo.keep_receipts([late])
    second = await anext(walk)
    await walk.aclose()
    assert (first.kept_receipt_id, second.kept_receipt_id) == (f"r-{entries[0].key}", f"r-{entries[1].key}")
