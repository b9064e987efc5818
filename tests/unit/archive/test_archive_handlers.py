"""archive's use cases against the in-memory repository: admit, append, checkpoint, prove, export, amend."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.archive import domain, handlers
from services.archive.domain import SupersededNotArchived
from services.archive.handlers import LogState
from shared.contracts.archive import (
    AuditArchive,
    CheckpointIssued,
    ExportRecord,
    IssueCheckpoint,
    ProveConsistency,
    ProveInclusion,
    RecordsArchived,
)
from shared.contracts.base import derived_id
from shared.contracts.signing import BatchCompleted, RecordsCompleted
from shared.crypto.archive_log import check_checkpoint
from shared.crypto.bundle import archive_certificates, verify_bundle, verify_copy
from shared.crypto.canonical import digest
from shared.crypto.merkle import MerkleTree, verify_consistency, verify_inclusion
from shared.errors import Forbidden, InvalidMessage, NotFound, TransientError
from shared.outcome import Outcome
from tests.unit.signing.trust import OTHER_SCHOOL, make_trust, signed_record

from .conftest import AT, ORIGIN, archive_deps


def completed(records, batch_id: str | None = None) -> RecordsCompleted:
    return RecordsCompleted(records=records, batch_id=batch_id)


def batch_completed(batch_id: str, records_completed: int) -> BatchCompleted:
    return BatchCompleted(
        batch_id=batch_id, school_code="79000701", school_year="2025-2026", records_signed=records_completed,
        records_total=records_completed, records_completed=records_completed,
    )


def sample(registry, name: str, labels: dict | None = None) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


async def archive(event: RecordsCompleted, deps) -> RecordsArchived:
    """What archiving `event` announces: one RecordsArchived."""
    outcome = await handlers.archive_records(event, deps)
    [archived] = outcome.publish
    assert isinstance(archived, RecordsArchived) and outcome.reply is None
    return archived


def announced(outcome: Outcome) -> list:
    """The checkpoints an outcome announces."""
    assert all(isinstance(m, CheckpointIssued) for m in outcome.publish)
    return [m.checkpoint for m in outcome.publish]


async def leaves(repo) -> list[bytes]:
    return [bytes.fromhex(e.leaf_hash) for e in await repo.entries()]


async def test_a_chunk_is_appended_as_merkle_leaves_in_order(deps, registry, make_signed):
    event = completed([make_signed(n) for n in range(5)])
    archived = await archive(event, deps)
    assert archived.message_id == derived_id(event.message_id, "archived")
    assert [r.seq for r in archived.records] == [0, 1, 2, 3, 4]
    log = await deps.repo.entries()
    assert [r.entry_hash for r in archived.records] == [e.leaf_hash for e in log]
    assert all(e.computed_leaf_hash() == e.leaf_hash for e in log)
    assert deps.log.tree.root() == MerkleTree(await leaves(deps.repo)).root()
    first = archived.records[0]
    assert (first.record_id, first.version, first.student_ref, first.supersedes) == ("rec-0000", 1, "student-0000", None)
    assert first.digest == digest(event.records[0].record.document)
    position = (await deps.repo.positions([("rec-0003", 1)]))[("rec-0003", 1)]
    assert position.seq == 3 and position.archived_at == f"{AT:%Y-%m-%dT%H:%M:%S}.000Z"
    assert sample(registry, "hocba_records_archived_total") == 5
    assert sample(registry, "hocba_archive_log_entries") == 5


async def test_a_redelivered_chunk_appends_nothing_but_is_reported_again(deps, registry, make_signed):
    event = completed([make_signed(n) for n in range(3)])
    first = await archive(event, deps)
    again = await archive(event, deps)
    assert len(await deps.repo.entries()) == 3 and deps.log.tree.size == 3
    assert again.model_dump(exclude={"occurred_at"}) == first.model_dump(exclude={"occurred_at"})
    assert sample(registry, "hocba_records_archived_total") == 3


async def test_a_chunk_mixing_archived_and_new_versions_appends_only_the_new(deps, make_signed):
    await archive(completed([make_signed(0), make_signed(1)]), deps)
    mixed = await archive(completed([make_signed(1), make_signed(2), make_signed(2)]), deps)
    assert [(r.record_id, r.seq) for r in mixed.records] == [("rec-0001", 1), ("rec-0002", 2)]


class Racing:
    """Another appender takes the next positions just before this process's next append."""

    def __init__(self, repo, theirs) -> None:
        self.repo, self.theirs = repo, theirs

    def __getattr__(self, name):
        return getattr(self.repo, name)

    async def append(self, entries):
        if self.theirs is not None:
            theirs, self.theirs = self.theirs, None
            await self.repo.append(theirs)
        return await self.repo.append(entries)


