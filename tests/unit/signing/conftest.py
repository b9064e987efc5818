"""Fixtures for signing's unit tests: record versions, a repository, metrics and a key."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from services.signing.metrics import SigningMetrics
from services.signing.repository import InMemorySigningRepository
from shared.contracts.grades import RecordVersion
from shared.crypto.jws import EcSigner

SCHOOL = "79000701"
YEAR = "2025-2026"


def record_version(n: int, version: int = 1, school_code: str = SCHOOL, **document: object) -> RecordVersion:
    return RecordVersion(
        record_id=f"rec-{n:04d}",
        version=version,
        school_code=school_code,
        school_year=YEAR,
        student_ref=f"student-{n:04d}",
        document={
            "student_ref": f"student-{n:04d}",
            "school_year": YEAR,
            "subjects": {"toan": {"year": 8.5}, "ngu_van": {"year": 7}},
            "conduct": "Tốt",
            **document,
        },
    )


@pytest.fixture
def make_record() -> Callable[..., RecordVersion]:
    return record_version


@pytest.fixture
def repo() -> InMemorySigningRepository:
    return InMemorySigningRepository()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> SigningMetrics:
    return SigningMetrics(registry)


@pytest.fixture
def signer() -> EcSigner:
    return EcSigner.generate("signing-test-worker-a")
