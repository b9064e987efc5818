"""A chunk's writes in one transaction, and what happens when the transaction is the trouble: a server
without transactions (a standalone mongod) gets the chunk without one and is not asked again; a
transaction the server ended, or whose commit's outcome is unknown, is written again without one;
any other failure is raised, the transaction aborted."""

from __future__ import annotations

import pytest
from pymongo.errors import AutoReconnect, OperationFailure

from shared import mongo
from shared.mongo import in_one_transaction

STANDALONE = OperationFailure(
    "Transaction numbers are only allowed on a replica set member or mongos", code=mongo.ILLEGAL_OPERATION
)
ABORTED_BY_THE_SERVER = OperationFailure("Transaction with { txnNumber: 2 } has been aborted.", code=251)
FORBIDDEN = OperationFailure("not authorized on archive to execute command { insert: ... }", code=13)


class Session:
    """A session that notes how its transaction ended; its commit fails with `commit_failure`, if any."""

    def __init__(self, server: Server) -> None:
        self.server = server

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *_: object) -> None:
        pass

    async def start_transaction(self) -> None:
        self.server.ended.append("started")

    async def commit_transaction(self) -> None:
        if self.server.commit_failure is not None:
            raise self.server.commit_failure
        self.server.ended.append("committed")

    async def abort_transaction(self) -> None:
        self.server.ended.append("aborted")


class Server:
    """A client of a server whose transactions are recorded."""

    def __init__(self, commit_failure: Exception | None = None) -> None:
        self.commit_failure = commit_failure
        self.ended: list[str] = []

    def start_session(self) -> Session:
        return Session(self)


class Chunk:
    """A chunk's writes: the first write in a transaction fails with `failure`; what each run was given."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.failure = failure
        self.sessions: list[object] = []

    async def __call__(self, session: object) -> str:
        self.sessions.append(session)
        if session is not None and self.failure is not None:
            raise self.failure
        return "written"

    @property
    def in_transaction(self) -> list[bool]:
        return [s is not None for s in self.sessions]


@pytest.fixture(autouse=True)
def forget_servers(monkeypatch):
    monkeypatch.setattr(mongo, "_without_transactions", mongo.weakref.WeakSet())


async def test_a_chunk_is_written_in_one_transaction_and_committed():
    server, chunk = Server(), Chunk()
    assert await in_one_transaction(server, chunk) == "written"  # type: ignore[arg-type]
    assert chunk.in_transaction == [True]
    assert server.ended == ["started", "committed"]


async def test_a_server_without_transactions_gets_the_chunk_without_one_and_is_not_asked_again():
    server, chunk = Server(), Chunk(STANDALONE)
    assert await in_one_transaction(server, chunk) == "written"  # type: ignore[arg-type]
    assert await in_one_transaction(server, chunk) == "written"  # type: ignore[arg-type]
    assert chunk.in_transaction == [True, False, False]
    assert server.ended == ["started", "aborted"]


async def test_a_transaction_the_server_ended_is_written_again_without_one_and_the_next_chunk_tries_again():
    server, chunk = Server(), Chunk(ABORTED_BY_THE_SERVER)
    assert await in_one_transaction(server, chunk) == "written"  # type: ignore[arg-type]
    assert chunk.in_transaction == [True, False]
    assert server not in mongo._without_transactions


async def test_a_commit_whose_outcome_is_unknown_is_completed_by_writing_again_without_a_transaction():
    server, chunk = Server(commit_failure=AutoReconnect("connection closed during commit")), Chunk()
    assert await in_one_transaction(server, chunk) == "written"  # type: ignore[arg-type]
    assert chunk.in_transaction == [True, False]


@pytest.mark.parametrize("failure", [FORBIDDEN, ValueError("a document that cannot be stored")])
async def test_any_other_failure_aborts_the_transaction_and_is_raised_not_written_around(failure: Exception):
    server, chunk = Server(), Chunk(failure)
    with pytest.raises(type(failure)):
        await in_one_transaction(server, chunk)  # type: ignore[arg-type]
    assert chunk.in_transaction == [True]
    assert server.ended == ["started", "aborted"]
    assert server not in mongo._without_transactions
