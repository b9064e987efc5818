"""archive's use cases against the in-memory repository: admit, append, checkpoint, prove, export, amend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from services.archive import handlers
from services.archive.handlers import LogState
from shared.contracts.archive import ExportRecord, ProveConsistency, ProveInclusion
from shared.contracts.base import derived_id
from shared.contracts.signing import BatchCompleted, RecordsCompleted
from shared.crypto.archive_log import check_checkpoint
from shared.crypto.bundle import archive_certificates, verify_bundle, verify_copy
from shared.crypto.canonical import digest
from shared.crypto.merkle import MerkleTree, verify_consistency, verify_inclusion
from shared.errors import Forbidden, InvalidMessage, TransientError

from .conftest import archive_keys
from tests.unit.signing.trust import OTHER_SCHOOL, make_trust, signed_record

AT = datetime.now(UTC).replace(microsecond=0)


def completed(records, batch_id: str | None = None) -> RecordsCompleted:
    return RecordsCompleted(records=records, batch_id=batch_id)


def sample(registry, name: str) -> float:
    return registry.get_sample_value(name, {}) or 0.0


async def archive(event, repo, state, metrics, keys):
    return await handlers.archive_records(event, repo, state, metrics, keys, clock=lambda: AT)


async def test_a_chunk_is_appended_as_merkle_leaves_in_order(repo, metrics, registry, keys, make_signed):
    event = completed([make_signed(n) for n in range(5)])
    state = LogState()
    archived = await archive(event, repo, state, metrics, keys)
    assert archived.message_id == derived_id(event.message_id, "archived")
    assert [r.seq for r in archived.records] == [0, 1, 2, 3, 4]
    log = await repo.entries()
    assert [r.entry_hash for r in archived.records] == [e.leaf_hash for e in log]
    assert all(e.computed_leaf_hash() == e.leaf_hash for e in log)
    assert state.tree.root() == MerkleTree(bytes.fromhex(e.leaf_hash) for e in log).root()
    first = archived.records[0]
    assert (first.record_id, first.version, first.student_ref, first.supersedes) == ("rec-0000", 1, "student-0000", None)
    assert first.digest == digest(event.records[0].record.document)
    assert repo.rows[("rec-0003", 1)].seq == 3 and repo.rows[("rec-0003", 1)].archived_at == f"{AT:%Y-%m-%dT%H:%M:%S}.000Z"
    assert sample(registry, "hocba_records_archived_total") == 5
    assert sample(registry, "hocba_archive_log_entries") == 5


async def test_a_redelivered_chunk_appends_nothing_but_is_reported_again(repo, metrics, registry, keys, make_signed):
    event = completed([make_signed(n) for n in range(3)])
    state = LogState()
    first = await archive(event, repo, state, metrics, keys)
    again = await archive(event, repo, state, metrics, keys)
    assert len(repo.log) == 3 and state.tree.size == 3
    assert again.model_dump(exclude={"occurred_at"}) == first.model_dump(exclude={"occurred_at"})
    assert sample(registry, "hocba_records_archived_total") == 3


async def test_a_chunk_mixing_archived_and_new_versions_appends_only_the_new(repo, metrics, keys, make_signed):
    state = LogState()
    await archive(completed([make_signed(0), make_signed(1)]), repo, state, metrics, keys)
    mixed = await archive(completed([make_signed(1), make_signed(2), make_signed(2)]), repo, state, metrics, keys)
    assert [(r.record_id, r.seq) for r in mixed.records] == [("rec-0001", 1), ("rec-0002", 2)]


class Racing:
    """Another appender took position `seq` just before this process's append."""

    def __init__(self, repo, other) -> None:
        self.repo, self.other = repo, other

    def __getattr__(self, name):
        return getattr(self.repo, name)

    async def append(self, entries):
        if self.other is not None:
            other, self.other = self.other, None
            await self.repo.append(other)
        return await self.repo.append(entries)


async def test_when_another_appender_moved_the_log_the_tree_is_reloaded(repo, metrics, keys, make_signed):
    from services.archive import domain

    state = LogState()
    await archive(completed([make_signed(0)]), repo, state, metrics, keys)
    theirs = domain.build_entries(1, [make_signed(7)], AT)
    archived = await archive(completed([make_signed(1)]), Racing(repo, theirs), state, metrics, keys)
    assert archived.records[0].seq == 2 and state.tree.size == 3
    assert state.tree.root() == MerkleTree(bytes.fromhex(e.leaf_hash) for e in await repo.entries()).root()


