"""Amending a signed record, as grades answers it: the issuing school's principal or records administrator corrects
entries of a record that carries every signature, and grades assembles it again as the next version, which names
the version it supersedes and why; each correction is kept in the entry's history with the amendment's reason and
message. Corrections follow the rules of every entry but not the term and year locks; an amendment supersedes the
latest signed version only, must change the record, and is answered the same however often it is delivered.

In-memory repository, real actor tokens, grades' seal from a development PKI, a stand-in for identity's look-up
(`FakeLookup`). The school's year is closed (both terms, then the year) with s1 and s2 in class 6A1 and s3 in 6A2,
and every record is signed and sealed (`note_completed`) before the tests amend s1's.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from services.grades import handlers
from services.grades.domain import record_id
from services.grades.domain.amendment import Versions, changed_parts, supersession_problem
from shared.auth import Unauthenticated
from shared.contracts.grades import (
    AmendRecord,
    CloseTerm,
    CloseYear,
    EntryChanges,
    EntryHistory,
    ExplainRecord,
    ListRecords,
    RecordAmended,
    RecordAssessments,
    RecordConduct,
    RecordExplanation,
    RecordVersion,
    StudentTermConduct,
)
from shared.contracts.identity import StudentSnapshot
from shared.contracts.signing import RecordsCompleted, SignedRecord
from shared.errors import Forbidden, InvalidMessage, NoAnswer, NotFound, TransientError, Unavailable
from tests.unit.grades.builders import (
    SCHOOL,
    YEAR,
    full_year,
    homeroom,
    homeroom_teacher,
    person,
    principal,
    school_admin,
    scored,
    snapshot,
    subject_teacher,
)
from tests.unit.grades.conftest import FakeLookup, Published

S1 = record_id(SCHOOL, YEAR, "s1")
NOTE = "Chấm phúc khảo bài cuối kỳ II môn Toán theo quyết định số 12/QĐ-THCS"
#: s1's Toán in term II as the teacher entered it (every score 8.0), and as the appeal decided it.
TOAN_2 = scored("s1", "Toán", 2, ["8.0"] * 4, "8.0", "8.0")
TOAN_2_CORRECTED = scored("s1", "Toán", 2, ["8.0"] * 4, "8.0", "9.5")


@pytest.fixture
async def year(deps):
    """The school's year closed and every record signed and sealed: what an amendment starts from."""
    deps = replace(deps, lookup=FakeLookup({"s1", "s2", "s3"}), publish=Published())
    for ref, class_name in (("s1", "6A1"), ("s2", "6A1"), ("s3", "6A2")):
        gradebook = RecordAssessments(
            school_code=SCHOOL, school_year=YEAR, entries=full_year(ref), message_id=f"gb-{ref}"
        )
        await handlers.record_assessments(subject_teacher().signs(gradebook), deps)
        conduct = RecordConduct(school_code=SCHOOL, school_year=YEAR, entries=homeroom(ref), message_id=f"hr-{ref}")
        await handlers.record_conduct(homeroom_teacher(class_name).signs(conduct), deps)
    for term in (1, 2):
        command = CloseTerm(message_id=f"close-{term}", school_code=SCHOOL, school_year=YEAR, term=term)
        await handlers.close_term(principal().signs(command), deps)
    await handlers.close_year(principal().signs(CloseYear(school_code=SCHOOL, school_year=YEAR)), deps)
    await signed(deps, *(await deps.repo.records(SCHOOL, YEAR, 1)))
    return deps


async def signed(deps, *records: RecordVersion) -> None:
    """Signing announces these versions carrying every signature."""
    await handlers.note_completed(
        RecordsCompleted(records=[SignedRecord(record=r, signatures=[]) for r in records]), deps
    )


