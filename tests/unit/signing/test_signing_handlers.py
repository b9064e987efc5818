"""signing's use cases against the in-memory repository, a development PKI and real actor tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.signing import handlers
from services.signing.domain import COMPLETED, OPEN, SignerRefused
from services.signing.repository import InMemorySigningRepository
from shared.auth import Unauthenticated
from shared.contracts.base import derived_id
from shared.contracts.grades import RecordsReady
from shared.contracts.signing import (
    BatchCompleted,
    BatchProgress,
    ChunkSigned,
    RequestAmendment,
    RequestSignBatch,
    SignWork,
)
from shared.crypto.canonical import canonical_json, digest
from shared.crypto.certs import from_x5c
from shared.crypto.jws import protected_header, verify_detached
from shared.crypto.record_signatures import check_record, signature_digest
from shared.errors import InvalidMessage, NotFound

from .conftest import YEAR
from .trust import OTHER_SCHOOL, SCHOOL

T0 = datetime.now(UTC).replace(microsecond=0)
WORKER = "signing-test-worker"


def ready(records, **kw) -> RecordsReady:
    return RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records, **kw)


async def received(repo, make_record, count: int) -> None:
    await handlers.receive_records(ready([make_record(n) for n in range(count)]), repo)


def homeroom_request(trust, class_name: str = "6A1", **kw) -> RequestSignBatch:
    return RequestSignBatch(
        school_code=SCHOOL,
        school_year=YEAR,
        role="homeroom_teacher",
        class_name=class_name,
        actor=trust.staff.homeroom_teacher(SCHOOL, class_name),
        **kw,
    )


def principal_request(trust, school_code: str = SCHOOL, **kw) -> RequestSignBatch:
    return RequestSignBatch(
        school_code=school_code, school_year=YEAR, role="principal", actor=trust.staff.principal(school_code), **kw
    )


async def plan(repo, metrics, authority, command, chunk_size: int = 10) -> list:
    return await handlers.plan_batch(command, repo, chunk_size, metrics, authority, clock=lambda: T0)


async def sign_all(repo, metrics, authority, work) -> list[handlers.ChunkOutcome]:
    return [await handlers.sign_chunk(w, repo, authority, metrics, WORKER) for w in work if isinstance(w, SignWork)]


async def homeroom_signed(repo, metrics, authority, trust, make_record, count: int) -> None:
    """`count` records received and signed by both classes' homeroom teachers."""
    await received(repo, make_record, count)
    for class_name in ("6A1", "6A2"):
        await sign_all(repo, metrics, authority, await plan(repo, metrics, authority, homeroom_request(trust, class_name)))


def content(messages) -> list[dict]:
    """What a message says, leaving out when it was made."""
    return [m.model_dump(exclude={"occurred_at"}) for m in messages]


def sample(registry, name: str, labels: dict | None = None) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


# --- receiving -------------------------------------------------------------------------------


async def test_received_records_are_kept_with_their_digest_and_announced(repo, make_record):
    event = ready([make_record(1), make_record(2)])
    outcome = await handlers.receive_records(event, repo)
    assert outcome.new == 2 and not outcome.conflicts
    stored = repo.stored[("rec-0001", 1)]
    assert stored.digest == digest(make_record(1).document) and stored.class_name == "6A2"
    assert outcome.event.count == 2 and outcome.event.source_message_id == event.message_id
    assert outcome.event.message_id == derived_id(event.message_id, "received")


async def test_a_redelivered_chunk_stores_nothing_new_and_announces_the_same(repo, make_record):
    event = ready([make_record(1), make_record(2)])
    first = await handlers.receive_records(event, repo)
    again = await handlers.receive_records(event, repo)
    assert again.new == 0 and not again.conflicts
    assert content([again.event]) == content([first.event])
    assert len(repo.stored) == 2


async def test_a_version_received_again_with_other_content_is_a_conflict(repo, make_record):
    await handlers.receive_records(ready([make_record(1)]), repo)
    outcome = await handlers.receive_records(ready([make_record(1, conduct="Khá"), make_record(2)]), repo)
    assert [c.record.record_id for c in outcome.conflicts] == ["rec-0001"]
    assert "different content" in outcome.conflicts[0].reason
    assert outcome.event.count == 1
    assert repo.stored[("rec-0001", 1)].digest == digest(make_record(1).document)


