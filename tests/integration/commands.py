"""What a service asks of the MongoDB-wire server: the commands its client sends, counted by name.

A chunk of records must cost each service the same few commands whatever the chunk's size (one bulk
read, one bulk write, ...), never one per record. The chunk-cost tests handle one chunk at two sizes
through a client that counts, and compare the counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from shared.mongo import Index, ensure_indexes, make_client

#: More record versions than a cursor's first reply holds by default (101): a chunk this size must not need more.
LARGE_CHUNK = 120


class Commands(CommandListener):
    """The commands a client sends the server, by name, while `counting`."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        #: Each command sent while counting, whole (name, then the command document).
        self.asked: list[tuple[str, dict]] = []
        self.counting = False

    @contextmanager
    def counted(self) -> Iterator[Counter[str]]:
        """Count, from nothing, the commands sent inside the block: the counter yielded is filled as they go."""
        self.sent = Counter()
        self.asked = []
        self.counting = True
        try:
            yield self.sent
        finally:
            self.counting = False

    def started(self, event: CommandStartedEvent) -> None:
        if self.counting:
            self.sent[event.command_name] += 1
            self.asked.append((event.command_name, dict(event.command)))

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


@asynccontextmanager
async def watched_database(
    mongo_url: str, name: str, indexes: Iterable[Index]
) -> AsyncIterator[tuple[AsyncDatabase, Commands]]:
    """The database `name` with its indexes, as its service makes it at start, through a client of its own (written
    to as the services write) whose commands are counted; dropped afterwards."""
    commands = Commands()
    client = make_client(mongo_url, event_listeners=[commands])
    db = client[name]
    try:
        await ensure_indexes(db, indexes)
        yield db, commands
    finally:
        await client.drop_database(name)
        await client.close()


async def emptied(db: AsyncDatabase, indexes: Iterable[Index]) -> None:
    """`db` dropped and made again with its indexes: a fresh start for the next chunk size."""
    await db.client.drop_database(db.name)
    await ensure_indexes(db, indexes)
