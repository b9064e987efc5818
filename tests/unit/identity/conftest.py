"""Fixtures for identity's unit tests: a key ring in a file, the in-memory repository, metrics, `Deps`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from services.identity.handlers import Deps
from services.identity.metrics import IdentityMetrics
from services.identity.repository import InMemoryStudentRepository
from services.identity.vault import Vault
from shared.contracts.base import Message
from tests.unit.grades.builders import KEYS

NOW = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)


class Announced(list[Message]):
    """What a handler announced while it ran, in order."""

    async def __call__(self, message: Message) -> None:
        self.append(message)


@pytest.fixture
def vault(tmp_path) -> Vault:
    return Vault.at(tmp_path / "keys" / "ring.json")


@pytest.fixture
def repo(vault) -> InMemoryStudentRepository:
    return InMemoryStudentRepository(vault)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def announced() -> Announced:
    return Announced()


@pytest.fixture
def deps(repo, vault, registry, announced) -> Deps:
    return Deps(repo, IdentityMetrics(registry), KEYS, vault, announce=announced, clock=lambda: NOW)