# --- admission -------------------------------------------------------------------------------


async def test_a_version_whose_content_changed_after_signing_is_refused(repo, metrics, keys, make_signed):
    signed = make_signed(1)
    tampered = signed.model_copy(update={"record": signed.record.model_copy(update={"document": {"forged": True}})})
    with pytest.raises(InvalidMessage, match="other content"):
        await archive(completed([tampered]), repo, LogState(), metrics, keys)
    assert not repo.log


async def test_an_incomplete_or_reordered_signature_chain_is_refused(repo, metrics, keys, trust):
    partial = signed_record(trust, 1, roles=("homeroom_teacher", "principal"))
    with pytest.raises(InvalidMessage, match="a complete record needs"):
        await archive(completed([partial]), repo, LogState(), metrics, keys)
    whole = signed_record(trust, 2)
    swapped = whole.model_copy(update={"signatures": [whole.signatures[1], whole.signatures[0], whole.signatures[2]]})
    with pytest.raises(InvalidMessage, match="chain was cut or reordered"):
        await archive(completed([swapped]), repo, LogState(), metrics, keys)
    assert not repo.log


async def test_a_signature_by_a_certificate_revoked_before_it_was_made_is_refused(repo, metrics, tmp_path):
    own = make_trust(tmp_path)
    signed = signed_record(own, 1, signed_at=datetime.now(UTC).replace(microsecond=0))
    own.pki.revoke("ht-79000701", at=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(InvalidMessage, match="revoked"):
        await archive(completed([signed]), repo, LogState(), metrics, archive_keys(own))


async def test_a_signature_made_before_its_certificate_was_revoked_still_stands(repo, metrics, tmp_path):
    own = make_trust(tmp_path)
    signed = signed_record(own, 1, signed_at=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10))
    own.pki.revoke("ht-79000701", at=datetime.now(UTC) - timedelta(minutes=5))
    archived = await archive(completed([signed]), repo, LogState(), metrics, archive_keys(own))
    assert archived.records[0].seq == 0


# --- amendments ------------------------------------------------------------------------------


def amended(trust, n: int, version: int, supersedes: int | None, school_code: str = "79000701", **document):
    amendment = {"amendment": {"supersedes": supersedes, "reason": "grade-correction", "note": "", "requested_by": "x"}}
    return signed_record(trust, n, version, school_code=school_code, **(amendment if supersedes else {}), **document)


async def test_an_amendment_by_the_issuing_school_is_a_new_version_and_the_old_one_stays(
    repo, metrics, keys, trust
):
    state = LogState()
    await archive(completed([signed_record(trust, 5)]), repo, state, metrics, keys)
    archived = await archive(completed([amended(trust, 5, 2, 1, conduct="Khá")]), repo, state, metrics, keys)
    assert (archived.records[0].version, archived.records[0].supersedes, archived.records[0].seq) == (2, 1, 1)
    assert {e.version for e in repo.log.values()} == {1, 2}
    old = await handlers.export_record(ExportRecord(record_id="rec-0005", version=1), repo, state, metrics, keys)
    assert old.bundle["status"]["superseded_by"] == 2
    assert verify_bundle(old.bundle, keys.trust()).ok, "a superseded version stays verifiable"


async def test_a_new_version_must_be_an_amendment_of_the_latest_by_the_same_school(repo, metrics, keys, trust):
    state = LogState()
    await archive(completed([signed_record(trust, 5)]), repo, state, metrics, keys)
    with pytest.raises(InvalidMessage, match="must name the version it supersedes"):
        await archive(completed([signed_record(trust, 5, 2)]), repo, state, metrics, keys)
    with pytest.raises(Forbidden, match="may not amend"):
        await archive(completed([amended(trust, 5, 2, 1, school_code=OTHER_SCHOOL)]), repo, state, metrics, keys)
    with pytest.raises(TransientError, match="waits"):
        await archive(completed([amended(trust, 6, 2, 1)]), repo, state, metrics, keys)
    assert len(repo.log) == 1


# --- checkpoints and proofs ------------------------------------------------------------------


