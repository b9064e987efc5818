"""archive's use cases against the in-memory repository: admit (signatures, seals, signing times), append, checkpoint,
prove, export, amend; who may ask what, and the access log."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from prometheus_client import CollectorRegistry

from services.archive import domain, handlers
from services.archive.domain import SupersededNotArchived
from services.archive.handlers import LogState
from shared.auth import Unauthenticated
from shared.contracts.access import ListArchiveAccesses
from shared.contracts.archive import (
    AuditArchive,
    Checkpoint,
    CheckpointIssued,
    ExportRecord,
    IssueCheckpoint,
    ProveConsistency,
    ProveInclusion,
    RecordsArchived,
    signed_time,
)
from shared.contracts.base import Message, derived_id
from shared.contracts.record import content_of
from shared.contracts.signing import BatchCompleted, RecordsCompleted
from shared.crypto.archive_log import check_checkpoint, check_checkpoint_fields
from shared.crypto.bundle import archive_certificates, verify_bundle, verify_copy
from shared.crypto.canonical import digest
from shared.crypto.certs import TrustStore
from shared.crypto.merkle import MerkleTree, verify_consistency, verify_inclusion
from shared.crypto.seal import archived_claims, seal, seal_problems
from shared.errors import Forbidden, InvalidMessage, NotFound, TransientError
from shared.outcome import Outcome
from tests.unit.signing.trust import OTHER_SCHOOL, SCHOOL, completed_version, make_trust, signed_record, signed_version

from .conftest import ORIGIN, archive_deps

M = TypeVar("M", bound=Message)


def completed(records, batch_id: str | None = None) -> RecordsCompleted:
    return RecordsCompleted(records=records, batch_id=batch_id)


def batch_completed(batch_id: str, records_completed: int) -> BatchCompleted:
    return BatchCompleted(
        batch_id=batch_id, school_code="79000701", school_year="2025-2026", records_signed=records_completed,
        records_total=records_completed, records_completed=records_completed,
    )


def asked(trust, request: M) -> M:
    """`request` as the department's operator sends it: with their token for it."""
    return trust.staff.operator().signs(request)


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


def failures(verdict) -> list[str]:
    return [text for section in verdict.sections for ok, text in section.lines if not ok]


def stated(archived: RecordsArchived) -> dict:
    """What an announcement says, leaving out when it was made and the archive's seal (an ES256 seal differs each
    time it is made)."""
    return archived.model_dump(exclude={"occurred_at", "seal"})


async def leaves(repo) -> list[bytes]:
    return [bytes.fromhex(e.leaf_hash) for e in await repo.entries()]


async def test_a_chunk_is_appended_as_merkle_leaves_in_order(deps, registry, make_signed, at):
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
    assert position.seq == 3 and position.archived_at == f"{at:%Y-%m-%dT%H:%M:%S}.000Z"
    assert sample(registry, "hocba_records_archived_total") == 5
    assert sample(registry, "hocba_archive_log_entries") == 5


async def test_a_redelivered_chunk_appends_nothing_but_is_reported_again(deps, registry, make_signed):
    event = completed([make_signed(n) for n in range(3)])
    first = await archive(event, deps)
    again = await archive(event, deps)
    assert len(await deps.repo.entries()) == 3 and deps.log.tree.size == 3
    assert stated(again) == stated(first), "the same versions at the same places (each sealed again)"
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


async def test_when_another_appender_moved_the_log_the_tree_is_reloaded(deps, make_signed, at):
    await archive(completed([make_signed(0)]), deps)
    theirs = domain.build_entries(1, [make_signed(7)], at)
    archived = await archive(completed([make_signed(1)]), replace(deps, repo=Racing(deps.repo, theirs)))
    assert archived.records[0].seq == 2 and deps.log.tree.size == 3
    assert deps.log.tree.root() == MerkleTree(await leaves(deps.repo)).root()


