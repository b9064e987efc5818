"""signing's use cases against the in-memory repository, a development PKI, grades' seals and real actor tokens."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from services.signing import domain, handlers
from services.signing.domain import COMPLETED, OPEN, ReviewRefused, SignerRefused, StoredRecord
from services.signing.repository import InMemorySigningRepository
from shared.auth import IssuerKey, ServiceIdentity, Unauthenticated
from shared.contracts.base import Acting, derived_id
from shared.contracts.grades import RecordKey, RecordsReady
from shared.contracts.signing import (
    BatchCompleted,
    BatchProgress,
    BatchRefused,
    ChunkSigned,
    ClassReview,
    ConfirmReview,
    HeldSignatures,
    RecordsCompleted,
    RecordsReceived,
    RequestAmendment,
    RequestSignBatch,
    ReviewClasses,
    ReviewConfirmed,
    SignedVersion,
    SignWork,
)
from shared.crypto.canonical import canonical_json, digest
from shared.crypto.certs import from_x5c
from shared.crypto.jws import protected_header, verify_detached
from shared.crypto.pki import GATEWAY, OWN_CERTIFICATE
from shared.crypto.record_signatures import check_record, signature_digest
from shared.crypto.seal import record_claims, seal
from shared.errors import Forbidden, InvalidMessage, NotFound
from shared.outcome import Outcome
from tests.records import record_documents
from tests.unit.grades.builders import service_pki

from .trust import OTHER_SCHOOL, SCHOOL, YEAR, record_version

T0 = datetime.now(UTC).replace(microsecond=0)
WORKER = "signing-test-worker"
M = TypeVar("M")


def ready(records, **kw) -> RecordsReady:
    return RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records, **kw)


async def received(deps, trust, count: int) -> None:
    """Records 0..count-1 received (even n in class 6A1, odd n in 6A2), and each class reviewed by its homeroom teacher."""
    records = [trust.record(n) for n in range(count)]
    await handlers.receive_records(ready(records), deps)
    await reviewed(deps, trust, tuple(sorted({r.fields.class_name for r in records})))


def review_request(trust, class_name: str = "6A1", person=None) -> ReviewClasses:
    """`person` (the class's homeroom teacher by default) asks for the class's review."""
    person = person or trust.staff.homeroom_teacher(SCHOOL, class_name)
    return person.signs(ReviewClasses(school_code=SCHOOL, school_year=YEAR, class_name=class_name))


async def review(deps, trust, class_name: str = "6A1") -> ClassReview:
    """The class as its homeroom teacher's review shows it."""
    [shown] = (await handlers.review_classes(review_request(trust, class_name), deps)).reply.classes
    return shown


async def confirm(deps, trust, class_name: str = "6A1", reviewed: str | None = None) -> ReviewConfirmed:
    """The homeroom teacher confirms the review they saw (by default, the class's review as it is now)."""
    seen = reviewed or (await review(deps, trust, class_name)).fingerprint
    teacher = trust.staff.homeroom_teacher(SCHOOL, class_name)
    asked = teacher.signs(ConfirmReview(school_code=SCHOOL, school_year=YEAR, class_name=class_name, reviewed=seen))
    return (await handlers.confirm_review(asked, deps)).reply


async def reviewed(deps, trust, classes: tuple[str, ...] = ("6A1", "6A2")) -> None:
    """Each class reviewed by its homeroom teacher, who confirms what the review shows."""
    for class_name in classes:
        await confirm(deps, trust, class_name)


def homeroom_command(class_name: str = "6A1", **kw) -> RequestSignBatch:
    """A homeroom teacher's "sign all" for their class, before anyone's token is on it."""
    return RequestSignBatch(school_code=SCHOOL, school_year=YEAR, role="homeroom_teacher", class_name=class_name, **kw)


def principal_command(school_code: str = SCHOOL, **kw) -> RequestSignBatch:
    """The principal's one click, before anyone's token is on it."""
    return RequestSignBatch(school_code=school_code, school_year=YEAR, role="principal", **kw)


def homeroom_request(trust, class_name: str = "6A1", **kw) -> RequestSignBatch:
    return trust.staff.homeroom_teacher(SCHOOL, class_name).signs(homeroom_command(class_name, **kw))


def principal_request(trust, school_code: str = SCHOOL, **kw) -> RequestSignBatch:
    return trust.staff.principal(school_code).signs(principal_command(school_code, **kw))


async def plan(deps, command, per_chunk: int = 10) -> Outcome:
    return await handlers.plan_batch(command, replace(deps, records_per_chunk=per_chunk, clock=lambda: T0))


async def sign_all(deps, planned: Outcome) -> list[Outcome]:
    return [await handlers.sign_chunk(w, deps) for w in planned.publish if isinstance(w, SignWork)]


async def homeroom_signed(deps, trust, make_record, count: int) -> None:
    """`count` records received, reviewed and signed by both classes' homeroom teachers."""
    await received(deps, trust, count)
    for class_name in ("6A1", "6A2"):
        await sign_all(deps, await plan(deps, homeroom_request(trust, class_name)))


def one(outcome: Outcome, kind: type[M]) -> M | None:
    """The message of type `kind` the outcome publishes, if any."""
    found = [m for m in outcome.publish if isinstance(m, kind)]
    assert len(found) <= 1
    return found[0] if found else None


def content(messages) -> list[dict]:
    """What a message says, leaving out when it was made."""
    return [m.model_dump(exclude={"occurred_at"}) for m in messages]


def sample(registry, name: str, labels: dict | None = None) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


async def stored(repo, n: int, version: int = 1):
    return (await repo.records([(f"rec-{n:04d}", version)])).get((f"rec-{n:04d}", version))


async def signature_count(repo, count: int) -> int:
    """How many signatures the repository holds over records 0..count-1."""
    present = await repo.signatures([(f"rec-{n:04d}", 1) for n in range(count)])
    return sum(len(by_role) for by_role in present.values())


# --- receiving -------------------------------------------------------------------------------


async def test_received_records_are_kept_with_their_digest_and_announced(deps, make_record):
    event = ready([make_record(1), make_record(2)])
    outcome = await handlers.receive_records(event, deps)
    assert not outcome.rejected
    kept = await stored(deps.repo, 1)
    assert kept.digest == digest(make_record(1).document) and kept.class_name == "6A2"
    [announced] = outcome.publish
    assert announced.count == 2 and announced.source_message_id == event.message_id
    assert announced.message_id == derived_id(event.message_id, "received")


async def test_a_redelivered_chunk_stores_nothing_new_and_announces_the_same(deps, make_record):
    event = ready([make_record(1), make_record(2)])
    first = await handlers.receive_records(event, deps)
    again = await handlers.receive_records(event, deps)
    assert not again.rejected
    assert content(again.publish) == content(first.publish)
    assert await deps.repo.add_records([await stored(deps.repo, 1), await stored(deps.repo, 2)]) == 0


async def test_a_version_nobody_signed_received_again_with_other_content_replaces_the_one_kept(deps, make_record):
    """A never-signed version is not a record yet: reassembled after the school corrected it, it takes its place."""
    await handlers.receive_records(ready([make_record(1, **TERM_I_MATHS_MISSING)]), deps)
    outcome = await handlers.receive_records(ready([make_record(1), make_record(2)]), deps)
    assert not outcome.rejected
    received_ = one(outcome, RecordsReceived)
    assert (received_.count, received_.refused) == (2, [])
    kept = await stored(deps.repo, 1)
    assert kept.digest == digest(make_record(1).document) and domain.signable(kept)


async def test_a_signed_version_received_again_with_other_content_is_kept_as_signed_and_the_school_told(
    deps, trust, make_record
):
    """Once any signature is on a version, it stays as it was signed: the new content is refused, announced with
    the rest (not dead-lettered: the school corrects the record by an amendment once it is signed and sealed)."""
    await received(deps, trust, 2)
    await sign_all(deps, await plan(deps, homeroom_request(trust, "6A1")))
    outcome = await handlers.receive_records(ready([make_record(0, conduct="Khá"), make_record(2)]), deps)
    assert not outcome.rejected
    received_ = one(outcome, RecordsReceived)
    assert received_.count == 1
    assert [(r.record_id, r.version, r.class_name, r.code) for r in received_.refused] == [("rec-0000", 1, "6A1", "signed")]
    assert (await stored(deps.repo, 0)).digest == digest(make_record(0).document)


async def test_a_class_whose_unsigned_version_was_replaced_is_reviewed_again_before_it_is_signed(
    deps, trust, make_record
):
    """The incomplete record is fixed: its class's review, confirmed over the incomplete version, no longer stands;
    once its teacher confirms the class again, the complete version is signed by the homeroom teacher and the
    principal's click."""
    await handlers.receive_records(ready([make_record(0, **TERM_I_MATHS_MISSING), make_record(2)]), deps)
    await reviewed(deps, trust, ("6A1",))
    await handlers.receive_records(ready([make_record(0)]), deps)
    shown = await review(deps, trust, "6A1")
    assert shown.status == "changed-since-review" and not shown.incomplete
    [told] = (await plan(deps, homeroom_request(trust, "6A1"))).publish
    assert told.code == "changed-since-review"

    await confirm(deps, trust, "6A1")
    await sign_all(deps, await plan(deps, homeroom_request(trust, "6A1")))
    signed = await sign_all(deps, await plan(deps, principal_request(trust)))
    completed = [r.record.record_id for o in signed for r in one(o, RecordsCompleted).records]
    assert completed == ["rec-0000", "rec-0002"]


async def test_a_version_replaced_after_the_plan_is_not_signed_and_its_class_is_named_as_waiting(
    deps, trust, make_record
):
    """Reproduction: a class is reviewed and its teacher's batch planned; before the chunk is signed, grades closes
    the year again and version 1 of one record arrives with other content, replacing the never-signed one. The
    chunk signs only what the class's latest confirmed review saw (that record, version and digest): the replaced
    version is left unsigned, and the batch's end names its class as changed since its review."""
    await received(deps, trust, 6)
    planned = await plan(deps, homeroom_request(trust, "6A1"))
    await handlers.receive_records(ready([make_record(2, conduct="Khá")]), deps)
    assert (await stored(deps.repo, 2)).digest == digest(make_record(2, conduct="Khá").document), "replaced"

    [outcome] = await sign_all(deps, planned)
    chunk = one(outcome, ChunkSigned)
    assert chunk.signed == 2
    assert sorted(await deps.repo.signatures([(f"rec-{n:04d}", 1) for n in range(6)])) == [
        ("rec-0000", 1),
        ("rec-0004", 1),
    ]
    [done] = (await handlers.count_chunk(chunk, deps)).publish[1:]
    assert isinstance(done, BatchCompleted) and (done.records_signed, done.records_total) == (2, 3)
    [waiting] = done.classes_waiting
    assert (waiting.class_name, waiting.records, waiting.code) == ("6A1", 1, "changed-since-review")
    assert waiting.reason.startswith("class 6A1 changed since its homeroom teacher (gvcn-79000701-6A1) confirmed")

    await confirm(deps, trust, "6A1")
    [again] = await sign_all(deps, await plan(deps, homeroom_request(trust, "6A1")))
    assert one(again, ChunkSigned).signed == 1, "reviewed again, the new content is signed"


def made_up(n: int) -> dict:
    """What an attacker puts in a record: top marks and the top award."""
    return {"subjects": {"toan": {"year": "10.0"}, "ngu_van": {"year": "10.0"}}, "award": "Học sinh Xuất sắc"}


async def test_attack_a_made_up_record_without_grades_seal_is_never_stored_signed_or_archived(deps, trust, make_record):
    """Reproduction 1: one `grades.record.ready.v2` with a made-up record, and no grades seal or grades' seal of
    another version on it, is published by someone with a broker login. Signing does not keep it, so no one-click
    batch signs it and nothing reaches the archive; the genuine version, arriving later, is kept and signed."""
    genuine = [make_record(1), make_record(2)]
    no_seal = record_version(1, **made_up(1))
    borrowed_seal = record_version(2, **made_up(2)).model_copy(update={"seal": genuine[1].seal})
    forged = ready([no_seal, borrowed_seal])
    outcome = await handlers.receive_records(forged, deps)
    assert not outcome.publish
    [part] = outcome.rejected
    assert (part.field, part.reason, [r.record_id for r in part.items]) == ("records", "invalid", ["rec-0001", "rec-0002"])
    assert "rec-0001 v1 is not sealed by grades: it carries no seal by svc-grades" in part.explanation
    assert "rec-0002 v1 is not sealed by grades: its seal does not verify over what it says" in part.explanation
    assert await stored(deps.repo, 1) is None and await stored(deps.repo, 2) is None

    signed_by_all = [await plan(deps, homeroom_request(trust, c)) for c in ("6A1", "6A2")]
    signed_by_all.append(await plan(deps, principal_request(trust)))
    for planned in signed_by_all:
        [done] = planned.publish
        assert isinstance(done, BatchCompleted) and done.records_total == 0, "nothing to sign, nothing to archive"

    later = await handlers.receive_records(ready(genuine), deps)
    assert not later.rejected and one(later, RecordsReceived).count == 2
    assert (await stored(deps.repo, 1)).digest == digest(genuine[0].document)
    await reviewed(deps, trust)
    for class_name in ("6A1", "6A2"):
        await sign_all(deps, await plan(deps, homeroom_request(trust, class_name)))
    signed = await sign_all(deps, await plan(deps, principal_request(trust)))
    completed = [r for outcome in signed for r in one(outcome, RecordsCompleted).records]
    assert [r.record for r in completed] == genuine, "the genuine, sealed versions are signed and go to the archive"


async def test_a_record_sealed_by_another_service_than_grades_is_refused(deps, trust):
    by_archive = seal(trust.signers.signer_for("archive"), record_claims(record_version(1)))
    outcome = await handlers.receive_records(ready([record_version(1).model_copy(update={"seal": by_archive})]), deps)
    [part] = outcome.rejected
    assert "it is sealed by 'archive', not by svc-grades" in part.explanation
    assert await stored(deps.repo, 1) is None


async def test_a_sealed_record_keeps_its_seal_for_the_archive_to_show(deps, make_record):
    record = make_record(1)
    await handlers.receive_records(ready([record]), deps)
    assert (await stored(deps.repo, 1)).record_version() == record


async def test_records_of_another_school_are_invalid(deps, make_record):
    with pytest.raises(InvalidMessage):
        await handlers.receive_records(ready([make_record(1, school_code="79000999")]), deps)


# --- incomplete records ----------------------------------------------------------------------

#: What grades writes in a record whose student has no term-I result in mathematics.
TERM_I_MATHS_MISSING = {"complete": False, "missing": [{"subject": "Toán", "term": 1}]}


async def test_an_incomplete_record_is_never_signed_sealed_or_sent_to_the_archive(deps, trust, make_record):
    """Reproduction: a record whose document says `complete: false` (its term-I mathematics is missing) was
    signed by its homeroom teacher, signed and sealed by the principal and went on to the archive and the
    ministry. No one signs it now; each batch names it with the missing entries, and its classmates are signed."""
    incomplete = make_record(0, **TERM_I_MATHS_MISSING)
    await handlers.receive_records(ready([incomplete, *(make_record(n) for n in range(1, 4))]), deps)
    await reviewed(deps, trust)
    teacher_6a1 = await plan(deps, homeroom_request(trust, "6A1"))
    await sign_all(deps, teacher_6a1)
    await sign_all(deps, await plan(deps, homeroom_request(trust, "6A2")))
    click = await plan(deps, principal_request(trust))
    signed = await sign_all(deps, click)

    assert (await deps.repo.signatures([("rec-0000", 1)])) == {}, "no one signed the incomplete record"
    completed = [r.record.record_id for o in signed for r in one(o, RecordsCompleted).records]
    assert completed == ["rec-0001", "rec-0002", "rec-0003"]
    for planned in (teacher_6a1, click):
        batch = await deps.repo.batch(batch_of(planned))
        [refused] = batch.refused
        assert (refused.record_id, refused.version, refused.class_name) == ("rec-0000", 1, "6A1")
        assert [(m.subject, m.term) for m in refused.missing] == [("Toán", 1)]
    principals = await deps.repo.batch(batch_of(click))
    assert principals.records_waiting == 0, "it waits to be completed, not for its homeroom teacher's signature"


def batch_of(planned: Outcome) -> str:
    [batch_id] = {m.batch_id for m in planned.publish}
    return batch_id


async def test_an_incomplete_record_in_a_plan_made_before_is_still_not_signed(deps, trust, make_record):
    """A plan stored before this rule (or by any other path) that names an incomplete record: its chunk signs the
    rest, never the incomplete record (its class's review confirmed both versions as they are)."""
    await handlers.receive_records(ready([make_record(0, **TERM_I_MATHS_MISSING), make_record(2)]), deps)
    await reviewed(deps, trust, ("6A1",))
    command = homeroom_request(trust, "6A1")
    old_plan = domain.new_batch(command, "gvcn-79000701-6A1", [("rec-0000", 1), ("rec-0002", 1)], 10, T0)
    await deps.repo.add_batch(old_plan)
    [work] = handlers.work_messages(old_plan)
    outcome = await handlers.sign_chunk(work, deps)
    assert one(outcome, ChunkSigned).signed == 1
    assert list(await deps.repo.signatures([("rec-0000", 1), ("rec-0002", 1)])) == [("rec-0002", 1)]


# --- the review before signing ---------------------------------------------------------------


async def test_a_class_not_reviewed_is_not_signed_and_its_teacher_is_told_why(deps, registry, trust, make_record):
    await handlers.receive_records(ready([make_record(n) for n in range(4)]), deps)
    command = homeroom_request(trust, "6A1")
    outcome = await plan(deps, command)
    assert outcome.refused is None, "heard and answered: the class is not ready, the request is not dead-lettered"
    [told] = outcome.publish
    assert isinstance(told, BatchRefused)
    assert (told.batch_id, told.code, told.role) == (command.batch_id, "not-reviewed", "homeroom_teacher")
    assert told.reason.startswith("class 6A1 has not been reviewed: its homeroom teacher reviews the class's 2 record")
    assert await deps.repo.batch(command.batch_id) is None and await signature_count(deps.repo, 4) == 0
    assert sample(registry, "hocba_signing_batches_total", {"outcome": "waiting-review"}) == 1

    await confirm(deps, trust, "6A1")
    signed = await sign_all(deps, await plan(deps, homeroom_request(trust, "6A1")))
    assert one(signed[0], ChunkSigned).signed == 2


async def test_a_review_shows_each_class_its_incomplete_records_and_where_its_review_stands(deps, trust, make_record):
    records = [make_record(0, **TERM_I_MATHS_MISSING), make_record(1), make_record(2)]
    await handlers.receive_records(ready(records), deps)
    await confirm(deps, trust, "6A2")
    principal = trust.staff.principal(SCHOOL).signs(ReviewClasses(school_code=SCHOOL, school_year=YEAR))
    reviews = (await handlers.review_classes(principal, deps)).reply
    assert (reviews.school_code, reviews.school_year) == (SCHOOL, YEAR)
    class_6a1, class_6a2 = reviews.classes
    assert (class_6a1.class_name, class_6a1.records, class_6a1.status) == ("6A1", 2, "not-reviewed")
    assert class_6a1.reviewed_by is None and class_6a1.reviewed_at is None
    [incomplete] = class_6a1.incomplete
    assert (incomplete.record_id, incomplete.code) == ("rec-0000", "incomplete")
    assert [(m.subject, m.term) for m in incomplete.missing] == [("Toán", 1)]
    assert (class_6a2.class_name, class_6a2.records, class_6a2.status) == ("6A2", 1, "reviewed")
    assert class_6a2.reviewed_by == "gvcn-79000701-6A2" and class_6a2.incomplete == [] and class_6a2.changes == []
    digests = [(await stored(deps.repo, n)).digest for n in (0, 2)]
    assert class_6a1.fingerprint == domain.fingerprint([("rec-0000", 1, digests[0]), ("rec-0002", 1, digests[1])])
    assert "Nguyễn" not in reviews.model_dump_json(), "a review names records and entries, never personal data"


async def test_a_confirmation_keeps_the_record_versions_and_digests_it_covers(deps, trust, make_record):
    await handlers.receive_records(ready([make_record(0, **TERM_I_MATHS_MISSING), make_record(2)]), deps)
    seen = await review(deps, trust, "6A1")
    answer = await confirm(deps, trust, "6A1", reviewed=seen.fingerprint)
    assert (answer.class_name, answer.records, answer.incomplete) == ("6A1", 2, 1)
    assert (answer.fingerprint, answer.confirmed_by) == (seen.fingerprint, "gvcn-79000701-6A1")
    [kept] = deps.repo.confirmed.values()
    digests = [(await stored(deps.repo, n)).digest for n in (0, 2)]
    assert kept.records == (("rec-0000", 1, digests[0]), ("rec-0002", 1, digests[1]))
    assert kept.confirmed_by == Acting(subject="gvcn-79000701-6A1", roles=["homeroom_teacher"], school_code=SCHOOL)


async def test_a_class_changed_since_its_review_waits_until_its_teacher_reviews_it_again(deps, trust, make_record):
    await received(deps, trust, 4)
    await handlers.receive_records(ready([make_record(6)]), deps)  # a record of 6A1 arrives after the review
    shown = await review(deps, trust, "6A1")
    assert shown.status == "changed-since-review"
    assert [(c.record_id, c.reviewed_version, c.version) for c in shown.changes] == [("rec-0006", None, 1)]
    outcome = await plan(deps, homeroom_request(trust, "6A1"))
    [told] = outcome.publish
    assert told.code == "changed-since-review"
    assert "class 6A1 changed since its homeroom teacher (gvcn-79000701-6A1) confirmed its review" in told.reason
    assert "1 record(s) added or changed" in told.reason

    await confirm(deps, trust, "6A1")
    signed = await sign_all(deps, await plan(deps, homeroom_request(trust, "6A1")))
    assert one(signed[0], ChunkSigned).signed == 3


async def test_a_confirmation_of_a_review_the_class_no_longer_matches_is_refused(deps, trust, make_record):
    """The teacher confirms what they saw; records that arrived since were not seen, so the class is reviewed again."""
    await handlers.receive_records(ready([make_record(0)]), deps)
    seen = await review(deps, trust, "6A1")
    await handlers.receive_records(ready([make_record(2)]), deps)
    with pytest.raises(ReviewRefused) as refused:
        await confirm(deps, trust, "6A1", reviewed=seen.fingerprint)
    assert refused.value.reason == "changed-since-review" and "review the class again" in str(refused.value)
    assert not deps.repo.confirmed
    with pytest.raises(ReviewRefused) as nothing:
        await confirm(deps, trust, "6A9", reviewed=seen.fingerprint)
    assert nothing.value.reason == "nothing-to-review"


async def test_a_redelivered_confirmation_answers_with_the_confirmation_it_made(deps, trust, make_record):
    await handlers.receive_records(ready([make_record(0)]), deps)
    seen = await review(deps, trust, "6A1")
    teacher = trust.staff.homeroom_teacher(SCHOOL, "6A1")
    confirmation = ConfirmReview(school_code=SCHOOL, school_year=YEAR, class_name="6A1", reviewed=seen.fingerprint)
    asked = teacher.signs(confirmation)
    first = (await handlers.confirm_review(asked, deps)).reply
    await handlers.receive_records(ready([make_record(2)]), deps)
    again = (await handlers.confirm_review(asked, deps)).reply
    assert again == first and len(deps.repo.confirmed) == 1


async def test_who_reviews_and_who_confirms(deps, trust, make_record):
    """A class's homeroom teacher reviews and confirms it; the principal and the records administrator review every
    class of their school and confirm none; no one reviews another school's or another class's records."""
    await handlers.receive_records(ready([make_record(0), make_record(1)]), deps)
    staff = trust.staff
    for person in (staff.principal(SCHOOL), staff.school_admin(SCHOOL)):
        asked = person.signs(ReviewClasses(school_code=SCHOOL, school_year=YEAR))
        assert len((await handlers.review_classes(asked, deps)).reply.classes) == 2
    refused = {
        "another class's teacher": review_request(trust, "6A1", staff.homeroom_teacher(SCHOOL, "6A2")),
        "a teacher asking for every class": staff.homeroom_teacher(SCHOOL, "6A1").signs(
            ReviewClasses(school_code=SCHOOL, school_year=YEAR)
        ),
        "another school's principal": review_request(trust, "6A1", staff.principal(OTHER_SCHOOL)),
    }
    for asked in refused.values():
        with pytest.raises(Forbidden, match="may not review"):
            await handlers.review_classes(asked, deps)
    seen = (await review(deps, trust, "6A1")).fingerprint
    confirmation = ConfirmReview(school_code=SCHOOL, school_year=YEAR, class_name="6A1", reviewed=seen)
    for person in (staff.principal(SCHOOL), staff.homeroom_teacher(SCHOOL, "6A2")):
        with pytest.raises(Forbidden, match="only its homeroom teacher does"):
            await handlers.confirm_review(person.signs(confirmation), deps)
    with pytest.raises(Unauthenticated):
        await handlers.confirm_review(confirmation, deps)
    assert not deps.repo.confirmed


async def school_review(deps, trust) -> dict[str, ClassReview]:
    """Every class as the principal's review shows it, by class."""
    asked = trust.staff.principal(SCHOOL).signs(ReviewClasses(school_code=SCHOOL, school_year=YEAR))
    return {c.class_name: c for c in (await handlers.review_classes(asked, deps)).reply.classes}


async def test_a_review_says_how_many_of_each_class_s_records_its_homeroom_teacher_signed(deps, trust, make_record):
    """Counted over each record's current version: a later version the teacher has not signed yet is not signed."""
    await received(deps, trust, 6)
    assert {c.class_name: (c.homeroom_signed, c.records) for c in (await school_review(deps, trust)).values()} == {
        "6A1": (0, 3),
        "6A2": (0, 3),
    }
    await sign_all(deps, await plan(deps, homeroom_request(trust, "6A1")))
    assert {c.class_name: (c.homeroom_signed, c.records) for c in (await school_review(deps, trust)).values()} == {
        "6A1": (3, 3),
        "6A2": (0, 3),
    }
    await handlers.receive_records(ready([make_record(0, version=2), make_record(8)]), deps)
    shown = await review(deps, trust, "6A1")
    assert (shown.homeroom_signed, shown.records) == (2, 4), "rec-0000 v2 and rec-0008 await the teacher's signature"
    await sign_all(deps, await plan(deps, principal_request(trust)))
    after_principal = await school_review(deps, trust)
    assert after_principal["6A1"].homeroom_signed == 2, "the principal's signature is not the teacher's"


async def test_the_principals_click_signs_the_reviewed_classes_and_names_those_that_wait(deps, trust, make_record):
    """The principal sees which classes wait and why: 6A2 was never reviewed, so its teacher has not signed it
    either; 6A1 is signed and sealed, except its incomplete record."""
    records = [make_record(0, **TERM_I_MATHS_MISSING), *(make_record(n) for n in range(1, 6))]
    await handlers.receive_records(ready(records), deps)
    await confirm(deps, trust, "6A1")
    await sign_all(deps, await plan(deps, homeroom_request(trust, "6A1")))
    command = principal_request(trust)
    planned = await plan(deps, command)
    assert [k.record_id for w in planned.publish for k in w.records] == ["rec-0002", "rec-0004"]
    [outcome] = await sign_all(deps, planned)
    [done] = (await handlers.count_chunk(one(outcome, ChunkSigned), deps)).publish[1:]
    assert isinstance(done, BatchCompleted) and (done.records_signed, done.records_completed) == (2, 2)
    [waiting] = done.classes_waiting
    assert (waiting.class_name, waiting.records, waiting.code) == ("6A2", 3, "not-reviewed")
    assert waiting.reason.startswith("class 6A2 has not been reviewed")
    [refused] = done.refused
    assert (refused.record_id, refused.class_name) == ("rec-0000", "6A1")
    assert [m.subject for m in refused.missing] == ["Toán"]


# --- planning --------------------------------------------------------------------------------


async def test_a_homeroom_teacher_signs_only_their_class(deps, trust, make_record):
    await received(deps, trust, 25)
    command = homeroom_request(trust, "6A1")
    planned = await plan(deps, command, per_chunk=5)
    assert [type(m) for m in planned.publish] == [SignWork] * 3
    keys = [(k.record_id, k.version) for m in planned.publish for k in m.records]
    assert keys == [(f"rec-{n:04d}", 1) for n in range(0, 25, 2)]
    assert [m.message_id for m in planned.publish] == [derived_id(command.batch_id, "work", n) for n in range(3)]
    batch = await deps.repo.batch(command.batch_id)
    assert (batch.chunks_total, batch.records_total, batch.status, batch.signer) == (3, 13, OPEN, "gvcn-79000701-6A1")


async def test_the_principal_signs_what_the_homeroom_teachers_signed_and_the_rest_waits(deps, trust, make_record):
    await received(deps, trust, 6)
    await sign_all(deps, await plan(deps, homeroom_request(trust, "6A1")))
    command = principal_request(trust)
    planned = await plan(deps, command)
    assert [k.record_id for m in planned.publish for k in m.records] == ["rec-0000", "rec-0002", "rec-0004"]
    assert (await deps.repo.batch(command.batch_id)).records_waiting == 3


async def test_a_redelivered_request_republishes_the_same_plan(deps, trust, make_record):
    await received(deps, trust, 30)
    command = homeroom_request(trust)
    first = await plan(deps, command)
    await handlers.receive_records(ready([make_record(n) for n in range(30, 40)]), deps)
    again = await plan(deps, command)
    assert content(again.publish) == content(first.publish), "the stored plan, not a new one, is published again"
    assert (await deps.repo.batch(command.batch_id)).records_total == 15


async def test_a_batch_id_cannot_be_reused_for_another_school_year(deps, trust, make_record):
    await received(deps, trust, 3)
    command = homeroom_request(trust)
    await plan(deps, command)
    other = trust.staff.homeroom_teacher(SCHOOL, "6A1").signs(
        homeroom_command().model_copy(update={"batch_id": command.batch_id, "school_year": "2024-2025"})
    )
    with pytest.raises(InvalidMessage):
        await plan(deps, other)


async def test_a_batch_with_nothing_to_sign_completes_at_once(deps, registry, trust):
    command = principal_request(trust)
    planned = await plan(deps, command)
    [done] = planned.publish
    assert isinstance(done, BatchCompleted)
    assert (done.batch_id, done.records_total, done.role) == (command.batch_id, 0, "principal")
    assert (await deps.repo.batch(command.batch_id)).status == COMPLETED
    assert content((await plan(deps, command)).publish) == content(planned.publish)
    assert sample(registry, "hocba_signing_batches_total", {"outcome": "empty"}) == 1


# --- who may sign ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("another class's homeroom teacher", "not the homeroom teacher of class 6A1"),
        ("another school's principal", "not the principal of school 79000701"),
        ("a homeroom teacher as principal", "not the principal of school 79000701"),
    ],
)
async def test_a_signature_by_the_wrong_person_is_refused_and_announced_with_the_reason(deps, trust, who, expected):
    staff = trust.staff
    command = {
        "another class's homeroom teacher": staff.homeroom_teacher(SCHOOL, "6A2").signs(homeroom_command("6A1")),
        "another school's principal": staff.principal(OTHER_SCHOOL).signs(principal_command()),
        "a homeroom teacher as principal": staff.homeroom_teacher(SCHOOL, "6A1").signs(principal_command()),
    }[who]
    outcome = await plan(deps, command)
    assert isinstance(outcome.refused, SignerRefused) and expected in str(outcome.refused)
    assert outcome.refused.reason == "wrong-signer"
    [told] = outcome.publish
    assert isinstance(told, BatchRefused)
    assert (told.code, told.batch_id) == ("wrong-signer", command.batch_id) and expected in told.reason
    assert told.actor is None and told.by.subject == command_sender(trust, who)
    assert await deps.repo.batch(command.batch_id) is None


