"""An incomplete record found at review, completed after the year's close: the principal (or the records
administrator) reopens a term with a reason, which reopens the year; the missing entry is entered as in any
reopened term; the term and the year are closed again."""

from __future__ import annotations

import pytest

from services.grades import handlers
from services.grades.domain import record_id
from shared.contracts.grades import (
    CloseTerm,
    CloseYear,
    KeptSigned,
    RecordAssessments,
    RecordConduct,
    RecordsReady,
    RecordVersion,
    ReopenTerm,
    TermChanged,
    YearClosed,
)
from shared.contracts.signing import RecordsCompleted, SignedRecord
from shared.crypto.canonical import sha256_hex
from shared.errors import Forbidden, Unavailable
from tests.unit.grades.builders import (
    SCHOOL,
    YEAR,
    full_year,
    homeroom,
    homeroom_teacher,
    principal,
    school_admin,
    subject_teacher,
)
from tests.unit.grades.conftest import FakeLookup, FakeSignatures, Published

EVERYONE = {"s1", "s2", "s3"}
OTHER_SCHOOL = "79000799"
MATHS_TERM_1 = ("Toán", 1)


def reopen(term: int = 1, by=None, message_id: str = "reopen-1", school: str = SCHOOL) -> ReopenTerm:
    command = ReopenTerm(
        message_id=message_id, school_code=school, school_year=YEAR, term=term, reason="thiếu điểm Toán học kỳ I"
    )
    return (by or principal()).signs(command)


async def close_terms(deps, *terms: int, suffix: str = "") -> None:
    for term in terms:
        command = CloseTerm(message_id=f"close-{term}{suffix}", school_code=SCHOOL, school_year=YEAR, term=term)
        await handlers.close_term(principal().signs(command), deps)


async def enter(deps, ref: str, skip=frozenset(), message_id: str = "") -> None:
    """`ref`'s whole year (but `skip`): subject entries and homeroom entries."""
    class_name = "6A2" if ref == "s3" else "6A1"
    subjects = RecordAssessments(
        school_code=SCHOOL, school_year=YEAR, entries=full_year(ref, skip=skip), message_id=f"gb-{ref}{message_id}"
    )
    await handlers.record_assessments(subject_teacher().signs(subjects), deps)
    conduct = RecordConduct(school_code=SCHOOL, school_year=YEAR, entries=homeroom(ref), message_id=f"hr-{ref}")
    await handlers.record_conduct(homeroom_teacher(class_name).signs(conduct), deps)


async def close_year(deps, message_id: str = "year-1") -> Published:
    """Close the year; the RecordsReady it published, then its YearClosed."""
    ready = Published()
    command = principal().signs(CloseYear(message_id=message_id, school_code=SCHOOL, school_year=YEAR))
    outcome = await handlers.close_year(command, handlers.replace(deps, lookup=FakeLookup(EVERYONE), publish=ready))
    ready.append(outcome.reply)
    return ready


def year_closed(published: Published) -> YearClosed:
    [closed] = [m for m in published if isinstance(m, YearClosed)]
    return closed


@pytest.fixture
async def closed(deps):
    """The year closed with s1's term-I mathematics missing: s1's record is incomplete."""
    await enter(deps, "s1", skip=frozenset({MATHS_TERM_1}))
    for ref in ("s2", "s3"):
        await enter(deps, ref)
    await close_terms(deps, 1, 2)
    await close_year(deps)
    return deps


# -- reopening a term after the year's close ---------------------------------------------------


@pytest.mark.parametrize("who", [principal, school_admin], ids=["principal", "records administrator"])
async def test_after_the_years_close_the_principal_or_records_administrator_reopens_a_term_and_the_year(closed, who):
    outcome = await handlers.reopen_term(reopen(by=who()), closed)
    [changed] = outcome.publish
    assert isinstance(changed, TermChanged) and (changed.term, changed.state, changed.already) == (1, "open", False)
    assert not await closed.repo.is_closed(SCHOOL, YEAR), "the year is open again"
    statuses = await closed.repo.term_statuses(SCHOOL, YEAR)
    assert (statuses[1].closed, statuses[1].reopened, statuses[2].closed) == (False, True, True)
    [reopened] = [e for e in await closed.repo.term_log(SCHOOL, YEAR) if e["action"] == "reopen"]
    assert reopened["reason"] == "thiếu điểm Toán học kỳ I"