def amendment(
    *,
    scores=(TOAN_2_CORRECTED,),
    conduct=(),
    supersedes: int = 1,
    reason: str = "grade-correction",
    note: str = NOTE,
    message_id: str = "amend-1",
    **fields,
) -> AmendRecord:
    return AmendRecord(
        message_id=message_id,
        school_code=fields.pop("school_code", SCHOOL),
        school_year=fields.pop("school_year", YEAR),
        record_id=fields.pop("record_id", S1),
        supersedes=supersedes,
        reason_code=reason,
        note=note,
        scores=list(scores),
        conduct=list(conduct),
    )


async def amend(deps, command: AmendRecord, by=None) -> RecordAmended:
    outcome = await handlers.amend_record((by or principal()).signs(command), deps)
    assert isinstance(outcome.reply, RecordAmended) and not outcome.publish, "answered, announced by nobody"
    return outcome.reply


async def history(deps, subject: str | None = "Toán") -> EntryChanges:
    request = EntryHistory(school_code=SCHOOL, school_year=YEAR, student_ref="s1", subject=subject, purpose="x")
    return (await handlers.entry_history(principal().signs(request), deps)).reply


def toan_term_2(record: RecordVersion) -> dict:
    [toan] = [s for s in record.document["subjects"] if s["name"] == "Toán"]
    return toan["term_2"]


# -- the new version --------------------------------------------------------------------------


async def test_the_principal_amends_a_signed_record_as_its_next_version_naming_what_it_supersedes_and_why(year):
    amended = await amend(year, amendment())
    record = amended.record
    assert (record.record_id, record.version, amended.supersedes, amended.reason_code) == (S1, 2, 1, "grade-correction")
    assert (record.school_code, record.school_year, record.student_ref) == (SCHOOL, YEAR, "s1")
    assert record.document["amendment"] == {
        "supersedes": 1,
        "reason": "grade-correction",
        "note": NOTE,
        "requested_by": "ht-1",
    }, "in the words signing writes under the signatures: what grades assembles is what is signed"
    assert toan_term_2(record) == {"regular": ["8.0"] * 4, "midterm": "8.0", "final": "9.5", "average": "8.5"}
    assert amended.changed == ["subjects"] and amended.corrected == 1
    assert record.seal is not None, "sealed by grades, as every version it assembles"
    assert await year.repo.record(S1, 2) == record
    assert toan_term_2(await year.repo.record(S1, 1))["final"] == "8.0", "the version superseded stays as it was"
    assert year.metrics.amendments.labels("amended")._value.get() == 1


async def test_the_new_version_is_assembled_as_at_the_years_close_and_explained_like_any(year):
    """One assembly for the close and the amendment: the new version reads back into its entries and rule set,
    and differs from the one it supersedes in the corrected entries and what follows from them only."""
    before = await year.repo.record(S1, 1)
    record = (await amend(year, amendment(scores=[scored("s1", "Toán", 2, ["2.0"] * 4, "2.0", "2.0")]))).record
    assert changed_parts(before.document, record.document) == ["awards", "learning_result", "subjects"]
    explain = ExplainRecord(record_id=S1, version=2, purpose="phúc khảo")
    explained = (await handlers.explain_record(principal().signs(explain), year)).reply
    assert isinstance(explained, RecordExplanation) and explained.version == 2
    assert any(line.about == "subjects/Toán/term_2/average" and line.result == "2.0" for line in explained.lines)


async def test_the_records_administrator_amends_too_and_the_homeroom_teachers_entries_may_be_corrected(year):
    corrected = StudentTermConduct(student_ref="s1", term=2, conduct="Khá", absences=2, comment="ghi chú 2")
    amended = await amend(
        year, amendment(scores=(), conduct=[corrected], reason="conduct-correction", note=""), by=school_admin()
    )
    assert amended.record.document["conduct"]["term_2"] == "Khá"
    assert amended.record.document["amendment"]["requested_by"] == "admin-1"
    assert "conduct" in amended.changed and amended.corrected == 1


