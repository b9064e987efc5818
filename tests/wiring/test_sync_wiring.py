"""sync's app on the broker, delivering to the ministry simulator in-process: routing, announcements, replies, refusals.

What the archive sends is sealed (announcements of records) and signed (checkpoints) by the archive's certificate of a
small test PKI, which sync is given as its trust store; operators sign each request with their token.
"""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from faststream.rabbit import RabbitResponse

from hocba.ministry_simulator import ReceiptStore, create_app
from hocba.staff import Staff
from services.sync.app import build_app
from services.sync.domain import DELIVERED, PARKED, PENDING, DeliveryPolicy, new_entry, receipt_from
from services.sync.repository import InMemoryOutboxRepository
from shared.auth import IssuerKey
from shared.contracts.archive import CheckpointIssued, ConsistencyProof, ProofReply, ProveConsistency, RecordsArchived
from shared.contracts.base import Message, derived_id, utcnow
from shared.contracts.record import content_of
from shared.contracts.sync import (
    CheckpointDelivered,
    GetSyncStatus,
    Reconcile,
    ReconcileReport,
    RecordsDelivered,
    RetryOutcome,
    RetryParked,
    SyncStatus,
)
from shared.crypto.merkle import MerkleTree
from shared.errors import Refused
from shared.messaging import ERROR_HEADER, REASON_HEADER, quorum_queue, reply
from shared.service import ServiceApp
from tests.records import identity, record_document
from tests.unit.sync.sealed import LOG, announced, archived_record, dev_pki, log_of, signed_checkpoint, trust
from tests.wiring.conftest import dead_letters, probe

ISSUER = IssuerKey.generate("test-school-app")
STAFF = Staff(ISSUER)
OPERATOR = STAFF.operator()


def archived(n: int) -> RecordsArchived:
    """n record versions as the archive announces them: sealed by its certificate."""
    return announced(
        [
            archived_record(
                f"hb-79000701-{i:04d}",
                i,
                record_document(
                    f"hb-79000701-{i:04d}", 1, "79000701", "2025-2026", f"s-{i}", learning_result={"year": "Tốt"},
                    student={"student_ref": f"s-{i}", "identity": identity(f"0792120{i:05d}")},
                ),
                student_ref=f"s-{i}",
            )
            for i in range(n)
        ]
    )


def checkpoint(tree_size: int) -> CheckpointIssued:
    """A checkpoint signed by the archive's certificate."""
    return signed_checkpoint(tree_size)


def archive_answering(service: ServiceApp, log: MerkleTree = LOG) -> list[tuple[int, int, bool]]:
    """The archive on the broker, answering consistency proofs over `log` (before the broker starts); collects what
    was asked: (first, second, whether a token came with it)."""
    asked: list[tuple[int, int, bool]] = []
    names = service.settings.names()
    key = ProveConsistency.ROUTING_KEY
    queue = quorum_queue(names, names.queue("archive", key), key, 3)

    @service.broker.subscriber(queue, exchange=service.bus.exchange)
    async def answer(request: ProveConsistency) -> RabbitResponse:
        second = request.second or log.size
        asked.append((request.first, second, request.actor is not None))
        proof = ConsistencyProof(
            first=request.first,
            second=second,
            first_root=log.root(request.first).hex(),
            second_root=log.root(second).hex(),
            proof=[p.hex() for p in log.consistency_proof(request.first, second)],
        )
        return reply(ProofReply(consistency=proof))

    return asked


@pytest.fixture
def store() -> ReceiptStore:
    """The ministry, holding the tests' PKI as the department's trust anchor."""
    return ReceiptStore(trust=trust)


@pytest.fixture
def operator_settings(settings, tmp_path):
    """Settings that name the ministry and the actor-token issuer's public keys."""
    jwks = tmp_path / "issuer.jwks.json"
    jwks.write_text(json.dumps({"keys": [ISSUER.key.as_dict(private=False)]}))
    return settings.model_copy(update={"actor_issuer_jwks": jwks, "ministry_url": "http://ministry.test"})


@pytest.fixture
async def service(operator_settings, store):
    repo = InMemoryOutboxRepository()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(store))) as client:
        yield build_app(operator_settings, repository=repo, http_client=client, trust=trust), repo


def sample(svc, name: str, labels: dict[str, str] | None = None) -> float | None:
    return svc.registry.get_sample_value(name, labels or {})


async def statuses(repo) -> dict[str, str]:
    return {held.key: held.status async for held in repo.holdings()}


