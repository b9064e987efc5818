"""identity's app on the wire: routing, contracts, replies, error answers, dead letters, the access log, metrics."""

from __future__ import annotations

import logging

import pytest

from services.identity.app import build_app
from services.identity.repository import InMemoryStudentRepository
from shared.auth import ServiceIdentity
from shared.contracts.access import AccessLog, ListIdentityAccesses
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
from shared.crypto.kek import FileKek
from shared.crypto.pki import DevPki
from shared.crypto.vault import Vault
from shared.errors import Refused
from shared.messaging import ERROR_HEADER, REASON_HEADER
from tests.unit.grades.builders import KEYS, operator, school_admin, service_pki
from tests.unit.identity.builders import grades_asking, retire_older_keys, row
from tests.wiring.conftest import dead_letters, probe


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> DevPki:
    return service_pki(tmp_path_factory.mktemp("identity-wiring-pki"))


@pytest.fixture(scope="module")
def grades(pki: DevPki) -> ServiceIdentity:
    return grades_asking(pki)


@pytest.fixture
def vault(tmp_path) -> Vault:
    return Vault.at(tmp_path / "keys" / "ring.json", FileKek(bytes(32)), "identity")


@pytest.fixture
def service(settings, vault, pki):
    keys = KEYS.for_service("identity", services=pki.trust_store)
    return build_app(settings, repository=InMemoryStudentRepository(vault), vault=vault, issuer_keys=keys)


def refused(service, message: type, reason: str) -> float | None:
    queue = service.topology.queue_name(message.ROUTING_KEY)
    return service.registry.get_sample_value("hocba_messages_refused_total", {"queue": queue, "reason": reason})


def register(*rows, school: str = "79000701") -> RegisterStudents:
    return school_admin(school).signs(RegisterStudents(students=list(rows)))


async def test_register_publishes_refs_and_who_registered_not_personal_ids_or_tokens(service, wired):
    seen = probe(service, StudentsRegistered)
    async with wired(service) as wire:
        await wire.send(register(row("079214000123"), row("079214000124")))
        found = await wire.request(
            school_admin().signs(FindStudents(personal_ids=["079214000123", "079214000124"])), StudentMatches
        )
    assert len(found.students) == 2
    assert len(seen) == 1, "StudentsRegistered was not published once"
    event = seen[0]
    assert {s.student_ref for s in event.students} == {s.student_ref for s in found.students}
    assert "079214000123" not in event.model_dump_json()
    assert event.actor is None and event.by is not None and event.by.subject == "admin-1"


async def test_forbidden_rows_are_dead_lettered_invalid_ones_only_counted(service, wired):
    dead = dead_letters(service, RegisterStudents)
    rows = [row("079214000123"), row("079314000999"), row("079214000125", school="79000999")]
    async with wired(service) as wire:
        await wire.send(register(*rows))
        await wire.send(RegisterStudents(students=rows))
        found = await wire.request(
            operator().signs(FindStudents(personal_ids=[r.identity.personal_id for r in rows])), StudentMatches
        )
    assert [s.identity.personal_id for s in found.students] == ["079214000123"]
    assert [h[REASON_HEADER] for _, h in dead] == ["forbidden", "unauthenticated"]
    assert [s["identity"]["personal_id"] for s in dead[0][0]["students"]] == ["079214000125"]
    assert len(dead[1][0]["students"]) == 3
    assert service.registry.get_sample_value("hocba_students_rejected_total", {"reason": "century-sex"}) == 1
    assert service.registry.get_sample_value("hocba_students_rejected_total", {"reason": "forbidden"}) == 1
    assert refused(service, RegisterStudents, "unauthenticated") == 1
    assert refused(service, RegisterStudents, "forbidden") == 0, "a refused row is not a refused message"


async def test_attack_a_refused_roster_row_leaves_no_personal_data_in_the_log(service, wired, caplog):
    """Reproduction (issue 9, item 6): the `x-hocba-error` header of a refused roster row quoted its personal ID's
    digits and birth year; registration conflicts named the fields that differ. The reasons now go to the log."""
    dead = dead_letters(service, RegisterStudents)
    with caplog.at_level(logging.INFO, logger="hocba.identity"):
        async with wired(service) as wire:
            await wire.send(register(row("079214000123")))
            await wire.send(register(row("079214000123", name="Trần Văn Bình", school="79000702"), school="79000702"))
            await wire.send(register(row("003315000777", name="Lê Văn Cường")))
    assert dead == [], "a school's mistakes are not dead-lettered"
    conflict, invalid = (r.getMessage() for r in caplog.records if "roster row(s) rejected" in r.getMessage())
    assert conflict.endswith(
        "row 0: conflict with a registered student: a transfer between schools goes through an operator"
    )
    assert "full_name" not in conflict and "Nguyễn" not in conflict
    for value in ("003315000777", "'003'", "'3'", "'15'", "2014", "Lê", "Cường"):
        assert value not in invalid, invalid