async def test_only_the_issuing_schools_principal_or_records_administrator_amends(year):
    others = [
        homeroom_teacher("6A1"),
        subject_teacher(),
        person({"operator"}, "", subject="operator-1"),
        principal("79000799"),
    ]
    for other in others:
        with pytest.raises(Forbidden, match="it was issued by school 79000701, and only that school's principal"):
            await handlers.amend_record(other.signs(amendment()), year)
    with pytest.raises(Unauthenticated):
        await handlers.amend_record(amendment(), year)
    assert await year.repo.record(S1, 2) is None
    assert [c.revision for c in (await history(year)).changes if c.term == 2] == [1], "no correction written"


async def test_the_school_and_year_of_the_request_are_the_records(year):
    with pytest.raises(InvalidMessage, match="is a record of school 79000701 for 2025-2026, not of school"):
        await amend(year, amendment(school_year="2024-2025"))
    with pytest.raises(NotFound, match="no record 0000"):
        await amend(year, amendment(record_id="0000"))


# -- which version an amendment supersedes ----------------------------------------------------


async def test_an_amendment_supersedes_the_latest_version_once_it_carries_every_signature(year):
    with pytest.raises(InvalidMessage, match="there is no v2; v1 is the latest") as refused:
        await amend(year, amendment(supersedes=2))
    assert refused.value.reason == "not-latest"
    second = (await amend(year, amendment())).record
    with pytest.raises(InvalidMessage, match="v1 is not its latest version; v2 is the latest") as refused:
        await amend(year, amendment(message_id="amend-2", scores=[TOAN_2]))
    assert refused.value.reason == "not-latest"
    with pytest.raises(InvalidMessage, match="v2 is not signed and sealed yet") as refused:
        await amend(year, amendment(message_id="amend-2", supersedes=2, scores=[TOAN_2]))
    assert refused.value.reason == "not-signed"
    await signed(year, second)
    third = await amend(year, amendment(message_id="amend-2", supersedes=2, scores=[TOAN_2], reason="appeal-decision"))
    assert (third.record.version, third.supersedes, toan_term_2(third.record)["final"]) == (3, 2, "8.0")


async def test_a_version_not_yet_signed_is_not_amended():
    """Signing has not announced it: it is not yet part of the record the school issued."""
    versions = Versions(S1, held=1, reached={})
    assert supersession_problem(versions, 1).reason == "not-signed"
    assert supersession_problem(Versions(S1, 1, {1: frozenset({"archived"})}), 1) is None
    assert supersession_problem(Versions(S1, 1, {1: frozenset({"delivered"})}), 1) is None


async def test_a_version_grades_did_not_assemble_is_not_amended_here():
    """An announced later version grades never held (made elsewhere) cannot be assembled again from grades' entries."""
    refused = supersession_problem(Versions(S1, held=1, reached={2: frozenset({"archived"})}), 2)
    assert refused is not None and refused.reason == "not-held"


# -- the corrections --------------------------------------------------------------------------


async def test_corrections_follow_the_rules_of_every_entry_and_each_refused_one_is_said_with_nothing_stored(year):
    command = amendment(
        scores=[
            scored("s1", "Toán", 2, ["9.0"], "9.0", "9.0"),  # Toán needs 4 regular assessments
            scored("s1", "Hóa học", 1, ["9.0"] * 2, "9.0", "9.0"),  # no subject of grade 6
            scored("s2", "Toán", 1, ["9.0"] * 4, "9.0", "9.0"),  # another student's entry
            scored("s1", "Tin học", 1, ["9.0"] * 2, "9.0", "11"),  # out of range
            scored("s1", "Tin học", 2, ["9.0"] * 2, "9.0", "9.0"),
            scored("s1", "Tin học", 2, ["9.5"] * 2, "9.0", "9.0"),  # the same entry twice
        ],
        conduct=[StudentTermConduct(student_ref="s1", term=1, conduct="Tốt")],  # absences missing
    )
    answer = await amend(year, command)
    assert answer.record is None and answer.changed == [] and answer.corrected == 0
    assert [(r.part, r.index, r.code) for r in answer.rejected] == [
        ("scores", 0, "regular-count"),
        ("scores", 1, "unknown-subject"),
        ("scores", 2, "other-student"),
        ("scores", 3, "score-range"),
        ("scores", 5, "duplicate"),
        ("conduct", 0, "missing-absences"),
    ]
    assert "needs 4 regular assessments per term, got 1" in answer.rejected[0].reason
    assert await year.repo.record(S1, 2) is None, "an amendment is made whole or not at all"
    assert all(c.action == "recorded" for c in (await history(year, None)).changes)
    assert year.metrics.amendments.labels("corrections-rejected")._value.get() == 1


