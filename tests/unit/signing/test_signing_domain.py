"""signing's rules: chunk plans, role order, signature headers, batch counting."""

from __future__ import annotations

from datetime import UTC, datetime

from services.signing import domain
from shared.contracts.signing import Signature
from shared.crypto.canonical import sha256_hex

T0 = datetime(2026, 5, 20, 8, 0, 0, 123456, tzinfo=UTC)
ORDER = ("homeroom_teacher", "principal", "school_seal")


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
    empty = domain.new_batch("b", "s", "y", "principal", [], 10, T0)
    assert empty.status == domain.COMPLETED and empty.chunks_total == 0 and empty.records_total == 0
    batch = domain.new_batch("b", "s", "y", "principal", [("r", 1), ("r", 2), ("q", 1)], 2, T0)
    assert batch.status == domain.OPEN
    assert (batch.chunks_total, batch.records_total) == (2, 3)


def test_a_chunk_counts_once_towards_its_batch():
    batch = domain.new_batch("b", "s", "y", "principal", [("r", n) for n in range(1, 6)], 2, T0)
    once = batch.counted(1, 2)
    assert once.counted(1, 2) is once
    assert (once.records_signed, once.done_chunks, once.all_chunks_done) == (2, {1}, False)
    done = once.counted(0, 2).counted(2, 1)
    assert done.all_chunks_done and done.records_signed == 5


def test_the_required_roles_are_data():
    assert domain.REQUIRED_ROLES == ("principal",)
    assert domain.is_complete({"principal": signature("principal")})
    assert not domain.is_complete({})
    assert not domain.is_complete({"principal": signature("principal")}, ORDER)


def test_a_role_signs_once_and_after_the_roles_before_it():
    assert domain.may_sign("principal", {})
    assert not domain.may_sign("principal", {"principal": signature("principal")})
    assert not domain.may_sign("principal", {}, ORDER)
    assert domain.may_sign("principal", {"homeroom_teacher": signature("homeroom_teacher")}, ORDER)
    assert not domain.may_sign("school_seal", {"homeroom_teacher": signature("homeroom_teacher")}, ORDER)


def test_prev_names_the_digest_of_the_previous_signature_in_the_chain():
    assert domain.prev_digest("principal", {}) is None
    teacher = signature("homeroom_teacher", jws="eyJ0ZWFjaGVyIjoxfQ..c2ln")
    prev = domain.prev_digest("principal", {"homeroom_teacher": teacher}, ORDER)
    assert prev == domain.signature_digest(teacher.jws) == sha256_hex(teacher.jws.encode())
    assert domain.prev_digest("homeroom_teacher", {}, ORDER) is None


def test_signatures_come_out_in_role_order():
    present = {r: signature(r) for r in reversed(ORDER)}
    assert [s.role for s in domain.in_role_order(present, ORDER)] == list(ORDER)


def test_signed_at_keeps_whole_milliseconds_as_the_database_does():
    assert domain.whole_milliseconds(T0).microsecond == 123000


def test_the_header_binds_record_version_role_digest_time_key_and_chain(make_record):
    record = domain.StoredRecord(make_record(7, version=2), "ab" * 32)
    jwk = {"kty": "EC", "crv": "P-256", "x": "x", "y": "y", "kid": "k"}
    header = domain.signature_header(record, "principal", T0, jwk, None)
    assert header == {
        "record_id": "rec-0007",
        "version": 2,
        "role": "principal",
        "digest": "ab" * 32,
        "signed_at": T0.isoformat(),
        "jwk": jwk,
        "prev": None,
    }
