"""archive's app on the bus: routing, contracts, seals, checkpoints, requests with their tokens and their refusals,
the access log, metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.archive import handlers
from services.archive.app import build_app
from services.archive.repository import InMemoryArchiveRepository
from shared.contracts.access import AccessLog, ListArchiveAccesses
from shared.contracts.archive import (
    AuditArchive,
    AuditReport,
    CheckpointIssued,
    ExportRecord,
    IssueCheckpoint,
    ProofReply,
    ProveConsistency,
    ProveInclusion,
    RecordsArchived,
)
from shared.contracts.signing import BatchCompleted, RecordsCompleted
from shared.crypto.archive_log import check_checkpoint
from shared.crypto.bundle import verify_bundle
from shared.crypto.merkle import MerkleTree, verify_inclusion
from shared.crypto.seal import archived_claims, seal_problems
from shared.errors import Refused
from shared.messaging import ERROR_HEADER, REASON_HEADER
from tests.unit.archive.conftest import archive_deps, archive_keys
from tests.unit.signing.trust import OTHER_SCHOOL, make_trust, signed_record
from tests.wiring.conftest import dead_letters, probe


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return make_trust(tmp_path_factory.mktemp("archive-wiring"))


@pytest.fixture
def service(settings, trust):
    repo = InMemoryArchiveRepository()
    return build_app(settings, repository=repo, keys=archive_keys(trust), issuer_keys=trust.issuer.public_keys()), repo


def records(trust, count: int, batch_id: str | None = None) -> RecordsCompleted:
    return RecordsCompleted(records=[signed_record(trust, n) for n in range(count)], batch_id=batch_id)


def operator(trust, request):
    """`request` with the department's operator's token for it."""
    return trust.staff.operator().signs(request)


def sample(svc, name: str, labels: dict | None = None) -> float:
    return svc.registry.get_sample_value(name, labels or {}) or 0.0


async def test_signed_records_are_archived_once_and_reported(service, trust, wired):
    svc, repo = service
    archived = probe(svc, RecordsArchived)
    event = records(trust, 4, "b1")
    record_time = datetime.now(UTC)
    async with wired(svc) as wire:
        await wire.send(event)
        await wire.send(event)
    log = await repo.entries()
    assert len(log) == 4
    assert [[r.seq for r in a.records] for a in archived] == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert archived[0].records[1].entry_hash == log[1].leaf_hash
    for announcement in archived:
        anchor = trust.pki.trust_store()
        assert seal_problems(announcement.seal, archived_claims(announcement.records), anchor, "archive", record_time) == []
    assert sample(svc, "hocba_records_archived_total") == 4
    assert [row.unannounced_since for row in repo.rows.values()] == [None] * 4, "announced: nothing owed"


async def test_a_completed_batch_brings_a_signed_checkpoint_event(service, trust, wired):
    svc, repo = service
    issued = probe(svc, CheckpointIssued)
    async with wired(svc) as wire:
        await wire.send(records(trust, 5, "b1"))
        await wire.send(BatchCompleted(
            batch_id="b1", school_code="79000701", school_year="2025-2026", records_signed=5, records_total=5,
            records_completed=5,
        ))
    [event] = issued
    checkpoint = event.checkpoint
    assert checkpoint.tree_size == 5
    assert checkpoint.root_hash == MerkleTree(bytes.fromhex(e.leaf_hash) for e in await repo.entries()).root().hex()
    assert check_checkpoint(checkpoint, trust.pki.trust_store()).ok
    assert await repo.checkpoints() == [checkpoint]
    assert repo.unannounced_since == {}, "once published, the checkpoint is kept announced"


async def test_proofs_exports_and_audits_are_answered(service, trust, wired):
    svc, _ = service
    issued = probe(svc, CheckpointIssued)
    async with wired(svc) as wire:
        await wire.send(records(trust, 6))
        proof = await wire.request(operator(trust, ProveInclusion(record_id="rec-0002")), ProofReply)
        export = await wire.request(operator(trust, ExportRecord(record_id="rec-0002", purpose="kiểm tra")), ProofReply)
        audit = await wire.request(operator(trust, AuditArchive()), AuditReport)
        accesses = await wire.request(operator(trust, ListArchiveAccesses(student_ref="student-0002")), AccessLog)
    inclusion = proof.inclusion
    assert verify_inclusion(
        inclusion.leaf_index, inclusion.tree_size, bytes.fromhex(inclusion.leaf_hash),
        [bytes.fromhex(p) for p in inclusion.proof], bytes.fromhex(inclusion.checkpoint.root_hash),
    )
    assert verify_bundle(export.bundle, trust.pki.trust_store()).ok
    assert audit.ok and audit.entries == 6 and audit.checkpoints == 1
    assert [(e.action, e.subject, e.purpose) for e in accesses.entries] == [("export", "operator-hocba-cli", "kiểm tra")]
    assert [e.checkpoint for e in issued] == [inclusion.checkpoint], "the checkpoint the proof needed is announced once"


async def test_a_checkpoint_asked_for_is_answered_and_announced(service, trust, wired):
    svc, repo = service
    issued = probe(svc, CheckpointIssued)
    async with wired(svc) as wire:
        await wire.send(records(trust, 3))
        answer = await wire.request(operator(trust, IssueCheckpoint()), ProofReply)
    [stored] = await repo.checkpoints()
    assert answer.bundle == {"checkpoint": stored.model_dump(mode="json")}
    assert [e.checkpoint for e in issued] == [stored]


async def test_requests_that_cannot_be_answered_are_answered_with_the_reason(
    service, trust, wired
):
    svc, _ = service
    async with wired(svc) as wire:
        await wire.send(records(trust, 2))
        with pytest.raises(Refused, match="nope vlatest is not archived") as missing:
            await wire.request(operator(trust, ProveInclusion(record_id="nope")), ProofReply)
        with pytest.raises(Refused, match="rec-0001 v3 is not archived") as not_exported:
            await wire.request(operator(trust, ExportRecord(record_id="rec-0001", version=3)), ProofReply)
        with pytest.raises(Refused, match="entry 1 is not in a tree of 1 entries") as outside:
            await wire.request(operator(trust, ProveInclusion(record_id="rec-0001", tree_size=1)), ProofReply)
        with pytest.raises(Refused, match="no consistency proof from 2 to 5") as inconsistent:
            await wire.request(operator(trust, ProveConsistency(first=2, second=5)), ProofReply)
    assert [e.value.reason for e in (missing, not_exported, outside, inconsistent)] == [
        "not-found", "not-found", "invalid", "invalid"
    ]
    proofs = svc.topology.queue_name(ProveInclusion.ROUTING_KEY)
    answered = "hocba_requests_answered_with_error_total"
    assert sample(svc, answered, {"queue": proofs, "reason": "not-found"}) == 1
    assert sample(svc, answered, {"queue": proofs, "reason": "invalid"}) == 1


async def test_a_record_with_a_broken_signature_chain_is_dead_lettered_with_the_reason(service, trust, wired):
    svc, repo = service
    dead = dead_letters(svc, RecordsCompleted)
    partial = signed_record(trust, 1, roles=("homeroom_teacher",))
    async with wired(svc) as wire:
        await wire.send(RecordsCompleted(records=[partial]))
    [(_, headers)] = dead
    assert headers[REASON_HEADER] == "invalid" and await repo.entries() == []
    assert sample(svc, "hocba_archive_refused_total", {"reason": "invalid-signature"}) == 1


async def test_an_amendment_by_another_school_is_refused_dead_lettered_and_counted(service, trust, wired):
    svc, repo = service
    dead = dead_letters(svc, RecordsCompleted)
    amendment = {"supersedes": 1, "reason": "grade-correction", "note": "", "requested_by": "x"}
    theirs = signed_record(trust, 5, 2, school_code=OTHER_SCHOOL, amendment=amendment)
    async with wired(svc) as wire:
        await wire.send(RecordsCompleted(records=[signed_record(trust, 5)]))
        await wire.send(RecordsCompleted(records=[theirs]))
    [(body, headers)] = dead
    assert headers[REASON_HEADER] == "forbidden" and "may not amend" in headers[ERROR_HEADER]
    assert [r["record"]["version"] for r in body["records"]] == [2]
    assert [e.key for e in await repo.entries()] == [("rec-0005", 1)]
    queue = svc.topology.queue_name(RecordsCompleted.ROUTING_KEY)
    assert sample(svc, "hocba_messages_refused_total", {"queue": queue, "reason": "forbidden"}) == 1


async def test_attack_requests_without_a_token_or_from_another_school_are_answered_with_a_refusal(
    service, trust, wired
):
    """Reproduction 3 on the bus: export, proof, audit and checkpoint requests with no token answered anyone with a
    broker login, and another school's principal could export a record. Each is now answered with a refusal."""
    svc, repo = service
    issued = probe(svc, CheckpointIssued)
    anonymous = [
        ExportRecord(record_id="rec-0001"),
        ProveInclusion(record_id="rec-0001"),
        AuditArchive(),
        IssueCheckpoint(),
    ]
    async with wired(svc) as wire:
        await wire.send(records(trust, 2))
        refusals = []
        for request in anonymous:
            with pytest.raises(Refused) as refused:
                await wire.request(request, AuditReport if isinstance(request, AuditArchive) else ProofReply)
            refusals.append(refused.value.reason)
        with pytest.raises(Refused, match="may not export a record of school 79000701") as other_school:
            await wire.request(trust.staff.principal(OTHER_SCHOOL).signs(ExportRecord(record_id="rec-0001")), ProofReply)
        logged = [
            (await wire.request(operator(trust, ListArchiveAccesses(student_ref=f"student-{n:04d}")), AccessLog)).entries
            for n in range(2)
        ]
    assert refusals == ["unauthenticated"] * 4 and other_school.value.reason == "wrong-school"
    assert issued == [] and await repo.checkpoints() == [] and logged == [[], []], "nothing was exported or read"
    queue = svc.topology.queue_name(ExportRecord.ROUTING_KEY)
    assert sample(svc, "hocba_requests_answered_with_error_total", {"queue": queue, "reason": "unauthenticated"}) == 1