def command_sender(trust, who: str) -> str:
    return {
        "another class's homeroom teacher": "gvcn-79000701-6A2",
        "another school's principal": "ht-79000702",
        "a homeroom teacher as principal": "gvcn-79000701-6A1",
    }[who]


async def test_a_request_without_a_valid_token_for_it_is_refused_and_announced(deps, trust):
    stranger = type(trust.staff)(IssuerKey.generate("someone-else"))
    other_batch = principal_request(trust)
    refused_commands = {
        "no token": principal_command(),
        "a token from an unknown issuer key": stranger.principal(SCHOOL).signs(principal_command()),
        "the token of another command": principal_command().model_copy(update={"actor": other_batch.actor}),
    }
    for why, command in refused_commands.items():
        outcome = await plan(deps, command)
        assert isinstance(outcome.refused, Unauthenticated), why
        [told] = outcome.publish
        assert isinstance(told, BatchRefused) and told.code == "unauthenticated" and told.by is None, why
    assert not deps.repo.batches


async def test_a_token_is_heard_by_signing_only(deps, trust, make_record):
    """A token checked with another service's audience (what archive or grades accepts) is not signing's."""
    await received(deps, trust, 2)
    as_archive = replace(deps, issuer_keys=trust.issuer.public_keys("archive"))
    outcome = await plan(as_archive, principal_request(trust))
    assert isinstance(outcome.refused, Unauthenticated) and "aud" in str(outcome.refused)


