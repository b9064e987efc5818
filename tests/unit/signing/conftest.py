"""Fixtures for signing's unit tests: record versions, a repository, metrics, a PKI and actor tokens."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from services.signing.metrics import SigningMetrics
from services.signing.repository import InMemorySigningRepository
from shared.contracts.grades import RecordVersion

from .trust import SCHOOL, Trust, make_trust

YEAR = "2025-2026"


def record_version(n: int, version: int = 1, school_code: str = SCHOOL, **document: object) -> RecordVersion:
    """Record n of class 6A1 (even n) or 6A2 (odd n)."""
    return RecordVersion(
        record_id=f"rec-{n:04d}",
        version=version,
        school_code=school_code,
        school_year=YEAR,
        student_ref=f"student-{n:04d}",
        document={
            "student_ref": f"student-{n:04d}",
            "school_year": YEAR,
            "class_name": f"6A{n % 2 + 1}",
            "subjects": {"toan": {"year": "8.5"}, "ngu_van": {"year": "7.0"}},
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


@pytest.fixture(scope="session")
def trust(tmp_path_factory) -> Trust:
    return make_trust(tmp_path_factory.mktemp("signing-trust"))


@pytest.fixture
def own_trust(tmp_path) -> Trust:
    """A PKI of this test's own, for tests that revoke certificates."""
    return make_trust(tmp_path)


@pytest.fixture
def deps(trust, repo, metrics):
    return trust.deps(repo, metrics)
