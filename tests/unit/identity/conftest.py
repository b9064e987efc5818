"""Fixtures for identity's unit tests: a key ring in a file, the in-memory repository, metrics, a PKI that vouches
for grades asking on its own behalf, and `Deps`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from services.identity.handlers import Deps
from services.identity.metrics import IdentityMetrics
from services.identity.repository import InMemoryStudentRepository
from shared.access import AccessRecorder, InMemoryAccessLog
from shared.at_rest import KeyRotation, RotationMetrics
from shared.auth import ServiceIdentity
from shared.contracts.base import Message
from shared.contracts.identity import KeyRotationProgress
from shared.crypto.kek import FileKek
from shared.crypto.pki import DevPki
from shared.crypto.vault import Vault
from tests.unit.grades.builders import KEYS, service_pki
from tests.unit.identity.builders import grades_asking

NOW = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)


class Announced(list[Message]):
    """What a handler announced while it ran, in order."""

    async def __call__(self, message: Message) -> None:
        self.append(message)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> DevPki:
    return service_pki(tmp_path_factory.mktemp("identity-pki"))


@pytest.fixture(scope="session")
def grades(pki: DevPki) -> ServiceIdentity:
    return grades_asking(pki)


@pytest.fixture
def vault(tmp_path) -> Vault:
    return Vault.at(tmp_path / "keys" / "ring.json", FileKek(bytes(32)), "identity")


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
def deps(repo, vault, registry, announced, pki) -> Deps:
    keys = KEYS.for_service("identity", services=pki.trust_store)
    return Deps(
        repo,
        IdentityMetrics(registry),
        keys,
        KeyRotation(vault, repo, KeyRotationProgress, keys, RotationMetrics(registry), announce=announced),
        access=AccessRecorder("identity", registry, clock=lambda: NOW),
        access_log=InMemoryAccessLog(),
        clock=lambda: NOW,
    )