async def test_a_requested_registration_is_answered_with_its_report(service, wired):
    dead_letters(service, RegisterStudents)
    command = register(row("079214000123"), row("079314000999"))
    async with wired(service) as wire:
        report = await wire.request(command, RegistrationReport)
    assert report.source_message_id == command.message_id and report.error is None
    assert report.new == 1 and [(r.index, r.code) for r in report.rejected] == [(1, "century-sex")]


async def test_grades_looks_up_by_ref_staff_find_by_personal_id_and_both_are_logged(service, wired, grades):
    seen = probe(service, StudentsRegistered)
    async with wired(service) as wire:
        await wire.send(register(row("079214000123")))
        ref = seen[0].students[0].student_ref
        asked = grades.signs(LookupStudents(student_refs=[ref, "unknown"], purpose="records of 2025-2026"))
        snapshots = await wire.request(asked, StudentSnapshots)
        matches = await wire.request(
            school_admin().signs(FindStudents(personal_ids=["079214000123", "079214000999"], purpose="chuyển lớp")),
            StudentMatches,
        )
        log = await wire.request(operator().signs(ListIdentityAccesses(student_ref=ref)), AccessLog)
    assert [(s.student_ref, s.identity.personal_id) for s in snapshots.students] == [(ref, "079214000123")]
    assert snapshots.missing == ["unknown"]
    assert [s.student_ref for s in matches.students] == [ref] and matches.missing == ["079214000999"]
    assert [(e.subject, e.action, e.purpose) for e in log.entries] == [
        ("svc-grades", "lookup", "records of 2025-2026"),
        ("admin-1", "find", "chuyển lớp"),
    ]
    reads = {
        role: service.registry.get_sample_value("hocba_personal_data_reads_total", {"role": role})
        for role in ("service", "school_admin", "operator")
    }
    assert reads == {"service": 1, "school_admin": 1, "operator": 0}


async def test_attack_a_lookup_without_grades_token_is_refused_and_answers_nothing(service, wired):
    """Reproduction (issue 9, item 3): `identity.students.lookup.v1` with no token returned a student's personal ID,
    name, date of birth and guardian; a school administrator's token did as well."""
    seen = probe(service, StudentsRegistered)
    async with wired(service) as wire:
        await wire.send(register(row("079214000123")))
        ref = seen[0].students[0].student_ref
        with pytest.raises(Refused, match="no actor token") as anonymous:
            await wire.request(LookupStudents(student_refs=[ref]), StudentSnapshots)
        with pytest.raises(Refused, match="only the grades service") as a_person:
            await wire.request(school_admin().signs(LookupStudents(student_refs=[ref])), StudentSnapshots)
        log = await wire.request(operator().signs(ListIdentityAccesses(student_ref=ref)), AccessLog)
    assert (anonymous.value.reason, a_person.value.reason) == ("unauthenticated", "forbidden")
    assert log.entries == [], "nobody read the student"
    assert refused(service, LookupStudents, "unauthenticated") == 1
    assert refused(service, LookupStudents, "forbidden") == 1


async def test_attack_a_token_lifted_from_a_registration_finds_nobody(service, wired):
    """Reproduction (issue 9, item 4): a school administrator's token taken off the broker and replayed on a
    look-up returned the student."""
    command = register(row("079214000123"))
    async with wired(service) as wire:
        await wire.send(command)
        with pytest.raises(Refused, match="msg") as replayed:
            await wire.request(FindStudents(personal_ids=["079214000123"], actor=command.actor), StudentMatches)
    assert replayed.value.reason == "unauthenticated"
    assert refused(service, FindStudents, "unauthenticated") == 1


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


async def test_a_key_rotation_reports_progress_and_re_encrypts_every_student(service, vault, wired, grades):
    progress = probe(service, KeyRotationProgress)
    seen = probe(service, StudentsRegistered)
    async with wired(service) as wire:
        await wire.send(register(row("079214000123")))
        await wire.send(operator().signs(RotateIdentityKey()))
        retire_older_keys(vault)
        ref = seen[0].students[0].student_ref
        snapshots = await wire.request(grades.signs(LookupStudents(student_refs=[ref])), StudentSnapshots)
    assert [(p.done, p.total, p.finished) for p in progress] == [(0, 1, False), (1, 1, False), (1, 1, True)]
    assert {p.actor for p in progress} == {None}
    assert vault.current == progress[-1].key_id
    assert [s.identity.personal_id for s in snapshots.students] == ["079214000123"]
    assert service.registry.get_sample_value("hocba_data_keys") == 2


async def test_a_key_rotation_by_anyone_but_an_operator_is_refused_and_counted(service, vault, wired):
    dead = dead_letters(service, RotateIdentityKey)
    progress = probe(service, KeyRotationProgress)
    key = vault.current
    async with wired(service) as wire:
        await wire.send(school_admin().signs(RotateIdentityKey()))
    assert [h[REASON_HEADER] for _, h in dead] == ["forbidden"]
    assert "operators do" in dead[0][1][ERROR_HEADER]
    assert progress == [] and vault.current == key
    assert refused(service, RotateIdentityKey, "forbidden") == 1