async def test_a_revoked_certificate_may_not_sign(repo, metrics, own_trust):
    deps = own_trust.deps(repo, metrics)
    await received(deps, own_trust, 4)
    own_trust.pki.revoke("gvcn-79000701-6A1", "key_compromise", at=T0 - timedelta(minutes=1))
    outcome = await plan(deps, homeroom_request(own_trust, "6A1"))
    assert outcome.refused.reason == "certificate-revoked" and "revoked" in str(outcome.refused)
    other = await plan(deps, homeroom_request(own_trust, "6A2"))
    assert other.refused is None and other.publish, "the other teacher still signs"


async def test_a_certificate_revoked_during_a_batch_stops_its_remaining_chunks(repo, metrics, own_trust):
    deps = own_trust.deps(repo, metrics)
    await received(deps, own_trust, 40)
    command = homeroom_request(own_trust, "6A1")
    work = (await plan(deps, command, per_chunk=5)).publish
    await handlers.sign_chunk(work[0], deps)
    own_trust.pki.revoke("gvcn-79000701-6A1", at=datetime.now(UTC) - timedelta(seconds=1))
    outcome = await handlers.sign_chunk(work[1], deps)
    assert outcome.refused.reason == "certificate-revoked"
    [told] = outcome.publish
    assert (told.batch_id, told.code, told.role) == (command.batch_id, "certificate-revoked", "homeroom_teacher")
    assert told.message_id == derived_id(work[1].message_id, "refused")
    assert told.by == Acting(subject="gvcn-79000701-6A1", roles=["homeroom_teacher"], school_code=SCHOOL)
    assert await signature_count(repo, 40) == 5