async def test_records_of_another_school_are_invalid(repo, make_record):
    with pytest.raises(InvalidMessage):
        await handlers.receive_records(ready([make_record(1, school_code="79000999")]), repo)


# --- planning --------------------------------------------------------------------------------


async def test_a_homeroom_teacher_signs_only_their_class(repo, metrics, authority, trust, make_record):
    await received(repo, make_record, 25)
    command = homeroom_request(trust, "6A1")
    messages = await plan(repo, metrics, authority, command, chunk_size=5)
    assert [type(m) for m in messages] == [SignWork] * 3
    keys = [(k.record_id, k.version) for m in messages for k in m.records]
    assert keys == [(f"rec-{n:04d}", 1) for n in range(0, 25, 2)]
    assert [m.message_id for m in messages] == [derived_id(command.batch_id, "work", n) for n in range(3)]
    batch = repo.batches[command.batch_id]
    assert (batch.chunks_total, batch.records_total, batch.status, batch.signer) == (3, 13, OPEN, "gvcn-79000701-6A1")


async def test_the_principal_signs_what_the_homeroom_teachers_signed_and_the_rest_waits(
    repo, metrics, authority, trust, make_record
):
    await received(repo, make_record, 6)
    await sign_all(repo, metrics, authority, await plan(repo, metrics, authority, homeroom_request(trust, "6A1")))
    command = principal_request(trust)
    messages = await plan(repo, metrics, authority, command)
    assert [(k.record_id) for m in messages for k in m.records] == ["rec-0000", "rec-0002", "rec-0004"]
    assert repo.batches[command.batch_id].records_waiting == 3


async def test_a_redelivered_request_republishes_the_same_plan(repo, metrics, authority, trust, make_record):
    await received(repo, make_record, 30)
    command = homeroom_request(trust)
    first = await plan(repo, metrics, authority, command)
    await handlers.receive_records(ready([make_record(n) for n in range(30, 40)]), repo)
    again = await plan(repo, metrics, authority, command)
    assert content(again) == content(first), "the stored plan, not a new one, is published again"
    assert len(repo.batches) == 1


async def test_a_batch_id_cannot_be_reused_for_another_school_year(repo, metrics, authority, trust, make_record):
    await received(repo, make_record, 3)
    command = homeroom_request(trust)
    await plan(repo, metrics, authority, command)
    other = homeroom_request(trust).model_copy(update={"batch_id": command.batch_id, "school_year": "2024-2025"})
    with pytest.raises(InvalidMessage):
        await plan(repo, metrics, authority, other)


async def test_a_batch_with_nothing_to_sign_completes_at_once(repo, metrics, registry, authority, trust):
    command = principal_request(trust)
    messages = await plan(repo, metrics, authority, command)
    assert len(messages) == 1 and isinstance(messages[0], BatchCompleted)
    assert (messages[0].batch_id, messages[0].records_total, messages[0].role) == (command.batch_id, 0, "principal")
    assert repo.batches[command.batch_id].status == COMPLETED
    assert content(await plan(repo, metrics, authority, command)) == content(messages)
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
async def test_a_signature_by_the_wrong_person_is_refused_with_the_reason(repo, metrics, authority, trust, who, expected):
    staff = trust.staff
    command = {
        "another class's homeroom teacher": homeroom_request(trust, "6A1").model_copy(
            update={"actor": staff.homeroom_teacher(SCHOOL, "6A2")}
        ),
        "another school's principal": principal_request(trust).model_copy(
            update={"actor": staff.principal(OTHER_SCHOOL)}
        ),
        "a homeroom teacher as principal": principal_request(trust).model_copy(
            update={"actor": staff.homeroom_teacher(SCHOOL, "6A1")}
        ),
    }[who]
    with pytest.raises(SignerRefused, match=expected) as refused:
        await plan(repo, metrics, authority, command)
    assert refused.value.reason == "wrong-signer"
    assert not repo.batches
    told = handlers.refusal(command, refused.value)
    assert (told.code, told.batch_id) == ("wrong-signer", command.batch_id) and expected in told.reason