async def test_versions_appended_just_before_a_crash_are_found_in_the_log_and_not_appended_again(deps, make_signed, at):
    await deps.repo.append(domain.build_entries(0, [make_signed(0), make_signed(1)], at))
    archived = await archive(completed([make_signed(1), make_signed(2)]), deps)
    assert [(r.record_id, r.seq) for r in archived.records] == [("rec-0001", 1), ("rec-0002", 2)]
    assert [e.key for e in await deps.repo.entries()] == [("rec-0000", 1), ("rec-0001", 1), ("rec-0002", 1)]
    assert deps.log.tree.root() == MerkleTree(await leaves(deps.repo)).root()
    assert list(await deps.repo.positions([("rec-0001", 1), ("rec-0002", 1)])) == [("rec-0001", 1), ("rec-0002", 1)]


# --- admission -------------------------------------------------------------------------------


async def test_a_version_whose_content_changed_after_signing_is_refused(deps, registry, make_signed):
    signed = make_signed(1)
    tampered = signed.model_copy(update={"record": signed.record.model_copy(update={"content": content_of({"forged": True})})})
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
    now = datetime.now(UTC).replace(microsecond=0)
    deps = archive_deps(own, at=now)
    signed = signed_record(own, 1, signed_at=now)
    own.pki.revoke("ht-79000701", "affiliation_changed", at=now - timedelta(hours=1))
    with pytest.raises(InvalidMessage, match="revoked .* reason affiliation_changed, before the signing time"):
        await handlers.archive_records(completed([signed]), deps)
    assert await deps.repo.entries() == []


async def test_a_signature_made_before_its_certificate_was_revoked_for_another_reason_than_compromise_stands(tmp_path):
    own = make_trust(tmp_path)
    now = datetime.now(UTC).replace(microsecond=0)
    signed = signed_record(own, 1, signed_at=now - timedelta(minutes=5))
    own.pki.revoke("ht-79000701", "affiliation_changed", at=now - timedelta(minutes=2))
    archived = await archive(completed([signed]), archive_deps(own, at=now))
    assert archived.records[0].seq == 0


async def test_attack_a_signature_backdated_before_a_key_compromise_is_refused_and_fails_verification(tmp_path):
    """Reproduction 5: the principal's key is stolen and revoked for keyCompromise; whoever holds it signs and
    writes a `signed_at` from before the revocation. The archive refuses it (the time it has for the signature is
    its own clock, after the revocation); a bundle of it, from an archive that did not check, fails verification."""
    own = make_trust(tmp_path)
    now = datetime.now(UTC).replace(microsecond=0)
    own.pki.revoke("ht-79000701", "key_compromise", at=now - timedelta(minutes=2))
    backdated = signed_record(own, 1, signed_at=now - timedelta(minutes=5))
    deps = archive_deps(own, at=now)
    with pytest.raises(InvalidMessage, match="reason key_compromise, before the trusted time"):
        await handlers.archive_records(completed([backdated]), deps)
    assert await deps.repo.entries() == []

    unchecking = replace(deps, keys=replace(deps.keys, trust=None))
    await archive(completed([backdated]), unchecking)
    bundle = (await handlers.export_record(asked(own, ExportRecord(record_id="rec-0001")), unchecking)).reply.bundle
    verdict = verify_bundle(bundle, own.pki.trust_store())
    assert not verdict.ok
    [principal] = [s for s in verdict.sections if s.title.startswith("principal's signature")]
    assert any("reason key_compromise, before the trusted time" in text for ok, text in principal.lines if not ok)
    assert "the archive's admission time" in verdict.relied_on