async def test_when_another_appender_moved_the_log_the_tree_is_reloaded(deps, make_signed):
    await archive(completed([make_signed(0)]), deps)
    theirs = domain.build_entries(1, [make_signed(7)], AT)
    archived = await archive(completed([make_signed(1)]), replace(deps, repo=Racing(deps.repo, theirs)))
    assert archived.records[0].seq == 2 and deps.log.tree.size == 3
    assert deps.log.tree.root() == MerkleTree(await leaves(deps.repo)).root()


async def test_versions_appended_just_before_a_crash_are_found_in_the_log_and_not_appended_again(deps, make_signed):
    await deps.repo.append(domain.build_entries(0, [make_signed(0), make_signed(1)], AT))
    archived = await archive(completed([make_signed(1), make_signed(2)]), deps)
    assert [(r.record_id, r.seq) for r in archived.records] == [("rec-0001", 1), ("rec-0002", 2)]
    assert [e.key for e in await deps.repo.entries()] == [("rec-0000", 1), ("rec-0001", 1), ("rec-0002", 1)]
    assert deps.log.tree.root() == MerkleTree(await leaves(deps.repo)).root()
    assert list(await deps.repo.positions([("rec-0001", 1), ("rec-0002", 1)])) == [("rec-0001", 1), ("rec-0002", 1)]


# --- admission -------------------------------------------------------------------------------


async def test_a_version_whose_content_changed_after_signing_is_refused(deps, registry, make_signed):
    signed = make_signed(1)
    tampered = signed.model_copy(update={"record": signed.record.model_copy(update={"document": {"forged": True}})})
    with pytest.raises(InvalidMessage, match="other content"):
        await handlers.archive_records(completed([tampered]), deps)
    assert await deps.repo.entries() == []
    assert sample(registry, "hocba_archive_refused_total", {"reason": "invalid-signature"}) == 1


async def test_an_incomplete_or_reordered_signature_chain_is_refused(deps, trust):
    partial = signed_record(trust, 1, roles=("homeroom_teacher", "principal"))
    with pytest.raises(InvalidMessage, match="a complete record needs"):
        await handlers.archive_records(completed([partial]), deps)
    whole = signed_record(trust, 2)
    swapped = whole.model_copy(update={"signatures": [whole.signatures[1], whole.signatures[0], whole.signatures[2]]})
    with pytest.raises(InvalidMessage, match="chain was cut or reordered"):
        await handlers.archive_records(completed([swapped]), deps)
    assert await deps.repo.entries() == []


async def test_a_signature_by_a_certificate_revoked_before_it_was_made_is_refused(tmp_path):
    own = make_trust(tmp_path)
    deps = archive_deps(own)
    signed = signed_record(own, 1, signed_at=datetime.now(UTC).replace(microsecond=0))
    own.pki.revoke("ht-79000701", at=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(InvalidMessage, match="revoked"):
        await handlers.archive_records(completed([signed]), deps)
    assert await deps.repo.entries() == []


async def test_a_signature_made_before_its_certificate_was_revoked_still_stands(tmp_path):
    own = make_trust(tmp_path)
    signed = signed_record(own, 1, signed_at=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10))
    own.pki.revoke("ht-79000701", at=datetime.now(UTC) - timedelta(minutes=5))
    archived = await archive(completed([signed]), archive_deps(own))
    assert archived.records[0].seq == 0


