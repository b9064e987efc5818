"""A chunk's writes in one transaction on the MongoDB-wire server: one insert and one commit per chunk,
all or nothing, and a chunk written before completed rather than duplicated."""

from __future__ import annotations

import asyncio
import os

import pytest
from bson import Binary
from pymongo import monitoring

from shared.mongo import Index, ensure_indexes, in_one_transaction, insert_new, make_client

RECORDS = [Index("records", [("record_id", 1), ("version", 1)], unique=True)]


class Commands(monitoring.CommandListener):
    """The commands a client sent, by name: what a chunk costs the database in round trips."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def count(self, name: str) -> int:
        return self.sent.count(name)


def sealed(first: int, count: int) -> list[dict]:
    """Stored records as a service keeps them: ids in clear, the document a sealed binary."""
    return [
        {"record_id": f"r{n:06d}", "version": 1, "key_id": "k1", "document": Binary(os.urandom(2_000))}
        for n in range(first, first + count)
    ]


@pytest.fixture
async def watched(mongo_url: str, namespace: str):
    """A client whose commands are counted, and a database of this test's own with the records' unique index."""
    commands = Commands()
    client = make_client(mongo_url, event_listeners=[commands])
    db = client[namespace.replace(".", "_") + "store"]
    await ensure_indexes(db, RECORDS)
    commands.sent.clear()
    yield client, db, commands
    await client.drop_database(db.name)
    await client.close()


@pytest.mark.parametrize("chunk", [10, 100])
async def test_a_chunk_costs_one_insert_and_one_commit_whatever_its_size(watched, chunk: int):
    client, db, commands = watched

    async def write(session):
        return await insert_new(db["records"], sealed(0, chunk), session=session)

    assert await in_one_transaction(client, write) == chunk
    assert (commands.count("insert"), commands.count("commitTransaction")) == (1, 1)
    assert await db["records"].count_documents({}) == chunk


async def test_a_chunk_that_fails_part_way_leaves_nothing_written(watched):
    client, db, _ = watched

    async def write_then_fail(session):
        await insert_new(db["records"], sealed(0, 20), session=session)
        raise RuntimeError("the chunk's next step failed")

    with pytest.raises(RuntimeError, match="next step failed"):
        await in_one_transaction(client, write_then_fail)
    assert await db["records"].count_documents({}) == 0


async def test_a_chunk_written_before_is_completed_not_duplicated(watched):
    """A redelivered chunk whose first half was stored: the rest is stored once, the first half is left alone."""
    client, db, commands = watched
    chunk = sealed(0, 20)
    await insert_new(db["records"], chunk[:10])

    async def write(session):
        return await insert_new(db["records"], chunk, session=session)

    assert await in_one_transaction(client, write) == 10
    assert await db["records"].count_documents({}) == 20


async def test_writes_in_a_chunk_to_two_collections_of_one_database_commit_together(watched):
    client, db, commands = watched

    async def write(session):
        await insert_new(db["records"], sealed(0, 5), session=session)
        await insert_new(db["log"], [{"_id": n, "leaf": n} for n in range(5)], session=session)
        return "written"

    assert await in_one_transaction(client, write) == "written"
    assert commands.count("commitTransaction") == 1
    assert (await db["records"].count_documents({}), await db["log"].count_documents({})) == (5, 5)


async def test_two_writers_chunks_open_at_once_on_one_database_are_each_stored_once(watched, mongo_url: str):
    """Two signing workers, say: both chunks' transactions open on the same database at the same time."""
    client, db, _ = watched
    other = make_client(mongo_url)
    first_open, second_written = asyncio.Event(), asyncio.Event()

    async def first(session):
        written = await insert_new(db["records"], sealed(0, 10), session=session)
        first_open.set()
        await second_written.wait()
        return written

    async def second(session):
        await first_open.wait()
        written = await insert_new(other[db.name]["records"], sealed(10, 10), session=session)
        second_written.set()
        return written

    try:
        done = await asyncio.gather(in_one_transaction(client, first), in_one_transaction(other, second))
    finally:
        await other.close()
    # Each reports at most what it wrote; a chunk completed by writing it again reports what that run wrote,
    # fewer than it holds, and the caller reads what is stored, as for any redelivered chunk.
    assert done[0] == 10 and done[1] in {0, 10}
    assert await db["records"].count_documents({}) == 20
