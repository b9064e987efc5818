"""Fixtures for signing's unit tests: sealed record versions, a repository, metrics, a PKI and actor tokens."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from services.signing.metrics import SigningMetrics
from services.signing.repository import InMemorySigningRepository
from shared.contracts.grades import RecordVersion

from .trust import Trust, make_trust


@pytest.fixture
def make_record(trust) -> Callable[..., RecordVersion]:
    """Record n as grades publishes it (assembled and sealed), for the session's PKI."""
    return trust.record


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
