"""identity's use cases with the in-memory repository (sealed documents), a key ring in a file, real actor tokens
(one for each message), and grades asking with its own certificate."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import date
from typing import TypeVar

import pytest

from hocba.staff import Person
from services.identity import handlers
from services.identity.repository import seal
from shared.auth import ServiceIdentity, Unauthenticated
from shared.contracts.access import AccessLog, ListIdentityAccesses
from shared.contracts.base import Acting, derived_id
from shared.contracts.identity import (
    Enrolment,
    FindStudents,
    KeyRotationProgress,
    LookupStudents,
    RegisterStudents,
    RegistrationReport,
    RotateIdentityKey,
    StudentMatches,
    StudentSnapshots,
    StudentsRegistered,
)
from shared.errors import Forbidden, TransientError
from shared.outcome import Outcome, RejectedPart
from tests.unit.grades.builders import (
    homeroom_teacher,
    operator,
    person,
    principal,
    school_admin,
    service_pki,
    subject_teacher,
)

from .builders import retire_older_keys, row
from .conftest import NOW

M = TypeVar("M")

OTHER_SCHOOL = "79000702"


async def register(deps, *rows, actor: Person | None = None, message_id: str = "r1") -> Outcome:
    command = (actor or school_admin()).signs(RegisterStudents(message_id=message_id, students=list(rows)))
    return await handlers.register_students(command, deps)


async def lookup(deps, grades, refs: list[str], purpose: str = "") -> StudentSnapshots:
    """grades, asking with its own certificate, for these students."""
    outcome = await handlers.lookup_students(grades.signs(LookupStudents(student_refs=refs, purpose=purpose)), deps)
    return reply(outcome, StudentSnapshots)


async def find(deps, reader: Person, personal_ids: list[str], purpose: str = "") -> StudentMatches:
    outcome = await handlers.find_students(reader.signs(FindStudents(personal_ids=personal_ids, purpose=purpose)), deps)
    return reply(outcome, StudentMatches)


def report(outcome: Outcome) -> RegistrationReport:
    assert isinstance(outcome.reply, RegistrationReport)
    return outcome.reply


def registered(outcome: Outcome) -> StudentsRegistered | None:
    """The StudentsRegistered the outcome publishes, if any."""
    found = [m for m in outcome.publish if isinstance(m, StudentsRegistered)]
    assert len(found) <= 1
    return found[0] if found else None


def reply(outcome: Outcome, kind: type[M]) -> M:
    assert isinstance(outcome.reply, kind)
    return outcome.reply


def sample(registry, name: str, labels: dict | None = None) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


# --- registering -----------------------------------------------------------------------------


async def test_each_row_is_reported_and_a_second_import_changes_nothing(deps, repo, registry):
    rows = [
        row("079214000001"),
        row("079314000002"),  # female digit for a male
        row("079214000001"),  # twice in the roster
        row("003214000003"),  # unknown province
        row("079214000004", name=" "),
        row("079226000005", born=date(2026, 3, 1)),  # born in the future
        row("079214000006", school="79000999"),  # another school
    ]
    first = await register(deps, *rows)
    assert report(first).new == 1
    assert [(r.index, r.code) for r in report(first).rejected] == [
        (1, "century-sex"),
        (2, "duplicate"),
        (3, "province"),
        (4, "name"),
        (5, "date-of-birth"),
        (6, "forbidden"),
    ]
    assert "same personal ID as row 0" in report(first).rejected[1].reason
    assert first.rejected[0].reason == "forbidden" and first.rejected[0].items == [rows[6]]
    assert sample(registry, "hocba_students_registered_total") == 1
    assert sample(registry, "hocba_students_rejected_total", {"reason": "forbidden"}) == 1

    again = await register(deps, *rows, message_id="r2")
    assert (report(again).new, report(again).unchanged, report(again).enrolled) == (0, 1, 0)
    stored = await repo.find([r.identity.personal_id for r in rows])
    assert list(stored) == ["079214000001"]
    assert [s.student_ref for s in registered(again).students] == [stored["079214000001"].ref]
    assert sample(registry, "hocba_students_registered_total") == 1


async def test_rows_the_sender_may_not_register_are_dead_lettered_invalid_ones_answered_and_the_rest_announced(deps):
    rows = [row("079214000001"), row("079314000002"), row("079214000006", school="79000999"), row("003214000003")]
    command = school_admin().signs(RegisterStudents(message_id="r1", students=rows))
    outcome = await handlers.register_students(command, deps)
    assert outcome.rejected == [
        RejectedPart("students", [rows[2]], "forbidden", "row 2: admin-1 registers for school 79000701, not 79000999"),
    ], "a school's mistakes in a roster are answered, not dead-lettered"
    assert [(r.index, r.reason) for r in report(outcome).rejected] == [
        (1, "personal ID: digit 4 must encode the sex and the century of the date of birth"),
        (2, "admin-1 registers for school 79000701, not 79000999"),
        (3, "personal ID: digits 1-3 must be a known province code"),
    ]
    [event] = outcome.publish
    assert event.message_id == derived_id("r1", "registered")
    assert event.by == Acting(subject="admin-1", roles=["school_admin"], school_code="79000701")
    assert event.actor is None, "an event says who acted; it carries no token"
    assert [s.enrolment for s in event.students] == [rows[0].enrolment]
    assert report(outcome).source_message_id == "r1"


async def test_a_roster_with_no_row_to_register_announces_nothing(deps):
    outcome = await register(deps, row("079314000002"))
    assert not outcome.publish and [r.code for r in report(outcome).rejected] == ["century-sex"]


async def test_a_known_student_with_other_details_is_a_conflict_and_a_new_year_adds_an_enrolment(deps, repo):
    await register(deps, row("079214000001"))
    conflict = await register(deps, row("079214000001", name="Nguyễn Văn Ân"), message_id="r2")
    assert [(r.code, r.reason) for r in report(conflict).rejected] == [
        ("conflict", "conflict with a registered student: a transfer between schools goes through an operator")
    ]
    assert conflict.rejected == [], "answered, not dead-lettered"
    next_year = await register(deps, row("079214000001", year="2026-2027"), message_id="r3")
    assert report(next_year).enrolled == 1
    stored = (await repo.find(["079214000001"]))["079214000001"]
    assert stored.identity.full_name == "Nguyễn Văn An"
    assert [e.school_year for e in stored.enrolments] == ["2025-2026", "2026-2027"]


async def test_only_a_schools_administrator_or_principal_registers(deps, repo):
    with pytest.raises(Forbidden, match="may not register"):
        await register(deps, row("079214000001"), actor=homeroom_teacher())
    with pytest.raises(Forbidden, match="may not register"):
        await register(deps, row("079214000001"), actor=operator())
    with pytest.raises(Unauthenticated):
        await handlers.register_students(RegisterStudents(students=[row("079214000001")]), deps)
    assert await repo.find(["079214000001"]) == {}
    by_principal = await register(deps, row("079214000001"), actor=principal(), message_id="r2")
    assert report(by_principal).new == 1


class RegisteredMeanwhile:
    """A repository where another message registers the same new students just before they are stored."""

    def __init__(self, repo) -> None:
        self.repo = repo

    def __getattr__(self, name: str):
        return getattr(self.repo, name)

    async def add_new(self, students, at):
        await self.repo.add_new(
            [(f"other-{n}", identity, enrolment) for n, (_, identity, enrolment) in enumerate(students)], at
        )
        return await self.repo.add_new(students, at)


async def test_students_registered_meanwhile_by_another_message_make_the_roster_try_again(deps, repo):
    rows = [row("079214000001"), row("079214000002")]
    with pytest.raises(TransientError, match="registered concurrently"):
        await register(replace(deps, repo=RegisteredMeanwhile(repo)), *rows)
    again = await register(deps, *rows)
    assert (report(again).new, report(again).unchanged) == (0, 2)
    assert [s.student_ref for s in registered(again).students] == ["other-0", "other-1"]


def test_nothing_personal_is_sealed_in_clear(vault):
    identity = row("079214000001").identity
    sealed = json.dumps(seal(vault, "ref-1", identity), ensure_ascii=False)
    for plain in ("079214000001", "Nguyễn", "2014-09-05"):
        assert plain not in sealed
    assert json.loads(sealed)["key_id"] == vault.current



# --- what a school is told, and what it is not ----------------------------------------------------


async def test_attack_a_conflict_from_another_school_says_nothing_of_which_fields_differ(deps, repo):
    """Reproduction (issue 9, item 6): another school registered a known personal ID with guessed details and was
    told which fields differed; it learned the date of birth, then the name, then got an enrolment."""
    await register(deps, row("079214000001", name="Nguyễn Văn An", born=date(2014, 9, 5)))
    other = school_admin(OTHER_SCHOOL)
    guesses = [
        row("079214000001", name="Nguyễn Văn An", born=date(2014, 1, 1), school=OTHER_SCHOOL),  # wrong birth date
        row("079214000001", name="Trần Văn Bình", born=date(2014, 9, 5), school=OTHER_SCHOOL),  # wrong name
        row("079214000001", name="Nguyễn Văn An", born=date(2014, 9, 5), school=OTHER_SCHOOL),  # everything right
    ]
    answers = [report(await register(deps, guess, actor=other, message_id=f"g{n}")) for n, guess in enumerate(guesses)]
    assert {(a.new, a.enrolled, a.unchanged) for a in answers} == {(0, 0, 0)}, "no guess enrols the student"
    said = {(r.code, r.reason) for a in answers for r in a.rejected}
    assert said == {
        ("conflict", "conflict with a registered student: a transfer between schools goes through an operator")
    }, "every guess is answered the same: nothing tells which field was wrong, or that none was"
    stored = (await repo.find(["079214000001"]))["079214000001"]
    assert [e.school_code for e in stored.enrolments] == ["79000701"]
    assert (await find(deps, other, ["079214000001"])).students == [], "the other school still sees nothing"


async def test_attack_the_logged_reasons_of_invalid_rows_name_no_personal_data(deps, caplog):
    """Reproduction (issue 9, item 6): the reasons of refused rows, which go to the answer and the logs (and then
    to the dead-letter header), quoted digits of the personal ID and the birth year."""
    rows = [
        row("079314123456", name="Lê Thị Hồng", born=date(2013, 2, 7)),  # female digit, wrong year
        row("003213765432", name="Phạm Minh Khôi", born=date(2013, 2, 7)),  # unknown province
        row("0792131234", name="Võ Gia Huy"),  # too short
        row("079226111111", name="Đặng Thu Trang", born=date(2026, 3, 1)),  # born in the future
    ]
    with caplog.at_level(logging.INFO, logger="hocba.identity"):
        outcome = await register(deps, *rows)
    [logged] = [r.getMessage() for r in caplog.records if "roster row(s) rejected" in r.getMessage()]
    said = logged + " ".join(r.reason for r in report(outcome).rejected)
    assert "personal ID: digit 4 must encode the sex and the century" in said
    for r in rows:
        ident = r.identity
        values = [ident.personal_id, ident.date_of_birth.isoformat(), str(ident.date_of_birth.year)]
        values += ident.full_name.split()
        assert not [v for v in values if v in said], said
        digits = [ident.personal_id[:3], ident.personal_id[3], ident.personal_id[4:6]]
        assert not [d for d in digits if f"'{d}'" in said], "no digit of a personal ID is quoted"


# --- look-ups by reference: grades' alone ----------------------------------------------------------


async def test_grades_looks_students_up_by_reference_and_each_answer_is_logged_with_its_purpose(deps, grades, registry):
    event = registered(await register(deps, row("079214000001")))
    ref = event.students[0].student_ref
    snapshots = await lookup(deps, grades, [ref, "unknown"], purpose="assembling the 2025-2026 records")
    assert [(s.student_ref, s.identity.personal_id) for s in snapshots.students] == [(ref, "079214000001")]
    assert snapshots.missing == ["unknown"]
    assert sample(registry, "hocba_student_lookups_total") == 1
    [entry] = await deps.access_log.of(ref, 10)
    assert (entry.service, entry.subject, entry.roles, entry.action) == (
        "identity", "svc-grades", ["service"], "lookup"
    )
    assert (entry.student_ref, entry.purpose, entry.at) == (ref, "assembling the 2025-2026 records", NOW)
    assert sample(registry, "hocba_personal_data_reads_total", {"role": "service"}) == 1


@pytest.mark.parametrize(
    ("asker", "refusal"),
    [
        (None, Unauthenticated),
        (school_admin(), Forbidden),
        (principal(), Forbidden),
        (operator(), Forbidden),
        (subject_teacher(), Forbidden),
    ],
    ids=["no-token", "school-admin", "principal", "operator", "teacher"],
)
async def test_attack_a_lookup_without_a_token_or_with_a_persons_token_is_refused(deps, asker, refusal):
    """Reproduction (issue 9, item 3): `identity.students.lookup.v1` with no token (or anyone's) returned a student's
    personal ID, name, date of birth and guardian."""
    ref = registered(await register(deps, row("079214000001"))).students[0].student_ref
    request = LookupStudents(student_refs=[ref])
    with pytest.raises(refusal) as refused:
        await handlers.lookup_students(asker.signs(request) if asker else request, deps)
    assert refusal is Unauthenticated or "only the grades service" in str(refused.value)
    assert await deps.access_log.of(ref, 10) == [], "nothing was read"


async def test_a_service_token_of_another_certificate_is_not_grades(deps, pki, tmp_path):
    ref = registered(await register(deps, row("079214000001"))).students[0].student_ref
    archive = ServiceIdentity("archive", lambda: pki.signer("archive"))
    with pytest.raises(Unauthenticated, match="not a service certificate"):
        await handlers.lookup_students(archive.signs(LookupStudents(student_refs=[ref])), deps)
    elsewhere = service_pki(tmp_path)
    posing = ServiceIdentity("grades", lambda: elsewhere.signer("svc-grades"))
    with pytest.raises(Unauthenticated, match="not trusted"):
        await handlers.lookup_students(posing.signs(LookupStudents(student_refs=[ref])), deps)


# --- finding by personal ID: a school's staff, operators ---------------------------------------------


async def test_find_by_personal_id_shows_a_schools_own_students_and_everything_to_an_operator(deps, registry):
    await register(deps, row("079214000001"))
    await register(deps, row("079214000002", school=OTHER_SCHOOL), actor=school_admin(OTHER_SCHOOL), message_id="r2")
    ask = ["079214000001", "079214000002", "079214000009"]
    mine = await find(deps, school_admin(), ask)
    assert [s.identity.personal_id for s in mine.students] == ["079214000001"]
    assert mine.missing == ["079214000002", "079214000009"]
    assert [s.identity.personal_id for s in (await find(deps, homeroom_teacher(), ask)).students] == ["079214000001"]
    everyone = await find(deps, operator(), ask)
    assert {s.identity.personal_id for s in everyone.students} == {"079214000001", "079214000002"}
    assert sample(registry, "hocba_student_finds_total", {"outcome": "found"}) == 4
    assert sample(registry, "hocba_student_finds_total", {"outcome": "missing"}) == 5


async def test_a_find_shows_the_enrolments_the_reader_may_see_for_an_import_to_check_its_rows(deps, repo):
    await register(deps, row("079214000001"))
    await register(deps, row("079214000001", year="2026-2027"), message_id="r2")
    ref = (await repo.find(["079214000001"]))["079214000001"].ref
    elsewhere = Enrolment(school_code=OTHER_SCHOOL, school_year="2027-2028", grade=8, class_name="8A1")
    await repo.add_enrolment(ref, elsewhere)  # a transfer an operator made
    mine = await find(deps, school_admin(), ["079214000001"])
    assert {(e.student_ref, e.enrolment.school_year) for e in mine.enrolments} == {
        (ref, "2025-2026"),
        (ref, "2026-2027"),
    }, "a school's staff see their school's enrolments, not where the student went"
    everything = await find(deps, operator(), ["079214000001"])
    assert {e.enrolment.school_code for e in everything.enrolments} == {"79000701", OTHER_SCHOOL}


async def test_each_student_found_is_logged_with_who_and_why(deps, registry):
    ref = registered(await register(deps, row("079214000001"))).students[0].student_ref
    await find(deps, school_admin(), ["079214000001", "079214000009"], purpose="xác nhận hồ sơ chuyển cấp")
    await find(deps, school_admin(OTHER_SCHOOL), ["079214000001"], purpose="tò mò")
    [entry] = await deps.access_log.of(ref, 10)
    assert (entry.subject, entry.roles, entry.school_code, entry.action, entry.purpose) == (
        "admin-1", ["school_admin"], "79000701", "find", "xác nhận hồ sơ chuyển cấp"
    ), "the other school saw nothing, and nothing of theirs is logged as a read"
    assert sample(registry, "hocba_personal_data_reads_total", {"role": "school_admin"}) == 1


async def test_a_find_without_a_valid_token_is_refused(deps, registry):
    with pytest.raises(Unauthenticated, match="no actor token"):
        await handlers.find_students(FindStudents(personal_ids=["079214000001"]), deps)
    assert sample(registry, "hocba_student_finds_total", {"outcome": "missing"}) == 0


async def test_attack_a_school_administrators_token_lifted_from_a_command_finds_nobody(deps):
    """Reproduction (issue 9, item 4): a school administrator's token, taken from a StudentsRegistered event on the
    broker and put on a look-up, returned the student."""
    command = school_admin().signs(RegisterStudents(message_id="r1", students=[row("079214000001")]))
    outcome = await handlers.register_students(command, deps)
    event = registered(outcome)
    assert event.actor is None and "eyJ" not in event.model_dump_json(), "the event carries no token to lift"
    lifted = FindStudents(personal_ids=["079214000001"], actor=command.actor)
    with pytest.raises(Unauthenticated, match="msg"):
        await handlers.find_students(lifted, deps)
    assert await deps.access_log.of(event.students[0].student_ref, 10) == []


async def test_a_grades_service_token_finds_nobody_by_personal_id(deps, grades):
    await register(deps, row("079214000001"))
    with pytest.raises(Forbidden, match="may not find students"):
        await handlers.find_students(grades.signs(FindStudents(personal_ids=["079214000001"])), deps)


# --- who read a student ----------------------------------------------------------------------------


async def test_who_read_a_student_is_told_to_operators_and_the_students_school_leaders(deps, grades):
    ref = registered(await register(deps, row("079214000001"))).students[0].student_ref
    await find(deps, homeroom_teacher(), ["079214000001"], purpose="a")
    await lookup(deps, grades, [ref], purpose="b")
    for reader in (operator(), principal(), school_admin()):
        outcome = await handlers.list_accesses(reader.signs(ListIdentityAccesses(student_ref=ref)), deps)
        answer = reply(outcome, AccessLog)
        assert [(e.subject, e.action, e.purpose) for e in answer.entries] == [
            ("gvcn-6A1", "find", "a"), ("svc-grades", "lookup", "b")
        ]
    limited = await handlers.list_accesses(operator().signs(ListIdentityAccesses(student_ref=ref, limit=1)), deps)
    assert [e.purpose for e in reply(limited, AccessLog).entries] == ["a"]
    for reader in (school_admin(OTHER_SCHOOL), homeroom_teacher(), person({"principal"}, OTHER_SCHOOL)):
        with pytest.raises(Forbidden, match="may not see who read"):
            await handlers.list_accesses(reader.signs(ListIdentityAccesses(student_ref=ref)), deps)
    with pytest.raises(Forbidden):
        await handlers.list_accesses(grades.signs(ListIdentityAccesses(student_ref=ref)), deps)
    with pytest.raises(Unauthenticated):
        await handlers.list_accesses(ListIdentityAccesses(student_ref=ref), deps)


# --- key rotation ----------------------------------------------------------------------------


async def test_rotation_re_encrypts_everyone_in_steps_while_lookups_keep_working(deps, repo, vault, registry, grades):
    outcome = await register(deps, *[row(f"0792140{n:05d}") for n in range(7)])
    refs = [s.student_ref for s in registered(outcome).students]
    old_key = vault.current
    seen = []

    async def look_up_while_rotating(event):
        seen.append((event.done, event.total, event.finished))
        # mid-rotation, documents under both keys are read
        assert len((await lookup(deps, grades, refs)).students) == 7

    rotating = replace(deps, rotation=replace(deps.rotation, announce=look_up_while_rotating, per_step=3))
    command = operator().signs(RotateIdentityKey(message_id="rot-1"))
    rotated = await handlers.rotate_key(command, rotating)
    [final] = rotated.publish
    assert rotated.reply == final and isinstance(final, KeyRotationProgress)
    assert final.finished and final.done == 7 and final.total == 7
    assert final.source_message_id == "rot-1" and final.message_id == derived_id("rot-1", "rotation", 7, True)
    assert final.by == Acting(subject="operator-1", roles=["operator"]) and final.actor is None
    assert seen == [(0, 7, False), (3, 7, False), (6, 7, False), (7, 7, False)]
    assert vault.current == final.key_id != old_key
    assert await repo.count_not_under(final.key_id) == 0
    assert sample(registry, "hocba_data_keys") == 2
    assert sample(registry, "hocba_documents_reencrypted_total") == 7
    assert sample(registry, "hocba_data_key_rotations_total") == 1

    again = await handlers.rotate_key(command, rotating)
    assert again.reply.key_id == final.key_id and again.reply.done == 0, "a redelivered rotation adds no second key"
    assert sample(registry, "hocba_data_keys") == 2

    retire_older_keys(vault)
    assert len((await lookup(deps, grades, refs)).students) == 7, "every field of every student is under the new key"


async def test_progress_is_announced_while_the_rotation_runs(deps, announced):
    await register(deps, *[row(f"0792140{n:05d}") for n in range(3)])
    rotated = await handlers.rotate_key(
        operator().signs(RotateIdentityKey(message_id="rot-1")), replace(deps, rotation=replace(deps.rotation, per_step=2))
    )
    assert [(p.done, p.total, p.finished) for p in announced] == [(0, 3, False), (2, 3, False), (3, 3, False)]
    assert [(p.done, p.finished) for p in rotated.publish] == [(3, True)]
    assert len({p.message_id for p in [*announced, *rotated.publish]}) == 4
    assert all(p.actor is None for p in [*announced, *rotated.publish])


async def test_only_an_operator_rotates_keys(deps, vault, announced):
    key = vault.current
    with pytest.raises(Forbidden, match="operators do"):
        await handlers.rotate_key(school_admin().signs(RotateIdentityKey()), deps)
    with pytest.raises(Unauthenticated):
        await handlers.rotate_key(RotateIdentityKey(), deps)
    assert vault.current == key and announced == []