@pytest.mark.parametrize(
    "who",
    [lambda: subject_teacher(), lambda: homeroom_teacher(), lambda: principal(OTHER_SCHOOL)],
    ids=["subject teacher", "homeroom teacher", "another school's principal"],
)
async def test_no_one_else_reopens_a_closed_year(closed, who):
    with pytest.raises(Forbidden):
        await handlers.reopen_term(reopen(by=who()), closed)
    assert await closed.repo.is_closed(SCHOOL, YEAR)


async def test_before_the_years_close_only_the_principal_reopens_a_term(deps):
    await close_terms(deps, 1)
    with pytest.raises(Forbidden, match="only the principal may"):
        await handlers.reopen_term(reopen(by=school_admin()), deps)


async def test_the_missing_entry_is_taken_in_the_reopened_term_and_the_other_term_stays_locked(closed):
    await handlers.reopen_term(reopen(), closed)
    missing = [e for e in full_year("s1") if (e.subject, e.term) == MATHS_TERM_1]
    term_2 = [e for e in full_year("s1") if (e.subject, e.term) == ("Toán", 2)]
    taken = RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=missing + term_2, message_id="gb-fix")
    outcome = await handlers.record_assessments(subject_teacher().signs(taken), closed)
    recorded = outcome.reply
    assert (recorded.entries, recorded.new) == (1, 1)
    [refused] = recorded.rejected
    assert (refused.index, refused.code) == (1, "term-closed") and "term 2 is closed" in refused.reason


async def test_a_redelivered_reopen_finds_the_year_open_and_changes_nothing_more(closed):
    command = reopen()
    await handlers.reopen_term(command, closed)
    again = (await handlers.reopen_term(command, closed)).reply
    assert (again.state, again.already) == ("open", False)
    assert [e["action"] for e in await closed.repo.term_log(SCHOOL, YEAR)].count("reopen") == 1


# -- closing the term and the year again --------------------------------------------------------


def announced(ready: Published) -> dict[str, RecordVersion]:
    return {r.student_ref: r for m in ready if isinstance(m, RecordsReady) for r in m.records}


async def stored(deps, ref: str) -> RecordVersion:
    return await deps.repo.record(record_id(SCHOOL, YEAR, ref), 1)


async def completed_after_reopening(deps, fix=("s1",)) -> Published:
    """Term I reopened, the missing mathematics (and any entry of `fix`) entered, term I and the year closed again."""
    await handlers.reopen_term(reopen(), deps)
    for ref in fix:
        entries = [e for e in full_year(ref, score="8.0" if ref == "s1" else "9.0") if e.term == 1]
        command = RecordAssessments(
            school_code=SCHOOL, school_year=YEAR, entries=entries, message_id=f"gb-{ref}-fix", reason="chấm lại"
        )
        recorded = (await handlers.record_assessments(subject_teacher().signs(command), deps)).reply
        assert not recorded.rejected and recorded.new + recorded.changed > 0
    await close_terms(deps, 1, suffix="-again")
    return await close_year(deps, message_id="year-2")


async def test_closing_again_stores_the_completed_record_in_place_of_its_unsigned_first_version(closed):
    before = await stored(closed, "s1")
    assert b'"complete":false' in before.content
    ready = await completed_after_reopening(closed)
    after = await stored(closed, "s1")
    assert after.version == 1 and b'"complete":true' in after.content and after.content != before.content
    assert announced(ready)["s1"] == after, "announced again, for signing to replace the version it holds"
    [note] = await closed.repo.replacements(after.record_id, 1)
    assert (note["by"], note["message_id"], note["replaced_digest"]) == ("ht-1", "year-2", sha256_hex(before.content))
    assert await closed.repo.is_closed(SCHOOL, YEAR)


