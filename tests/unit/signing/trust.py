"""A development PKI, grades' seal and actor tokens for the tests that sign or verify (unit, wiring, integration)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import CollectorRegistry

from hocba.staff import Staff, certificate_holders
from services.signing.domain import StoredRecord
from services.signing.handlers import Deps, Signers, sign_record
from shared.auth import IssuerKey
from shared.contracts.grades import RecordVersion
from shared.contracts.keys import SigningKeyRotationProgress
from shared.contracts.signing import SIGNING_ORDER, SignedRecord, seal_subject
from shared.crypto.certs import ReloadingTrust, load_certificates
from shared.crypto.pki import DevPki, service_holders
from shared.crypto.seal import record_claims, seal
from shared.crypto.signer import CachingDirectory
from tests import records
from tests.support import idle_rotation

SCHOOL, OTHER_SCHOOL = "79000701", "79000702"
CLASSES = ("6A1", "6A2")
YEAR = "2025-2026"
GRADES = "svc-grades"


def record_version(n: int, version: int = 1, school_code: str = SCHOOL, **document: object) -> RecordVersion:
    """Record n of class 6A1 (even n) or 6A2 (odd n), as grades assembles it (not sealed yet)."""
    fields: dict[str, object] = {
        "class_name": f"6A{n % 2 + 1}",
        "subjects": [{"name": "Toán", "year": {"average": "8.5"}}, {"name": "Ngữ văn", "year": {"average": "7.0"}}],
        "conduct": {"year": "Tốt"},
        **document,
    }
    return records.record_version(f"rec-{n:04d}", version, school_code, YEAR, f"student-{n:04d}", **fields)


@dataclass
class Trust:
    """A PKI with certificates for two schools' staff and the services, and the issuer of their actor tokens."""

    pki: DevPki
    issuer: IssuerKey

    @property
    def staff(self) -> Staff:
        return Staff(self.issuer)

    @cached_property
    def signers(self) -> CachingDirectory:
        return self.pki.directory()

    def checked_signers(self) -> Signers:
        """The signers, checked against the PKI's trust anchor and its CRL as it is at each use."""
        return Signers(self.signers, ReloadingTrust(self.pki.anchor_path, [self.pki.crl_path], check_every=0))

    def deps(self, repo, metrics, records_per_chunk: int = 10, worker: str = "signing-test-worker") -> Deps:
        """signing's dependencies over `repo`, with this PKI's signers and this issuer's actor tokens for signing."""
        keys = self.issuer.public_keys("signing")
        rotation = idle_rotation(SigningKeyRotationProgress, keys, CollectorRegistry())
        return Deps(repo, metrics, keys, self.checked_signers(), records_per_chunk, worker, rotation)

    def sealed(self, record: RecordVersion) -> RecordVersion:
        """`record` with grades' seal on it, as grades publishes it."""
        return record.model_copy(update={"seal": seal(self.signers.signer_for(GRADES), record_claims(record))})

    def record(self, n: int, version: int = 1, school_code: str = SCHOOL, **document: object) -> RecordVersion:
        """Record n as grades publishes it: assembled and sealed."""
        return self.sealed(record_version(n, version, school_code, **document))

    def stale_crl(self) -> Path:
        """A CRL of this PKI's root that was due for renewal ten days ago (written beside the current one)."""
        root = load_certificates(self.pki.anchor_path)[0]
        key = serialization.load_pem_private_key((self.pki.folder / "ca" / "root.key.pem").read_bytes(), self.pki.passphrase)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        now = datetime.now(UTC)
        crl = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(root.subject)
            .last_update(now - timedelta(days=40))
            .next_update(now - timedelta(days=10))
            .sign(key, hashes.SHA256())
        )
        path = self.pki.folder / "ca" / "stale-crl.pem"
        path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return path


def make_trust(folder: Path) -> Trust:
    pki = DevPki(folder / "pki", b"test passphrase")
    schools = [(SCHOOL, "Trường THCS thử nghiệm"), (OTHER_SCHOOL, "Trường THCS khác")]
    pki.create([*certificate_holders(schools, CLASSES), *service_holders()])
    return Trust(pki, IssuerKey.generate("test-school-app"))


def completed_version(n: int, version: int = 1, school_code: str = SCHOOL, **document: object) -> RecordVersion:
    """Record n (class 6A1 or 6A2) as the tests of what follows signing hold it (not sealed yet)."""
    fields: dict[str, object] = {
        "class_name": f"6A{n % 2 + 1}", "subjects": [{"name": "Toán", "year": {"average": "8.5"}}], **document
    }
    return records.record_version(f"rec-{n:04d}", version, school_code, YEAR, f"student-{n:04d}", **fields)


def signed_record(
    trust: Trust,
    n: int,
    version: int = 1,
    *,
    school_code: str = SCHOOL,
    roles: tuple[str, ...] = SIGNING_ORDER,
    signed_at: datetime | Mapping[str, datetime] | None = None,
    **document: object,
) -> SignedRecord:
    """Record n (class 6A1 or 6A2), sealed by grades, signed by its homeroom teacher, the principal and the seal, as
    signing does: all at `signed_at` (now by default), or each role at its own time."""
    record = trust.sealed(completed_version(n, version, school_code, **document))
    return signed_version(trust, record, roles, signed_at)


def signed_version(
    trust: Trust,
    record: RecordVersion,
    roles: tuple[str, ...] = SIGNING_ORDER,
    signed_at: datetime | Mapping[str, datetime] | None = None,
) -> SignedRecord:
    """`record` as it is (sealed or not) signed by its class's homeroom teacher, the principal and the seal."""
    class_name = str(record.document["class_name"])
    school_code = record.school_code
    stored = StoredRecord.of(record)
    subjects = {
        "homeroom_teacher": f"gvcn-{school_code}-{class_name}",
        "principal": f"ht-{school_code}",
        "school_seal": seal_subject(school_code),
    }
    now = datetime.now(UTC).replace(microsecond=0)
    when = signed_at if isinstance(signed_at, Mapping) else {role: signed_at or now for role in roles}
    present: dict = {}
    for role in roles:
        present[role] = sign_record(stored, role, present, trust.signers.signer_for(subjects[role]), when[role])
    return SignedRecord(record=record, signatures=[present[r] for r in roles])