async def test_attack_a_signature_archived_and_checkpointed_before_a_key_compromise_still_verifies(tmp_path):
    """Reproduction 5, the other side: the archive's admission time, proven by a signed checkpoint, is older than the
    key-compromise revocation, so the signature stands, and the verdict says it relied on that time. Without the
    proof, the signer's stated time is all there is, and that does not count against a key compromise."""
    own = make_trust(tmp_path)
    now = datetime.now(UTC).replace(microsecond=0)
    signed = signed_record(own, 1, signed_at=now - timedelta(minutes=15))
    deps = archive_deps(own, at=now - timedelta(minutes=10))
    await archive(completed([signed]), deps)
    await handlers.scheduled_checkpoint(deps)
    own.pki.revoke("ht-79000701", "key_compromise", at=now - timedelta(minutes=5))
    bundle = (await handlers.export_record(asked(own, ExportRecord(record_id="rec-0001")), deps)).reply.bundle
    assert "crl" in bundle, "the bundle carries the CRL that lists the revocation"
    verdict = verify_bundle(bundle, own.pki.trust_store())
    assert verdict.ok, failures(verdict)
    admitted = f"{now - timedelta(minutes=10):%Y-%m-%d %H:%M:%S}Z"
    assert verdict.relied_on.startswith(f"the archive's admission time {admitted}, proven by the signed checkpoint of "
                                        "size 1, for the signatures whose certificates are revoked for a key compromise")
    [principal] = [s for s in verdict.sections if s.title.startswith("principal's signature")]
    assert any(text.startswith(f"time relied on: the archive's admission time {admitted}") for _, text in principal.lines)

    unproven = {**bundle, "log": {**bundle["log"], "inclusion_proof": ["00" * 32]}}
    verdict = verify_bundle(unproven, own.pki.trust_store())
    assert any("no trusted time proves the signature older than the revocation" in f for f in failures(verdict))
    assert verdict.relied_on.startswith("the signers' stated times only")


async def test_attack_a_crl_past_its_next_update_fails_verification_and_admission_with_that_reason(
    deps, trust, make_signed
):
    """Reproduction 5: a CRL past its nextUpdate counted as valid (a note at most). It now fails the check, and says
    so, wherever a chain is validated: `verify_bundle`, and the archive's admission."""
    await archive(completed([make_signed(1)]), deps)
    bundle = (await handlers.export_record(asked(trust, ExportRecord(record_id="rec-0001")), deps)).reply.bundle
    stale = TrustStore.from_files(trust.pki.anchor_path, [trust.stale_crl()])
    without_its_crl = {k: v for k, v in bundle.items() if k != "crl"}
    assert any("past its nextUpdate" in f for f in failures(verify_bundle(without_its_crl, stale)))
    assert verify_bundle(without_its_crl, trust.pki.trust_store()).ok, "a current CRL, and it verifies"
    stale_archive = replace(deps, keys=replace(deps.keys, trust=lambda: stale))
    with pytest.raises(InvalidMessage, match="past its nextUpdate"):
        await handlers.archive_records(completed([make_signed(2)]), stale_archive)


async def test_attack_a_signature_dated_an_hour_ahead_of_the_archives_clock_is_refused(trust, registry):
    """Reproduction 5: a signature whose stated signing time is an hour ahead of the archive's clock is not admitted."""
    now = datetime.now(UTC).replace(microsecond=0)
    deps = archive_deps(trust, registry=registry, at=now)
    ahead = signed_record(trust, 1, signed_at=now + timedelta(hours=1))
    with pytest.raises(InvalidMessage, match="more than 600s ahead of the archive's clock"):
        await handlers.archive_records(completed([ahead]), deps)
    assert await deps.repo.entries() == []
    assert sample(registry, "hocba_archive_refused_total", {"reason": "signing-time"}) == 1


async def test_attack_a_revoked_signer_back_dating_an_hour_is_refused(tmp_path):
    """Reproduction 5: a certificate revoked (not for compromise) since; its holder signs now but states a time
    an hour back, before the revocation. The stated time is what the verdict would rest on, and the archive's
    clock does not bear it out."""
    own = make_trust(tmp_path)
    registry = CollectorRegistry()
    now = datetime.now(UTC).replace(microsecond=0)
    own.pki.revoke("ht-79000701", "affiliation_changed", at=now - timedelta(minutes=30))
    back_dated = signed_record(own, 1, signed_at=now - timedelta(hours=1))
    with pytest.raises(InvalidMessage, match="more than 600s before the archive's clock .* a certificate of it is revoked"):
        await handlers.archive_records(completed([back_dated]), archive_deps(own, registry=registry, at=now))
    assert sample(registry, "hocba_archive_refused_total", {"reason": "signing-time"}) == 1


