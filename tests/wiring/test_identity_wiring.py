"""identity's app on the wire: routing, contracts, replies, error answers, dead letters, metrics."""

from __future__ import annotations

import pytest

from services.identity.app import build_app
from services.identity.repository import InMemoryStudentRepository
from services.identity.vault import Vault
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
from shared.errors import Refused
from shared.messaging import ERROR_HEADER, REASON_HEADER
from tests.unit.grades.builders import KEYS, school_admin, token
from tests.unit.identity.builders import retire_older_keys, row
from tests.wiring.conftest import dead_letters, probe

OPERATOR = token({"operator"}, "")


@pytest.fixture
def vault(tmp_path) -> Vault:
    return Vault.at(tmp_path / "keys" / "ring.json")


@pytest.fixture
def service(settings, vault):
    return build_app(settings, repository=InMemoryStudentRepository(vault), vault=vault, issuer_keys=KEYS)


def refused(service, message: type, reason: str) -> float | None:
    queue = service.topology.queue_name(message.ROUTING_KEY)
    return service.registry.get_sample_value("hocba_messages_refused_total", {"queue": queue, "reason": reason})


async def test_register_publishes_refs_not_personal_ids(service, wired):
    seen = probe(service, StudentsRegistered)
    async with wired(service) as wire:
        await wire.send(RegisterStudents(students=[row("079214000123"), row("079214000124")], actor=school_admin()))
        found = await wire.request(
            FindStudents(personal_ids=["079214000123", "079214000124"], actor=school_admin()), StudentMatches
        )
    assert len(found.students) == 2
    assert len(seen) == 1, "StudentsRegistered was not published once"
    event = seen[0]
    assert {s.student_ref for s in event.students} == {s.student_ref for s in found.students}
    assert "079214000123" not in event.model_dump_json()


async def test_invalid_and_forbidden_rows_are_dead_lettered_with_reasons_and_counted(service, wired):
    dead = dead_letters(service, RegisterStudents)
    rows = [row("079214000123"), row("079314000999"), row("079214000125", school="79000999")]
    async with wired(service) as wire:
        await wire.send(RegisterStudents(students=rows, actor=school_admin()))
        await wire.send(RegisterStudents(students=rows))
        found = await wire.request(
            FindStudents(personal_ids=[r.identity.personal_id for r in rows], actor=OPERATOR), StudentMatches
        )
    assert [s.identity.personal_id for s in found.students] == ["079214000123"]
    assert [h[REASON_HEADER] for _, h in dead] == ["forbidden", "invalid", "unauthenticated"]
    assert [s["identity"]["personal_id"] for s in dead[0][0]["students"]] == ["079214000125"]
    assert [s["identity"]["personal_id"] for s in dead[1][0]["students"]] == ["079314000999"]
    assert "row 1: digit 4 is '3'" in dead[1][1][ERROR_HEADER]
    assert len(dead[2][0]["students"]) == 3
    assert service.registry.get_sample_value("hocba_students_rejected_total", {"reason": "century-sex"}) == 1
    assert service.registry.get_sample_value("hocba_students_rejected_total", {"reason": "forbidden"}) == 1
    assert refused(service, RegisterStudents, "unauthenticated") == 1
    assert refused(service, RegisterStudents, "forbidden") is None, "a refused row is not a refused message"


async def test_a_requested_registration_is_answered_with_its_report(service, wired):
    dead_letters(service, RegisterStudents)
    command = RegisterStudents(students=[row("079214000123"), row("079314000999")], actor=school_admin())
    async with wired(service) as wire:
        report = await wire.request(command, RegistrationReport)
    assert report.source_message_id == command.message_id and report.error is None
    assert report.new == 1 and [(r.index, r.code) for r in report.rejected] == [(1, "century-sex")]


async def test_lookups_by_ref_and_by_personal_id(service, wired):
    seen = probe(service, StudentsRegistered)
    async with wired(service) as wire:
        await wire.send(RegisterStudents(students=[row("079214000123")], actor=school_admin()))
        ref = seen[0].students[0].student_ref
        snapshots = await wire.request(LookupStudents(student_refs=[ref, "unknown"]), StudentSnapshots)
        matches = await wire.request(
            FindStudents(personal_ids=["079214000123", "079214000999"], actor=school_admin()), StudentMatches
        )
    assert [(s.student_ref, s.identity.personal_id) for s in snapshots.students] == [(ref, "079214000123")]
    assert snapshots.missing == ["unknown"]
    assert [s.student_ref for s in matches.students] == [ref] and matches.missing == ["079214000999"]


async def test_a_find_without_a_valid_token_is_refused_and_counted(service, wired):
    dead = dead_letters(service, FindStudents)
    async with wired(service) as wire:
        await wire.send(FindStudents(personal_ids=["079214000123"]))
    assert [h[REASON_HEADER] for _, h in dead] == ["unauthenticated"]
    assert "no actor token" in dead[0][1][ERROR_HEADER]
    assert refused(service, FindStudents, "unauthenticated") == 1


async def test_a_find_asked_without_a_valid_token_is_answered_with_the_refusal_and_not_dead_lettered(service, wired):
    dead = dead_letters(service, FindStudents)
    async with wired(service) as wire:
        with pytest.raises(Refused, match="no actor token") as answer:
            await wire.request(FindStudents(personal_ids=["079214000123"]), StudentMatches)
    assert answer.value.reason == "unauthenticated"
    assert dead == []
    assert refused(service, FindStudents, "unauthenticated") == 1


async def test_a_key_rotation_reports_progress_and_re_encrypts_every_student(service, vault, wired):
    progress = probe(service, KeyRotationProgress)
    seen = probe(service, StudentsRegistered)
    async with wired(service) as wire:
        await wire.send(RegisterStudents(students=[row("079214000123")], actor=school_admin()))
        await wire.send(RotateIdentityKey(actor=OPERATOR))
        retire_older_keys(vault)
        ref = seen[0].students[0].student_ref
        snapshots = await wire.request(LookupStudents(student_refs=[ref]), StudentSnapshots)
    assert [(p.done, p.total, p.finished) for p in progress] == [(0, 1, False), (1, 1, False), (1, 1, True)]
    assert vault.current == progress[-1].key_id
    assert [s.identity.personal_id for s in snapshots.students] == ["079214000123"]
    assert service.registry.get_sample_value("hocba_identity_keys") == 2


async def test_a_key_rotation_by_anyone_but_an_operator_is_refused_and_counted(service, vault, wired):
    dead = dead_letters(service, RotateIdentityKey)
    progress = probe(service, KeyRotationProgress)
    key = vault.current
    async with wired(service) as wire:
        await wire.send(RotateIdentityKey(actor=school_admin()))
    assert [h[REASON_HEADER] for _, h in dead] == ["forbidden"]
    assert "operators do" in dead[0][1][ERROR_HEADER]
    assert progress == [] and vault.current == key
    assert refused(service, RotateIdentityKey, "forbidden") == 1
