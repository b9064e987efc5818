"""The term-end driver over schools of different grades and sizes, and the one school that clicks alone first."""

from __future__ import annotations

import asyncio

import pytest

from hocba import demo_data
from hocba.keys import dev_issuer
from hocba.term_end import Cohort, TermEnd, cohorts
from shared.contracts.base import Message
from shared.contracts.signing import RequestSignBatch
from shared.settings import Settings

PRIMARY = demo_data.schools(2, grade=1)
SECONDARY = demo_data.schools(1)[0]


@pytest.fixture
def issuer(tmp_path):
    return dev_issuer(tmp_path)[0]


def test_a_number_of_schools_is_grade_6_schools_of_that_size(issuer):
    run = TermEnd(Settings(), issuer, schools=2, students=30)
    assert [(c.school.grade, c.students, c.first_serial) for c in run.cohorts] == [(6, 30, 0), (6, 30, 30)]
    assert run.total_students == 60 and run.expected_entries() == 60 * 12 * 2


def test_mixed_grades_expect_each_grades_subjects_and_never_share_a_personal_id(issuer):
    plan = [Cohort(SECONDARY, 10, 0), *cohorts(PRIMARY, 7, first_serial=10)]
    run = TermEnd(Settings(), issuer, plan)
    assert run.total_students == 24
    assert run.expected_entries() == (10 * 12 + 14 * 8) * 2  # grade 6: 12 subjects; grade 1: 8
    ids = [r.identity.personal_id for _, roster in run.rosters() for r in roster]
    assert len(ids) == len(set(ids)) == 24
    grades = {school.code: {r.enrolment.grade for r in roster} for school, roster in run.rosters()}
    assert grades == {SECONDARY.code: {6}, PRIMARY[0].code: {1}, PRIMARY[1].code: {1}}


def test_the_probe_school_is_signed_archived_and_delivered_before_the_others_click(issuer):
    run = TermEnd(Settings(), issuer, [Cohort(SECONDARY, 2, 0), *cohorts(PRIMARY, 2, first_serial=2)])
    mine = {("r1", 1), ("r2", 1)}
    run.counts.ready_by_school = {SECONDARY.code: set(mine), PRIMARY[0].code: {("r3", 1)}}
    published: list[Message] = []
    milestones: list[str] = []
    run.milestone = milestones.append

    async def announce() -> None:
        """Signing, the archive and sync announce the probe school's records one stage after the other."""
        for reached in (run.counts.signed, run.counts.archived, run.counts.delivered):
            await asyncio.sleep(0.01)
            reached.update(mine)
            run._changed.set()

    async def publish(message: Message) -> None:
        published.append(message)
        asyncio.get_running_loop().create_task(announce())

    run.bus.publish = publish  # type: ignore[method-assign]
    asyncio.run(run._probe(SECONDARY.code))

    assert milestones == ["probe-signed", "probe-archived", "probe-delivered"]
    assert len(published) == 1 and isinstance(published[0], RequestSignBatch)
    assert (published[0].school_code, published[0].role) == (SECONDARY.code, "principal")
    assert run.principal_batches == [published[0].batch_id]
