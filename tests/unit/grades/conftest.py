"""Fixtures for grades' unit tests: a repository with three enrolled students, metrics, a PKI with grades'
certificate, identity and signing as far as grades asks them, and the handlers' Deps."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from services.grades.app import CERTIFICATE, seal_with
from services.grades.handlers import Deps, Sealer
from services.grades.metrics import GradesMetrics
from services.grades.repository import InMemoryGradesRepository
from shared.access import AccessRecorder, InMemoryAccessLog
from shared.contracts.base import Message
from shared.contracts.grades import VersionKey
from shared.contracts.identity import StudentSnapshot
from shared.contracts.keys import GradesKeyRotationProgress
from shared.crypto.pki import DevPki
from shared.errors import NoAnswer
from tests.support import idle_rotation
from tests.unit.grades.builders import enrolled, keys_for, service_pki, snapshot


class FakeLookup:
    """Identity as far as these tests need it: knows some students, remembers what it was asked and why."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.asked: list[list[str]] = []
        self.purposes: list[str] = []

    async def __call__(self, refs: list[str], purpose: str) -> list[StudentSnapshot]:
        self.asked.append(list(refs))
        self.purposes.append(purpose)
        return [snapshot(r) for r in refs if r in self.known]


class FakeSignatures:
    """signing as far as grades asks it: the roles that signed each version it holds, what it was asked; or, not
    `answering`, no answer at all."""

    def __init__(self, signed: dict[VersionKey, list[str]] | None = None, answering: bool = True) -> None:
        self.signed = signed or {}
        self.answering = answering
        self.asked: list[list[VersionKey]] = []

    async def __call__(self, school_code: str, school_year: str, keys: list[VersionKey]) -> dict[VersionKey, list[str]]:
        self.asked.append(list(keys))
        if not self.answering:
            raise NoAnswer("no answer to signing.signatures.held.v1 within 30s")
        return {key: self.signed[key] for key in keys if key in self.signed}


class Published(list[Message]):
    """The bus as far as these tests need it: keeps what a handler publishes as it goes, in order."""

    async def __call__(self, message: Message) -> None:
        self.append(message)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> DevPki:
    return service_pki(tmp_path_factory.mktemp("grades-pki"))


@pytest.fixture(scope="session")
def sealer(pki: DevPki) -> Sealer:
    """grades' seal with the PKI's svc-grades certificate (its key loaded once)."""
    signers = pki.directory()
    return seal_with(lambda: signers.signer_for(CERTIFICATE))


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> GradesMetrics:
    return GradesMetrics(registry)


@pytest.fixture
async def repo() -> InMemoryGradesRepository:
    """s1 and s2 in class 6A1, s3 in 6A2, all in grade 6 of the school."""
    repo = InMemoryGradesRepository()
    await repo.enrol([enrolled("s1"), enrolled("s2"), enrolled("s3", class_name="6A2")])
    return repo


@pytest.fixture
def deps(repo: InMemoryGradesRepository, metrics: GradesMetrics, registry: CollectorRegistry, sealer: Sealer) -> Deps:
    return Deps(
        repo=repo,
        metrics=metrics,
        issuer_keys=keys_for("grades"),
        lookup=FakeLookup(set()),
        records_per_message=10,
        sealer=sealer,
        access=AccessRecorder("grades", registry),
        access_log=InMemoryAccessLog(),
        rotation=idle_rotation(GradesKeyRotationProgress, keys_for("grades"), registry),
        publish=Published(),
        signatures_held=FakeSignatures(),
    )