# --- signing ---------------------------------------------------------------------------------


async def test_signatures_carry_the_certificate_chain_and_verify_only_for_their_document(deps, trust, make_record):
    await received(deps, trust, 3)
    work = (await plan(deps, homeroom_request(trust))).publish
    outcome = await handlers.sign_chunk(work[0], replace(deps, clock=lambda: T0))
    assert one(outcome, RecordsCompleted) is None, "a homeroom teacher's signature alone does not complete a record"
    signature = (await deps.repo.signatures([("rec-0000", 1)]))[("rec-0000", 1)]["homeroom_teacher"]
    header = protected_header(signature.jws)
    [cert] = from_x5c(header["x5c"])
    assert header["alg"] == "ES256" and header["kid"] == signature.key_id == trust.pki.signer("gvcn-79000701-6A1").key_id
    assert (header["record_id"], header["version"], header["role"]) == ("rec-0000", 1, "homeroom_teacher")
    assert header["digest"] == signature.digest == digest(make_record(0).document)
    assert header["prev"] is None and header["signed_at"] == T0.isoformat()
    assert signature.signer == "gvcn-79000701-6A1"
    document = make_record(0).document
    assert verify_detached(cert.public_key(), signature.jws, canonical_json(document))
    assert not verify_detached(cert.public_key(), signature.jws, canonical_json({**document, "conduct": "Khá"}))


