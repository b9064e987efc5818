"""signing's app on the bus: routing, the batch fan-out, grades' seals, actor tokens, refusals, contracts, metrics."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from services.signing import handlers
from services.signing.app import build_app
from services.signing.metrics import SigningMetrics
from services.signing.repository import InMemorySigningRepository
from shared.contracts.base import utcnow
from shared.contracts.grades import RecordsReady, RecordVersion
from shared.contracts.record import content_of
from shared.contracts.signing import (
    AmendmentReceived,
    BatchCompleted,
    BatchProgress,
    BatchRefused,
    ChunkSigned,
    ClassReviews,
    ConfirmReview,
    RecordsCompleted,
    RecordsReceived,
    RequestAmendment,
    RequestSignBatch,
    ReviewClasses,
    ReviewConfirmed,
    Signature,
    SignWork,
)
from shared.crypto.record_signatures import check_record
from shared.errors import Refused
from shared.messaging import ERROR_HEADER, REASON_HEADER
from tests import records as builders
from tests.unit.signing.test_announcements import principal_work
from tests.unit.signing.trust import OTHER_SCHOOL, SCHOOL, YEAR, make_trust
from tests.wiring.conftest import dead_letters, probe


def unsealed(count: int, start: int = 0, **document) -> list[RecordVersion]:
    return [
        builders.record_version(
            f"rec-{n:04d}", 1, SCHOOL, YEAR, f"student-{n:04d}", class_name=f"6A{n % 2 + 1}", conduct="Tốt", **document
        )
        for n in range(start, start + count)
    ]


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return make_trust(tmp_path_factory.mktemp("signing-wiring"))


@pytest.fixture
def records(trust):
    """`records(count, start)`: record versions as grades publishes them, sealed."""
    return lambda count, start=0: [trust.sealed(r) for r in unsealed(count, start)]


@pytest.fixture
def service(settings, trust):
    repo = InMemorySigningRepository()
    svc = build_app(settings, repository=repo, signers=trust.checked_signers(), issuer_keys=trust.issuer.public_keys())
    return svc, repo


def homeroom(trust, class_name: str) -> RequestSignBatch:
    return trust.staff.homeroom_teacher(SCHOOL, class_name).signs(
        RequestSignBatch(school_code=SCHOOL, school_year=YEAR, role="homeroom_teacher", class_name=class_name)
    )


def principal(trust, school_code: str = SCHOOL) -> RequestSignBatch:
    """The one click of `school_code`'s principal, on this school's records."""
    return trust.staff.principal(school_code).signs(RequestSignBatch(school_code=SCHOOL, school_year=YEAR))


async def reviewed(wire, trust, *classes: str) -> None:
    """Each class reviewed by its homeroom teacher, who confirms what the review showed, over the bus."""
    for class_name in classes:
        teacher = trust.staff.homeroom_teacher(SCHOOL, class_name)
        asked = ReviewClasses(school_code=SCHOOL, school_year=YEAR, class_name=class_name)
        [shown] = (await wire.request(teacher.signs(asked), ClassReviews)).classes
        seen = shown.fingerprint
        confirmation = ConfirmReview(school_code=SCHOOL, school_year=YEAR, class_name=class_name, reviewed=seen)
        await wire.request(teacher.signs(confirmation), ReviewConfirmed)


async def test_received_records_are_announced(service, records, wired):
    svc, repo = service
    seen = probe(svc, RecordsReceived)
    event = RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records(3))
    async with wired(svc) as wire:
        await wire.send(event)
    assert len(repo.stored) == 3
    assert [(e.count, e.source_message_id, e.school_code) for e in seen] == [(3, event.message_id, SCHOOL)]


async def test_homeroom_teachers_then_one_click_sign_and_seal_every_record(service, settings, trust, records, wired):
    svc, repo = service
    work, chunks, completed, progress, done = (
        probe(svc, m) for m in (SignWork, ChunkSigned, RecordsCompleted, BatchProgress, BatchCompleted)
    )
    request = principal(trust)
    async with wired(svc) as wire:
        await wire.send(RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records(25)))
        await reviewed(wire, trust, "6A1", "6A2")
        await wire.send(homeroom(trust, "6A1"))
        await wire.send(homeroom(trust, "6A2"))
        assert completed == [], "a record is complete only once the principal and seal have signed"
        await wire.send(request)
    assert settings.chunk_size == 10
    assert sorted(w.chunk_no for w in work if w.batch_id == request.batch_id) == [0, 1, 2]
    signed = [r for event in completed for r in event.records]
    assert sorted(r.record.record_id for r in signed) == [f"rec-{n:04d}" for n in range(25)]
    for record in signed:
        check = check_record(record.record, [s.jws for s in record.signatures], trust.pki.trust_store())
        assert check.ok, check.problems()
        assert record.record.seal is not None, "grades' seal goes on with the record, for the archive's bundle"
    assert all(e.actor is None and e.by.subject == "ht-79000701" for e in completed), "who acted, never a token"
    assert repo.owed == {}, "once published, the completed records are kept announced"
    assert sorted(p.chunks_done for p in progress if p.batch_id == request.batch_id) == [1, 2, 3]
    mine = [d for d in done if d.batch_id == request.batch_id]
    assert [(d.records_signed, d.records_total, d.records_completed, d.role) for d in mine] == [(25, 25, 25, "principal")]
    assert sorted((d.class_name, d.records_signed) for d in done if d.role == "homeroom_teacher") == [("6A1", 13), ("6A2", 12)]
    registry = svc.registry
    assert registry.get_sample_value("hocba_records_signed_total", {"role": "principal"}) == 25
    assert registry.get_sample_value("hocba_records_signed_total", {"role": "school_seal"}) == 25
    assert registry.get_sample_value("hocba_signing_batches_total", {"outcome": "completed"}) == 3


async def test_a_redelivered_request_signs_nothing_twice_and_completes_once(service, trust, records, wired):
    svc, repo = service
    done = probe(svc, BatchCompleted)
    request = homeroom(trust, "6A1")
    async with wired(svc) as wire:
        await wire.send(RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records(12)))
        await reviewed(wire, trust, "6A1")
        await wire.send(request)
        await wire.send(request)
    assert len(repo.signed) == 6
    assert len(done) == 1
    assert svc.registry.get_sample_value("hocba_records_signed_total", {"role": "homeroom_teacher"}) == 6


async def test_a_request_by_the_wrong_person_is_refused_told_and_dead_lettered_with_the_reason(
    service, trust, records, wired
):
    svc, repo = service
    refused = probe(svc, BatchRefused)
    dead = dead_letters(svc, RequestSignBatch)
    wrong = principal(trust, OTHER_SCHOOL)
    async with wired(svc) as wire:
        await wire.send(RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records(2)))
        await wire.send(wrong)
    assert [(r.batch_id, r.code) for r in refused] == [(wrong.batch_id, "wrong-signer")]
    assert "is not the principal of school 79000701" in refused[0].reason
    [(_, headers)] = dead
    assert headers[REASON_HEADER] == "wrong-signer"
    assert not repo.batches and not repo.signed
    queue = svc.topology.queue_name(RequestSignBatch.ROUTING_KEY)
    assert svc.registry.get_sample_value("hocba_messages_refused_total", {"queue": queue, "reason": "wrong-signer"}) == 1


async def test_an_amendment_from_the_issuing_school_is_stored_for_signing(service, trust, wired):
    svc, repo = service
    seen = probe(svc, AmendmentReceived)
    dead = dead_letters(svc, RequestAmendment)
    amended = unsealed(1)[0].model_copy(update={"version": 2})
    asked = RequestAmendment(record=amended, supersedes=1, reason_code="clerical-error")
    ours = trust.staff.principal(SCHOOL).signs(asked)
    theirs = trust.staff.principal(OTHER_SCHOOL).signs(asked)
    async with wired(svc) as wire:
        await wire.send(theirs)
        await wire.send(ours)
    assert [(e.record_id, e.version, e.supersedes) for e in seen] == [("rec-0000", 2, 1)]
    assert repo.stored[("rec-0000", 2)].record_version().document["amendment"]["reason"] == "clerical-error"
    [(_, headers)] = dead
    assert headers[REASON_HEADER] == "wrong-school"


async def test_a_version_nobody_signed_is_replaced_and_a_signed_one_is_kept_and_announced(service, trust, records, wired):
    """Received again with other content: rec-0001, which nobody signed, takes the new content; rec-0000, which its
    homeroom teacher signed, is kept as signed and named in the announcement (code "signed"), not dead-lettered."""
    svc, repo = service
    seen = probe(svc, RecordsReceived)
    dead = dead_letters(svc, RecordsReady)

    def changed(n: int):
        original = unsealed(1, n)[0]
        return trust.sealed(original.model_copy(update={"content": content_of({**original.document, "conduct": "Khá"})}))

    signed_by_homeroom = Signature(
        record_id="rec-0000", version=1, role="homeroom_teacher", key_id="k", digest="d" * 64, jws="h..s",
        signed_at=datetime.now(UTC),
    )
    async with wired(svc) as wire:
        await wire.send(RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records(2)))
        await repo.add_signatures([(signed_by_homeroom, SCHOOL, YEAR)])
        mixed = RecordsReady(school_code=SCHOOL, school_year=YEAR, records=[changed(0), changed(1), *records(1, 5)])
        await wire.send(mixed)
    assert sorted(repo.stored) == [("rec-0000", 1), ("rec-0001", 1), ("rec-0005", 1)]
    assert repo.stored[("rec-0000", 1)].record_version().document["conduct"] == "Tốt"
    assert repo.stored[("rec-0001", 1)].record_version().document["conduct"] == "Khá"
    assert [e.count for e in seen] == [2, 2]
    assert [(r.record_id, r.code) for r in seen[1].refused] == [("rec-0000", "signed")]
    assert dead == []


async def test_attack_a_made_up_record_on_the_bus_is_dead_lettered_and_never_signed(service, trust, records, wired):
    """Reproduction 1, on the bus: a `grades.record.ready.v2` published with nothing but a broker login, its
    made-up record without grades' seal, is dead-lettered; the one-click batches sign nothing; the genuine
    version published later by grades is kept and signed."""
    svc, repo = service
    dead = dead_letters(svc, RecordsReady)
    completed = probe(svc, RecordsCompleted)
    forged = RecordsReady(school_code=SCHOOL, school_year=YEAR, records=unsealed(1, 3, award="Học sinh Xuất sắc"))
    async with wired(svc) as wire:
        await wire.send(forged)
        await wire.send(homeroom(trust, "6A2"))
        await wire.send(principal(trust))
        assert completed == [] and not repo.stored
        await wire.send(RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records(1, 3)))
        await reviewed(wire, trust, "6A2")
        await wire.send(homeroom(trust, "6A2"))
        await wire.send(principal(trust))
    [(body, headers)] = dead
    assert [r["record_id"] for r in body["records"]] == ["rec-0003"]
    assert headers[REASON_HEADER] == "invalid" and "rec-0003 v1 is not sealed by grades" in headers[ERROR_HEADER]
    [event] = completed
    assert [r.record.document.get("award") for r in event.records] == [None], "the genuine version is signed"


async def test_a_request_without_a_token_is_refused_told_and_dead_lettered(service, records, wired):
    svc, repo = service
    refused = probe(svc, BatchRefused)
    dead = dead_letters(svc, RequestSignBatch)
    anonymous = RequestSignBatch(school_code=SCHOOL, school_year=YEAR)
    async with wired(svc) as wire:
        await wire.send(RecordsReady(school_code=SCHOOL, school_year=YEAR, records=records(2)))
        await wire.send(anonymous)
    assert [(r.batch_id, r.code, r.by) for r in refused] == [(anonymous.batch_id, "unauthenticated", None)]
    [(_, headers)] = dead
    assert headers[REASON_HEADER] == "unauthenticated"
    assert not repo.batches and not repo.signed


async def test_a_class_is_reviewed_and_confirmed_before_it_is_signed_and_an_incomplete_record_never_is(
    service, trust, records, wired
):
    """Over the bus: a homeroom teacher's batch before the class's review is refused and announced with why (not
    dead-lettered); the review names the incomplete record and its missing entry; once the teacher confirms it, the
    class is signed, the principal's click signs and seals the rest, and its outcome names the refused record."""
    svc, repo = service
    refused, done, completed = (probe(svc, m) for m in (BatchRefused, BatchCompleted, RecordsCompleted))
    dead = dead_letters(svc, RequestSignBatch)
    incomplete = trust.sealed(unsealed(1, complete=False, missing=[{"subject": "Toán", "term": 1}])[0])
    teacher = trust.staff.homeroom_teacher(SCHOOL, "6A1")
    early = homeroom(trust, "6A1")
    async with wired(svc) as wire:
        await wire.send(RecordsReady(school_code=SCHOOL, school_year=YEAR, records=[incomplete, *records(3, 1)]))
        await wire.send(early)
        shown = await wire.request(
            teacher.signs(ReviewClasses(school_code=SCHOOL, school_year=YEAR, class_name="6A1")), ClassReviews
        )
        [class_6a1] = shown.classes
        seen = class_6a1.fingerprint
        by_principal = ConfirmReview(school_code=SCHOOL, school_year=YEAR, class_name="6A1", reviewed=seen)
        with pytest.raises(Refused) as wrong_person:
            await wire.request(trust.staff.principal(SCHOOL).signs(by_principal), ReviewConfirmed)
        await reviewed(wire, trust, "6A1", "6A2")
        await wire.send(homeroom(trust, "6A1"))
        await wire.send(homeroom(trust, "6A2"))
        await wire.send(principal(trust))
    assert [(r.batch_id, r.code) for r in refused] == [(early.batch_id, "not-reviewed")]
    assert dead == [], "a class not reviewed yet is told, not dead-lettered"
    assert (class_6a1.status, class_6a1.records) == ("not-reviewed", 2)
    [missing] = class_6a1.incomplete
    assert (missing.record_id, [(m.subject, m.term) for m in missing.missing]) == ("rec-0000", [("Toán", 1)])
    assert wrong_person.value.reason == "forbidden"
    signed = sorted(r.record.record_id for event in completed for r in event.records)
    assert signed == ["rec-0001", "rec-0002", "rec-0003"]
    assert not any(key[0] == "rec-0000" for key in repo.signed)
    [click] = [d for d in done if d.role == "principal"]
    assert [(r.record_id, r.code) for r in click.refused] == [("rec-0000", "incomplete")]
    assert click.classes_waiting == []
    assert svc.registry.get_sample_value("hocba_signing_reviews_confirmed_total") == 2
    assert svc.registry.get_sample_value("hocba_signing_batches_total", {"outcome": "waiting-review"}) == 1


async def test_records_a_crash_left_completed_but_unannounced_are_announced_by_signing_itself(settings, trust, wired):
    """A worker stored the seal of a chunk a minute ago and stopped before announcing it: signing's own loop announces
    the completed records, once."""
    repo = InMemorySigningRepository()
    before_the_crash = utcnow() - timedelta(minutes=1)
    deps = replace(trust.deps(repo, SigningMetrics(CollectorRegistry())), clock=lambda: before_the_crash)
    [work] = await principal_work(deps, trust, trust.record, 4)
    await handlers.sign_chunk(work, deps)  # stored; never published
    svc = build_app(settings, repository=repo, signers=trust.checked_signers(), issuer_keys=trust.issuer.public_keys())
    completed = probe(svc, RecordsCompleted)
    reannouncing = next(loop for loop in svc.loops if loop.name == "signing-reannounce")
    async with wired(svc) as wire:
        await reannouncing.run_once()
        await reannouncing.run_once()
        await wire.settle()
    [again] = completed
    assert sorted(r.record.record_id for r in again.records) == [f"rec-{n:04d}" for n in range(4)]
    assert again.batch_id == work.batch_id and again.by.subject == "ht-79000701"
    assert repo.owed == {}
