"""The outbox only grows (132,000 delivered entries after a city's term end): the relay's look-ups and the backlog
gauges ask it by index ranges and running counts, never by reading it whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import monitoring

from services.sync.domain import new_checkpoint_entry, new_entry, receipt_from
from services.sync.repository import INDEXES, OUTBOX, MongoOutboxRepository
from shared.contracts.archive import ArchivedRecord, Checkpoint
from shared.contracts.record import content_of
from shared.crypto.vault import Vault
from shared.mongo import ensure_indexes, make_client
from tests.records import record_document

NOW = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)
ORIGIN = "hocba.test/archive"


class Commands(monitoring.CommandListener):
    """Every command sent to the server, with its body."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def record(i: int) -> ArchivedRecord:
    return ArchivedRecord(
        record_id=f"hb-79000701-{i:05d}",
        version=1,
        school_code="79000701",
        school_year="2025-2026",
        student_ref=f"s-{i}",
        seq=i,
        entry_hash=f"{i:064x}",
        digest=f"{i + 1:064x}",
        content=content_of(record_document(f"hb-79000701-{i:05d}", 1, "79000701", "2025-2026", f"s-{i}")),
    )


def checkpoint(tree_size: int) -> Checkpoint:
    return Checkpoint(
        origin=ORIGIN, tree_size=tree_size, root_hash=f"{tree_size:064x}", issued_at=NOW, signature="e30..c2ln"
    )


@pytest.fixture
async def watched(mongo_url, settings) -> AsyncIterator[tuple[MongoOutboxRepository, Commands]]:
    """sync's outbox on the test server, with every command the client sends kept; the database dropped after."""
    commands = Commands()
    client = make_client(mongo_url, event_listeners=[commands])
    db = client[settings.names().database("sync")]
    try:
        await ensure_indexes(db, INDEXES)
        yield MongoOutboxRepository(db, Vault.ephemeral()), commands
    finally:
        await client.drop_database(db.name)
        await client.close()


async def delivered(repo: MongoOutboxRepository, entries: list) -> None:
    """The entries added, claimed and acknowledged by the ministry."""
    await repo.add_new(entries)
    claimed = await repo.claim(None, NOW + timedelta(seconds=1), NOW + timedelta(minutes=5), "c1", len(entries))
    await repo.record_answers("c1", [receipt_from(e, {"receipt_id": f"r-{e.key}"}, NOW) for e in claimed], [])


def single_field_indexes() -> set[str]:
    return {index.keys[0][0] for index in INDEXES if index.collection == OUTBOX and len(index.keys) == 1}


async def test_the_relay_and_the_gauges_ask_the_outbox_by_index_and_by_running_counts(watched):
    repo, commands = watched
    await repo.add_new([new_entry(record(i), NOW) for i in range(30)])
    await repo.recount()
    commands.sent.clear()

    claimed = await repo.claim(None, NOW + timedelta(seconds=1), NOW + timedelta(minutes=5), "c1", 10)
    backlog = await repo.backlog()

    assert len(claimed) == 10 and backlog.waiting == 30
    on_outbox = [(name, body) for name, body in commands.sent if body.get(name) == OUTBOX]
    assert {name for name, _ in on_outbox} <= {"find", "update"}, "no count or aggregate over the outbox"
    indexed = single_field_indexes()
    for name, body in on_outbox:
        if name == "find":
            fields = set(body.get("filter", {}))
            assert "_id" in fields or (fields and fields <= indexed and body.get("limit")), body.get("filter")
        else:
            assert all(set(u["q"]) >= {"_id"} for u in body["updates"]), "updates pick entries by key"
    assert any(set(b.get("filter", {})) == {"due_ts"} for n, b in on_outbox if n == "find"), "due: one index range"


async def test_what_checkpoint_the_ministry_holds_is_one_running_document_not_a_look_through_the_outbox(watched):
    """Each round that sends checkpoints asks which one the ministry holds (its consistency proof starts there): a
    term end delivers hundreds of checkpoints among 132,000 entries, so the answer is kept as it changes."""
    repo, commands = watched
    await delivered(
        repo,
        [new_entry(record(i), NOW) for i in range(20)] + [new_checkpoint_entry(checkpoint(n), NOW) for n in (5, 12)],
    )
    commands.sent.clear()

    held = await repo.delivered_checkpoint(ORIGIN)

    asked = [(name, body.get(name)) for name, body in commands.sent]
    assert held == 12
    assert asked == [("find", "counts")], "the outbox is not read"


async def test_deliveries_owed_an_announcement_are_one_index_range_not_a_look_through_the_outbox(watched):
    """sync looks every few seconds for deliveries a crash left unannounced, among every delivered entry."""
    repo, commands = watched
    await delivered(repo, [new_entry(record(i), NOW) for i in range(20)])
    commands.sent.clear()

    owed = await repo.unannounced(NOW + timedelta(seconds=30), 10)
    await repo.announced([r.key for r in owed])

    on_outbox = [(name, body) for name, body in commands.sent if body.get(name) == OUTBOX]
    assert len(owed) == 10
    [(find, looked), (update, marked)] = on_outbox
    assert (find, set(looked["filter"]), looked["limit"]) == ("find", {"unannounced_ts"}, 10)
    assert "unannounced_ts" in single_field_indexes()
    assert update == "update" and all(set(u["q"]) == {"_id"} for u in marked["updates"])
