"""identity running against real RabbitMQ and the MongoDB-wire server: a key rotation while look-ups go on, each
look-up logged.

Storage promises are in test_identity_repository.py; the message flow runs against real RabbitMQ
in tests/wiring/test_identity_wiring.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date

import pytest

from services.identity.app import build_app
from shared.auth import ServiceIdentity
from shared.contracts.identity import (
    Enrolment,
    FindStudents,
    KeyRotationProgress,
    LookupStudents,
    RegisterStudents,
    RegistrationReport,
    RotateIdentityKey,
    StudentIdentity,
    StudentMatches,
    StudentRegistration,
    StudentSnapshots,
    StudentsRegistered,
)
from shared.crypto.kek import FileKek
from shared.crypto.vault import Vault
from shared.errors import Refused
from shared.service import ServiceApp
from tests.support import drain, probing, running
from tests.unit.grades.builders import KEYS, operator, school_admin, service_pki


def registration(personal_id: str) -> StudentRegistration:
    return StudentRegistration(
        identity=StudentIdentity(
            personal_id=personal_id,
            full_name="Trần Thị Bình",
            date_of_birth=date(2014, 3, 1),
            sex="F",
            place_of_birth="Cần Thơ",
            guardian_name="Trần Văn Cường",
        ),
        enrolment=Enrolment(school_code="79000701", school_year="2025-2026", grade=6, class_name="6A2"),
    )


async def keep_looking_up(service: ServiceApp, grades: ServiceIdentity, refs: list[str], stop: asyncio.Event) -> int:
    """Look students up by reference (as grades) and by personal ID (as a school) until `stop`; every look-up finds
    every student asked for."""
    lookups = 0
    while not stop.is_set():
        asked = grades.signs(LookupStudents(student_refs=refs[::7], purpose="records"))
        snapshots = await service.bus.request(asked, StudentSnapshots)
        assert len(snapshots.students) == len(refs[::7]) and snapshots.missing == []
        found = await service.bus.request(
            school_admin().signs(FindStudents(personal_ids=["079314000007"])), StudentMatches
        )
        assert [s.identity.personal_id for s in found.students] == ["079314000007"]
        lookups += 1
    return lookups


async def test_registration_lookups_and_rotation_over_the_broker(mongo_client, settings, tmp_path):
    vault = Vault.at(tmp_path / "ring.json", FileKek(bytes(32)), "identity")
    pki = service_pki(tmp_path)
    grades = ServiceIdentity("grades", lambda: pki.signer("svc-grades"))
    keys = KEYS.for_service("identity", services=pki.trust_store)
    service = build_app(settings, mongo=mongo_client, issuer_keys=keys, vault=vault)
    async with probing(settings, StudentsRegistered, KeyRotationProgress) as probes, running(service):
        assert service.registry.get_sample_value("hocba_data_keys") == 1
        rows = [registration(f"0793140{n:05d}") for n in range(450)] + [registration("079214000002")]
        report = await service.bus.request(school_admin().signs(RegisterStudents(students=rows)), RegistrationReport)
        assert report.new == 450 and [r.code for r in report.rejected] == ["century-sex"]
        dead = await drain(settings.amqp_url, service.topology.queue_name(RegisterStudents.ROUTING_KEY) + ".dlq", 2)
        assert dead == [], "a roster's mistakes are answered, not dead-lettered"
        registered = await drain(settings.amqp_url, probes[StudentsRegistered.ROUTING_KEY], 10)
        refs = [s.student_ref for m in registered for s in StudentsRegistered.model_validate_json(m.body).students]
        assert len(refs) == 450

        again = await service.bus.request(school_admin().signs(RegisterStudents(students=rows)), RegistrationReport)
        assert (again.new, again.unchanged) == (0, 450)
        with pytest.raises(Refused, match="no actor token") as refusal:
            await service.bus.request(FindStudents(personal_ids=["079314000007"]), StudentMatches)
        assert refusal.value.reason == "unauthenticated"

        old_key = vault.current
        stop = asyncio.Event()
        looking = asyncio.create_task(keep_looking_up(service, grades, refs, stop))
        final = await service.bus.request(operator().signs(RotateIdentityKey()), KeyRotationProgress, timeout=60)
        stop.set()
        lookups = await looking
        assert lookups >= 1
        assert final.finished and final.done == 450 and final.key_id != old_key
        progress = await drain(settings.amqp_url, probes[KeyRotationProgress.ROUTING_KEY], 10)
        assert [KeyRotationProgress.model_validate_json(m.body).done for m in progress][-1] == 450
        students = mongo_client[settings.names().database("identity")]["students"]
        assert await students.count_documents({"key_id": final.key_id}) == 450
        ring = json.loads((tmp_path / "ring.json").read_text())
        assert ring["current"] == final.key_id and len(ring["keys"]) == 2

        # Every read is in the access log, by reference and with its purpose; nothing personal is in it.
        access_log = mongo_client[settings.names().database("identity")]["access_log"]
        assert await access_log.count_documents({"action": "lookup", "subject": "svc-grades"}) == lookups * 65
        assert await access_log.count_documents({"action": "find", "subject": "admin-1"}) == lookups
        logged = json.dumps([d async for d in access_log.find({}, {"_id": 0, "at": 0})], ensure_ascii=False)
        assert "079314" not in logged and "Trần" not in logged and "2014-03-01" not in logged
