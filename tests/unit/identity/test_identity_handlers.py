"""identity's use cases with the in-memory repository (sealed documents), a key ring in a file and real actor tokens."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from typing import TypeVar

import pytest

from services.identity import handlers
from services.identity.repository import seal
from shared.auth import Unauthenticated
from shared.contracts.base import derived_id
from shared.contracts.identity import (
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
from tests.unit.grades.builders import homeroom_teacher, school_admin, token

from .builders import retire_older_keys, row

M = TypeVar("M")

OPERATOR = token({"operator"}, "")


async def register(deps, *rows, actor: str | None = None, message_id: str = "r1") -> Outcome:
    command = RegisterStudents(message_id=message_id, students=list(rows), actor=actor or school_admin())
    return await handlers.register_students(command, deps)


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


async def test_refused_rows_are_dead_lettered_apart_forbidden_then_invalid_and_the_rest_is_announced(deps):
    rows = [row("079214000001"), row("079314000002"), row("079214000006", school="79000999"), row("003214000003")]
    command = RegisterStudents(message_id="r1", students=rows, actor=school_admin())
    outcome = await handlers.register_students(command, deps)
    assert outcome.rejected == [
        RejectedPart("students", [rows[2]], "forbidden", "row 2: admin-1 registers for school 79000701, not 79000999"),
        RejectedPart(
            "students",
            [rows[1], rows[3]],
            "invalid",
            "row 1: digit 4 is '3' but a male born in 2014 has '2'; row 3: digits 1-3 '003' are not a known province code",
        ),
    ]
    [event] = outcome.publish
    assert event.message_id == derived_id("r1", "registered") and event.actor == command.actor
    assert [s.enrolment for s in event.students] == [rows[0].enrolment]
    assert report(outcome).source_message_id == "r1"


async def test_a_roster_with_no_row_to_register_announces_nothing(deps):
    outcome = await register(deps, row("079314000002"))
    assert not outcome.publish and [r.code for r in report(outcome).rejected] == ["century-sex"]


async def test_a_known_student_with_other_details_is_a_conflict_and_a_new_year_adds_an_enrolment(deps, repo):
    await register(deps, row("079214000001"))
    conflict = await register(deps, row("079214000001", name="Nguyễn Văn Ân"), message_id="r2")
    assert [(r.code, r.reason) for r in report(conflict).rejected] == [
        ("conflict", "conflict: already registered with a different full_name")
    ]
    assert [p.reason for p in conflict.rejected] == ["invalid"]
    next_year = await register(deps, row("079214000001", year="2026-2027"), message_id="r3")
    assert report(next_year).enrolled == 1
    stored = (await repo.find(["079214000001"]))["079214000001"]
    assert stored.identity.full_name == "Nguyễn Văn An"
    assert [e.school_year for e in stored.enrolments] == ["2025-2026", "2026-2027"]


async def test_only_a_schools_administrator_or_principal_registers(deps, repo):
    with pytest.raises(Forbidden, match="may not register"):
        await register(deps, row("079214000001"), actor=homeroom_teacher())
    with pytest.raises(Unauthenticated):
        await handlers.register_students(RegisterStudents(students=[row("079214000001")]), deps)
    assert await repo.find(["079214000001"]) == {}
    principal = await register(deps, row("079214000001"), actor=token({"principal"}), message_id="r2")
    assert report(principal).new == 1


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


# --- look-ups --------------------------------------------------------------------------------


async def test_lookup_by_reference_answers_the_known_and_lists_the_missing(deps, registry):
    event = registered(await register(deps, row("079214000001")))
    ref = event.students[0].student_ref
    outcome = await handlers.lookup_students(LookupStudents(student_refs=[ref, "unknown"]), deps)
    snapshots = reply(outcome, StudentSnapshots)
    assert [(s.student_ref, s.identity.personal_id) for s in snapshots.students] == [(ref, "079214000001")]
    assert snapshots.missing == ["unknown"] and not outcome.publish
    assert sample(registry, "hocba_student_lookups_total") == 1


async def test_find_by_personal_id_shows_a_schools_own_students_and_everything_to_an_operator(deps, registry):
    await register(deps, row("079214000001"))
    await register(deps, row("079214000002", school="79000702"), actor=school_admin("79000702"), message_id="r2")
    ask = ["079214000001", "079214000002", "079214000009"]
    mine = reply(
        await handlers.find_students(FindStudents(personal_ids=ask, actor=school_admin()), deps), StudentMatches
    )
    assert [s.identity.personal_id for s in mine.students] == ["079214000001"]
    assert mine.missing == ["079214000002", "079214000009"]
    everyone = reply(await handlers.find_students(FindStudents(personal_ids=ask, actor=OPERATOR), deps), StudentMatches)
    assert {s.identity.personal_id for s in everyone.students} == {"079214000001", "079214000002"}
    assert sample(registry, "hocba_student_finds_total", {"outcome": "found"}) == 3
    assert sample(registry, "hocba_student_finds_total", {"outcome": "missing"}) == 3


async def test_a_find_without_a_valid_token_is_refused(deps, registry):
    with pytest.raises(Unauthenticated, match="no actor token"):
        await handlers.find_students(FindStudents(personal_ids=["079214000001"]), deps)
    assert sample(registry, "hocba_student_finds_total", {"outcome": "missing"}) == 0


# --- key rotation ----------------------------------------------------------------------------


async def test_rotation_re_encrypts_everyone_in_steps_while_lookups_keep_working(deps, repo, vault, registry):
    outcome = await register(deps, *[row(f"0792140{n:05d}") for n in range(7)])
    refs = [s.student_ref for s in registered(outcome).students]
    old_key = vault.current
    seen = []

    async def look_up_while_rotating(event):
        seen.append((event.done, event.total, event.finished))
        # mid-rotation, documents under both keys are read
        found = reply(await handlers.lookup_students(LookupStudents(student_refs=refs), deps), StudentSnapshots)
        assert len(found.students) == 7

    rotating = replace(deps, announce=look_up_while_rotating, students_per_rotation_step=3)
    command = RotateIdentityKey(message_id="rot-1", actor=OPERATOR)
    rotated = await handlers.rotate_key(command, rotating)
    [final] = rotated.publish
    assert rotated.reply == final and isinstance(final, KeyRotationProgress)
    assert final.finished and final.done == 7 and final.total == 7
    assert final.source_message_id == "rot-1" and final.message_id == derived_id("rot-1", "rotation", 7, True)
    assert seen == [(0, 7, False), (3, 7, False), (6, 7, False), (7, 7, False)]
    assert vault.current == final.key_id != old_key
    assert await repo.count_not_under(final.key_id) == 0
    assert sample(registry, "hocba_identity_keys") == 2
    assert sample(registry, "hocba_identity_reencrypted_total") == 7
    assert sample(registry, "hocba_identity_key_rotations_total") == 1

    again = await handlers.rotate_key(command, rotating)
    assert again.reply.key_id == final.key_id and again.reply.done == 0, "a redelivered rotation adds no second key"
    assert sample(registry, "hocba_identity_keys") == 2

    retire_older_keys(vault)
    found = reply(await handlers.lookup_students(LookupStudents(student_refs=refs), deps), StudentSnapshots)
    assert len(found.students) == 7, "every field of every student is under the new key"


async def test_progress_is_announced_while_the_rotation_runs(deps, announced):
    await register(deps, *[row(f"0792140{n:05d}") for n in range(3)])
    rotated = await handlers.rotate_key(
        RotateIdentityKey(message_id="rot-1", actor=OPERATOR), replace(deps, students_per_rotation_step=2)
    )
    assert [(p.done, p.total, p.finished) for p in announced] == [(0, 3, False), (2, 3, False), (3, 3, False)]
    assert [(p.done, p.finished) for p in rotated.publish] == [(3, True)]
    assert len({p.message_id for p in [*announced, *rotated.publish]}) == 4


async def test_only_an_operator_rotates_keys(deps, vault, announced):
    key = vault.current
    with pytest.raises(Forbidden, match="operators do"):
        await handlers.rotate_key(RotateIdentityKey(actor=school_admin()), deps)
    with pytest.raises(Unauthenticated):
        await handlers.rotate_key(RotateIdentityKey(), deps)
    assert vault.current == key and announced == []