# --- amendments ------------------------------------------------------------------------------


def amended(trust, n: int, version: int, supersedes: int | None, school_code: str = "79000701", **document):
    amendment = {"amendment": {"supersedes": supersedes, "reason": "grade-correction", "note": "", "requested_by": "x"}}
    return signed_record(trust, n, version, school_code=school_code, **(amendment if supersedes else {}), **document)


async def test_an_amendment_by_the_issuing_school_is_a_new_version_and_the_old_one_stays(deps, trust):
    await archive(completed([signed_record(trust, 5)]), deps)
    archived = await archive(completed([amended(trust, 5, 2, 1, conduct="Khá")]), deps)
    assert (archived.records[0].version, archived.records[0].supersedes, archived.records[0].seq) == (2, 1, 1)
    assert {e.version for e in await deps.repo.entries()} == {1, 2}
    old = (await handlers.export_record(ExportRecord(record_id="rec-0005", version=1), deps)).reply
    assert old.bundle["status"]["superseded_by"] == 2
    assert verify_bundle(old.bundle, deps.keys.trust()).ok, "a superseded version stays verifiable"


async def test_a_new_version_must_be_an_amendment_of_the_latest_by_the_same_school(deps, trust):
    await archive(completed([signed_record(trust, 5)]), deps)
    with pytest.raises(InvalidMessage, match="must name the version it supersedes"):
        await handlers.archive_records(completed([signed_record(trust, 5, 2)]), deps)
    with pytest.raises(Forbidden, match="may not amend"):
        await handlers.archive_records(completed([amended(trust, 5, 2, 1, school_code=OTHER_SCHOOL)]), deps)
    with pytest.raises(SupersededNotArchived, match="waits") as waiting:
        await handlers.archive_records(completed([amended(trust, 6, 2, 1)]), deps)
    assert isinstance(waiting.value, TransientError), "the amendment is tried again: its superseded version may come"
    assert len(await deps.repo.entries()) == 1


# --- checkpoints -----------------------------------------------------------------------------


async def test_a_checkpoint_is_signed_by_the_archive_and_states_the_root(deps, registry, make_signed):
    await archive(completed([make_signed(n) for n in range(6)]), deps)
    outcome = await handlers.scheduled_checkpoint(deps)
    [checkpoint] = announced(outcome)
    assert (checkpoint.origin, checkpoint.tree_size, checkpoint.root_hash) == (ORIGIN, 6, deps.log.tree.root().hex())
    assert checkpoint.issued_at == AT
    assert check_checkpoint(checkpoint, deps.keys.trust()).ok
    assert announced(await handlers.scheduled_checkpoint(deps)) == [], "nothing new, no checkpoint"
    assert await deps.repo.checkpoints() == [checkpoint]
    [event] = outcome.publish
    assert event.message_id == derived_id(ORIGIN, "checkpoint", 6) == handlers.checkpoint_event(checkpoint).message_id
    assert sample(registry, "hocba_archive_checkpoints_total") == 1
    assert sample(registry, "hocba_archive_checkpoint_tree_size") == 6


async def test_an_empty_log_gets_no_scheduled_checkpoint(deps):
    assert announced(await handlers.scheduled_checkpoint(deps)) == []
    assert await deps.repo.checkpoints() == []


