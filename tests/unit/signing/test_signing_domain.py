"""signing's rules: chunk plans, role order, signature headers, batch counting."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from services.signing import domain
from shared.auth import Actor
from shared.contracts.base import Acting
from shared.contracts.signing import MissingEntry, RequestSignBatch, Signature
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


# --- what may be signed, and the review before it --------------------------------------------

TERM_I_MATHS = MissingEntry(subject="Toán", term=1)
TEACHER = Acting(subject="gvcn-s-6A1", roles=["homeroom_teacher"], school_code="s")


def held(record_id: str, version: int = 1, class_name: str = "6A1", **kw) -> domain.Held:
    return domain.Held(record_id, version, class_name, kw.pop("digest", f"{record_id}-{version}"), **kw)


def confirmation(*versions: domain.Held, at: datetime = T0, class_name: str = "6A1") -> domain.Review:
    records = tuple((h.record_id, h.version, h.digest) for h in versions)
    return domain.Review(f"review-{at.isoformat()}", "s", "y", class_name, records, TEACHER, at)


def test_a_record_whose_document_says_it_is_incomplete_is_never_signable():
    assert domain.signable(held("r"))
    for incomplete in (held("r", complete=False), held("r", missing=(TERM_I_MATHS,))):
        assert not domain.signable(incomplete)
        refusal = incomplete.refusal()
        assert (refusal.record_id, refusal.version, refusal.class_name, refusal.code) == ("r", 1, "6A1", "incomplete")
    assert held("r").refusal() is None


def test_missing_entries_name_what_is_missing_and_its_term_never_a_value():
    entries = domain.missing_entries(
        [{"subject": "Toán", "term": 1}, {"entry": "homeroom", "term": 2}, {"elective": "Vật lí", "term": "I"}]
    )
    assert entries == (
        MissingEntry(subject="Toán", term=1),
        MissingEntry(entry="homeroom", term=2),
        MissingEntry(entry="elective", term=None),
    )


def test_a_fingerprint_names_the_versions_whatever_their_order_and_changes_with_any_of_them():
    versions = [("r1", 1, "a" * 64), ("r2", 1, "b" * 64)]
    assert domain.fingerprint(versions) == domain.fingerprint(reversed(versions))
    assert domain.fingerprint(versions) != domain.fingerprint([("r1", 2, "a" * 64), ("r2", 1, "b" * 64)])
    assert domain.fingerprint(versions) != domain.fingerprint([("r1", 1, "c" * 64), ("r2", 1, "b" * 64)])
    assert len(domain.fingerprint(versions)) == 64


def test_a_class_stands_reviewed_only_as_its_latest_confirmation_names_it():
    r1, r2 = held("r1"), held("r2")
    [never] = domain.class_states([r1, r2], [])
    assert (never.status, never.changes()) == ("not-reviewed", [])
    [now] = domain.class_states([r1, r2], [confirmation(r1, r2)])
    assert now.status == "reviewed" and now.waiting() is None and now.refusal() is None
    amended = held("r1", version=2)
    [later] = domain.class_states([r1, amended, r2], [confirmation(r1, r2)])
    assert later.status == "changed-since-review"
    [change] = later.changes()
    assert (change.record_id, change.reviewed_version, change.version) == ("r1", 1, 2)
    assert later.refusal().reason == "changed-since-review"
    again = confirmation(amended, r2, at=T0.replace(hour=9))
    [reviewed_again] = domain.class_states([r1, amended, r2], [again, confirmation(r1, r2)])
    assert reviewed_again.status == "reviewed" and reviewed_again.review is again


def test_the_gate_lets_through_complete_current_versions_of_reviewed_classes_only():
    complete, incomplete, old, amended = held("r1"), held("r2", complete=False), held("r3"), held("r3", version=2)
    other_class = held("r4", class_name="6A2")
    held_now = [complete, incomplete, old, amended, other_class]
    gate = domain.Gate.of(held_now, [confirmation(complete, incomplete, amended)])
    assert gate.allowed == {("r1", 1), ("r3", 2)}, "not the incomplete one, nor a superseded version, nor 6A2's"
    assert [r.record_id for r in gate.refused()] == ["r2"]
    [waiting] = gate.waiting()
    assert (waiting.class_name, waiting.records, waiting.code) == ("6A2", 1, "not-reviewed")


def test_a_version_is_signed_only_as_its_classs_latest_review_saw_it():
    """The one rule a plan and each chunk apply: that record, that version, that digest, complete."""
    seen, other_digest, other_version = held("r1"), held("r1", digest="e" * 64), held("r1", version=2)
    review = confirmation(seen)
    assert domain.may_be_signed(seen, review)
    assert not domain.may_be_signed(other_digest, review), "replaced since the review: another digest"
    assert not domain.may_be_signed(other_version, review)
    assert not domain.may_be_signed(seen, None), "never reviewed"
    assert not domain.may_be_signed(held("r2", complete=False), confirmation(held("r2", complete=False)))


def test_a_chunk_names_the_classes_whose_versions_it_left_unsigned():
    review = confirmation(held("r1"), held("r3"))
    left = [held("r1", digest="e" * 64), held("r3", digest="f" * 64), held("r4", class_name="6A2")]
    left.append(held("r5", digest="0" * 64, complete=False))  # incomplete: refused at the plan, not waiting
    changed, never = domain.held_back(left, {"6A1": review})
    assert (changed.class_name, changed.records, changed.code) == ("6A1", 2, "changed-since-review")
    assert changed.reason.startswith("class 6A1 changed since its homeroom teacher")
    assert (never.class_name, never.records, never.code) == ("6A2", 1, "not-reviewed")
    assert domain.held_back([held("r1")], {"6A1": review}) == ()
    assert domain.waiting_together([changed, never, changed]) == (changed.model_copy(update={"records": 4}), never)


def test_a_confirmation_stands_only_for_the_review_the_teacher_saw():
    [state] = domain.class_states([held("r1")], [])
    assert domain.confirmation_problem(state, state.fingerprint) is None
    assert domain.confirmation_problem(state, "0" * 64).reason == "changed-since-review"
    assert domain.confirmation_problem(domain.ClassState("6A9", ()), "0" * 64).reason == "nothing-to-review"


def person(role: str, school_code: str = "s", homeroom_class: str | None = None) -> Actor:
    return Actor(subject=role, roles=frozenset({role}), school_code=school_code, homeroom_class=homeroom_class)


def test_only_the_homeroom_teacher_confirms_a_classs_review():
    domain.authorise_confirmation(person("homeroom_teacher", homeroom_class="6A1"), "s", "6A1")
    for who in (person("principal"), person("homeroom_teacher", school_code="t", homeroom_class="6A1")):
        with pytest.raises(domain.Forbidden, match="only its homeroom teacher does"):
            domain.authorise_confirmation(who, "s", "6A1")


def test_a_version_nobody_signed_may_be_replaced_and_one_with_any_signature_may_not():
    kept = domain.Held("rec-1", 1, "6A1", "d" * 64, complete=False)
    assert domain.replacement_refusal(kept, {}) is None
    for role in ORDER:
        refused = domain.replacement_refusal(kept, {role: signature(role)})
        assert (refused.record_id, refused.version, refused.class_name, refused.code) == ("rec-1", 1, "6A1", "signed")