async def test_a_record_admitted_an_hour_late_with_valid_certificates_is_archived(trust):
    """After an archive outage, records signed an hour ago arrive: their certificates are valid now, so the time
    their signatures state decides nothing, and they are archived."""
    now = datetime.now(UTC).replace(microsecond=0)
    late = signed_record(trust, 1, signed_at=now - timedelta(hours=1))
    archived = await archive(completed([late]), archive_deps(trust, at=now))
    assert archived.records[0].seq == 0


async def test_earlier_signatures_may_be_older_but_not_later_than_the_one_that_names_them(deps, trust, at):
    """A homeroom teacher signs well before the principal's one click; what completes the record is fresh."""
    early = {"homeroom_teacher": at - timedelta(minutes=50), "principal": at, "school_seal": at}
    archived = await archive(completed([signed_record(trust, 1, signed_at=early)]), deps)
    assert archived.records[0].seq == 0
    late = {"homeroom_teacher": at, "principal": at - timedelta(minutes=30), "school_seal": at}
    with pytest.raises(InvalidMessage, match="homeroom_teacher's signature states a later time than the principal's"):
        await handlers.archive_records(completed([signed_record(trust, 2, signed_at=late)]), deps)


async def test_the_entry_keeps_the_archives_clock_at_admission(deps, make_signed, at):
    await archive(completed([make_signed(1)]), deps)
    [entry] = await deps.repo.entries()
    assert entry.archived_at == f"{at:%Y-%m-%dT%H:%M:%S}.000Z"


async def test_attack_a_made_up_record_not_sealed_by_grades_is_not_archived(deps, trust, registry):
    """Reproduction 1, at the archive: content that grades did not seal (none, or the seal of another version) and
    that is not an amendment its school asked for is not admitted, however it came to be signed."""
    unsealed = signed_version(trust, completed_version(1, award="Học sinh Xuất sắc"))
    borrowed = unsealed.model_copy(
        update={"record": unsealed.record.model_copy(update={"seal": signed_record(trust, 2).record.seal})}
    )
    with pytest.raises(InvalidMessage, match="rec-0001 v1 is not sealed by grades, and is not an amendment"):
        await handlers.archive_records(completed([unsealed]), deps)
    with pytest.raises(InvalidMessage, match="rec-0001 v1 is not sealed by grades: its seal does not verify"):
        await handlers.archive_records(completed([borrowed]), deps)
    assert await deps.repo.entries() == []
    assert sample(registry, "hocba_archive_refused_total", {"reason": "not-sealed"}) == 2


async def test_what_the_archive_announces_carries_its_seal_one_for_the_whole_chunk(deps, trust, make_signed, monkeypatch, at):
    made = []
    monkeypatch.setattr(handlers, "seal", lambda signer, claims: made.append(claims) or seal(signer, claims))
    archived = await archive(completed([make_signed(n) for n in range(3)]), deps)

    assert len(made) == 1, "one seal for the chunk, not one for each record"
    anchor = trust.pki.trust_store()
    assert seal_problems(archived.seal, archived_claims(archived.records), anchor, "archive", at) == []
    moved = [archived.records[0].model_copy(update={"seq": 7}), *archived.records[1:]]
    assert seal_problems(archived.seal, archived_claims(moved), anchor, "archive", at)
    assert seal_problems(archived.seal, archived_claims(archived.records[:2]), anchor, "archive", at)
    assert archived.actor is None


# --- amendments ------------------------------------------------------------------------------


def amended(trust, n: int, version: int, supersedes: int | None, school_code: str = "79000701", **document):
    """An amendment as signing keeps it: no grades seal, the document names what it supersedes and who asked."""
    amendment = {
        "amendment": {"supersedes": supersedes, "reason": "grade-correction", "note": "", "requested_by": "ht-x"}
    }
    return signed_version(trust, completed_version(n, version, school_code, **(amendment if supersedes else {}), **document))


