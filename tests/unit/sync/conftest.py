"""Fixtures for sync's use cases: in-memory outbox, the ministry simulator in-process, a settable clock, the
archive's sealed records and signed checkpoints, operators' tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import CollectorRegistry

from hocba.ministry_simulator import ReceiptStore, create_app
from hocba.staff import Staff
from services.sync.domain import DeliveryPolicy, OutboxEntry
from services.sync.handlers import Deps
from services.sync.metrics import SyncMetrics
from services.sync.ministry import Ministry
from services.sync.repository import InMemoryOutboxRepository, OutboxRepository
from shared.auth import IssuerKey
from shared.contracts.archive import CheckpointIssued, RecordsArchived
from shared.contracts.keys import SyncKeyRotationProgress
from shared.contracts.sync import RecordsDelivered
from shared.outcome import Outcome
from tests.records import identity, record_document
from tests.support import idle_rotation
from tests.unit.sync.sealed import LogProofs, announced, archived_record, signed_checkpoint, trust

MINISTRY_URL = "http://ministry.test"
ISSUER = IssuerKey.generate("test-school-app")
STAFF = Staff(ISSUER)
#: The department's operator, as the issuer vouches for them: `OPERATOR.signs(message)`.
OPERATOR = STAFF.operator()
#: Due entries one relay step delivers at most, in these tests.
PER_STEP = 10


class Clock:
    """A clock the test moves by hand, set half an hour behind the wall clock: the PKI's certificates, made
    now, are valid from an hour ago, and the ages the gauges measure against the wall clock are positive."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def document(record_id: str, i: int, school: str = "79000701", version: int = 1) -> dict:
    return record_document(
        record_id, version, school, "2025-2026", f"s-{i}",
        student={"student_ref": f"s-{i}", "identity": {**identity(f"0792120{i:05d}"), "full_name": "Lê Minh Châu"}},
        learning_result={"year": "Tốt"},
    )


def archived(n: int, school: str = "79000701", version: int = 1) -> RecordsArchived:
    """n record versions of `school` as the archive announces them: sealed by its certificate, at log positions 0..n-1."""
    return announced(
        [
            archived_record(
                f"hb-{school}-{i:04d}",
                i,
                document(f"hb-{school}-{i:04d}", i, school, version),
                version=version,
                school_code=school,
                student_ref=f"s-{i}",
            )
            for i in range(n)
        ]
    )


@pytest.fixture
def store() -> ReceiptStore:
    """The ministry, holding the department's trust anchor (the tests' PKI) that checkpoints must chain to."""
    return ReceiptStore(trust=trust)


@pytest.fixture
def archive_log() -> LogProofs:
    """The archive as sync asks it for consistency proofs."""
    return LogProofs()


@pytest.fixture
async def client(store):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(store))) as client:
        yield client


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def repo() -> InMemoryOutboxRepository:
    return InMemoryOutboxRepository()


@pytest.fixture
def policy() -> DeliveryPolicy:
    """Four attempts; the circuit breaker never opens, so a ministry failing every request parks entries (the
    breaker's own tests, test_circuit.py, choose when it opens)."""
    return DeliveryPolicy(max_attempts=4, base_seconds=2.0, cap_seconds=60.0, lease_seconds=30.0, circuit_rounds=1_000)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def deps(repo, client, clock, policy, registry, archive_log) -> Deps:
    return Deps(
        repo=repo,
        ministry=Ministry(MINISTRY_URL, concurrency=4, client=client),
        metrics=SyncMetrics(registry),
        issuer_keys=ISSUER.public_keys("sync"),
        trust=trust,
        deliveries_per_step=PER_STEP,
        rotation=idle_rotation(SyncKeyRotationProgress, ISSUER.public_keys("sync"), registry),
        policy=policy,
        clock=clock,
        jitter=lambda: 0.0,
        archive=archive_log,
    )


def records_delivered(outcome: Outcome) -> RecordsDelivered | None:
    """The records announcement the outcome publishes, if any."""
    found = [m for m in outcome.publish if isinstance(m, RecordsDelivered)]
    assert len(found) <= 1
    return found[0] if found else None


def delivered_ids(outcome: Outcome) -> list[str]:
    """The record ids the outcome announces delivered, sorted."""
    announced = records_delivered(outcome)
    return sorted(d.record_id for d in announced.deliveries) if announced else []


async def entry(repo: OutboxRepository, key: str) -> OutboxEntry:
    return (await repo.entries([key]))[key]


async def statuses(repo: OutboxRepository) -> dict[str, str]:
    """Every entry's status, by key."""
    return {held.key: held.status async for held in repo.holdings()}


async def receipts(repo: OutboxRepository) -> dict[str, str]:
    """The receipt id recorded for each entry the ministry acknowledged, by key."""
    return await repo.receipt_ids(await statuses(repo))


def checkpoint_issued(tree_size: int = 3, origin: str = "hocba.test/archive") -> CheckpointIssued:
    """A checkpoint of the archive log, signed by the archive's certificate."""
    return signed_checkpoint(tree_size, origin)


def deliveries(registry: CollectorRegistry, outcome: str, kind: str = "record") -> float:
    return registry.get_sample_value("hocba_sync_deliveries_total", {"kind": kind, "outcome": outcome}) or 0.0


def stats(accepted: int = 0, duplicates: int = 0, requests: int = 0, checkpoints: int = 0, acks: int | None = None, batches: int = 0) -> dict:
    """What the simulator's /v1/stats answers."""
    return {
        "accepted": accepted,
        "duplicates": duplicates,
        "requests": requests,
        "checkpoints": checkpoints,
        "acknowledgements": accepted if acks is None else acks,
        "batches": batches,
    }