async def test_one_click_signs_and_seals_in_order_and_completes_the_records(deps, registry, trust, make_record):
    await homeroom_signed(deps, trust, make_record, 12)
    command = principal_request(trust)
    outcomes = await sign_all(deps, await plan(deps, command))
    completed = [r for o in outcomes for r in one(o, RecordsCompleted).records]
    assert [r.record.record_id for r in completed] == [f"rec-{n:04d}" for n in range(12)]
    assert {one(o, RecordsCompleted).batch_id for o in outcomes} == {command.batch_id}
    for signed in completed:
        assert [s.role for s in signed.signatures] == ["homeroom_teacher", "principal", "school_seal"]
        teacher, principal, seal = signed.signatures
        assert protected_header(principal.jws)["prev"] == signature_digest(teacher.jws)
        assert protected_header(seal.jws)["prev"] == signature_digest(principal.jws)
        assert (principal.signer, seal.signer) == ("ht-79000701", "seal-79000701")
        check = check_record(signed.record, [s.jws for s in signed.signatures], trust.pki.trust_store())
        assert check.ok, check.problems()
    chunks = [one(o, ChunkSigned) for o in outcomes]
    assert [(c.signed, c.completed, c.worker) for c in chunks] == [(10, 10, WORKER), (2, 2, WORKER)]
    assert sample(registry, "hocba_records_signed_total", {"role": "principal"}) == 12
    assert sample(registry, "hocba_records_signed_total", {"role": "school_seal"}) == 12
    assert sample(registry, "hocba_records_signed_total", {"role": "homeroom_teacher"}) == 12