async def test_a_checkpoint_asked_for_is_answered_and_announced(deps, registry, make_signed):
    empty = await handlers.issue_checkpoint(IssueCheckpoint(), deps)
    assert empty.reply.bundle["checkpoint"]["tree_size"] == 0
    assert announced(empty) == [], "an empty log's checkpoint is not sent on"
    await archive(completed([make_signed(n) for n in range(3)]), deps)
    first = await handlers.issue_checkpoint(IssueCheckpoint(), deps)
    again = await handlers.issue_checkpoint(IssueCheckpoint(), deps)
    [checkpoint] = announced(first)
    assert first.reply.bundle == again.reply.bundle == {"checkpoint": checkpoint.model_dump(mode="json")}
    assert announced(again) == [checkpoint], "asked again, the same checkpoint is announced again"
    assert [c.tree_size for c in await deps.repo.checkpoints()] == [0, 3]
    assert sample(registry, "hocba_archive_checkpoints_total") == 2


async def test_a_batchs_checkpoint_waits_until_its_records_are_archived(deps, make_signed):
    patient = replace(deps, batch_wait_seconds=10)
    waiting = asyncio.create_task(handlers.checkpoint_after_batch(batch_completed("b1", 4), patient))
    await archive(completed([make_signed(0), make_signed(1)], "b1"), deps)
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await archive(completed([make_signed(2), make_signed(3)], "b1"), deps)
    [checkpoint] = announced(await asyncio.wait_for(waiting, 5))
    assert checkpoint.tree_size == 4


async def test_a_batchs_checkpoint_is_announced_again_when_the_log_did_not_grow(deps, make_signed):
    await archive(completed([make_signed(0), make_signed(1)], "b1"), deps)
    [first] = announced(await handlers.checkpoint_after_batch(batch_completed("b1", 2), deps))
    [again] = announced(await handlers.checkpoint_after_batch(batch_completed("b1", 2), deps))
    assert again == first and len(await deps.repo.checkpoints()) == 1


async def test_a_batch_that_completed_no_record_brings_no_checkpoint(deps, make_signed):
    await archive(completed([make_signed(0)]), deps)
    await handlers.scheduled_checkpoint(deps)
    assert announced(await handlers.checkpoint_after_batch(batch_completed("homeroom", 0), deps)) == []


async def test_a_batchs_checkpoint_is_issued_when_its_records_do_not_come_in_time(deps, make_signed):
    await archive(completed([make_signed(0)], "b1"), deps)
    outcome = await handlers.checkpoint_after_batch(batch_completed("b1", 3), replace(deps, batch_wait_seconds=0.05))
    assert [c.tree_size for c in announced(outcome)] == [1]


async def test_the_log_state_is_read_from_storage(deps, registry, make_signed):
    await archive(completed([make_signed(n) for n in range(4)]), deps)
    [checkpoint] = announced(await handlers.scheduled_checkpoint(deps))
    restarted = replace(deps, log=LogState())
    await handlers.load_log(restarted)
    assert restarted.log.tree.root() == deps.log.tree.root() and restarted.log.last_checkpoint == checkpoint
    assert announced(await handlers.scheduled_checkpoint(restarted)) == []


# --- proofs, exports, audits -----------------------------------------------------------------


async def test_inclusion_and_consistency_proofs_verify_against_the_checkpoint(deps, make_signed):
    await archive(completed([make_signed(n) for n in range(7)]), deps)
    [first] = announced(await handlers.scheduled_checkpoint(deps))
    await archive(completed([make_signed(n) for n in range(7, 12)]), deps)
    [second] = announced(await handlers.scheduled_checkpoint(deps))
    outcome = await handlers.prove_inclusion(ProveInclusion(record_id="rec-0004"), deps)
    assert announced(outcome) == [], "the latest checkpoint covers the entry"
    proof = outcome.reply.inclusion
    assert (proof.leaf_index, proof.tree_size, proof.checkpoint) == (4, 12, second)
    assert verify_inclusion(4, 12, bytes.fromhex(proof.leaf_hash), [bytes.fromhex(p) for p in proof.proof],
                            bytes.fromhex(second.root_hash))
    old = (await handlers.prove_inclusion(ProveInclusion(record_id="rec-0004", tree_size=7), deps)).reply.inclusion
    assert verify_inclusion(4, 7, bytes.fromhex(old.leaf_hash), [bytes.fromhex(p) for p in old.proof],
                            bytes.fromhex(first.root_hash))
    consistency = (await handlers.prove_consistency(ProveConsistency(first=7), deps)).reply.consistency
    assert (consistency.first_root, consistency.second_root) == (first.root_hash, second.root_hash)
    assert verify_consistency(7, 12, bytes.fromhex(first.root_hash), bytes.fromhex(second.root_hash),
                              [bytes.fromhex(p) for p in consistency.proof])