async def test_archived_records_are_delivered_and_announced(service, store, wired):
    svc, repo = service
    seen = probe(svc, RecordsDelivered)
    event = archived(4)
    async with wired(svc) as wire:
        await wire.send(event)

    assert (store.accepted, store.duplicates, store.requests) == (4, 0, 4)
    assert set((await statuses(repo)).values()) == {DELIVERED}
    assert len(seen) == 1, "RecordsDelivered was not published once"
    assert repo.unannounced_since == {}, "once published, the deliveries are kept announced"
    assert seen[0].message_id == derived_id(event.message_id, "delivered")
    assert {(d.record_id, d.receipt_id) for d in seen[0].deliveries} == {
        (r["record_id"], r["receipt_id"]) for r in store.receipts.values()
    }
    assert sample(svc, "hocba_sync_deliveries_total", {"kind": "record", "outcome": "delivered"}) == 4
    assert sample(svc, "hocba_sync_backlog_entries") == 0
    assert store.batches == 1, "the four records went to the ministry in one batch request"
    assert sample(svc, "hocba_sync_delivery_seconds_count") == 1


async def test_a_redelivered_event_sends_and_announces_nothing_new(service, store, wired):
    svc, repo = service
    seen = probe(svc, RecordsDelivered)
    event = archived(3)
    async with wired(svc) as wire:
        await wire.send(event)
        await wire.send(event)

    assert (store.accepted, store.duplicates, store.requests) == (3, 0, 3)
    assert len(await repo.receipt_ids(await statuses(repo))) == 3
    assert len(seen) == 1


async def test_a_ministry_outage_keeps_entries_pending_and_is_counted(service, store, wired):
    svc, repo = service
    seen = probe(svc, RecordsDelivered)
    store.fail_next = 10
    async with wired(svc) as wire:
        await wire.send(archived(2))

    waiting = (await repo.entries(await statuses(repo))).values()
    assert {(e.status, e.attempts) for e in waiting} == {(PENDING, 1)}
    assert seen == []
    assert store.accepted == 0
    assert sample(svc, "hocba_sync_deliveries_total", {"kind": "record", "outcome": "failed"}) == 2
    assert sample(svc, "hocba_sync_backlog_entries") == 2


async def test_an_invalid_event_is_dead_lettered_not_taken_into_the_outbox(service, store, wired):
    svc, repo = service
    dead = dead_letters(svc, RecordsArchived)
    queue = svc.topology.queue_name(RecordsArchived.ROUTING_KEY)
    async with wired(svc) as wire:
        await wire.broker.publish(
            {"message_id": "m-1", "records": []}, exchange=svc.bus.exchange, routing_key=RecordsArchived.ROUTING_KEY
        )
        await wire.settle()
    assert await statuses(repo) == {} and store.stats()["requests"] == 0
    [(body, headers)] = dead
    assert body == {"message_id": "m-1", "records": []}
    assert headers[REASON_HEADER] == "invalid"
    assert sample(svc, "hocba_messages_dead_lettered_total", {"queue": queue, "reason": "invalid"}) == 1


async def test_a_checkpoint_is_delivered_once_and_announced(service, store, wired):
    svc, repo = service
    seen = probe(svc, CheckpointDelivered)
    event = checkpoint(4)
    async with wired(svc) as wire:
        await wire.send(event)
        await wire.send(event)

    assert list(store.checkpoints) == ["checkpoint:hocba.test/archive:4"]
    assert [(c.origin, c.tree_size) for c in seen] == [("hocba.test/archive", 4)]
    assert repo.unannounced_since == {}
    assert sample(svc, "hocba_sync_deliveries_total", {"kind": "checkpoint", "outcome": "delivered"}) == 1


async def test_a_later_checkpoint_goes_with_the_consistency_proof_sync_asks_the_archive_for(service, store, wired):
    svc, repo = service
    asked = archive_answering(svc)
    seen = probe(svc, CheckpointDelivered)
    async with wired(svc) as wire:
        await wire.send(checkpoint(4))
        await wire.send(checkpoint(9))

    assert sorted(store.checkpoints) == ["checkpoint:hocba.test/archive:4", "checkpoint:hocba.test/archive:9"]
    assert asked == [(4, 9, False)], "sync asks for the proof from what the ministry holds, without a token"
    assert [c.tree_size for c in seen] == [4, 9]
    assert set((await statuses(repo)).values()) == {DELIVERED}