async def test_the_records_that_did_not_change_stay_as_they_were(closed):
    before = {ref: await stored(closed, ref) for ref in ("s2", "s3")}
    await completed_after_reopening(closed)
    for ref, record in before.items():
        assert await stored(closed, ref) == record
        assert await closed.repo.replacements(record.record_id, 1) == []


async def test_a_record_signed_and_sealed_stays_as_it_is_and_is_corrected_by_an_amendment(closed):
    sealed = await stored(closed, "s2")
    await handlers.note_completed(RecordsCompleted(records=[SignedRecord(record=sealed, signatures=[])]), closed)
    ready = await completed_after_reopening(closed, fix=("s1", "s2"))
    assert await stored(closed, "s2") == sealed
    assert announced(ready)["s2"] == sealed, "what is announced is what is stored: signing holds it already"
    assert await closed.repo.replacements(sealed.record_id, 1) == []
    assert b'"complete":true' in (await stored(closed, "s1")).content


async def test_signing_is_asked_once_which_changed_versions_not_signed_and_sealed_carry_a_signature(closed):
    sealed = await stored(closed, "s2")
    await handlers.note_completed(RecordsCompleted(records=[SignedRecord(record=sealed, signatures=[])]), closed)
    signing = FakeSignatures()
    await completed_after_reopening(handlers.replace(closed, signatures_held=signing), fix=("s1", "s2"))
    assert signing.asked == [[(record_id(SCHOOL, YEAR, "s1"), 1)]], "s1 only: s2 is sealed, s3 did not change"


async def test_a_first_version_its_homeroom_teacher_signed_stays_as_signed_and_is_reported(closed):
    """Reproduction (issue 12 follow-up): a version signed by its homeroom teacher but not yet by the principal was
    replaced by grades while signing kept it as signed, so the two held different contents for the same version."""
    signed = await stored(closed, "s2")
    signing = FakeSignatures({signed.key: ["homeroom_teacher"]})
    published = await completed_after_reopening(handlers.replace(closed, signatures_held=signing), fix=("s1", "s2"))
    assert await stored(closed, "s2") == signed, "kept as its homeroom teacher signed it"
    assert announced(published)["s2"] == signed, "announced as signing holds it"
    assert await closed.repo.replacements(signed.record_id, 1) == []
    assert year_closed(published).kept_signed == [
        KeptSigned(record_id=signed.record_id, version=1, class_name="6A1", roles=["homeroom_teacher"])
    ]
    completed = await stored(closed, "s1")
    assert b'"complete":true' in completed.content, "the record nobody signed is still assembled again and replaced"
    assert len(await closed.repo.replacements(completed.record_id, 1)) == 1


async def test_nothing_kept_as_signed_when_no_signed_version_changed(closed):
    published = await completed_after_reopening(closed)
    assert year_closed(published).kept_signed == []


async def test_without_signings_answer_the_close_is_refused_saying_why_and_nothing_is_replaced(closed):
    before = await stored(closed, "s1")
    silent = handlers.replace(closed, signatures_held=FakeSignatures(answering=False))
    with pytest.raises(Unavailable) as refused:
        await completed_after_reopening(silent)
    why = str(refused.value)
    assert "signing did not say which of 1 record(s) of class 6A1" in why and "none was replaced" in why
    assert "close the year again once signing answers" in why
    assert await stored(closed, "s1") == before
    assert await closed.repo.replacements(before.record_id, 1) == []


async def test_a_redelivered_close_replaces_nothing_twice(closed):
    await completed_after_reopening(closed)
    again = await close_year(closed, message_id="year-2")
    record = await stored(closed, "s1")
    assert announced(again)["s1"] == record
    assert len(await closed.repo.replacements(record.record_id, 1)) == 1
