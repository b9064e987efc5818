"""Builders for identity's tests: roster rows, a key ring whose older keys are retired, grades asking."""

from __future__ import annotations

from datetime import date

from shared.auth import ServiceIdentity
from shared.contracts.identity import Enrolment, StudentIdentity, StudentRegistration
from shared.crypto.keyring import KeyRing, save_key_ring
from shared.crypto.pki import DevPki
from shared.crypto.vault import Vault
from tests.unit.grades.builders import SCHOOL


def row(
    personal_id: str,
    name: str = "Nguyễn Văn An",
    sex: str = "M",
    school: str = SCHOOL,
    year: str = "2025-2026",
    born: date = date(2014, 9, 5),
) -> StudentRegistration:
    return StudentRegistration(
        identity=StudentIdentity(personal_id=personal_id, full_name=name, date_of_birth=born, sex=sex),
        enrolment=Enrolment(school_code=school, school_year=year, grade=6, class_name="6A1"),
    )


def retire_older_keys(vault: Vault) -> None:
    """Leave only the current key in the vault's ring file and reload it: what is under an older key no longer reads."""
    assert vault.path is not None and vault.kek is not None, "a ring kept in a file"
    ring = vault.ring
    only_current = KeyRing({ring.current: ring.keys[ring.current]}, ring.current, ring.index_key, (ring.current,))
    save_key_ring(vault.path, only_current, vault.kek, vault.owner)
    vault.reload()


def grades_asking(pki: DevPki) -> ServiceIdentity:
    """The grades service, asking identity with its own certificate from `pki`."""
    signers = pki.directory()
    return ServiceIdentity("grades", lambda: signers.signer_for("svc-grades"))
