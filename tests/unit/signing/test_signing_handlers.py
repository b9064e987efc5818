"""signing's use cases against the in-memory repository."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.signing import handlers
from services.signing.domain import COMPLETED, OPEN
from services.signing.repository import InMemorySigningRepository
from shared.contracts.base import derived_id
from shared.contracts.grades import RecordsReady
from shared.contracts.signing import (
    BatchCompleted,
    BatchProgress,
    ChunkSigned,
    RequestSignBatch,
    SignWork,
)
from shared.crypto.canonical import canonical_json, digest
from shared.crypto.jws import EcSigner, jwk_public_key, protected_header, verify_detached
from shared.errors import InvalidMessage, NotFound

from .conftest import SCHOOL, YEAR

T0 = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)


def ready(records, **kw) -> RecordsReady:
    return RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records, **kw)


async def received(repo, make_record, count: int) -> None:
    await handlers.receive_records(ready([make_record(n) for n in range(count)]), repo)


async def planned(repo, metrics, chunk_size: int = 10, **kw) -> tuple[RequestSignBatch, list]:
    command = RequestSignBatch(school_code=SCHOOL, school_year=YEAR, **kw)
    return command, await handlers.plan_batch(command, repo, chunk_size, metrics, clock=lambda: T0)


def content(messages) -> list[dict]:
    """What a message says, leaving out when it was made."""
    return [m.model_dump(exclude={"occurred_at"}) for m in messages]


def sample(registry, name: str, labels: dict | None = None) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


# --- receiving -------------------------------------------------------------------------------


async def test_received_records_are_kept_with_their_digest_and_announced(repo, make_record):
    event = ready([make_record(1), make_record(2)])
    outcome = await handlers.receive_records(event, repo)
    assert outcome.new == 2 and not outcome.conflicts
    stored = repo.stored[("rec-0001", 1)]
    assert stored.digest == digest(make_record(1).document)
    assert outcome.event.count == 2 and outcome.event.source_message_id == event.message_id
    assert outcome.event.message_id == derived_id(event.message_id, "received")


async def test_a_redelivered_chunk_stores_nothing_new_and_announces_the_same(repo, make_record):
    event = ready([make_record(1), make_record(2)])
    first = await handlers.receive_records(event, repo)
    again = await handlers.receive_records(event, repo)
    assert again.new == 0 and not again.conflicts
    assert content([again.event]) == content([first.event])
    assert len(repo.stored) == 2


async def test_a_version_received_again_with_other_content_is_a_conflict(repo, make_record):
    await handlers.receive_records(ready([make_record(1)]), repo)
    outcome = await handlers.receive_records(ready([make_record(1, conduct="Khá"), make_record(2)]), repo)
    assert [c.record.record_id for c in outcome.conflicts] == ["rec-0001"]
    assert "different content" in outcome.conflicts[0].reason
    assert outcome.event.count == 1
    assert repo.stored[("rec-0001", 1)].digest == digest(make_record(1).document)


async def test_records_of_another_school_are_invalid(repo, make_record):
    with pytest.raises(InvalidMessage):
        await handlers.receive_records(ready([make_record(1, school_code="79000999")]), repo)


# --- planning --------------------------------------------------------------------------------


async def test_a_batch_is_cut_into_chunks_of_unsigned_records(repo, metrics, make_record):
    await received(repo, make_record, 25)
    command, messages = await planned(repo, metrics)
    assert [type(m) for m in messages] == [SignWork] * 3
    assert [len(m.records) for m in messages] == [10, 10, 5]
    assert [m.message_id for m in messages] == [derived_id(command.batch_id, "work", n) for n in range(3)]
    batch = repo.batches[command.batch_id]
    assert (batch.chunks_total, batch.records_total, batch.started_at, batch.status) == (3, 25, T0, OPEN)


async def test_a_redelivered_request_republishes_the_same_plan(repo, metrics, make_record):
    await received(repo, make_record, 15)
    command, first = await planned(repo, metrics)
    await handlers.receive_records(ready([make_record(n) for n in range(15, 30)]), repo)
    again = await handlers.plan_batch(command, repo, 10, metrics)
    assert content(again) == content(first), "the stored plan, not a new one, is published again"
    assert len(repo.batches) == 1


async def test_a_batch_id_cannot_be_reused_for_another_school_year(repo, metrics, make_record):
    await received(repo, make_record, 3)
    command, _ = await planned(repo, metrics)
    other = RequestSignBatch(batch_id=command.batch_id, school_code=SCHOOL, school_year="2024-2025")
    with pytest.raises(InvalidMessage):
        await handlers.plan_batch(other, repo, 10, metrics)


async def test_a_batch_with_nothing_to_sign_completes_at_once(repo, metrics, registry):
    command, messages = await planned(repo, metrics)
    assert len(messages) == 1 and isinstance(messages[0], BatchCompleted)
    assert (messages[0].batch_id, messages[0].records_total) == (command.batch_id, 0)
    assert repo.batches[command.batch_id].status == COMPLETED
    assert content(await handlers.plan_batch(command, repo, 10, metrics)) == content(messages)
    assert sample(registry, "hocba_signing_batches_total", {"outcome": "empty"}) == 1


# --- signing ---------------------------------------------------------------------------------


async def test_a_signature_verifies_against_its_header_key_and_not_for_an_altered_document(
    repo, metrics, signer, make_record
):
    await received(repo, make_record, 3)
    _, work = await planned(repo, metrics)
    outcome = await handlers.sign_chunk(work[0], repo, signer, metrics, clock=lambda: T0)
    signed = outcome.completed.records[0]
    signature = signed.signatures[0]
    header = protected_header(signature.jws)
    assert header["alg"] == "ES256" and header["kid"] == signer.key_id
    assert (header["record_id"], header["version"], header["role"]) == ("rec-0000", 1, "principal")
    assert header["digest"] == signature.digest == digest(signed.record.document)
    assert header["prev"] is None and header["signed_at"] == T0.isoformat()
    assert header["jwk"] == signer.public_jwk()
    key = jwk_public_key(header["jwk"])
    assert verify_detached(key, signature.jws, canonical_json(signed.record.document))
    altered = {**signed.record.document, "conduct": "Khá"}
    assert not verify_detached(key, signature.jws, canonical_json(altered))


async def test_a_chunk_is_signed_and_completed_records_carry_the_stored_signatures(
    repo, metrics, registry, signer, make_record
):
    await received(repo, make_record, 12)
    command, work = await planned(repo, metrics)
    outcome = await handlers.sign_chunk(work[0], repo, signer, metrics)
    assert outcome.new_signatures == 10
    assert [r.record.record_id for r in outcome.completed.records] == [f"rec-{n:04d}" for n in range(10)]
    for signed in outcome.completed.records:
        stored = repo.signed[(signed.record.record_id, 1, "principal")][0]
        assert signed.signatures == [stored]
    expected = ChunkSigned(
        message_id=derived_id(work[0].message_id, "chunk-signed"),
        batch_id=command.batch_id,
        chunk_no=0,
        signed=10,
        worker=signer.key_id,
    )
    assert content([outcome.chunk]) == content([expected])
    assert sample(registry, "hocba_records_signed_total", {"role": "principal"}) == 10


async def test_a_redelivered_chunk_is_not_signed_twice(repo, metrics, registry, signer, make_record):
    await received(repo, make_record, 5)
    _, work = await planned(repo, metrics)
    first = await handlers.sign_chunk(work[0], repo, signer, metrics)
    again = await handlers.sign_chunk(work[0], repo, signer, metrics)
    assert again.new_signatures == 0
    assert content([again.completed]) == content([first.completed])
    assert again.completed.message_id == first.completed.message_id
    assert again.chunk.signed == 5 and again.chunk.message_id == first.chunk.message_id
    assert len(repo.signed) == 5
    assert sample(registry, "hocba_records_signed_total", {"role": "principal"}) == 5


class StaleReads(InMemorySigningRepository):
    """A worker that looked before another worker stored its signatures."""

    def __init__(self, shared: InMemorySigningRepository) -> None:
        self.__dict__ = shared.__dict__
        self.stale = True

    async def signatures(self, keys):
        if self.stale:
            self.stale = False
            return {}
        return await super().signatures(keys)


async def test_when_two_workers_race_the_stored_signature_wins(repo, metrics, signer, make_record):
    await received(repo, make_record, 4)
    _, work = await planned(repo, metrics)
    first = await handlers.sign_chunk(work[0], repo, signer, metrics)
    late = await handlers.sign_chunk(work[0], StaleReads(repo), EcSigner.generate("worker-b"), metrics)
    assert late.new_signatures == 0
    assert late.completed.records == first.completed.records
    assert {s.key_id for r in late.completed.records for s in r.signatures} == {signer.key_id}
    assert late.chunk.signed == 4


async def test_work_naming_an_unknown_record_is_not_found(repo, metrics, signer):
    work = SignWork(batch_id="b", chunk_no=0, role="principal", records=[{"record_id": "nope", "version": 1}])
    with pytest.raises(NotFound):
        await handlers.sign_chunk(work, repo, signer, metrics)


async def test_a_record_whose_content_changed_in_storage_is_not_signed(repo, metrics, signer, make_record):
    await received(repo, make_record, 1)
    _, work = await planned(repo, metrics)
    stored = repo.stored[("rec-0000", 1)]
    repo.stored[("rec-0000", 1)] = type(stored)(make_record(0, conduct="Khá"), stored.digest)
    with pytest.raises(InvalidMessage):
        await handlers.sign_chunk(work[0], repo, signer, metrics)
    assert not repo.signed


# --- counting chunks -------------------------------------------------------------------------


async def signed_chunks(repo, metrics, signer, make_record, count: int) -> tuple[RequestSignBatch, list]:
    await received(repo, make_record, count)
    command, work = await planned(repo, metrics)
    return command, [(await handlers.sign_chunk(w, repo, signer, metrics)).chunk for w in work]


async def test_each_chunk_counts_once_and_the_batch_completes_once(repo, metrics, registry, signer, make_record):
    command, chunks = await signed_chunks(repo, metrics, signer, make_record, 25)
    clock = lambda: T0 + timedelta(seconds=42)  # noqa: E731
    published = []
    for chunk in [chunks[0], chunks[0], chunks[1], chunks[2], chunks[2], chunks[1]]:
        published += await handlers.count_chunk(chunk, repo, metrics, clock)
    progress = [m for m in published if isinstance(m, BatchProgress)]
    completed = [m for m in published if isinstance(m, BatchCompleted)]
    assert [(p.chunks_done, p.records_signed) for p in progress] == [(1, 10), (2, 20), (3, 25)]
    assert len(completed) == 1
    assert (completed[0].records_signed, completed[0].records_total) == (25, 25)
    assert completed[0].message_id == derived_id(command.batch_id, "completed")
    batch = repo.batches[command.batch_id]
    assert batch.status == COMPLETED and batch.done_chunks == {0, 1, 2}
    assert sample(registry, "hocba_signing_chunks_total") == 3
    assert sample(registry, "hocba_signing_batches_total", {"outcome": "completed"}) == 1
    assert sample(registry, "hocba_signing_batch_duration_seconds_count") == 1
    assert sample(registry, "hocba_signing_batch_duration_seconds_sum") == 42


async def test_a_batch_counted_to_the_end_before_a_crash_still_closes(repo, metrics, signer, make_record):
    command, chunks = await signed_chunks(repo, metrics, signer, make_record, 5)
    await repo.count_chunk(command.batch_id, 0, 5)  # counted, then the process died before closing
    published = await handlers.count_chunk(chunks[0], repo, metrics)
    assert [type(m) for m in published] == [BatchCompleted]
    assert await handlers.count_chunk(chunks[0], repo, metrics) == []


async def test_chunks_of_unknown_batches_or_beyond_the_plan_are_rejected(repo, metrics, signer, make_record):
    command, chunks = await signed_chunks(repo, metrics, signer, make_record, 5)
    with pytest.raises(NotFound):
        await handlers.count_chunk(ChunkSigned(batch_id="nope", chunk_no=0, signed=1, worker="w"), repo, metrics)
    with pytest.raises(InvalidMessage):
        await handlers.count_chunk(
            ChunkSigned(batch_id=command.batch_id, chunk_no=1, signed=1, worker="w"), repo, metrics
        )
    assert repo.batches[command.batch_id].done_chunks == frozenset()