async def test_a_redelivered_chunk_is_not_signed_twice(deps, registry, trust, make_record):
    await homeroom_signed(deps, trust, make_record, 5)
    work = (await plan(deps, principal_request(trust))).publish
    first = await handlers.sign_chunk(work[0], deps)
    again = await handlers.sign_chunk(work[0], deps)
    assert content(again.publish) == content(first.publish)
    assert [m.message_id for m in again.publish] == [m.message_id for m in first.publish]
    assert one(again, ChunkSigned).signed == 5
    assert await signature_count(deps.repo, 5) == 15
    assert sample(registry, "hocba_records_signed_total", {"role": "principal"}) == 5


class StaleReads:
    """A worker's view of the repository: it looked before another worker stored its signatures."""

    def __init__(self, repo: InMemorySigningRepository) -> None:
        self.repo = repo
        self.stale = True

    def __getattr__(self, name: str):
        return getattr(self.repo, name)

    async def signatures(self, keys):
        if self.stale:
            self.stale = False
            return {
                k: {r: s for r, s in by_role.items() if r == "homeroom_teacher"}
                for k, by_role in (await self.repo.signatures(keys)).items()
            }
        return await self.repo.signatures(keys)


async def test_when_two_workers_race_the_stored_signature_wins(deps, registry, trust, make_record):
    await homeroom_signed(deps, trust, make_record, 4)
    work = (await plan(deps, principal_request(trust))).publish
    first = await handlers.sign_chunk(work[0], replace(deps, worker="worker-a"))
    late = await handlers.sign_chunk(work[0], replace(deps, repo=StaleReads(deps.repo), worker="worker-b"))
    assert one(late, RecordsCompleted).records == one(first, RecordsCompleted).records
    assert one(late, ChunkSigned).signed == 4
    assert sample(registry, "hocba_records_signed_total", {"role": "principal"}) == 4, "the late signatures do not count"


async def test_work_that_is_not_the_batchs_plan_is_refused(deps, trust, make_record):
    await received(deps, trust, 4)
    work = (await plan(deps, homeroom_request(trust))).publish
    forged = SignWork.model_validate({**work[0].model_dump(), "records": [{"record_id": "rec-0001", "version": 1}]})
    with pytest.raises(InvalidMessage, match="does not match"):
        await handlers.sign_chunk(forged, deps)
    with pytest.raises(NotFound):
        await handlers.sign_chunk(work[0].model_copy(update={"batch_id": "nope"}), deps)
    assert await signature_count(deps.repo, 4) == 0


class TamperedRecords:
    """The repository as a worker reads it after record 0's content was changed in storage."""

    def __init__(self, repo: InMemorySigningRepository, changed) -> None:
        self.repo = repo
        self.changed = changed

    def __getattr__(self, name: str):
        return getattr(self.repo, name)

    async def records(self, keys):
        found = await self.repo.records(keys)
        changed = StoredRecord.of(self.changed)
        return {k: (replace(v, canonical=changed.canonical) if k == changed.key else v) for k, v in found.items()}


async def test_a_record_whose_content_changed_in_storage_is_not_signed(deps, trust, make_record):
    await received(deps, trust, 1)
    work = (await plan(deps, homeroom_request(trust))).publish
    with pytest.raises(InvalidMessage):
        await handlers.sign_chunk(work[0], replace(deps, repo=TamperedRecords(deps.repo, make_record(0, conduct="Khá"))))
    assert await signature_count(deps.repo, 1) == 0


