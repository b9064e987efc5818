"""Fixtures for archive's unit tests: signed record versions, a repository and metrics."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from services.archive.metrics import ArchiveMetrics
from services.archive.repository import InMemoryArchiveRepository
from shared.contracts.grades import RecordVersion
from shared.contracts.signing import Signature, SignedRecord
from shared.crypto.canonical import canonical_json, digest
from shared.crypto.jws import EcSigner, sign_detached

SIGNER = EcSigner.generate("signing-test")
SIGNED_AT = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)


def signed_record(n: int, version: int = 1, **document: object) -> SignedRecord:
    record = RecordVersion(
        record_id=f"rec-{n:04d}",
        version=version,
        school_code="79000701",
        school_year="2025-2026",
        student_ref=f"student-{n:04d}",
        document={"student_ref": f"student-{n:04d}", "subjects": {"toan": {"year": 8.5}}, **document},
    )
    header = {"record_id": record.record_id, "version": version, "role": "principal", "prev": None}
    signature = Signature(
        record_id=record.record_id,
        version=version,
        role="principal",
        key_id=SIGNER.key_id,
        digest=digest(record.document),
        jws=sign_detached(SIGNER, canonical_json(record.document), header),
        signed_at=SIGNED_AT,
    )
    return SignedRecord(record=record, signatures=[signature])


@pytest.fixture
def make_signed() -> Callable[..., SignedRecord]:
    return signed_record


@pytest.fixture
def repo() -> InMemoryArchiveRepository:
    return InMemoryArchiveRepository()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> ArchiveMetrics:
    return ArchiveMetrics(registry)
