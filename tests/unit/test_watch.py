"""What the term-end driver reads of the services' announcements: only the keys it counts, never the documents."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from hocba import demo_data
from hocba.keys import dev_issuer
from hocba.term_end import VIEWS, CompletedKeys, TermEnd
from hocba.watch import Watch
from services.grades.domain import assemble_record
from services.grades.rulesets import rule_set_for
from shared.contracts.archive import ArchivedRecord, RecordsArchived
from shared.contracts.grades import RecordsReady, RecordVersion
from shared.contracts.identity import RegisteredStudent, StudentSnapshot
from shared.contracts.record import content_of
from shared.contracts.signing import RecordsCompleted, SignedRecord
from shared.contracts.sync import Delivery, RecordsDelivered
from shared.settings import Settings

SCHOOL = demo_data.schools(1)[0]


@dataclass
class Incoming:
    """A delivery as aio-pika hands it to a consumer: the body is all a watcher reads."""

    body: bytes


def versions(count: int) -> list[RecordVersion]:
    """Record versions with the documents grades assembles for a grade-6 class (about 17 KB each)."""
    rule_set = rule_set_for(6)
    rows = demo_data.roster(SCHOOL, count, first_serial=0)
    refs = [f"ref-{n}" for n in range(count)]
    entries = list(demo_data.gradebook(refs))
    homeroom = list(demo_data.homeroom(refs))
    found = []
    for ref, row in zip(refs, rows, strict=True):
        record = assemble_record(
            rule_set,
            RegisteredStudent(student_ref=ref, enrolment=row.enrolment),
            StudentSnapshot(student_ref=ref, identity=row.identity),
            [e for e in entries if e.student_ref == ref],
            [h for h in homeroom if h.student_ref == ref],
        )
        found.append(RecordVersion(
            record_id=record.record_id, version=1, school_code=SCHOOL.code, school_year=demo_data.SCHOOL_YEAR,
            student_ref=ref, content=content_of(record.document()),
        ))
    return found


def announcements(records: list[RecordVersion]) -> list:
    """One chunk as each stage announces it."""
    now = datetime.now(UTC)
    return [
        RecordsReady(school_code=SCHOOL.code, school_year=demo_data.SCHOOL_YEAR, records=records),
        RecordsCompleted(records=[SignedRecord(record=r, signatures=[]) for r in records], batch_id="b1"),
        RecordsArchived(records=[
            ArchivedRecord(
                record_id=r.record_id, version=r.version, school_code=r.school_code, school_year=r.school_year,
                student_ref=r.student_ref, seq=n, entry_hash="0" * 64, digest="0" * 64, content=r.content,
            )
            for n, r in enumerate(records)
        ]),
        RecordsDelivered(deliveries=[
            Delivery(record_id=r.record_id, version=r.version, receipt_id=f"rc-{n}", delivered_at=now)
            for n, r in enumerate(records)
        ]),
    ]


@pytest.fixture
def driver(tmp_path) -> TermEnd:
    issuer, _ = dev_issuer(tmp_path)
    run = TermEnd(Settings(), issuer, schools=1, students=5)
    run._watch_counts()
    return run


def deliver(watch: Watch, message) -> None:
    handler, view = watch.handlers[type(message)]
    consume = Watch._consumer(view, handler)

    async def one() -> None:
        await consume(Incoming(message.model_dump_json().encode()))

    asyncio.run(one())


def test_the_driver_counts_every_stage_without_decoding_a_document(driver, monkeypatch):
    records = versions(5)
    decoded: list[str] = []
    for large in VIEWS:
        def whole(cls, *args, _name=large.__name__, **kwargs):
            decoded.append(_name)
            raise AssertionError("the driver decoded a whole announcement")

        monkeypatch.setattr(large, "model_validate_json", classmethod(whole))
    for message in announcements(records):
        deliver(driver.watch, message)

    assert decoded == []
    keys = {(r.record_id, 1) for r in records}
    counts = driver.counts
    assert counts.ready == counts.signed == counts.archived == counts.delivered == keys
    assert counts.ready_by_school == {SCHOOL.code: keys}
    assert counts.school_reached(SCHOOL.code, counts.archived)
    assert not counts.school_reached("79007999", counts.archived)


def test_a_view_keeps_the_keys_and_leaves_the_documents_behind():
    completed = announcements(versions(2))[1]
    view = CompletedKeys.model_validate_json(completed.model_dump_json())
    assert [(s.record.record_id, s.record.version) for s in view.records] == [r.record.key for r in completed.records]
    assert "document" not in view.model_dump_json()


def test_a_watcher_without_a_view_gets_the_whole_message():
    watch = Watch("amqp://unused", Settings().names())
    seen: list = []
    watch.on(RecordsDelivered, seen.append)
    delivered = announcements(versions(1))[3]
    deliver(watch, delivered)
    assert seen == [delivered] and isinstance(seen[0], RecordsDelivered)