async def test_an_amendment_by_the_issuing_school_is_a_new_version_and_the_old_one_stays(deps, trust):
    await archive(completed([signed_record(trust, 5)]), deps)
    archived = await archive(completed([amended(trust, 5, 2, 1, conduct="Khá")]), deps)
    assert (archived.records[0].version, archived.records[0].supersedes, archived.records[0].seq) == (2, 1, 1)
    assert {e.version for e in await deps.repo.entries()} == {1, 2}
    old = (await handlers.export_record(asked(trust, ExportRecord(record_id="rec-0005", version=1)), deps)).reply
    assert old.bundle["status"]["superseded_by"] == 2
    assert verify_bundle(old.bundle, deps.keys.trust()).ok, "a superseded version stays verifiable"
    new = (await handlers.export_record(asked(trust, ExportRecord(record_id="rec-0005")), deps)).reply.bundle
    verdict = verify_bundle(new, deps.keys.trust())
    assert verdict.ok, failures(verdict)
    [origin] = [s for s in verdict.sections if s.title == "where the content comes from"]
    assert origin.lines == [(True, "an amendment requested by the issuing school (ht-x), replacing version 1 "
                                   "(grade-correction): its school's signatures vouch for it")]


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


async def test_a_checkpoint_is_signed_by_the_archive_and_states_the_root(deps, registry, make_signed, at):
    await archive(completed([make_signed(n) for n in range(6)]), deps)
    outcome = await handlers.scheduled_checkpoint(deps)
    [checkpoint] = announced(outcome)
    assert (checkpoint.origin, checkpoint.tree_size, checkpoint.root_hash) == (ORIGIN, 6, deps.log.tree.root().hex())
    assert checkpoint.issued_at == at
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


async def test_a_checkpoint_asked_for_is_answered_and_announced(deps, trust, registry, make_signed):
    empty = await handlers.issue_checkpoint(asked(trust, IssueCheckpoint()), deps)
    assert empty.reply.bundle["checkpoint"]["tree_size"] == 0
    assert announced(empty) == [], "an empty log's checkpoint is not sent on"
    await archive(completed([make_signed(n) for n in range(3)]), deps)
    first = await handlers.issue_checkpoint(asked(trust, IssueCheckpoint()), deps)
    again = await handlers.issue_checkpoint(asked(trust, IssueCheckpoint()), deps)
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


async def test_inclusion_and_consistency_proofs_verify_against_the_checkpoint(deps, trust, make_signed):
    await archive(completed([make_signed(n) for n in range(7)]), deps)
    [first] = announced(await handlers.scheduled_checkpoint(deps))
    await archive(completed([make_signed(n) for n in range(7, 12)]), deps)
    [second] = announced(await handlers.scheduled_checkpoint(deps))
    outcome = await handlers.prove_inclusion(asked(trust, ProveInclusion(record_id="rec-0004")), deps)
    assert announced(outcome) == [], "the latest checkpoint covers the entry"
    proof = outcome.reply.inclusion
    assert (proof.leaf_index, proof.tree_size, proof.checkpoint) == (4, 12, second)
    assert verify_inclusion(4, 12, bytes.fromhex(proof.leaf_hash), [bytes.fromhex(p) for p in proof.proof],
                            bytes.fromhex(second.root_hash))
    old = (await handlers.prove_inclusion(asked(trust, ProveInclusion(record_id="rec-0004", tree_size=7)), deps)).reply.inclusion
    assert verify_inclusion(4, 7, bytes.fromhex(old.leaf_hash), [bytes.fromhex(p) for p in old.proof],
                            bytes.fromhex(first.root_hash))
    consistency = (await handlers.prove_consistency(asked(trust, ProveConsistency(first=7)), deps)).reply.consistency
    assert (consistency.first_root, consistency.second_root) == (first.root_hash, second.root_hash)
    assert verify_consistency(7, 12, bytes.fromhex(first.root_hash), bytes.fromhex(second.root_hash),
                              [bytes.fromhex(p) for p in consistency.proof])