async def test_a_checkpoint_is_signed_by_the_archive_and_states_the_root(repo, metrics, registry, keys, make_signed):
    state = LogState()
    await archive(completed([make_signed(n) for n in range(6)]), repo, state, metrics, keys)
    checkpoint = await handlers.issue_checkpoint(repo, state, metrics, keys, clock=lambda: AT)
    assert (checkpoint.origin, checkpoint.tree_size, checkpoint.root_hash) == ("test.archive", 6, state.tree.root().hex())
    assert check_checkpoint(checkpoint, keys.trust()).ok
    assert await handlers.issue_checkpoint(repo, state, metrics, keys) is None, "nothing new, no checkpoint"
    assert await repo.checkpoints() == [checkpoint]
    event = handlers.checkpoint_event(checkpoint)
    assert event.message_id == handlers.checkpoint_event(checkpoint).message_id
    assert sample(registry, "hocba_archive_checkpoints_total") == 1


async def test_a_batchs_checkpoint_waits_until_its_records_are_archived(repo, metrics, keys, make_signed):
    state = LogState()
    done = BatchCompleted(batch_id="b1", school_code="79000701", school_year="2025-2026",
                          records_signed=4, records_total=4, records_completed=4)
    waiting = asyncio.create_task(handlers.checkpoint_after_batch(done, repo, state, metrics, keys, wait_seconds=10))
    await archive(completed([make_signed(0), make_signed(1)], "b1"), repo, state, metrics, keys)
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await archive(completed([make_signed(2), make_signed(3)], "b1"), repo, state, metrics, keys)
    checkpoint = await asyncio.wait_for(waiting, 5)
    assert checkpoint.tree_size == 4


async def test_inclusion_and_consistency_proofs_verify_against_the_checkpoint(repo, metrics, keys, make_signed):
    state = LogState()
    await archive(completed([make_signed(n) for n in range(7)]), repo, state, metrics, keys)
    first = await handlers.issue_checkpoint(repo, state, metrics, keys)
    await archive(completed([make_signed(n) for n in range(7, 12)]), repo, state, metrics, keys)
    second = await handlers.issue_checkpoint(repo, state, metrics, keys)
    reply = await handlers.prove_inclusion(ProveInclusion(record_id="rec-0004"), repo, state, metrics, keys)
    proof = reply.inclusion
    assert (proof.leaf_index, proof.tree_size, proof.checkpoint) == (4, 12, second)
    assert verify_inclusion(4, 12, bytes.fromhex(proof.leaf_hash), [bytes.fromhex(p) for p in proof.proof],
                            bytes.fromhex(second.root_hash))
    old = await handlers.prove_inclusion(ProveInclusion(record_id="rec-0004", tree_size=7), repo, state, metrics, keys)
    assert verify_inclusion(4, 7, bytes.fromhex(old.inclusion.leaf_hash), [bytes.fromhex(p) for p in old.inclusion.proof],
                            bytes.fromhex(first.root_hash))
    consistency = (await handlers.prove_consistency(ProveConsistency(first=7), repo, state, metrics, keys)).consistency
    assert (consistency.first_root, consistency.second_root) == (first.root_hash, second.root_hash)
    assert verify_consistency(7, 12, bytes.fromhex(first.root_hash), bytes.fromhex(second.root_hash),
                              [bytes.fromhex(p) for p in consistency.proof])
    missing = await handlers.prove_inclusion(ProveInclusion(record_id="nope"), repo, state, metrics, keys)
    assert missing.error and missing.inclusion is None


async def test_an_exported_bundle_verifies_offline_and_a_forged_one_does_not(repo, metrics, keys, make_signed):
    state = LogState()
    await archive(completed([make_signed(n) for n in range(9)]), repo, state, metrics, keys)
    reply = await handlers.export_record(
        ExportRecord(record_id="rec-0003", certified_copy=True), repo, state, metrics, keys
    )
    bundle = reply.bundle
    assert bundle["log"]["tree_size"] == 9 == state.last.tree_size, "an export issues the checkpoint it needs"
    verdict = verify_bundle(bundle, keys.trust())
    assert verdict.ok, [line for s in verdict.sections for line in s.lines if not line[0]]
    copy = verify_copy(reply.qr, archive_certificates(bundle), keys.trust(), bundle)
    assert copy.ok, copy.sections
    forged = {**bundle, "record": {**bundle["record"], "document": {**bundle["record"]["document"], "conduct": "Tốt"}}}
    failed = [text for s in verify_bundle(forged, keys.trust()).sections for ok, text in s.lines if not ok]
    assert any("other content" in t for t in failed) and any("leaf hash does not match" in t for t in failed)
    assert not verify_copy(reply.qr, archive_certificates(bundle), keys.trust(), forged).ok