async def test_the_ministry_refusing_a_rewritten_log_parks_the_checkpoint_and_counts_why(service, store, wired):
    """The operator rewrote the log from entry 2 on and signed a checkpoint of it: the ministry, holding the checkpoint
    of 4 entries, finds no proof that the new one extends it."""
    svc, repo = service
    forked = log_of(16, fork_at=2)
    archive_answering(svc, forked)
    async with wired(svc) as wire:
        await wire.send(checkpoint(4))
        await wire.send(signed_checkpoint(9, log=forked))

    assert list(store.checkpoints) == ["checkpoint:hocba.test/archive:4"]
    assert await statuses(repo) == {"checkpoint:hocba.test/archive:4": DELIVERED, "checkpoint:hocba.test/archive:9": PARKED}
    [parked] = (await repo.entries(["checkpoint:hocba.test/archive:9"])).values()
    assert "HTTP 422: the consistency proof from tree size 4 to 9 does not hold" in (parked.last_error or "")
    assert sample(svc, "hocba_sync_checkpoints_refused_total", {"reason": "inconsistent"}) == 1
    assert sample(svc, "hocba_sync_parked_entries") == 1


async def test_operators_ask_for_status_retry_and_reconciliation_by_request_and_reply(service, store, wired):
    svc, repo = service
    store.faults.fail_status, store.fail_next = 400, 2  # a permanent answer parks at once
    async with wired(svc) as wire:
        await wire.send(archived(2))
        assert set((await statuses(repo)).values()) == {PARKED}

        status = await wire.request(OPERATOR.signs(GetSyncStatus()), SyncStatus)
        assert (status.parked, len(status.parked_entries)) == (2, 2)

        resumed = await wire.request(OPERATOR.signs(RetryParked()), RetryOutcome)
        assert resumed.resumed == 2 and set((await statuses(repo)).values()) == {PENDING}

        report = await wire.request(OPERATOR.signs(Reconcile()), ReconcileReport)
        assert report.error is None and report.waiting[PENDING] == 2 and report.consistent


ANSWERS: dict[type[Message], type] = {GetSyncStatus: SyncStatus, Reconcile: ReconcileReport, RetryParked: RetryOutcome}
NOT_AN_OPERATOR = pytest.mark.parametrize(
    ("signed", "reason"),
    [
        (lambda m: m, "unauthenticated"),
        (lambda m: STAFF.school_admin("79000701").signs(m), "not-an-operator"),
        (lambda m: STAFF.principal("79000701").signs(m), "not-an-operator"),
    ],
    ids=["no token", "a school administrator's token", "a principal's token"],
)


@pytest.mark.parametrize("request_type", [GetSyncStatus, Reconcile], ids=lambda t: t.__name__)
@NOT_AN_OPERATOR
async def test_attack_status_or_reconciliation_by_anyone_but_an_operator_is_answered_with_the_refusal_and_counted(
    service, store, wired, request_type, signed, reason
):
    """Reproduction (issue 9, 3): `hocba sync status/reconcile` answered anyone with a broker login."""
    await refused_and_counted(service, store, wired, signed(request_type()), reason)


@NOT_AN_OPERATOR
async def test_a_retry_by_anyone_but_an_operator_is_answered_with_the_refusal_and_counted(
    service, store, wired, signed, reason
):
    await refused_and_counted(service, store, wired, signed(RetryParked()), reason)


async def refused_and_counted(service, store, wired, request: Message, reason: str) -> None:
    """One parked entry; `request` is answered with the refusal, counted, and changes nothing."""
    svc, repo = service
    store.faults.fail_status, store.fail_next = 400, 1
    queue = svc.topology.queue_name(request.ROUTING_KEY)
    async with wired(svc) as wire:
        await wire.send(archived(1))
        requests = store.requests
        with pytest.raises(Refused) as refused:
            await wire.request(request, ANSWERS[type(request)])
    assert refused.value.reason == reason
    assert set((await statuses(repo)).values()) == {PARKED}
    assert store.requests == requests
    assert sample(svc, "hocba_messages_refused_total", {"queue": queue, "reason": reason}) == 1