async def test_a_consistency_proof_past_what_this_process_knows_reads_the_log_again(deps, trust, make_signed):
    """Another archive process appended entries and signed a checkpoint of them: a proof up to that size is asked of
    this one, which has not seen them yet."""
    await archive(completed([make_signed(n) for n in range(6)]), deps)
    [mine] = announced(await handlers.scheduled_checkpoint(deps))
    other = replace(deps, log=LogState())
    await archive(completed([make_signed(n) for n in range(6, 11)]), other)
    [theirs] = announced(await handlers.scheduled_checkpoint(other))
    assert deps.log.tree.size == 6
    proof = (await handlers.prove_consistency(ProveConsistency(first=6, second=11), deps)).reply.consistency
    assert verify_consistency(6, 11, bytes.fromhex(mine.root_hash), bytes.fromhex(theirs.root_hash),
                              [bytes.fromhex(p) for p in proof.proof])


async def test_a_bundles_checkpoint_states_its_time_as_signed_and_verifies_from_its_fields(deps, trust, make_signed):
    """Read as written, the bundle's checkpoint rebuilds the very bytes its signature covers: its time is the signed
    string (to the millisecond, in UTC), not another form of the same moment."""
    await archive(completed([make_signed(1)]), deps)
    bundle = (await handlers.export_record(asked(trust, ExportRecord(record_id="rec-0001")), deps)).reply.bundle
    stated = bundle["checkpoint"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stated["issued_at"])
    assert stated["issued_at"] == signed_time(Checkpoint.model_validate(stated).issued_at)
    assert check_checkpoint_fields(stated, trust.pki.trust_store()).ok
    micro = {**stated, "issued_at": stated["issued_at"].replace("Z", "000+00:00")}
    assert not check_checkpoint_fields(micro, trust.pki.trust_store()).ok, "the same moment written otherwise is not what was signed"


async def test_a_proof_that_needs_a_fresher_checkpoint_signs_and_announces_one(deps, trust, make_signed):
    await archive(completed([make_signed(n) for n in range(5)]), deps)
    outcome = await handlers.prove_inclusion(asked(trust, ProveInclusion(record_id="rec-0003")), deps)
    [checkpoint] = announced(outcome)
    assert checkpoint.tree_size == 5 and outcome.reply.inclusion.checkpoint == checkpoint
    assert await deps.repo.checkpoints() == [checkpoint]


async def test_a_proof_of_what_is_not_archived_or_not_in_the_tree_is_refused(deps, trust, make_signed):
    with pytest.raises(NotFound, match="nope vlatest is not archived"):
        await handlers.prove_inclusion(asked(trust, ProveInclusion(record_id="nope")), deps)
    await archive(completed([make_signed(n) for n in range(5)]), deps)
    with pytest.raises(NotFound, match="rec-0001 v2 is not archived"):
        await handlers.prove_inclusion(asked(trust, ProveInclusion(record_id="rec-0001", version=2)), deps)
    outside = await handlers.prove_inclusion(asked(trust, ProveInclusion(record_id="rec-0004", tree_size=3)), deps)
    assert isinstance(outside.refused, InvalidMessage) and outside.reply is None
    assert "entry 4 is not in a tree of 3 entries (the log has 5)" in str(outside.refused)
    assert [c.tree_size for c in announced(outside)] == [5], "the checkpoint signed on the way is announced"
    with pytest.raises(InvalidMessage, match="no consistency proof from 3 to 9"):
        await handlers.prove_consistency(asked(trust, ProveConsistency(first=3, second=9)), deps)
    with pytest.raises(NotFound):
        await handlers.export_record(asked(trust, ExportRecord(record_id="nope")), deps)