async def test_a_request_without_a_valid_token_is_refused(repo, metrics, authority, trust):
    with pytest.raises(Unauthenticated):
        await plan(repo, metrics, authority, principal_request(trust).model_copy(update={"actor": None}))
    forged = trust.staff.__class__(type(trust.issuer).generate("someone-else")).principal(SCHOOL)
    with pytest.raises(Unauthenticated):
        await plan(repo, metrics, authority, principal_request(trust).model_copy(update={"actor": forged}))


async def test_a_revoked_certificate_may_not_sign(repo, metrics, own_trust, make_record):
    authority = own_trust.authority()
    await received(repo, make_record, 4)
    own_trust.pki.revoke("gvcn-79000701-6A1", "key_compromise", at=T0 - timedelta(minutes=1))
    with pytest.raises(SignerRefused, match="revoked") as refused:
        await plan(repo, metrics, authority, homeroom_request(own_trust, "6A1"))
    assert refused.value.reason == "certificate-revoked"
    await plan(repo, metrics, authority, homeroom_request(own_trust, "6A2"))  # the other teacher still signs


async def test_a_certificate_revoked_during_a_batch_stops_its_remaining_chunks(repo, metrics, own_trust, make_record):
    authority = own_trust.authority()
    await received(repo, make_record, 40)
    work = await plan(repo, metrics, authority, homeroom_request(own_trust, "6A1"), chunk_size=5)
    await handlers.sign_chunk(work[0], repo, authority, metrics, WORKER)
    own_trust.pki.revoke("gvcn-79000701-6A1", at=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(SignerRefused) as refused:
        await handlers.sign_chunk(work[1], repo, authority, metrics, WORKER)
    assert refused.value.reason == "certificate-revoked"
    assert len(repo.signed) == 5


# --- signing ---------------------------------------------------------------------------------


async def test_signatures_carry_the_certificate_chain_and_verify_only_for_their_document(
    repo, metrics, authority, trust, make_record
):
    await received(repo, make_record, 3)
    work = await plan(repo, metrics, authority, homeroom_request(trust))
    outcome = await handlers.sign_chunk(work[0], repo, authority, metrics, WORKER, clock=lambda: T0)
    assert outcome.completed is None, "a homeroom teacher's signature alone does not complete a record"
    signature = repo.signed[("rec-0000", 1, "homeroom_teacher")][0]
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


async def test_one_click_signs_and_seals_in_order_and_completes_the_records(
    repo, metrics, registry, authority, trust, make_record
):
    await homeroom_signed(repo, metrics, authority, trust, make_record, 12)
    command = principal_request(trust)
    outcomes = await sign_all(repo, metrics, authority, await plan(repo, metrics, authority, command))
    completed = [r for o in outcomes for r in o.completed.records]
    assert [r.record.record_id for r in completed] == [f"rec-{n:04d}" for n in range(12)]
    assert {o.completed.batch_id for o in outcomes} == {command.batch_id}
    for signed in completed:
        assert [s.role for s in signed.signatures] == ["homeroom_teacher", "principal", "school_seal"]
        teacher, principal, seal = signed.signatures
        assert protected_header(principal.jws)["prev"] == signature_digest(teacher.jws)
        assert protected_header(seal.jws)["prev"] == signature_digest(principal.jws)
        assert (principal.signer, seal.signer) == ("ht-79000701", "seal-79000701")
        check = check_record(
            signed.record.record_id, 1, SCHOOL, signed.record.document, [s.jws for s in signed.signatures], trust.pki.trust_store()
        )
        assert check.ok, check.problems()
    assert [(o.chunk.signed, o.chunk.completed, o.chunk.worker) for o in outcomes] == [(10, 10, WORKER), (2, 2, WORKER)]
    assert sample(registry, "hocba_records_signed_total", {"role": "principal"}) == 12
    assert sample(registry, "hocba_records_signed_total", {"role": "school_seal"}) == 12
    assert sample(registry, "hocba_records_signed_total", {"role": "homeroom_teacher"}) == 12


async def test_a_redelivered_chunk_is_not_signed_twice(repo, metrics, registry, authority, trust, make_record):
    await homeroom_signed(repo, metrics, authority, trust, make_record, 5)
    work = await plan(repo, metrics, authority, principal_request(trust))
    first = await handlers.sign_chunk(work[0], repo, authority, metrics, WORKER)
    again = await handlers.sign_chunk(work[0], repo, authority, metrics, WORKER)
    assert again.new_signatures == 0
    assert content([again.completed]) == content([first.completed])
    assert again.completed.message_id == first.completed.message_id
    assert again.chunk.signed == 5 and again.chunk.message_id == first.chunk.message_id
    assert len(repo.signed) == 15
    assert sample(registry, "hocba_records_signed_total", {"role": "principal"}) == 5


class StaleReads(InMemorySigningRepository):
    """A worker that looked before another worker stored its signatures."""

    def __init__(self, shared: InMemorySigningRepository) -> None:
        self.__dict__ = shared.__dict__
        self.stale = True

    async def signatures(self, keys):
        if self.stale:
            self.stale = False
            return {
                k: {r: s for r, s in by_role.items() if r == "homeroom_teacher"}
                for k, by_role in (await super().signatures(keys)).items()
            }
        return await super().signatures(keys)


async def test_when_two_workers_race_the_stored_signature_wins(repo, metrics, authority, trust, make_record):
    await homeroom_signed(repo, metrics, authority, trust, make_record, 4)
    work = await plan(repo, metrics, authority, principal_request(trust))
    first = await handlers.sign_chunk(work[0], repo, authority, metrics, "worker-a")
    late = await handlers.sign_chunk(work[0], StaleReads(repo), authority, metrics, "worker-b")
    assert late.new_signatures == 0
    assert late.completed.records == first.completed.records
    assert late.chunk.signed == 4


async def test_work_that_is_not_the_batchs_plan_is_refused(repo, metrics, authority, trust, make_record):
    await received(repo, make_record, 4)
    work = await plan(repo, metrics, authority, homeroom_request(trust))
    forged = SignWork.model_validate({**work[0].model_dump(), "records": [{"record_id": "rec-0001", "version": 1}]})
    with pytest.raises(InvalidMessage, match="does not match"):
        await handlers.sign_chunk(forged, repo, authority, metrics, WORKER)
    with pytest.raises(NotFound):
        await handlers.sign_chunk(work[0].model_copy(update={"batch_id": "nope"}), repo, authority, metrics, WORKER)
    assert not repo.signed


async def test_a_record_whose_content_changed_in_storage_is_not_signed(repo, metrics, authority, trust, make_record):
    await received(repo, make_record, 1)
    work = await plan(repo, metrics, authority, homeroom_request(trust))
    stored = repo.stored[("rec-0000", 1)]
    repo.stored[("rec-0000", 1)] = type(stored)(make_record(0, conduct="Khá"), stored.digest)
    with pytest.raises(InvalidMessage):
        await handlers.sign_chunk(work[0], repo, authority, metrics, WORKER)
    assert not repo.signed


# --- counting chunks -------------------------------------------------------------------------


async def test_each_chunk_counts_once_and_the_batch_completes_once(repo, metrics, registry, authority, trust, make_record):
    await homeroom_signed(repo, metrics, authority, trust, make_record, 25)
    command = principal_request(trust)
    chunks = [o.chunk for o in await sign_all(repo, metrics, authority, await plan(repo, metrics, authority, command))]
    clock = lambda: T0 + timedelta(seconds=42)  # noqa: E731
    published = []
    for chunk in [chunks[0], chunks[0], chunks[1], chunks[2], chunks[2], chunks[1]]:
        published += await handlers.count_chunk(chunk, repo, metrics, clock)
    progress = [m for m in published if isinstance(m, BatchProgress)]
    completed = [m for m in published if isinstance(m, BatchCompleted)]
    assert [(p.chunks_done, p.records_signed) for p in progress] == [(1, 10), (2, 20), (3, 25)]
    [done] = completed
    assert (done.records_signed, done.records_total, done.records_completed) == (25, 25, 25)
    assert (done.role, done.message_id) == ("principal", derived_id(command.batch_id, "completed"))
    batch = repo.batches[command.batch_id]
    assert batch.status == COMPLETED and batch.done_chunks == {0, 1, 2}
    assert sample(registry, "hocba_signing_batches_total", {"outcome": "completed"}) == 1
    assert sample(registry, "hocba_signing_batch_duration_seconds_sum") == 42


async def test_a_batch_counted_to_the_end_before_a_crash_still_closes(repo, metrics, authority, trust, make_record):
    await received(repo, make_record, 5)
    command = homeroom_request(trust)
    [outcome] = await sign_all(repo, metrics, authority, await plan(repo, metrics, authority, command))
    await repo.count_chunk(command.batch_id, 0, 3)  # counted, then the process died before closing
    published = await handlers.count_chunk(outcome.chunk, repo, metrics)
    assert [type(m) for m in published] == [BatchCompleted]
    assert await handlers.count_chunk(outcome.chunk, repo, metrics) == []


async def test_chunks_of_unknown_batches_or_beyond_the_plan_are_rejected(repo, metrics, authority, trust, make_record):
    await received(repo, make_record, 5)
    command = homeroom_request(trust)
    await plan(repo, metrics, authority, command)
    with pytest.raises(NotFound):
        await handlers.count_chunk(ChunkSigned(batch_id="nope", chunk_no=0, signed=1, worker="w"), repo, metrics)
    with pytest.raises(InvalidMessage):
        await handlers.count_chunk(
            ChunkSigned(batch_id=command.batch_id, chunk_no=1, signed=1, worker="w"), repo, metrics
        )
    assert repo.batches[command.batch_id].done_chunks == frozenset()


# --- amendments ------------------------------------------------------------------------------


def amendment(trust, make_record, actor: str, version: int = 2, **kw) -> RequestAmendment:
    return RequestAmendment(
        record=make_record(3, version=version, conduct="Khá"),
        supersedes=1,
        reason_code="conduct-correction",
        note="Sửa kết quả rèn luyện theo biên bản họp",
        actor=actor,
        **kw,
    )


async def test_the_issuing_school_amends_a_record_which_is_then_signed_again(repo, metrics, authority, trust, make_record):
    command = amendment(trust, make_record, trust.staff.principal(SCHOOL))
    received_event = await handlers.receive_amendment(command, repo, authority.issuer_keys)
    assert (received_event.record_id, received_event.version, received_event.supersedes) == ("rec-0003", 2, 1)
    stored = repo.stored[("rec-0003", 2)]
    assert stored.record.document["amendment"] == {
        "supersedes": 1,
        "reason": "conduct-correction",
        "note": "Sửa kết quả rèn luyện theo biên bản họp",
        "requested_by": "ht-79000701",
    }
    assert stored.digest == digest(stored.record.document)
    teacher = await plan(repo, metrics, authority, homeroom_request(trust, "6A2"))
    assert [(k.record_id, k.version) for w in teacher for k in w.records] == [("rec-0003", 2)]
    again = await handlers.receive_amendment(command, repo, authority.issuer_keys)
    assert again.message_id == received_event.message_id and len(repo.stored) == 1


async def test_only_the_issuing_school_may_amend(repo, authority, trust, make_record):
    for actor in (trust.staff.principal(OTHER_SCHOOL), trust.staff.homeroom_teacher(SCHOOL, "6A2")):
        with pytest.raises(SignerRefused) as refused:
            await handlers.receive_amendment(amendment(trust, make_record, actor), repo, authority.issuer_keys)
        assert refused.value.reason == "wrong-school"
    with pytest.raises(InvalidMessage, match="later version"):
        await handlers.receive_amendment(
            amendment(trust, make_record, trust.staff.principal(SCHOOL), version=1), repo, authority.issuer_keys
        )
    assert not repo.stored
