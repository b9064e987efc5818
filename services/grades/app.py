"""grades' composition root: bus, repository, metrics, actor-token keys, its service certificate (seals, identity
look-ups, and its questions to signing), the access log and routes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.grades.handlers import Deps, Lookup, Sealer
from services.grades.metrics import GradesMetrics
from services.grades.repository import INDEXES, GradesRepository, MongoGradesRepository
from services.grades.router import register_routes
from shared.access import ACCESS_LOG_INDEXES, AccessLogStore, AccessRecorder, InMemoryAccessLog, MongoAccessLog
from shared.at_rest import KeyRotation, NothingSealed, Reencrypting
from shared.auth import IssuerKeys, ServiceIdentity, issuer_keys_for, service_subject
from shared.contracts.grades import RecordKey, RecordVersion, VersionKey
from shared.contracts.identity import LookupStudents, StudentSnapshot, StudentSnapshots
from shared.contracts.keys import GradesKeyRotationProgress
from shared.contracts.signing import HeldSignatures, SignedVersions
from shared.crypto.certs import ReloadingTrust
from shared.crypto.pki import DevPki
from shared.crypto.seal import record_claims, seal
from shared.crypto.signer import X509Signer
from shared.crypto.vault import Vault
from shared.messaging import Bus
from shared.service import Resource, ServiceApp, Storage, assemble
from shared.settings import Settings

NAME = "grades"
#: grades' own certificate in the PKI: it seals the records grades assembles and signs its look-ups.
CERTIFICATE = service_subject(NAME)


@dataclass(frozen=True)
class IdentityLookup:
    """identity's snapshots of student references, asked by request, `refs_per_request` references at a time.

    Each request carries grades' own token (`identity`: its service certificate) and says why it asks.
    """

    bus: Bus
    identity: ServiceIdentity
    refs_per_request: int = 500
    #: Seconds to wait for each answer.
    timeout: float = 30.0

    async def __call__(self, refs: list[str], purpose: str) -> list[StudentSnapshot]:
        students: list[StudentSnapshot] = []
        for start in range(0, len(refs), self.refs_per_request):
            asked = LookupStudents(student_refs=refs[start : start + self.refs_per_request], purpose=purpose)
            students += (await self.bus.request(self.identity.signs(asked), StudentSnapshots, self.timeout)).students
        return students


@dataclass(frozen=True)
class SigningSignatures:
    """signing's word on which record versions carry a signature, and whose: one request for the versions asked
    about, with grades' own token (`identity`: its service certificate).

    Raises NoAnswer when signing does not answer within `timeout`, Refused when it refuses.
    """

    bus: Bus
    identity: ServiceIdentity
    #: Seconds to wait for the answer.
    timeout: float = 30.0

    async def __call__(self, school_code: str, school_year: str, keys: list[VersionKey]) -> dict[VersionKey, list[str]]:
        asked = HeldSignatures(
            school_code=school_code,
            school_year=school_year,
            records=[RecordKey(record_id=record_id, version=version) for record_id, version in keys],
        )
        answer = await self.bus.request(self.identity.signs(asked), SignedVersions, self.timeout)
        return {(v.record_id, v.version): list(v.roles) for v in answer.records}


def pki_signer(settings: Settings) -> Callable[[], X509Signer]:
    """grades' own signer (svc-grades) from the configured PKI, its key read on first use."""
    directory = DevPki.from_settings(settings).directory()
    return lambda: directory.signer_for(CERTIFICATE)


def pki_trust(settings: Settings) -> ReloadingTrust:
    """The configured PKI's trust anchor and CRL: what the web gateway's certificate must chain to (its tokens act
    for the people signed in on the web page)."""
    pki = DevPki.from_settings(settings)
    return ReloadingTrust(pki.anchor_path, [pki.crl_path])


def seal_with(signer: Callable[[], X509Signer]) -> Sealer:
    """grades' seal on a record version: `signer`'s (the svc-grades certificate) over `record_claims`."""

    def sealer(record: RecordVersion) -> str:
        return seal(signer(), record_claims(record))

    return sealer


def build_app(
    settings: Settings,
    *,
    repository: GradesRepository | None = None,
    mongo: AsyncMongoClient | None = None,
    registry: CollectorRegistry | None = None,
    lookup: Lookup | None = None,
    issuer_keys: IssuerKeys | None = None,
) -> ServiceApp:
    """Student snapshots come from identity by request unless `lookup` stands in for it; which record versions carry
    a signature always comes from signing by request. A `repository` given
    (tests: an in-memory one) has an in-memory access log beside it.

    grades' certificate (`svc-grades`: its seals, its tokens when it asks identity) is the one in the
    PKI at `settings.pki_path()`; actor tokens are accepted for grades as their audience.
    """
    bus = Bus(settings, NAME, registry)
    storage = Storage.for_service(settings, mongo, needed=repository is None, indexes=[*INDEXES, *ACCESS_LOG_INDEXES])
    access_log: AccessLogStore = InMemoryAccessLog()
    vault: Vault = Vault.ephemeral()
    sealed: Reencrypting = NothingSealed()
    if repository is None:
        db = storage.database(settings, NAME)
        vault = Vault.for_service(settings, NAME)
        stored = MongoGradesRepository(db, vault)
        repository, access_log, sealed = stored, MongoAccessLog(db), stored.sealed
    signer = pki_signer(settings)
    given = issuer_keys or issuer_keys_for(settings.actor_issuer_jwks, settings.actor_issuer, NAME, pki_trust(settings))
    keys = given.for_service(NAME) if given else None
    deps = Deps(
        repo=repository,
        metrics=GradesMetrics(bus.registry),
        issuer_keys=keys,
        lookup=lookup or IdentityLookup(bus, ServiceIdentity(NAME, signer)),
        records_per_message=settings.chunk_size,
        sealer=seal_with(signer),
        access=AccessRecorder(NAME, bus.registry),
        access_log=access_log,
        rotation=KeyRotation.on(bus, vault, sealed, GradesKeyRotationProgress, keys),
        publish=bus.publish,
        signatures_held=SigningSignatures(bus, ServiceIdentity(NAME, signer)),
        notify=bus.publish,
    )
    register_routes(bus, deps)
    return assemble(bus, storage, resources=[Resource(open=deps.rotation.show_key_ring)])