async def test_a_proof_that_needs_a_fresher_checkpoint_signs_and_announces_one(deps, make_signed):
    await archive(completed([make_signed(n) for n in range(5)]), deps)
    outcome = await handlers.prove_inclusion(ProveInclusion(record_id="rec-0003"), deps)
    [checkpoint] = announced(outcome)
    assert checkpoint.tree_size == 5 and outcome.reply.inclusion.checkpoint == checkpoint
    assert await deps.repo.checkpoints() == [checkpoint]


async def test_a_proof_of_what_is_not_archived_or_not_in_the_tree_is_refused(deps, make_signed):
    with pytest.raises(NotFound, match="nope vlatest is not archived"):
        await handlers.prove_inclusion(ProveInclusion(record_id="nope"), deps)
    await archive(completed([make_signed(n) for n in range(5)]), deps)
    with pytest.raises(NotFound, match="rec-0001 v2 is not archived"):
        await handlers.prove_inclusion(ProveInclusion(record_id="rec-0001", version=2), deps)
    outside = await handlers.prove_inclusion(ProveInclusion(record_id="rec-0004", tree_size=3), deps)
    assert isinstance(outside.refused, InvalidMessage) and outside.reply is None
    assert "entry 4 is not in a tree of 3 entries (the log has 5)" in str(outside.refused)
    assert [c.tree_size for c in announced(outside)] == [5], "the checkpoint signed on the way is announced"
    with pytest.raises(InvalidMessage, match="no consistency proof from 3 to 9"):
        await handlers.prove_consistency(ProveConsistency(first=3, second=9), deps)
    with pytest.raises(NotFound):
        await handlers.export_record(ExportRecord(record_id="nope"), deps)


async def test_an_exported_bundle_verifies_offline_and_a_forged_one_does_not(deps, registry, make_signed):
    await archive(completed([make_signed(n) for n in range(9)]), deps)
    outcome = await handlers.export_record(ExportRecord(record_id="rec-0003", certified_copy=True), deps)
    reply, trust = outcome.reply, deps.keys.trust()
    bundle = reply.bundle
    assert bundle["log"]["tree_size"] == 9 == deps.log.last_checkpoint.tree_size, "an export signs the checkpoint it needs"
    assert announced(outcome) == [deps.log.last_checkpoint], "and announces it"
    verdict = verify_bundle(bundle, trust)
    assert verdict.ok, [line for s in verdict.sections for line in s.lines if not line[0]]
    copy = verify_copy(reply.qr, archive_certificates(bundle), trust, bundle)
    assert copy.ok, copy.sections
    forged = {**bundle, "record": {**bundle["record"], "document": {**bundle["record"]["document"], "conduct": "Tốt"}}}
    failed = [text for s in verify_bundle(forged, trust).sections for ok, text in s.lines if not ok]
    assert any("other content" in t for t in failed) and any("leaf hash does not match" in t for t in failed)
    assert not verify_copy(reply.qr, archive_certificates(bundle), trust, forged).ok
    assert sample(registry, "hocba_archive_exports_total") == 1


async def test_the_audit_holds_the_stored_log_against_its_checkpoints(deps, make_signed):
    await archive(completed([make_signed(n) for n in range(4)]), deps)
    await handlers.scheduled_checkpoint(deps)
    report = (await handlers.audit_log(AuditArchive(), deps)).reply
    assert report.ok and (report.entries, report.checkpoints) == (4, 1) and report.findings == []