async def test_events_say_who_acted_and_never_carry_a_token(deps, trust, make_record):
    """Every event of a batch names who asked for it (`by`); none carries a token anyone could take and replay."""
    await homeroom_signed(deps, trust, make_record, 3)
    command = principal_request(trust)
    planned = await plan(deps, command)
    outcomes = await sign_all(deps, planned)
    chunk = one(outcomes[0], ChunkSigned)
    counted = await handlers.count_chunk(chunk, deps)
    events = [*planned.publish, *(m for o in outcomes for m in o.publish), *counted.publish]
    principal = Acting(subject="ht-79000701", roles=["principal"], school_code=SCHOOL)
    assert {type(e) for e in events} >= {SignWork, RecordsCompleted, BatchProgress, BatchCompleted}
    assert all(e.actor is None for e in events)
    assert all(e.by == principal for e in events)
    by_grades = Acting(subject="svc-grades", roles=["service"])
    received_event = one(await handlers.receive_records(ready([make_record(7)], by=by_grades), deps), RecordsReceived)
    assert received_event.actor is None and received_event.by == by_grades


# --- what a chunk costs ----------------------------------------------------------------------


class CountingRepository:
    """The repository, counting the calls the use cases make to it (a read of a batch without its plan apart)."""

    def __init__(self, repo: InMemorySigningRepository) -> None:
        self.repo = repo
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str):
        method = getattr(self.repo, name)

        async def counted(*args, **kw):
            self.calls[name if kw.get("plan", True) else f"{name} without plan"] += 1
            return await method(*args, **kw)

        return counted


@pytest.mark.parametrize("per_chunk", [10, 100])
async def test_a_chunk_costs_the_same_calls_to_the_repository_whatever_its_size(deps, trust, make_record, per_chunk):
    """Signing a chunk and counting it: one read of the plan, one read of the records, one of their classes'
    latest reviews, one of their signatures, one write of the new signatures, one count; as many for 100 record
    versions as for 10."""
    await homeroom_signed(deps, trust, make_record, 200)
    counting = CountingRepository(deps.repo)
    work = (await plan(deps, principal_request(trust), per_chunk=per_chunk)).publish
    outcome = await handlers.sign_chunk(work[0], replace(deps, repo=counting))
    await handlers.count_chunk(one(outcome, ChunkSigned), replace(deps, repo=counting))
    assert len(one(outcome, RecordsCompleted).records) == per_chunk
    assert counting.calls == {
        "batch": 1,
        "records": 1,
        "latest_reviews": 1,
        "signatures": 1,
        "add_signatures": 1,
        "count_chunk": 1,
    }


@pytest.mark.parametrize("count", [4, 40])
async def test_a_review_reads_the_homeroom_teachers_signatures_once_whatever_the_school_holds(
    deps, trust, make_record, count
):
    """A school's review: one read of the records held, one of the reviews, one of the homeroom teacher's signatures;
    as many for 40 records as for 4, never one a record or a class."""
    await homeroom_signed(deps, trust, make_record, count)
    counting = CountingRepository(deps.repo)
    asked = trust.staff.principal(SCHOOL).signs(ReviewClasses(school_code=SCHOOL, school_year=YEAR))
    reviews = (await handlers.review_classes(asked, replace(deps, repo=counting))).reply
    assert sum(c.homeroom_signed for c in reviews.classes) == count
    assert counting.calls == {"held": 1, "reviews": 1, "signed_by": 1}


async def test_signing_keeps_and_signs_the_bytes_grades_made_and_never_makes_a_document_canonical(
    deps, trust, canonicalised
):
    """The canonical bytes come from grades: signing keeps them at receipt, and each chunk signs (and hands on)
    those exact bytes."""
    records = [trust.record(n) for n in range(12)]
    canonicalised.clear()  # the documents and grades' seals on them, made as grades makes them
    await handlers.receive_records(ready(records), deps)
    assert record_documents(canonicalised) == [], "receiving makes no document canonical (grades' seal: its claims)"
    await reviewed(deps, trust)

    outcomes = []
    for request in (homeroom_request(trust, "6A1"), homeroom_request(trust, "6A2"), principal_request(trust)):
        planned = await plan(deps, request)
        canonicalised.clear()  # the actor's token on the request, checked when the batch is planned
        outcomes += await sign_all(deps, planned)
        assert canonicalised == [], "signing a chunk makes nothing canonical"
    completed = [r for o in outcomes if one(o, RecordsCompleted) for r in one(o, RecordsCompleted).records]
    assert [r.record for r in completed] == records
    for signed in completed:
        for signature in signed.signatures:
            cert = from_x5c(protected_header(signature.jws)["x5c"])[0]
            assert verify_detached(cert.public_key(), signature.jws, signed.record.content)
            assert signed.record.content == canonical_json(signed.record.document)


# --- counting chunks -------------------------------------------------------------------------


async def test_each_chunk_counts_once_and_the_batch_completes_once(deps, registry, trust, make_record):
    await homeroom_signed(deps, trust, make_record, 25)
    command = principal_request(trust)
    chunks = [one(o, ChunkSigned) for o in await sign_all(deps, await plan(deps, command))]
    later = replace(deps, clock=lambda: T0 + timedelta(seconds=42))
    published = []
    for chunk in [chunks[0], chunks[0], chunks[1], chunks[2], chunks[2], chunks[1]]:
        published += (await handlers.count_chunk(chunk, later)).publish
    progress = [m for m in published if isinstance(m, BatchProgress)]
    completed = [m for m in published if isinstance(m, BatchCompleted)]
    assert [(p.chunks_done, p.records_signed) for p in progress] == [(1, 10), (2, 20), (3, 25)]
    [done] = completed
    assert (done.records_signed, done.records_total, done.records_completed) == (25, 25, 25)
    assert (done.role, done.message_id) == ("principal", derived_id(command.batch_id, "completed"))
    batch = await deps.repo.batch(command.batch_id)
    assert batch.status == COMPLETED and batch.done_chunks == {0, 1, 2}
    assert sample(registry, "hocba_signing_batches_total", {"outcome": "completed"}) == 1
    assert sample(registry, "hocba_signing_batch_duration_seconds_sum") == 42


async def test_a_batch_counted_to_the_end_before_a_crash_still_closes(deps, trust, make_record):
    await received(deps, trust, 5)
    command = homeroom_request(trust)
    [outcome] = await sign_all(deps, await plan(deps, command))
    await deps.repo.count_chunk(command.batch_id, 0, 3)  # counted, then the process died before closing
    chunk = one(outcome, ChunkSigned)
    assert [type(m) for m in (await handlers.count_chunk(chunk, deps)).publish] == [BatchCompleted]
    assert (await handlers.count_chunk(chunk, deps)).publish == ()


