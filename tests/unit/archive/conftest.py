"""Fixtures for archive's unit tests: fully signed record versions, a repository, metrics, the archive's keys."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from services.archive.handlers import Keys
from services.archive.metrics import ArchiveMetrics
from services.archive.repository import InMemoryArchiveRepository
from shared.contracts.signing import SignedRecord
from shared.crypto.certs import ReloadingTrust
from shared.crypto.pki import ARCHIVE_SUBJECT
from tests.unit.signing.trust import Trust, make_trust, signed_record


def archive_keys(trust: Trust) -> Keys:
    return Keys(
        signer=lambda: trust.signers.signer_for(ARCHIVE_SUBJECT),
        trust=ReloadingTrust(trust.pki.anchor_path, [trust.pki.crl_path], check_every=0),
        origin="test.archive",
        crl_pem=lambda: trust.pki.crl_path.read_text(),
    )


@pytest.fixture(scope="session")
def trust(tmp_path_factory) -> Trust:
    return make_trust(tmp_path_factory.mktemp("archive-trust"))


@pytest.fixture
def keys(trust) -> Keys:
    return archive_keys(trust)


@pytest.fixture
def make_signed(trust) -> Callable[..., SignedRecord]:
    return lambda n, version=1, **kw: signed_record(trust, n, version, **kw)


@pytest.fixture
def repo() -> InMemoryArchiveRepository:
    return InMemoryArchiveRepository()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> ArchiveMetrics:
    return ArchiveMetrics(registry)
