"""A development PKI and actor tokens for the tests that sign or verify (unit, wiring, integration)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from hocba.staff import Staff, certificate_holders
from services.signing.domain import StoredRecord
from services.signing.handlers import Deps, Signers, sign_record
from shared.auth import IssuerKey
from shared.contracts.grades import RecordVersion
from shared.contracts.signing import SIGNING_ORDER, SignedRecord, seal_subject
from shared.crypto.canonical import digest
from shared.crypto.certs import ReloadingTrust
from shared.crypto.pki import DevPki, archive_holder
from shared.crypto.signer import CachingDirectory

SCHOOL, OTHER_SCHOOL = "79000701", "79000702"
CLASSES = ("6A1", "6A2")


@dataclass
class Trust:
    """A PKI with certificates for two schools' staff, and the issuer of their actor tokens."""

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
        """signing's dependencies over `repo`, with this PKI's signers and this issuer's actor tokens."""
        return Deps(repo, metrics, self.issuer.public_keys(), self.checked_signers(), records_per_chunk, worker)


def make_trust(folder: Path) -> Trust:
    pki = DevPki(folder / "pki", b"test passphrase")
    schools = [(SCHOOL, "Trường THCS thử nghiệm"), (OTHER_SCHOOL, "Trường THCS khác")]
    pki.create([*certificate_holders(schools, CLASSES), archive_holder()])
    return Trust(pki, IssuerKey.generate("test-school-app"))


def signed_record(
    trust: Trust,
    n: int,
    version: int = 1,
    *,
    school_code: str = SCHOOL,
    roles: tuple[str, ...] = SIGNING_ORDER,
    signed_at: datetime | None = None,
    **document: object,
) -> SignedRecord:
    """Record n (class 6A1 or 6A2) signed by its homeroom teacher, the principal and the seal, as signing does."""
    class_name = f"6A{n % 2 + 1}"
    record = RecordVersion(
        record_id=f"rec-{n:04d}",
        version=version,
        school_code=school_code,
        school_year="2025-2026",
        student_ref=f"student-{n:04d}",
        document={"student_ref": f"student-{n:04d}", "class_name": class_name, "subjects": {"toan": {"year": "8.5"}}, **document},
    )
    stored = StoredRecord(record, digest(record.document))
    subjects = {
        "homeroom_teacher": f"gvcn-{school_code}-{class_name}",
        "principal": f"ht-{school_code}",
        "school_seal": seal_subject(school_code),
    }
    when = signed_at or datetime.now(UTC).replace(microsecond=0)
    present: dict = {}
    for role in roles:
        present[role] = sign_record(stored, role, present, trust.signers.signer_for(subjects[role]), when)
    return SignedRecord(record=record, signatures=[present[r] for r in roles])