async def test_attack_a_forged_records_archived_event_is_dead_lettered_and_never_delivered(service, store, wired):
    """Reproduction (issue 9, 2): a RecordsArchived event with a made-up digest, published by anyone with a broker login."""
    svc, repo = service
    seen = probe(svc, RecordsDelivered)
    dead = dead_letters(svc, RecordsArchived)
    genuine = archived(2)
    made_up = genuine.records[1].model_copy(
        update={"record_id": "hb-79000701-0666", "digest": "f" * 64, "content": content_of({"awards": ["top"]})}
    )
    by_grades = announced([archived_record("hb-79000701-0777", 7, {"learning_result": {"year": "Tốt"}})], dev_pki().signer("svc-grades"))
    unsealed = RecordsArchived(records=[made_up])
    async with wired(svc) as wire:
        await wire.send(genuine)
        await wire.send(unsealed)
        await wire.send(by_grades)

    assert set(store.receipts) == {"hb-79000701-0000:1", "hb-79000701-0001:1"}, "a forged record reached the ministry"
    assert set(await statuses(repo)) == {"hb-79000701-0000:1", "hb-79000701-0001:1"}
    assert [sorted(d.record_id for d in m.deliveries) for m in seen] == [["hb-79000701-0000", "hb-79000701-0001"]]
    assert [[r["record_id"] for r in body["records"]] for body, _ in dead] == [["hb-79000701-0666"], ["hb-79000701-0777"]]
    assert {headers[REASON_HEADER] for _, headers in dead} == {"invalid"}
    assert "hb-79000701-0666 v1: it carries no seal by archive" in dead[0][1][ERROR_HEADER]
    assert "hb-79000701-0777 v1: it is sealed by 'svc-grades'" in dead[1][1][ERROR_HEADER]
    queue = svc.topology.queue_name(RecordsArchived.ROUTING_KEY)
    assert sample(svc, "hocba_messages_dead_lettered_total", {"queue": queue, "reason": "invalid"}) == 2


async def test_attack_a_checkpoint_with_a_bad_signature_is_dead_lettered_and_not_delivered(service, store, wired):
    """Reproduction (issue 9, 2): a checkpoint nobody signed, published on the broker."""
    svc, repo = service
    seen = probe(svc, CheckpointDelivered)
    dead = dead_letters(svc, CheckpointIssued)
    genuine = checkpoint(4)
    unsigned = genuine.model_copy(update={"checkpoint": genuine.checkpoint.model_copy(update={"signature": "e30..c2ln"})})
    async with wired(svc) as wire:
        await wire.send(unsigned)

    assert store.checkpoints == {} and await statuses(repo) == {} and seen == []
    [(_, headers)] = dead
    assert headers[REASON_HEADER] == "invalid"
    assert "is not vouched for by the archive" in headers[ERROR_HEADER]


async def test_reconciliation_with_an_unreachable_ministry_is_answered_with_the_reason(operator_settings, wired):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        svc = build_app(operator_settings, repository=InMemoryOutboxRepository(), http_client=client, trust=trust)
        queue = svc.topology.queue_name(Reconcile.ROUTING_KEY)
        async with wired(svc) as wire:
            with pytest.raises(Refused) as refused:
                await wire.request(OPERATOR.signs(Reconcile()), ReconcileReport)
    assert refused.value.reason == "unavailable"
    assert "listing /v1/receipts failed: ConnectError" in str(refused.value)
    assert sample(svc, "hocba_requests_answered_with_error_total", {"queue": queue, "reason": "unavailable"}) == 1


async def test_deliveries_a_crash_left_unannounced_are_announced_by_sync_itself(operator_settings, store, wired):
    """sync stopped after recording a delivery, before announcing it: its own loop announces it, once."""
    repo = InMemoryOutboxRepository()
    now = utcnow()
    entry = new_entry(archived(1).records[0], now)
    await repo.add_new([entry])
    [claimed] = await repo.claim(None, now, now + timedelta(minutes=5), "before-the-crash", 1)
    await repo.record_answers("before-the-crash", [receipt_from(claimed, {"receipt_id": "MOET-1"}, now)], [])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(store))) as client:
        svc = build_app(
            operator_settings, repository=repo, http_client=client, trust=trust,
            policy=DeliveryPolicy(announce_grace_seconds=0.0),
        )
        seen = probe(svc, RecordsDelivered)
        reannouncing = next(loop for loop in svc.loops if loop.name == "sync-reannounce")
        async with wired(svc) as wire:
            await reannouncing.run_once()
            await reannouncing.run_once()
            await wire.settle()

    assert [(d.record_id, d.receipt_id) for m in seen for d in m.deliveries] == [("hb-79000701-0000", "MOET-1")]
    assert repo.unannounced_since == {}