async def test_corrections_are_taken_in_a_closed_year_where_an_ordinary_entry_is_not(year):
    ordinary = RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=[TOAN_2_CORRECTED])
    recorded = (await handlers.record_assessments(subject_teacher().signs(ordinary), year)).reply
    assert [r.code for r in recorded.rejected] == ["year-closed"]
    assert (await amend(year, amendment())).record.version == 2


async def test_an_amendment_that_changes_nothing_is_refused(year):
    with pytest.raises(InvalidMessage, match="nothing changed: the corrections give record .* as v1 has it") as refused:
        await amend(year, amendment(scores=[TOAN_2]))
    assert refused.value.reason == "nothing-changed"
    assert await year.repo.record(S1, 2) is None


async def test_an_identity_correction_takes_the_student_as_identity_has_them_now(year):
    """The record is assembled as at the year's close, with identity's snapshot of today."""

    async def corrected_name(refs: list[str], purpose: str) -> list[StudentSnapshot]:
        renamed = snapshot("s1")
        identity = renamed.identity.model_copy(update={"full_name": "Nguyễn Văn Anh"})
        return [renamed.model_copy(update={"identity": identity})]

    amended = await amend(
        replace(year, lookup=corrected_name), amendment(scores=(), reason="identity-correction", note="Sai tên")
    )
    assert amended.changed == ["student"] and amended.corrected == 0
    assert amended.record.document["student"]["identity"]["full_name"] == "Nguyễn Văn Anh"


async def test_when_identity_does_not_answer_the_amendment_is_told_so_and_nothing_is_stored(year):
    async def silent(refs: list[str], purpose: str) -> list[StudentSnapshot]:
        raise NoAnswer("no answer to identity.students.lookup.v1 within 30s")

    with pytest.raises(Unavailable, match="identity did not answer"):
        await amend(replace(year, lookup=silent), amendment())
    assert await year.repo.record(S1, 2) is None


# -- the history ------------------------------------------------------------------------------


async def test_each_correction_is_kept_in_the_entrys_history_with_the_amendments_reason_and_message(year):
    command = principal().signs(amendment())
    await handlers.amend_record(command, year)
    *_, change = (await history(year)).changes
    assert (change.term, change.action, change.revision, change.by) == (2, "changed", 2, "ht-1")
    assert (change.old["final"], change.new["final"]) == ("8.0", "9.5")
    assert change.reason == f"amendment of v1 (grade-correction): {NOTE}"
    assert (change.message_id, change.message) == ("amend-1", "grades.record.amend.v1")
    assert change.at == command.occurred_at


async def test_the_amended_version_is_listed_and_where_it_stands_follows_its_signatures(year):
    record = (await amend(year, amendment())).record

    async def listed() -> tuple[int, str]:
        request = ListRecords(school_code=SCHOOL, school_year=YEAR, student_ref="s1", purpose="x")
        [line] = (await handlers.list_records(principal().signs(request), year)).reply.records
        return line.version, line.status

    assert await listed() == (2, "assembled"), "awaiting its signatures"
    await signed(year, record)
    assert await listed() == (2, "signed-and-sealed")


