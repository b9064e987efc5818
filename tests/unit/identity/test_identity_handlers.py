"""identity's use cases with the in-memory repository (sealed documents) and real actor tokens."""

from __future__ import annotations

import json
from datetime import date

import pytest
from prometheus_client import CollectorRegistry

from services.identity import handlers
from services.identity.metrics import IdentityMetrics
from services.identity.repository import InMemoryStudentRepository
from services.identity.vault import Vault
from shared.auth import Unauthenticated
from shared.contracts.identity import (
    Enrolment,
    FindStudents,
    LookupStudents,
    RegisterStudents,
    RotateIdentityKey,
    StudentIdentity,
    StudentRegistration,
)
from shared.errors import Forbidden
from tests.unit.grades.builders import KEYS, SCHOOL, homeroom_teacher, school_admin, token

TODAY = date(2026, 1, 15)


def row(personal_id: str, name: str = "Nguyễn Văn An", sex: str = "M", school: str = SCHOOL, year: str = "2025-2026",
        born: date = date(2014, 9, 5)) -> StudentRegistration:
    return StudentRegistration(
        identity=StudentIdentity(personal_id=personal_id, full_name=name, date_of_birth=born, sex=sex),
        enrolment=Enrolment(school_code=school, school_year=year, grade=6, class_name="6A1"),
    )


@pytest.fixture
def metrics() -> IdentityMetrics:
    return IdentityMetrics(CollectorRegistry())


@pytest.fixture
def repo() -> InMemoryStudentRepository:
    return InMemoryStudentRepository(Vault.ephemeral())


async def register(repo, metrics, *rows, actor: str | None = None, message_id: str = "r1"):
    command = RegisterStudents(message_id=message_id, students=list(rows), actor=actor or school_admin())
    return await handlers.register_students(command, repo, metrics, KEYS, today=TODAY)


async def test_each_row_is_reported_and_a_second_import_changes_nothing(repo, metrics):
    rows = [
        row("079214000001"),
        row("079314000002"),  # female digit for a male
        row("079214000001"),  # twice in the roster
        row("003214000003"),  # unknown province
        row("079214000004", name=" "),
        row("079226000005", born=date(2026, 3, 1)),  # born in the future
        row("079214000006", school="79000999"),  # another school
    ]
    first = await register(repo, metrics, *rows)
    assert first.report.new == 1
    assert [(r.index, r.code) for r in first.report.rejected] == [
        (1, "century-sex"), (2, "duplicate"), (3, "province"), (4, "name"), (5, "date-of-birth"), (6, "forbidden")
    ]
    assert "same personal ID as row 0" in first.report.rejected[1].reason
    assert first.rejected[-1].forbidden
    again = await register(repo, metrics, *rows, message_id="r2")
    assert (again.report.new, again.report.unchanged, again.report.enrolled) == (0, 1, 0)
    assert len(repo.docs) == 1
    assert again.event is not None and again.event.students[0].student_ref == next(iter(repo.docs))


async def test_a_known_student_with_other_details_is_a_conflict_and_a_new_year_adds_an_enrolment(repo, metrics):
    await register(repo, metrics, row("079214000001"))
    conflict = await register(repo, metrics, row("079214000001", name="Nguyễn Văn Ân"), message_id="r2")
    assert [(r.code, r.reason) for r in conflict.report.rejected] == [
        ("conflict", "conflict: already registered with a different full_name")
    ]
    next_year = await register(repo, metrics, row("079214000001", year="2026-2027"), message_id="r3")
    assert next_year.report.enrolled == 1
    [(identity, enrolments)] = repo.by_ref.values()
    assert identity.full_name == "Nguyễn Văn An" and [e.school_year for e in enrolments] == ["2025-2026", "2026-2027"]


async def test_only_a_schools_administrator_or_principal_registers(repo, metrics):
    with pytest.raises(Forbidden, match="may not register"):
        await register(repo, metrics, row("079214000001"), actor=homeroom_teacher())
    with pytest.raises(Unauthenticated):
        await handlers.register_students(RegisterStudents(students=[row("079214000001")]), repo, metrics, KEYS)
    assert repo.docs == {}


async def test_nothing_personal_is_stored_in_clear(repo, metrics):
    await register(repo, metrics, row("079214000001"))
    raw = json.dumps(repo.docs, default=str, ensure_ascii=False)
    for plain in ("079214000001", "Nguyễn", "2014-09-05"):
        assert plain not in raw


async def test_find_by_personal_id_shows_a_schools_own_students_and_everything_to_an_operator(repo, metrics):
    await register(repo, metrics, row("079214000001"))
    await register(repo, metrics, row("079214000002", school="79000702"), actor=school_admin("79000702"), message_id="r2")
    ask = ["079214000001", "079214000002", "079214000009"]
    mine = await handlers.find_students(FindStudents(personal_ids=ask, actor=school_admin()), repo, metrics, KEYS)
    assert [s.identity.personal_id for s in mine.students] == ["079214000001"]
    assert mine.missing == ["079214000002", "079214000009"]
    operator = token({"operator"}, "")
    everyone = await handlers.find_students(FindStudents(personal_ids=ask, actor=operator), repo, metrics, KEYS)
    assert {s.identity.personal_id for s in everyone.students} == {"079214000001", "079214000002"}
    refused = await handlers.find_students(FindStudents(personal_ids=ask), repo, metrics, KEYS)
    assert refused.students == [] and "no actor token" in refused.error


async def test_rotation_re_encrypts_everyone_in_steps_while_lookups_keep_working(repo, metrics):
    rows = [row(f"0792140{n:05d}") for n in range(7)]
    outcome = await register(repo, metrics, *rows)
    refs = [s.student_ref for s in outcome.event.students]
    old_key = repo.vault.current
    seen = []

    async def progress(event):
        seen.append((event.done, event.total))
        # mid-rotation, documents under both keys are read
        found = await handlers.lookup_students(LookupStudents(student_refs=refs), repo, metrics)
        assert len(found.students) == 7

    command = RotateIdentityKey(message_id="rot-1", actor=token({"operator"}, ""))
    final = await handlers.rotate_key(command, repo, repo.vault, metrics, KEYS, progress, step=3)
    assert final.finished and final.done == 7 and final.total == 7
    assert seen == [(0, 7), (3, 7), (6, 7), (7, 7)]
    assert repo.vault.current == final.key_id != old_key
    assert {d["key_id"] for d in repo.docs.values()} == {final.key_id}
    assert all(v["k"] == final.key_id for d in repo.docs.values() for v in d["pii"].values())
    again = await handlers.rotate_key(command, repo, repo.vault, metrics, KEYS, progress, step=3)
    assert again.key_id == final.key_id and again.done == 0, "a redelivered rotation adds no second key"
    with pytest.raises(Forbidden, match="operators do"):
        await handlers.rotate_key(RotateIdentityKey(actor=school_admin()), repo, repo.vault, metrics, KEYS, progress)
