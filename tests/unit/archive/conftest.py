"""Fixtures for archive's unit tests: fully signed record versions, a repository, metrics, the archive's keys,
the actor-token issuer's keys for the archive."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from services.archive.handlers import Deps, Keys
from services.archive.metrics import ArchiveMetrics
from services.archive.repository import ArchiveRepository, InMemoryArchiveRepository
from shared.access import AccessRecorder, InMemoryAccessLog
from shared.contracts.keys import ArchiveKeyRotationProgress
from shared.contracts.signing import SignedRecord
from shared.crypto.certs import ReloadingTrust
from shared.crypto.pki import ARCHIVE_SUBJECT
from tests.support import idle_rotation
from tests.unit.signing.trust import Trust, make_trust, signed_record

ORIGIN = "test.archive"


def archive_keys(trust: Trust) -> Keys:
    """The archive's key and trust from the test PKI, its CRL read at each use."""
    return Keys(
        signer=lambda: trust.signers.signer_for(ARCHIVE_SUBJECT),
        trust=ReloadingTrust(trust.pki.anchor_path, [trust.pki.crl_path], check_every=0),
        crl_pem=lambda: trust.pki.crl_path.read_text(),
    )


def archive_deps(
    trust: Trust,
    repo: ArchiveRepository | None = None,
    registry: CollectorRegistry | None = None,
    at: datetime | None = None,
) -> Deps:
    """archive's dependencies over `repo` (a new in-memory one by default), with the test PKI's keys and the test
    issuer's keys for the archive, its clock at `at` (now, by default), its metrics on `registry`."""
    registry = registry if registry is not None else CollectorRegistry()
    at = at if at is not None else datetime.now(UTC).replace(microsecond=0)
    return Deps(
        repo=repo if repo is not None else InMemoryArchiveRepository(),
        metrics=ArchiveMetrics(registry),
        keys=archive_keys(trust),
        log_origin=ORIGIN,
        issuer_keys=trust.issuer.public_keys("archive"),
        access=AccessRecorder("archive", registry, clock=lambda: at),
        access_log=InMemoryAccessLog(),
        rotation=idle_rotation(ArchiveKeyRotationProgress, trust.issuer.public_keys("archive"), registry),
        clock=lambda: at,
    )


@pytest.fixture(scope="session")
def at() -> datetime:
    """The time the archive's clock reads in the unit tests that use `deps`: when the first of them runs, so that the
    signatures and certificates they make "now" are of the same minutes, however long other tests ran before."""
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="session")
def trust(tmp_path_factory) -> Trust:
    return make_trust(tmp_path_factory.mktemp("archive-trust"))


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
def deps(trust, repo, registry, at) -> Deps:
    return archive_deps(trust, repo, registry, at)
