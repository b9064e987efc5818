"""A school's year step by step against grades running on the MongoDB-wire server and real RabbitMQ: every step is
answered (a year closed too early is told why, not dead-lettered), the year's close is followed as it goes through
the command line's own watcher, where records stand is learned from the later services' announcements, and an
entry's history is read back from what MongoDB stores."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest

from hocba.commands import Session
from hocba.commands.year import follow_close
from services.grades.app import build_app
from services.grades.domain import record_id
from services.grades.repository import MongoGradesRepository
from shared.contracts.grades import (
    AssessmentsRecorded,
    CloseTerm,
    CloseYear,
    ConductRecorded,
    EntryChanges,
    EntryHistory,
    ListRecords,
    RecordAssessments,
    RecordConduct,
    RecordList,
    RecordsReady,
    TermChanged,
    YearClosed,
)
from shared.contracts.identity import StudentSnapshot, StudentsRegistered
from shared.contracts.signing import RecordsCompleted, SignedRecord
from shared.contracts.sync import Delivery, RecordsDelivered
from shared.crypto.vault import Vault
from shared.errors import NoAnswer, Refused
from shared.messaging import Bus
from tests.support import drain, probing, running
from tests.unit.grades.builders import (
    KEYS,
    SCHOOL,
    YEAR,
    enrolled,
    full_year,
    homeroom,
    homeroom_teacher,
    operator,
    principal,
    scored,
    service_pki,
    snapshot,
    subject_teacher,
    with_pki,
)


async def until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_a_schools_year_step_by_step_over_rabbitmq_and_mongodb(mongo_client, settings, tmp_path: Path):
    async def lookup(refs: list[str], purpose: str) -> list[StudentSnapshot]:
        return [snapshot(r) for r in refs]

    service = build_app(with_pki(settings, service_pki(tmp_path)), mongo=mongo_client, lookup=lookup, issuer_keys=KEYS)
    cli = Bus(settings, "cli")
    # signing's queue for the records the close announces (signing itself does not run here)
    async with probing(settings, RecordsReady), running(service):
        await cli.broker.connect()
        try:
            await service.bus.publish(
                StudentsRegistered(students=[enrolled("s1"), enrolled("s2"), enrolled("s3", class_name="6A2")])
            )
            gradebook = subject_teacher().signs(
                RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=full_year("s1") + full_year("s2"))
            )
            assert (await cli.request(gradebook, AssessmentsRecorded, 30)).new == 48
            corrected = scored("s1", "Tin học", 2, ["9", "9"], "9", "9")
            fix = subject_teacher().signs(
                RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=[corrected], reason="chấm lại")
            )
            assert (await cli.request(fix, AssessmentsRecorded, 30)).changed == 1
            conduct = homeroom_teacher().signs(
                RecordConduct(school_code=SCHOOL, school_year=YEAR, entries=homeroom("s1") + homeroom("s2"))
            )
            assert (await cli.request(conduct, ConductRecorded, 30)).new == 4

            # Too early: the close is answered with the reason, and nothing waits in a dead-letter queue.
            with pytest.raises(Refused, match="term 1 and 2 of 2025-2026 is still open"):
                await cli.request(principal().signs(CloseYear(school_code=SCHOOL, school_year=YEAR)), YearClosed, 30)
            dlq = service.topology.queue_name(CloseYear.ROUTING_KEY) + ".dlq"
            assert await drain(settings.amqp_url, dlq, 1.0) == []

            for term in (1, 2):
                closed = await cli.request(
                    principal().signs(CloseTerm(school_code=SCHOOL, school_year=YEAR, term=term)), TermChanged, 30
                )
                assert (closed.state, closed.already) == ("closed", False)
            again = await cli.request(
                principal().signs(CloseTerm(school_code=SCHOOL, school_year=YEAR, term=1)), TermChanged, 30
            )
            assert again.already, "closed already: nothing changed"

            # The close, followed as `hocba year close` follows it.
            session = Session(settings, cli, settings.data_dir, 60.0)
            progress: list[tuple[int, int]] = []
            command = principal().signs(CloseYear(school_code=SCHOOL, school_year=YEAR))
            year = await follow_close(session, command, lambda done, total: progress.append((done, total)))
            assert (year.students, year.assembled, year.new, year.unassembled) == (3, 3, 3, [])
            assert progress[-1] == (3, 3) and len(progress) == 2, "one report a class, as each is done"

            # Where records stand, from what signing and sync announce.
            kept = MongoGradesRepository(
                mongo_client[settings.names().database("grades")], Vault.for_service(settings, "grades")
            )
            s1 = await kept.record(record_id(SCHOOL, YEAR, "s1"), 1)
            assert s1 is not None
            await cli.publish(RecordsCompleted(records=[SignedRecord(record=s1, signatures=[])]))
            await cli.publish(
                RecordsDelivered(
                    deliveries=[
                        Delivery(record_id=s1.record_id, version=1, receipt_id="r-1", delivered_at=command.occurred_at)
                    ]
                )
            )

            async def listed() -> RecordList:
                asked = principal().signs(ListRecords(school_code=SCHOOL, school_year=YEAR, purpose="rà soát"))
                return await cli.request(asked, RecordList, 30)

            async def delivered() -> bool:
                return any(line.status == "delivered" for line in (await listed()).records)

            await until(delivered)
            statuses = {line.student_ref: line.status for line in (await listed()).records}
            assert statuses == {"s1": "delivered", "s2": "assembled", "s3": "incomplete"}
            counted = principal().signs(ListRecords(school_code=SCHOOL, school_year=YEAR, summary=True))
            summary = await cli.request(counted, RecordList, 30)
            assert [(c.class_name, c.records, c.incomplete, c.delivered) for c in summary.classes] == [
                ("6A1", 2, 0, 1),
                ("6A2", 1, 1, 0),
            ]
            assert (summary.records, summary.terms_closed) == ([], [1, 2]), "counts only, and both terms closed"

            # Every change of s1's Tin học entries, as MongoDB keeps them.
            asked = operator().signs(
                EntryHistory(school_code=SCHOOL, school_year=YEAR, student_ref="s1", subject="Tin học", purpose="x")
            )
            changes = (await cli.request(asked, EntryChanges, 30)).changes
            assert [(c.term, c.action, c.revision) for c in changes] == [
                (1, "recorded", 1),
                (2, "recorded", 1),
                (2, "changed", 2),
            ]
            change = changes[-1]
            assert (change.by, change.reason, change.message_id) == ("gv-1", "chấm lại", fix.message_id)
            assert (change.old["final"], change.new["final"]) == ("8.0", "9")
            assert abs(change.at - fix.occurred_at) < timedelta(milliseconds=1), "MongoDB keeps milliseconds"
        finally:
            await cli.broker.stop()


async def test_a_close_grades_cannot_finish_now_is_told_as_no_answer_yet_not_an_empty_reply(
    mongo_client, settings, tmp_path: Path
):
    """With nothing to take the records a close announces (signing's queue absent), grades hands the close back to
    be tried again; the requester is told so, not handed an empty body to read as the answer."""

    async def lookup(refs: list[str], purpose: str) -> list[StudentSnapshot]:
        return [snapshot(r) for r in refs]

    service = build_app(with_pki(settings, service_pki(tmp_path)), mongo=mongo_client, lookup=lookup, issuer_keys=KEYS)
    cli = Bus(settings, "cli")
    async with running(service):
        await cli.broker.connect()
        try:
            await service.bus.publish(StudentsRegistered(students=[enrolled("s1")]))

            async def enrolled_now() -> bool:
                try:
                    await cli.request(
                        principal().signs(CloseTerm(school_code=SCHOOL, school_year=YEAR, term=1)), TermChanged, 10
                    )
                except Refused:
                    return False
                return True

            await until(enrolled_now)
            await cli.request(
                principal().signs(CloseTerm(school_code=SCHOOL, school_year=YEAR, term=2)), TermChanged, 10
            )
            with pytest.raises(NoAnswer, match="could not finish it and is trying it again"):
                await cli.request(principal().signs(CloseYear(school_code=SCHOOL, school_year=YEAR)), YearClosed, 30)
        finally:
            await cli.broker.stop()
