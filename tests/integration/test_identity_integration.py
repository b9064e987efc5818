"""identity against real RabbitMQ and the MongoDB-wire server: sealed storage, look-ups, key rotation."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime

from bson import json_util

from services.identity.app import build_app
from services.identity.repository import INDEXES, MongoStudentRepository
from services.identity.vault import Vault
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
    StudentsRegistered,
)
from shared.messaging import REASON_HEADER
from shared.mongo import ensure_indexes
from tests.support import drain, probing, running
from tests.unit.grades.builders import KEYS, school_admin, token

NOW = datetime(2026, 1, 15, tzinfo=UTC)


def registration(personal_id: str, name: str = "Trần Thị Bình", born: date = date(2014, 3, 1)) -> StudentRegistration:
    return StudentRegistration(
        identity=StudentIdentity(
            personal_id=personal_id, full_name=name, date_of_birth=born, sex="F",
            place_of_birth="Cần Thơ", guardian_name="Trần Văn Cường",
        ),
        enrolment=Enrolment(school_code="79000701", school_year="2025-2026", grade=6, class_name="6A2"),
    )


async def repository(mongo_client, settings, tmp_path) -> MongoStudentRepository:
    db = mongo_client[settings.names().database("identity")]
    await ensure_indexes(db, INDEXES)
    return MongoStudentRepository(db, Vault.at(tmp_path / "ring.json"))


async def test_one_student_per_personal_id_found_by_blind_index(mongo_client, settings, tmp_path):
    repo = await repository(mongo_client, settings, tmp_path)
    first = registration("079314000001")
    assert await repo.add_new([("ref-1", first.identity, first.enrolment)], NOW) == {"079314000001"}
    assert await repo.add_new([("ref-2", first.identity, first.enrolment)], NOW) == set()
    found = await repo.find(["079314000001", "079314000009"])
    assert list(found) == ["079314000001"] and found["079314000001"].ref == "ref-1"
    assert found["079314000001"].identity == first.identity
    snapshots = await repo.snapshots(["ref-1", "ref-2"])
    assert list(snapshots) == ["ref-1"] and snapshots["ref-1"].full_name == "Trần Thị Bình"
    later = first.enrolment.model_copy(update={"school_year": "2026-2027"})
    assert await repo.add_enrolment("ref-1", later) and not await repo.add_enrolment("ref-1", later)
    assert (await repo.find(["079314000001"]))["079314000001"].enrolments == [first.enrolment, later]


async def test_the_raw_collection_holds_no_personal_id_name_or_birth_date_in_clear(mongo_client, settings, tmp_path):
    repo = await repository(mongo_client, settings, tmp_path)
    rows = [registration(f"0793140000{n:02d}", name=f"Lê Thị Hồng {n}", born=date(2014, 3, n + 1)) for n in range(5)]
    await repo.add_new([(f"ref-{n}", r.identity, r.enrolment) for n, r in enumerate(rows)], NOW)
    raw = [doc async for doc in mongo_client[settings.names().database("identity")]["students"].find()]
    assert len(raw) == 5
    dumped = json_util.dumps(raw, ensure_ascii=False)
    for row in rows:
        i = row.identity
        for plain in (i.personal_id, i.full_name, i.date_of_birth.isoformat(), i.guardian_name, i.place_of_birth):
            assert plain not in dumped, f"{plain!r} is stored in clear"
    assert "Lê Thị" not in dumped and "2014-03" not in dumped
    assert set(raw[0]) == {"_id", "pid_index", "key_id", "pii", "enrolments", "registered"}


async def test_registration_lookups_and_rotation_over_the_broker(mongo_client, settings, tmp_path):
    vault = Vault.at(tmp_path / "ring.json")
    service = build_app(settings, mongo=mongo_client, issuer_keys=KEYS, vault=vault)
    async with probing(settings, StudentsRegistered, KeyRotationProgress) as probes, running(service):
        rows = [registration(f"0793140{n:05d}") for n in range(450)] + [registration("079214000002")]
        report = RegistrationReport.model_validate(
            await service.bus.request(RegisterStudents(students=rows, actor=school_admin()))
        )
        assert report.new == 450 and [r.code for r in report.rejected] == ["century-sex"]
        dead = await drain(settings.amqp_url, service.topology.queue_name(RegisterStudents.ROUTING_KEY) + ".dlq", 10)
        assert len(dead) == 1 and dead[0].headers[REASON_HEADER] == "invalid"
        registered = await drain(settings.amqp_url, probes[StudentsRegistered.ROUTING_KEY], 10)
        refs = [s.student_ref for m in registered for s in StudentsRegistered.model_validate_json(m.body).students]
        assert len(refs) == 450

        again = RegistrationReport.model_validate(
            await service.bus.request(RegisterStudents(students=rows, actor=school_admin()))
        )
        assert (again.new, again.unchanged) == (0, 450)

        # Rotate while look-ups run: every look-up during the rotation finds every student.
        old_key = vault.current
        lookups = 0

        async def keep_looking_up(stop: asyncio.Event) -> None:
            nonlocal lookups
            while not stop.is_set():
                reply = await service.bus.request(LookupStudents(student_refs=refs[::7]))
                assert len(reply["students"]) == len(refs[::7]) and reply["missing"] == []
                found = StudentMatches.model_validate(
                    await service.bus.request(FindStudents(personal_ids=["079314000007"], actor=school_admin()))
                )
                assert [s.identity.personal_id for s in found.students] == ["079314000007"]
                lookups += 1

        stop = asyncio.Event()
        looking = asyncio.create_task(keep_looking_up(stop))
        final = KeyRotationProgress.model_validate(
            await service.bus.request(RotateIdentityKey(actor=token({"operator"}, "")), timeout=60)
        )
        stop.set()
        await looking
        assert final.finished and final.done == 450 and final.key_id != old_key
        assert lookups >= 1
        progress = await drain(settings.amqp_url, probes[KeyRotationProgress.ROUTING_KEY], 10)
        assert [KeyRotationProgress.model_validate_json(m.body).done for m in progress][-1] == 450
        students = mongo_client[settings.names().database("identity")]["students"]
        assert await students.count_documents({"key_id": final.key_id}) == 450
        ring = json.loads((tmp_path / "ring.json").read_text())
        assert ring["current"] == final.key_id and len(ring["keys"]) == 2
