"""archive's use case against the in-memory repository: append once, chain, report every version."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.archive import domain, handlers
from services.archive.handlers import LogHead
from services.archive.repository import InMemoryArchiveRepository
from shared.contracts.base import derived_id
from shared.contracts.signing import RecordsCompleted, SignedRecord
from shared.crypto.canonical import digest
from shared.errors import InvalidMessage, TransientError

AT = datetime(2026, 5, 21, tzinfo=UTC)


def completed(records) -> RecordsCompleted:
    return RecordsCompleted(records=records)


def sample(registry, name: str) -> float:
    return registry.get_sample_value(name, {}) or 0.0


async def archive(event, repo, state, metrics):
    return await handlers.archive_records(event, repo, state, metrics, clock=lambda: AT)


async def test_a_chunk_is_appended_in_order_and_the_chain_verifies(repo, metrics, registry, make_signed):
    event = completed([make_signed(n) for n in range(5)])
    archived = await archive(event, repo, LogHead(), metrics)
    assert archived.message_id == derived_id(event.message_id, "archived")
    assert [r.seq for r in archived.records] == [0, 1, 2, 3, 4]
    log = await repo.entries()
    assert [r.entry_hash for r in archived.records] == [e.entry_hash for e in log]
    assert domain.verify_chain(log) is None
    first = archived.records[0]
    assert (first.record_id, first.version, first.student_ref) == ("rec-0000", 1, "student-0000")
    assert first.digest == digest(event.records[0].record.document)
    assert first.document == event.records[0].record.document
    assert repo.rows[("rec-0003", 1)].seq == 3 and repo.rows[("rec-0003", 1)].archived_at == AT
    assert sample(registry, "hocba_records_archived_total") == 5
    assert sample(registry, "hocba_archive_log_entries") == 5


async def test_a_redelivered_chunk_appends_nothing_but_is_reported_again(repo, metrics, registry, make_signed):
    event = completed([make_signed(n) for n in range(3)])
    state = LogHead()
    first = await archive(event, repo, state, metrics)
    again = await archive(event, repo, state, metrics)
    assert len(repo.log) == 3
    assert again.message_id == first.message_id
    assert again.model_dump(exclude={"occurred_at"}) == first.model_dump(exclude={"occurred_at"})
    assert sample(registry, "hocba_records_archived_total") == 3


async def test_a_chunk_mixing_archived_and_new_versions_appends_only_the_new(repo, metrics, make_signed):
    state = LogHead()
    await archive(completed([make_signed(1)]), repo, state, metrics)
    chunk = completed([make_signed(0), make_signed(1), make_signed(2), make_signed(1)])
    archived = await archive(chunk, repo, state, metrics)
    assert [(r.record_id, r.seq) for r in archived.records] == [("rec-0000", 1), ("rec-0001", 0), ("rec-0002", 2)]
    assert domain.verify_chain(await repo.entries()) is None


async def test_a_second_appender_reloads_the_head_and_chains_after_the_first(repo, metrics, make_signed):
    one, two = LogHead(), LogHead()
    await archive(completed([make_signed(0)]), repo, one, metrics)
    await archive(completed([make_signed(1)]), repo, two, metrics)
    # `one` still takes seq 0 for the head: its append collides, reloads the head and chains after seq 1.
    await archive(completed([make_signed(2), make_signed(3)]), repo, one, metrics)
    log = await repo.entries()
    assert [e.record_id for e in log] == ["rec-0000", "rec-0001", "rec-0002", "rec-0003"]
    assert domain.verify_chain(log) is None
    assert one.head == domain.Head(3, log[-1].entry_hash)


async def test_a_version_archived_by_another_appender_meanwhile_is_not_appended_again(repo, metrics, make_signed):
    class Racing(InMemoryArchiveRepository):
        """Another appender archives rec-0001 between our look-up and our append."""

        async def positions(self, keys):
            found = await super().positions(keys)
            if not self.log:
                await InMemoryArchiveRepository.append(
                    self, domain.build_entries(domain.EMPTY, [make_signed(1)], AT)
                )
            return found

    racing = Racing()
    chunk = completed([make_signed(0), make_signed(1), make_signed(2)])
    archived = await archive(chunk, racing, LogHead(), metrics)
    log = await racing.entries()
    assert [e.record_id for e in log] == ["rec-0001", "rec-0000", "rec-0002"]
    assert domain.verify_chain(log) is None
    assert {r.record_id: r.seq for r in archived.records} == {"rec-0000": 1, "rec-0001": 0, "rec-0002": 2}


async def test_a_log_that_keeps_moving_is_a_transient_failure(metrics, make_signed):
    class Busy(InMemoryArchiveRepository):
        async def append(self, entries):
            return 0

    with pytest.raises(TransientError):
        await archive(completed([make_signed(0)]), Busy(), LogHead(), metrics)


async def test_a_signature_over_other_content_is_invalid(repo, metrics, make_signed):
    forged = SignedRecord(record=make_signed(0, conduct="Khá").record, signatures=make_signed(0).signatures)
    with pytest.raises(InvalidMessage):
        await archive(completed([forged]), repo, LogHead(), metrics)
    assert not repo.log


async def test_the_head_is_loaded_from_the_log(repo, metrics, registry, make_signed):
    await archive(completed([make_signed(n) for n in range(2)]), repo, LogHead(), metrics)
    state = LogHead()
    head = await state.load(repo, metrics)
    assert head == domain.Head(1, repo.log[1].entry_hash)
    assert sample(registry, "hocba_archive_log_entries") == 2