async def test_chunks_of_unknown_batches_or_beyond_the_plan_are_rejected(deps, trust, make_record):
    await received(deps, trust, 5)
    command = homeroom_request(trust)
    await plan(deps, command)
    with pytest.raises(NotFound):
        await handlers.count_chunk(ChunkSigned(batch_id="nope", chunk_no=0, signed=1, worker="w"), deps)
    with pytest.raises(InvalidMessage):
        await handlers.count_chunk(ChunkSigned(batch_id=command.batch_id, chunk_no=1, signed=1, worker="w"), deps)
    assert (await deps.repo.batch(command.batch_id)).done_chunks == frozenset()


# --- amendments ------------------------------------------------------------------------------


def amendment(make_record, person, version: int = 2, **kw) -> RequestAmendment:
    """`person` asks to amend record 3 (what they send: the corrected version, without grades' seal)."""
    return person.signs(
        RequestAmendment(
            record=make_record(3, version=version, conduct="Khá"),
            supersedes=1,
            reason_code="conduct-correction",
            note="Sửa kết quả rèn luyện theo biên bản họp",
            **kw,
        )
    )


async def test_the_issuing_school_amends_a_record_which_is_then_signed_again(deps, trust):
    command = amendment(record_version, trust.staff.principal(SCHOOL))
    [received_event] = (await handlers.receive_amendment(command, deps)).publish
    assert (received_event.record_id, received_event.version, received_event.supersedes) == ("rec-0003", 2, 1)
    assert received_event.actor is None
    assert received_event.by == Acting(subject="ht-79000701", roles=["principal"], school_code=SCHOOL)
    kept = await stored(deps.repo, 3, version=2)
    assert kept.record_version().document["amendment"] == {
        "supersedes": 1,
        "reason": "conduct-correction",
        "note": "Sửa kết quả rèn luyện theo biên bản họp",
        "requested_by": "ht-79000701",
    }
    assert kept.digest == digest(kept.record_version().document) and kept.seal is None
    await confirm(deps, trust, "6A2")
    teacher = await plan(deps, homeroom_request(trust, "6A2"))
    assert [(k.record_id, k.version) for w in teacher.publish for k in w.records] == [("rec-0003", 2)]
    [again] = (await handlers.receive_amendment(command, deps)).publish
    assert again.message_id == received_event.message_id
    assert await deps.repo.add_records([kept]) == 0, "kept once"


async def test_the_school_records_administrator_may_amend_and_a_seal_sent_along_is_dropped(deps, trust, make_record):
    command = amendment(make_record, trust.staff.school_admin(SCHOOL))
    assert command.record.seal is not None
    [received_event] = (await handlers.receive_amendment(command, deps)).publish
    assert received_event.by.subject == "admin-79000701"
    kept = await stored(deps.repo, 3, version=2)
    assert kept.seal is None and kept.record_version().document["amendment"]["requested_by"] == "admin-79000701"


async def test_only_the_issuing_school_may_amend(deps, trust):
    for person in (trust.staff.principal(OTHER_SCHOOL), trust.staff.homeroom_teacher(SCHOOL, "6A2")):
        with pytest.raises(SignerRefused) as refused:
            await handlers.receive_amendment(amendment(record_version, person), deps)
        assert refused.value.reason == "wrong-school"
    with pytest.raises(InvalidMessage, match="later version"):
        await handlers.receive_amendment(amendment(record_version, trust.staff.principal(SCHOOL), version=1), deps)
    with pytest.raises(Unauthenticated):
        await handlers.receive_amendment(amendment(record_version, trust.staff.principal(SCHOOL)).model_copy(
            update={"actor": None}), deps)
    assert await stored(deps.repo, 3, version=2) is None and await stored(deps.repo, 3, version=1) is None


# --- which versions carry signatures: grades asks ---------------------------------------------


def asking_signatures(*numbers: int, version: int = 1) -> HeldSignatures:
    records = [RecordKey(record_id=f"rec-{n:04d}", version=version) for n in numbers]
    return HeldSignatures(school_code=SCHOOL, school_year=YEAR, records=records)


def service(trust, name: str) -> ServiceIdentity:
    """The service `name`, asking on its own behalf with its own certificate from the session's PKI."""
    return ServiceIdentity(name, lambda: trust.signers.signer_for(OWN_CERTIFICATE[name]))


@pytest.fixture
def answering(deps, trust):
    """signing's dependencies taking a service's own token too (checked against the PKI), as the service does."""
    return replace(deps, issuer_keys=deps.issuer_keys.for_service("signing", services=trust.pki.trust_store))


async def test_grades_is_told_which_versions_carry_a_signature_and_whose(answering, trust):
    await received(answering, trust, 4)
    await sign_all(answering, await plan(answering, homeroom_request(trust, "6A1")))
    asked = service(trust, "grades").signs(asking_signatures(0, 1, 2, 3, 9))
    answer = (await handlers.held_signatures(asked, answering)).reply
    assert answer.records == [
        SignedVersion(record_id="rec-0000", version=1, roles=["homeroom_teacher"]),
        SignedVersion(record_id="rec-0002", version=1, roles=["homeroom_teacher"]),
    ], "6A1's homeroom teacher signed records 0 and 2; 6A2's records carry none; record 9 is not held"


async def test_every_role_that_signed_is_named_in_signing_order(answering, trust, make_record):
    await homeroom_signed(answering, trust, make_record, 2)
    await sign_all(answering, await plan(answering, principal_request(trust)))
    asked = service(trust, "grades").signs(asking_signatures(0, 1))
    answer = (await handlers.held_signatures(asked, answering)).reply
    assert [(v.record_id, v.roles) for v in answer.records] == [
        ("rec-0000", ["homeroom_teacher", "principal", "school_seal"]),
        ("rec-0001", ["homeroom_teacher", "principal", "school_seal"]),
    ]


async def test_no_one_but_grades_asks_which_versions_carry_signatures(answering, trust, tmp_path):
    for person in (trust.staff.principal(SCHOOL), trust.staff.homeroom_teacher(SCHOOL, "6A1")):
        with pytest.raises(Forbidden, match="only the grades service"):
            await handlers.held_signatures(person.signs(asking_signatures(0)), answering)
    with pytest.raises(Forbidden, match="acts only for a person signed in"):
        await handlers.held_signatures(service(trust, GATEWAY).signs(asking_signatures(0)), answering)
    elsewhere = service_pki(tmp_path)
    posing = ServiceIdentity("grades", lambda: elsewhere.signer("svc-grades"))
    with pytest.raises(Unauthenticated, match="not trusted"):
        await handlers.held_signatures(posing.signs(asking_signatures(0)), answering)
    with pytest.raises(Unauthenticated):
        await handlers.held_signatures(asking_signatures(0), answering)


@pytest.mark.parametrize("count", [4, 40])
async def test_the_question_reads_the_signatures_once_whatever_it_asks_about(answering, trust, make_record, count):
    await homeroom_signed(answering, trust, make_record, count)
    counting = CountingRepository(answering.repo)
    asked = service(trust, "grades").signs(asking_signatures(*range(count)))
    answer = (await handlers.held_signatures(asked, replace(answering, repo=counting))).reply
    assert len(answer.records) == count
    assert counting.calls == {"signatures": 1}
