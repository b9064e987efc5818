"""The access log's contract (identity, grades and the archive each keep one, in their own database): the in-memory
and the MongoDB store keep the same promises."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.access import ACCESS_LOG_INDEXES, AccessLogStore, InMemoryAccessLog, MongoAccessLog
from shared.contracts.access import AccessEntry, Action
from tests.integration.conftest import service_database

NOW = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)


@pytest.fixture
async def log(backend, mongo_client, settings) -> AccessLogStore:
    if backend == "in-memory":
        return InMemoryAccessLog()
    return MongoAccessLog(await service_database(mongo_client, settings, "access", ACCESS_LOG_INDEXES))


def read(
    ref: str, minute: int, subject: str = "admin-1", purpose: str = "", action: Action = "find", record_id: str = ""
) -> AccessEntry:
    return AccessEntry(
        at=NOW.replace(minute=minute), service="identity", subject=subject, roles=["school_admin"],
        school_code="79000701", action=action, student_ref=ref, record_id=record_id, purpose=purpose,
    )


async def test_every_read_is_kept_whole_and_told_oldest_first(log):
    kept = read("ref-1", 30, purpose="chuyển lớp", action="export", record_id="rec-0001")
    await log.add([kept, read("ref-2", 31)])
    await log.add([read("ref-1", 10, subject="svc-grades"), read("ref-1", 20)])
    assert [(e.at.minute, e.subject) for e in await log.of("ref-1", 10)] == [
        (10, "svc-grades"), (20, "admin-1"), (30, "admin-1")
    ]
    assert (await log.of("ref-1", 10))[-1] == kept
    assert await log.of("ref-2", 10) == [read("ref-2", 31)]


async def test_the_limit_keeps_the_oldest(log):
    await log.add([read("ref-1", minute) for minute in (40, 10, 30, 20)])
    assert [e.at.minute for e in await log.of("ref-1", 2)] == [10, 20]
    assert [e.at.minute for e in await log.of("ref-1", 1)] == [10]


async def test_reads_of_the_same_instant_are_told_in_the_order_kept(log):
    await log.add([read("ref-1", 10, subject="first"), read("ref-1", 10, subject="second")])
    await log.add([read("ref-1", 10, subject="third")])
    assert [e.subject for e in await log.of("ref-1", 10)] == ["first", "second", "third"]


async def test_only_that_students_reads_are_told(log):
    await log.add([read("ref-1", 10), read("ref-2", 11)])
    assert [e.student_ref for e in await log.of("ref-1", 10)] == ["ref-1"]
    assert await log.of("ref-9", 10) == []


async def test_adding_no_reads_keeps_nothing(log):
    await log.add([])
    assert await log.of("ref-1", 10) == []