async def test_versions_and_a_checkpoint_a_crash_left_unannounced_are_announced_by_the_archive_itself(
    settings, trust, wired
):
    """The archive stopped after archiving three versions and storing a checkpoint of them, minutes ago, before
    announcing either: its own loop announces them, once."""
    repo = InMemoryArchiveRepository()
    before_the_crash = archive_deps(trust, repo, at=datetime.now(UTC) - timedelta(minutes=5))
    await handlers.archive_records(records(trust, 3, "b1"), before_the_crash)
    await handlers.scheduled_checkpoint(before_the_crash)
    svc = build_app(settings, repository=repo, keys=archive_keys(trust), issuer_keys=trust.issuer.public_keys())
    archived, issued = probe(svc, RecordsArchived), probe(svc, CheckpointIssued)
    reannouncing = next(loop for loop in svc.loops if loop.name == "archive-reannounce")
    async with wired(svc) as wire:
        await reannouncing.run_once()
        await reannouncing.run_once()
        await wire.settle()

    assert [[(r.record_id, r.seq) for r in a.records] for a in archived] == [[("rec-0000", 0), ("rec-0001", 1), ("rec-0002", 2)]]
    assert seal_problems(archived[0].seal, archived_claims(archived[0].records), trust.pki.trust_store(), "archive",
                         datetime.now(UTC)) == []
    assert [e.checkpoint for e in issued] == await repo.checkpoints()
    assert [row.unannounced_since for row in repo.rows.values()] == [None] * 3 and repo.unannounced_since == {}
