"""MongoDB access through PyMongo's async API: client, index declarations, idempotent inserts, and
a chunk's writes in one transaction where the server has transactions."""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

DUPLICATE_KEY = 11000
#: What a server without transactions (a standalone mongod) answers the first write of one.
ILLEGAL_OPERATION = 20
#: What MongoDB answers a write or commit in a transaction it has already aborted.
NO_SUCH_TRANSACTION = 251

T = TypeVar("T")


def make_client(url: str, *, timeout_ms: int = 10_000, **options: Any) -> AsyncMongoClient:
    """A client that writes with majority and journal, as records must survive a failover.

    `options` are further client options (event listeners, pool sizes), never the write concern.
    """
    return AsyncMongoClient(
        url,
        w="majority",
        journal=True,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        appname="hocba",
        **options,
    )


@dataclass(frozen=True)
class Index:
    """An index declared beside the repository that uses it; created idempotently at start-up."""

    collection: str
    keys: Sequence[tuple[str, int]]
    unique: bool = False
    name: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def index_name(self) -> str:
        return self.name or "_".join(f"{k}_{d}" for k, d in self.keys)


async def ensure_indexes(db: AsyncDatabase, indexes: Iterable[Index]) -> None:
    for index in indexes:
        await db[index.collection].create_index(
            list(index.keys), unique=index.unique, name=index.index_name, **index.options
        )


async def insert_new(
    collection: AsyncCollection,
    documents: list[dict[str, Any]],
    session: AsyncClientSession | None = None,
) -> int:
    """Insert documents, treating a duplicate key as "already there". Returns how many were new.

    This is how handlers stay idempotent: a unique index decides, never a check-then-insert.
    With a `session` the documents join its transaction (`in_one_transaction`).
    """
    if not documents:
        return 0
    try:
        result = await collection.insert_many(documents, ordered=False, session=session)
        return len(result.inserted_ids)
    except BulkWriteError as exc:
        if not only_duplicates(exc):
            raise
        errors = exc.details.get("writeErrors", [])
        return int(exc.details.get("nInserted", len(documents) - len(errors)))


def only_duplicates(exc: BulkWriteError) -> bool:
    """Whether a write failed only because some documents were already there."""
    errors = exc.details.get("writeErrors", [])
    return bool(errors) and all(e.get("code") == DUPLICATE_KEY for e in errors)


#: Clients whose server answered that it has no transactions: their chunks are written without one.
_without_transactions: weakref.WeakSet[AsyncMongoClient] = weakref.WeakSet()


def no_transactions_here(exc: OperationFailure) -> bool:
    """Whether a failure says the server has no transactions (a standalone mongod), not that a write failed."""
    return exc.code == ILLEGAL_OPERATION or "Transaction numbers are only allowed" in str(exc)


def ended_by_the_server(exc: OperationFailure) -> bool:
    """Whether the server ended the transaction itself: MongoDB aborts one at its first write error
    (a duplicate key: the chunk was written before) or on a failover."""
    return exc.code == NO_SUCH_TRANSACTION or exc.has_error_label("TransientTransactionError")


async def in_one_transaction(
    client: AsyncMongoClient, work: Callable[[AsyncClientSession | None], Awaitable[T]]
) -> T:
    """Run a chunk's writes (`work`, given the session to pass to each call) in one transaction.

    A chunk then commits once, not once per document: the embedded server otherwise commits and
    syncs every document by itself, and on MongoDB the chunk's writes become visible together.
    `work` runs again without a transaction (`session` None) where the server has none (a
    standalone mongod), where the server ended it (a redelivered chunk's duplicate key aborts a
    MongoDB transaction), and where the commit's outcome is unknown; so `work` must be idempotent,
    as every handler is (inserts through `insert_new`, updates that set what they set), and should
    only write documents prepared before it: what it returns is what its last run wrote.

    On the embedded server a transaction holds its database's one connection until it ends: a write
    of another client to that database meanwhile joins it, and is undone if it aborts. So a service
    takes it up for every write to its database at once, or not at all; none has yet.
    """
    if client in _without_transactions:
        return await work(None)
    async with client.start_session() as session:
        try:
            await session.start_transaction()
            result = await work(session)
        except OperationFailure as exc:
            await session.abort_transaction()
            return await _without_a_transaction(client, work, exc)
        except BaseException:
            await session.abort_transaction()
            raise
        try:
            await session.commit_transaction()
        except PyMongoError:
            return await work(None)  # committed or not, the idempotent writes complete what is missing
        return result


async def _without_a_transaction(
    client: AsyncMongoClient, work: Callable[[AsyncClientSession | None], Awaitable[T]], exc: OperationFailure
) -> T:
    """`work` again without a transaction, where the failure says the transaction was the trouble."""
    if no_transactions_here(exc):
        _without_transactions.add(client)
    elif not ended_by_the_server(exc):
        raise exc
    return await work(None)


async def insert_one_new(collection: AsyncCollection, document: dict[str, Any]) -> bool:
    """Insert one document; False when its unique key is already present."""
    try:
        await collection.insert_one(document)
        return True
    except DuplicateKeyError:
        return False


async def ping(client: AsyncMongoClient) -> bool:
    try:
        await client.admin.command("ping")
        return True
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return False