# -- delivered again --------------------------------------------------------------------------


async def test_a_redelivered_amendment_is_answered_the_same_and_stores_nothing_twice(year):
    command = principal().signs(amendment())
    first = (await handlers.amend_record(command, year)).reply
    again = (await handlers.amend_record(command, year)).reply
    assert again == first
    assert [c.revision for c in (await history(year)).changes if c.term == 2] == [1, 2], "one change"
    assert await year.repo.record(S1, 3) is None
    assert year.metrics.amendments.labels("amended")._value.get() == 1


async def test_an_amendment_interrupted_after_its_version_was_stored_writes_its_corrections_when_delivered_again(year):
    class Failing:
        """The repository, failing the first write of entries (the database went away)."""

        def __init__(self, repo) -> None:
            self.repo, self.failed = repo, False

        def __getattr__(self, name: str):
            return getattr(self.repo, name)

        async def write(self, *args, **kwargs) -> None:
            if not self.failed:
                self.failed = True
                raise TransientError("the database is unavailable")
            await self.repo.write(*args, **kwargs)

    command = principal().signs(amendment())
    with pytest.raises(TransientError):
        await handlers.amend_record(command, replace(year, repo=Failing(year.repo)))
    assert (await year.repo.record(S1, 2)) is not None, "the version claimed its number first"
    answer = (await handlers.amend_record(command, year)).reply
    assert (answer.record.version, answer.corrected) == (2, 1)
    *_, change = (await history(year)).changes
    assert (change.message_id, change.new["final"]) == ("amend-1", "9.5")


async def test_another_amendment_that_took_the_number_meanwhile_makes_this_one_try_again(year):
    """Two amendments of the same version at once: the unique version decides, the other is tried again and then
    refused as not superseding the latest version."""

    class Late:
        def __init__(self, repo) -> None:
            self.repo = repo

        def __getattr__(self, name: str):
            return getattr(self.repo, name)

        async def add_amended(self, record: RecordVersion, message_id: str) -> bool:
            await self.repo.add_amended(record, "amend-other")
            return await self.repo.add_amended(record, message_id)

    with pytest.raises(TransientError, match="was made meanwhile by another amendment"):
        await handlers.amend_record(principal().signs(amendment()), replace(year, repo=Late(year.repo)))
    with pytest.raises(InvalidMessage, match="v2 is the latest"):
        await handlers.amend_record(principal().signs(amendment()), year)
    assert Decimal("9.5") not in [
        Decimal(c.new["final"]) for c in (await history(year)).changes if c.new.get("final")
    ], "the refused amendment wrote no correction"


async def test_a_late_redelivery_after_a_later_amendment_is_answered_as_before_and_undoes_nothing(year):
    command = principal().signs(amendment())
    first = (await handlers.amend_record(command, year)).reply
    await signed(year, first.record)
    later = amendment(message_id="amend-2", supersedes=2, scores=[TOAN_2], reason="clerical-error")
    assert (await amend(year, later)).record.version == 3
    late = (await handlers.amend_record(command, year)).reply
    assert late == first
    assert toan_term_2(await year.repo.record(S1, None))["final"] == "8.0"
    *_, last = (await history(year)).changes
    assert (last.message_id, last.new["final"]) == ("amend-2", "8.0"), "the later correction stands"


async def test_another_amendment_under_a_message_id_already_used_is_refused_and_writes_nothing(year):
    await amend(year, amendment())
    other = amendment(scores=[scored("s1", "Toán", 1, ["1.0"] * 4, "1.0", "1.0")])
    with pytest.raises(InvalidMessage, match="message amend-1 made record .* v2 with other corrections") as refused:
        await amend(year, other)
    assert refused.value.reason == "other-amendment"
    assert [c.revision for c in (await history(year)).changes if c.term == 1] == [1], "term I's Toán as entered"