async def test_an_exported_bundle_verifies_offline_and_a_forged_one_does_not(deps, trust, registry, make_signed):
    await archive(completed([make_signed(n) for n in range(9)]), deps)
    outcome = await handlers.export_record(asked(trust, ExportRecord(record_id="rec-0003", certified_copy=True)), deps)
    reply, trust = outcome.reply, deps.keys.trust()
    bundle = reply.bundle
    assert bundle["log"]["tree_size"] == 9 == deps.log.last_checkpoint.tree_size, "an export signs the checkpoint it needs"
    assert announced(outcome) == [deps.log.last_checkpoint], "and announces it"
    verdict = verify_bundle(bundle, trust)
    assert verdict.ok, [line for s in verdict.sections for line in s.lines if not line[0]]
    assert bundle["record"]["seal"], "the bundle carries grades' seal on the content"
    [origin] = [s for s in verdict.sections if s.title == "where the content comes from"]
    assert origin.lines == [(True, "content sealed by grades (svc-grades): assembled by grades from the school's entries")]
    unsealed = {**bundle, "record": {k: v for k, v in bundle["record"].items() if k != "seal"}}
    failed = failures(verify_bundle(unsealed, trust))
    assert "the content carries no seal by grades and is not an amendment requested by its school" in failed
    assert any("leaf hash does not match" in t for t in failed), "the seal is in the log entry: it cannot be taken off"
    copy = verify_copy(reply.qr, archive_certificates(bundle), trust, bundle)
    assert copy.ok, copy.sections
    forged = {**bundle, "record": {**bundle["record"], "document": {**bundle["record"]["document"], "conduct": "Tốt"}}}
    failed = [text for s in verify_bundle(forged, trust).sections for ok, text in s.lines if not ok]
    assert any("other content" in t for t in failed) and any("leaf hash does not match" in t for t in failed)
    assert not verify_copy(reply.qr, archive_certificates(bundle), trust, forged).ok
    assert sample(registry, "hocba_archive_exports_total") == 1


async def test_the_audit_holds_the_stored_log_against_its_checkpoints(deps, trust, make_signed):
    await archive(completed([make_signed(n) for n in range(4)]), deps)
    await handlers.scheduled_checkpoint(deps)
    report = (await handlers.audit_log(asked(trust, AuditArchive()), deps)).reply
    assert report.ok and (report.entries, report.checkpoints) == (4, 1) and report.findings == []


# --- who may ask what, and who read what -----------------------------------------------------


async def test_attack_the_archives_requests_without_a_token_are_refused(deps, make_signed):
    """Reproduction 3: export, proofs, audit and checkpoint requests with no token (or one that does not name the
    request) answered anyone who had a broker login. Each is refused now, and nothing is read, logged or signed.
    (A consistency proof is public: hashes only, served over HTTP without sign-in too.)"""
    await archive(completed([make_signed(1)]), deps)
    requests = {
        handlers.export_record: ExportRecord(record_id="rec-0001", certified_copy=True),
        handlers.prove_inclusion: ProveInclusion(record_id="rec-0001"),
        handlers.audit_log: AuditArchive(),
        handlers.issue_checkpoint: IssueCheckpoint(),
        handlers.list_accesses: ListArchiveAccesses(student_ref="student-0001"),
    }
    for handler, request in requests.items():
        with pytest.raises(Unauthenticated):
            await handler(request, deps)
    assert await deps.repo.checkpoints() == [] and await deps.access_log.of("student-0001", 10) == []


async def test_attack_another_schools_principal_may_not_export_a_record(deps, trust, registry, make_signed):
    """Reproduction 3: a principal of another school asks for a record's bundle, or its printed copy."""
    await archive(completed([make_signed(1)]), deps)
    staff = trust.staff
    for person, reason in [
        (staff.principal(OTHER_SCHOOL), "wrong-school"),
        (staff.school_admin(OTHER_SCHOOL), "wrong-school"),
        (staff.homeroom_teacher(SCHOOL, "6A2"), "wrong-role"),
    ]:
        for copy in (False, True):
            with pytest.raises(Forbidden) as refused:
                await handlers.export_record(person.signs(ExportRecord(record_id="rec-0001", certified_copy=copy)), deps)
            assert refused.value.reason == reason
    assert await deps.access_log.of("student-0001", 10) == []
    assert sample(registry, "hocba_personal_data_reads_total", {"role": "principal"}) == 0


async def test_a_token_for_another_service_is_not_heard_by_the_archive(deps, trust, make_signed):
    await archive(completed([make_signed(1)]), deps)
    as_signing = replace(deps, issuer_keys=trust.issuer.public_keys("signing"))
    with pytest.raises(Unauthenticated, match="aud"):
        await handlers.export_record(asked(trust, ExportRecord(record_id="rec-0001")), as_signing)


