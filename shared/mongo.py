"""MongoDB access through PyMongo's async API: client, index declarations, idempotent inserts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

DUPLICATE_KEY = 11000


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


async def insert_new(collection: AsyncCollection, documents: list[dict[str, Any]]) -> int:
    """Insert documents, treating a duplicate key as "already there". Returns how many were new.

    This is how handlers stay idempotent: a unique index decides, never a check-then-insert.
    """
    if not documents:
        return 0
    try:
        result = await collection.insert_many(documents, ordered=False)
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
