"""Producers' seals: grades' on a record version (checked at the time each test runs, not when the module was imported)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.contracts.grades import RecordVersion
from shared.crypto.pki import DevPki, service_holders
from shared.crypto.seal import record_claims, seal, seal_problems
from tests import records


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> DevPki:
    pki = DevPki(tmp_path_factory.mktemp("seal-pki") / "pki", b"test passphrase")
    pki.create(service_holders())
    return pki


def record(**document) -> RecordVersion:
    return records.record_version("hb-1", 1, "79000701", "2025-2026", "s1", **{"conduct": "Tốt", **document})


def test_a_record_sealed_by_grades_verifies_as_grades(pki):
    sealed = seal(pki.signer("svc-grades"), record_claims(record()))
    assert seal_problems(sealed, record_claims(record()), pki.trust_store(), "svc-grades", datetime.now(UTC)) == []


def test_a_changed_record_no_longer_matches_its_seal(pki):
    sealed = seal(pki.signer("svc-grades"), record_claims(record()))
    [problem] = seal_problems(sealed, record_claims(record(conduct="Khá")), pki.trust_store(), "svc-grades", datetime.now(UTC))
    assert "not the sealed content" in problem


def test_a_seal_by_another_producer_or_none_at_all_is_refused(pki):
    by_archive = seal(pki.signer("archive"), record_claims(record()))
    assert seal_problems(by_archive, record_claims(record()), pki.trust_store(), "svc-grades", datetime.now(UTC)) == [
        "it is sealed by 'archive', not by svc-grades"
    ]
    assert seal_problems(None, record_claims(record()), pki.trust_store(), "svc-grades", datetime.now(UTC)) == [
        "it carries no seal by svc-grades"
    ]
    assert seal_problems("x.y", record_claims(record()), pki.trust_store(), "svc-grades", datetime.now(UTC)) == [
        "its seal cannot be read"
    ]


def test_a_seal_from_a_certificate_outside_the_pki_is_refused(pki, tmp_path):
    other = DevPki(tmp_path / "other", b"p")
    other.create(service_holders())
    sealed = seal(other.signer("svc-grades"), record_claims(record()))
    problems = seal_problems(sealed, record_claims(record()), pki.trust_store(), "svc-grades", datetime.now(UTC))
    assert problems and all(p.startswith("its seal's certificate") for p in problems)