async def test_every_export_and_printed_copy_is_in_the_access_log_and_counted(deps, trust, registry, make_signed, at):
    await archive(completed([make_signed(1), make_signed(2)]), deps)
    staff = trust.staff
    reads = [
        (staff.principal(SCHOOL), ExportRecord(record_id="rec-0001", purpose="hồ sơ chuyển trường")),
        (staff.school_admin(SCHOOL), ExportRecord(record_id="rec-0001", certified_copy=True, purpose="bản sao")),
        (staff.operator("thanh-tra"), ExportRecord(record_id="rec-0001", purpose="thanh tra")),
    ]
    for person, request in reads:
        assert (await handlers.export_record(person.signs(request), deps)).reply.bundle
    logged = await deps.access_log.of("student-0001", 10)
    assert [(e.action, e.subject, e.roles, e.school_code, e.record_id, e.purpose, e.service) for e in logged] == [
        ("export", "ht-79000701", ["principal"], SCHOOL, "rec-0001", "hồ sơ chuyển trường", "archive"),
        ("print", "admin-79000701", ["school_admin"], SCHOOL, "rec-0001", "bản sao", "archive"),
        ("export", "operator-thanh-tra", ["operator"], "", "rec-0001", "thanh tra", "archive"),
    ]
    assert all(e.at == at for e in logged)
    assert await deps.access_log.of("student-0002", 10) == []
    for role in ("principal", "school_admin", "operator"):
        assert sample(registry, "hocba_personal_data_reads_total", {"role": role}) == 1


async def test_who_read_a_student_is_told_to_an_operator_and_to_the_students_school(deps, trust, make_signed):
    await archive(completed([make_signed(1)]), deps)
    await handlers.export_record(trust.staff.principal(SCHOOL).signs(ExportRecord(record_id="rec-0001")), deps)
    question = ListArchiveAccesses(student_ref="student-0001")
    for person in (trust.staff.operator(), trust.staff.principal(SCHOOL), trust.staff.school_admin(SCHOOL)):
        answer = (await handlers.list_accesses(person.signs(question), deps)).reply
        assert [(e.action, e.subject) for e in answer.entries] == [("export", "ht-79000701")]
    for person in (trust.staff.principal(OTHER_SCHOOL), trust.staff.homeroom_teacher(SCHOOL, "6A2")):
        with pytest.raises(Forbidden):
            await handlers.list_accesses(person.signs(question), deps)


async def test_proofs_are_for_operators_and_the_records_school_and_operating_the_log_for_operators(
    deps, trust, make_signed
):
    await archive(completed([make_signed(1)]), deps)
    staff = trust.staff
    teacher, stranger, principal = staff.homeroom_teacher(SCHOOL, "6A2"), staff.principal(OTHER_SCHOOL), staff.principal(SCHOOL)
    proof = (await handlers.prove_inclusion(teacher.signs(ProveInclusion(record_id="rec-0001")), deps)).reply
    assert proof.inclusion.leaf_index == 0
    with pytest.raises(Forbidden, match="only an operator or that school's staff"):
        await handlers.prove_inclusion(stranger.signs(ProveInclusion(record_id="rec-0001")), deps)
    consistency = (await handlers.prove_consistency(stranger.signs(ProveConsistency(first=1)), deps)).reply
    assert consistency.consistency.second == 1, "hashes only: any school's staff may hold the log to its word"
    public = (await handlers.prove_consistency(ProveConsistency(first=1), deps)).reply
    assert public.consistency == consistency.consistency, "and anyone without a token (sync, for the ministry)"
    for request, handler in ((AuditArchive(), handlers.audit_log), (IssueCheckpoint(), handlers.issue_checkpoint)):
        with pytest.raises(Forbidden) as refused:
            await handler(principal.signs(request), deps)
        assert refused.value.reason == "not-operator"
    issued = await handlers.issue_checkpoint(asked(trust, IssueCheckpoint()), deps)
    [event] = issued.publish
    assert event.actor is None and event.by.subject == "operator-hocba-cli"
