"""signing's rules: chunk plans, role order, signature headers, batch counting."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from services.signing import domain
from shared.auth import Actor
from shared.contracts.signing import RequestSignBatch, Signature
from shared.crypto.canonical import sha256_hex
from shared.crypto.certs import CertIdentity

T0 = datetime(2026, 5, 20, 8, 0, 0, 123456, tzinfo=UTC)
ORDER = ("homeroom_teacher", "principal", "school_seal")


def request(school_code: str = "s") -> RequestSignBatch:
    return RequestSignBatch(batch_id="b", school_code=school_code, school_year="y", role="principal")


def signature(role: str, jws: str = "aGVhZGVy..c2ln") -> Signature:
    return Signature(
        record_id="rec-1", version=1, role=role, key_id="k", digest="d" * 64, jws=jws, signed_at=T0
    )


def test_plan_cuts_sorted_unique_keys_into_chunks_of_the_chunk_size():
    keys = [(f"rec-{n:02d}", 1) for n in range(24, -1, -1)] + [("rec-03", 1)]
    chunks = domain.plan_chunks(keys, 10)
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert [k for c in chunks for k in c] == sorted(set(keys))


def test_a_batch_with_nothing_to_sign_is_complete_when_planned():
    empty = domain.new_batch(request(), "", [], 10, T0)
    assert empty.status == domain.COMPLETED and empty.chunks_total == 0 and empty.records_total == 0
    batch = domain.new_batch(request(), "", [("r", 1), ("r", 2), ("q", 1)], 2, T0)
    assert batch.status == domain.OPEN
    assert (batch.chunks_total, batch.records_total) == (2, 3)


def test_a_chunk_counts_once_towards_its_batch():
    batch = domain.new_batch(request(), "", [("r", n) for n in range(1, 6)], 2, T0)
    once = batch.counted(1, 2)
    assert once.counted(1, 2) is once
    assert (once.records_signed, once.done_chunks, once.all_chunks_done) == (2, {1}, False)
    done = once.counted(0, 2).counted(2, 1)
    assert done.all_chunks_done and done.records_signed == 5


def test_a_record_is_complete_with_the_homeroom_teacher_principal_and_seal_signatures():
    assert domain.REQUIRED_ROLES == ORDER
    assert domain.is_complete({r: signature(r) for r in ORDER})
    assert not domain.is_complete({})
    assert not domain.is_complete({"principal": signature("principal")})
    assert not domain.is_complete({r: signature(r) for r in ORDER[:2]})


def test_the_principals_batch_signs_and_seals():
    assert domain.BATCH_ROLES["principal"] == ("principal", "school_seal")
    batch = domain.new_batch(request("79000701"), "ht-79000701", [("r", 1)], 10, T0)
    assert batch.signer_of("principal") == "ht-79000701"
    assert batch.signer_of("school_seal") == "seal-79000701"


def test_a_role_signs_once_and_after_the_roles_before_it():
    assert domain.may_sign("homeroom_teacher", {})
    assert not domain.may_sign("homeroom_teacher", {"homeroom_teacher": signature("homeroom_teacher")})
    assert not domain.may_sign("principal", {}, ORDER)
    assert domain.may_sign("principal", {"homeroom_teacher": signature("homeroom_teacher")}, ORDER)
    assert not domain.may_sign("school_seal", {"homeroom_teacher": signature("homeroom_teacher")}, ORDER)


def test_prev_names_the_digest_of_the_previous_signature_in_the_chain():
    assert domain.prev_digest("homeroom_teacher", {}) is None
    teacher = signature("homeroom_teacher", jws="eyJ0ZWFjaGVyIjoxfQ..c2ln")
    prev = domain.prev_digest("principal", {"homeroom_teacher": teacher}, ORDER)
    assert prev == domain.signature_digest(teacher.jws) == sha256_hex(teacher.jws.encode())
    assert domain.prev_digest("homeroom_teacher", {}, ORDER) is None


def test_signatures_come_out_in_role_order():
    present = {r: signature(r) for r in reversed(ORDER)}
    assert [s.role for s in domain.in_role_order(present, ORDER)] == list(ORDER)


def test_signed_at_keeps_whole_milliseconds_as_the_database_does():
    assert domain.whole_milliseconds(T0).microsecond == 123000


def test_the_header_binds_record_version_role_digest_time_and_chain(make_record):
    record = replace(domain.StoredRecord.of(make_record(7, version=2)), digest="ab" * 32)
    header = domain.signature_header(record, "principal", T0, "cd" * 32)
    assert header == {
        "record_id": "rec-0007",
        "version": 2,
        "role": "principal",
        "digest": "ab" * 32,
        "signed_at": T0.isoformat(),
        "prev": "cd" * 32,
    }


def actor(**kw) -> Actor:
    return Actor(expires_at=T0, **{"subject": "x", "roles": frozenset(), "school_code": "79000701", **kw})


def test_only_the_classs_homeroom_teacher_signs_it():
    teacher = actor(subject="gvcn-79000701-6A1", roles=frozenset({"homeroom_teacher"}), homeroom_class="6A1")
    domain.authorise(teacher, "homeroom_teacher", "79000701", "6A1")
    with pytest.raises(domain.SignerRefused) as refused:
        domain.authorise(teacher, "homeroom_teacher", "79000701", "6A2")
    assert refused.value.reason == "wrong-signer" and "not the homeroom teacher of class 6A2" in str(refused.value)
    with pytest.raises(domain.SignerRefused):
        domain.authorise(teacher, "homeroom_teacher", "79000702", "6A1")
    with pytest.raises(domain.SignerRefused):
        domain.authorise(teacher, "principal", "79000701", None)


def test_only_the_schools_principal_signs_and_seals_it():
    principal = actor(subject="ht-79000701", roles=frozenset({"principal"}))
    domain.authorise(principal, "principal", "79000701", None)
    domain.authorise(principal, "school_seal", "79000701", None)
    with pytest.raises(domain.SignerRefused, match="not the principal of school 79000702"):
        domain.authorise(principal, "principal", "79000702", None)
    with pytest.raises(domain.SignerRefused, match="names the class"):
        domain.authorise(actor(roles=frozenset({"homeroom_teacher"}), homeroom_class="6A1"), "homeroom_teacher", "79000701", None)


def test_a_certificate_must_name_the_signer_role_and_school():
    holder = CertIdentity("ht-79000701", "Hiệu trưởng", "principal", "79000701", 1, "root", "f")
    assert domain.certificate_problem(holder, "ht-79000701", "principal", "79000701") is None
    assert "not ht-79000702" in domain.certificate_problem(holder, "ht-79000702", "principal", "79000701")
    assert "not school_seal" in domain.certificate_problem(holder, "ht-79000701", "school_seal", "79000701")
    assert "not 79000702" in domain.certificate_problem(holder, "ht-79000701", "principal", "79000702")


def test_an_amended_document_names_what_it_supersedes_and_why():
    amended = domain.amended_document({"a": 1}, 1, "grade-correction", "Toán HK2", "ht-1")
    assert amended == {
        "a": 1,
        "amendment": {"supersedes": 1, "reason": "grade-correction", "note": "Toán HK2", "requested_by": "ht-1"},
    }
