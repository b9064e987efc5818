"""identity's repository contract: the in-memory and the MongoDB repository keep the same promises."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from bson import json_util

from services.identity.repository import INDEXES, STUDENTS, InMemoryStudentRepository, MongoStudentRepository
from shared.contracts.identity import Enrolment, StudentIdentity, StudentRegistration
from shared.crypto.fields import DecryptionError
from shared.crypto.kek import FileKek
from shared.crypto.vault import Vault
from tests.integration.commands import watched_database
from tests.integration.conftest import service_database
from tests.unit.identity.builders import retire_older_keys

NOW = datetime(2026, 1, 15, tzinfo=UTC)


@pytest.fixture
def vault(tmp_path) -> Vault:
    return Vault.at(tmp_path / "keys" / "ring.json", FileKek(bytes(32)), "identity")


@pytest.fixture
async def repo(backend, vault, mongo_client, settings):
    if backend == "in-memory":
        return InMemoryStudentRepository(vault)
    return MongoStudentRepository(await service_database(mongo_client, settings, "identity", INDEXES), vault)


def registration(personal_id: str, name: str = "Trần Thị Bình", born: date = date(2014, 3, 1)) -> StudentRegistration:
    return StudentRegistration(
        identity=StudentIdentity(
            personal_id=personal_id,
            full_name=name,
            date_of_birth=born,
            sex="F",
            place_of_birth="Cần Thơ",
            guardian_name="Trần Văn Cường",
        ),
        enrolment=Enrolment(school_code="79000701", school_year="2025-2026", grade=6, class_name="6A2"),
    )


def new_students(count: int, start: int = 0) -> list[tuple[str, StudentIdentity, Enrolment]]:
    rows = [(f"ref-{n}", registration(f"0793140000{n:02d}")) for n in range(start, start + count)]
    return [(ref, r.identity, r.enrolment) for ref, r in rows]


async def test_one_student_per_personal_id_found_by_blind_index(repo):
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


async def test_a_batch_of_personal_ids_is_looked_up_by_equality_on_the_blind_index(mongo_url, vault):
    """Each personal ID by equality on the unique index, never one `$in` over the index: the embedded server answers
    that by reading the whole collection, so a roster import slowed as the register grew."""
    async with watched_database(mongo_url, "identity-lookups", INDEXES) as (db, commands):
        repo = MongoStudentRepository(db, vault)
        await repo.add_new(new_students(6), NOW)
        asked = [registration(f"0793140000{n:02d}").identity.personal_id for n in (1, 4, 7)]
        with commands.counted():
            found = await repo.find(asked)
    assert sorted(found) == sorted(asked[:2])
    finds = [command["filter"] for name, command in commands.asked if name == "find"]
    assert len(finds) == len(asked)
    assert all(set(f) == {"pid_index"} and isinstance(f["pid_index"], str) for f in finds), finds


async def test_of_a_batch_only_the_new_personal_ids_are_stored(repo):
    await repo.add_new(new_students(2), NOW)
    known = [(f"other-{ref}", identity, enrolment) for ref, identity, enrolment in new_students(2)]
    assert await repo.add_new([*known, *new_students(2, start=2)], NOW) == {"079314000002", "079314000003"}
    found = await repo.find([f"0793140000{n:02d}" for n in range(4)])
    assert sorted(s.ref for s in found.values()) == ["ref-0", "ref-1", "ref-2", "ref-3"]
    assert await repo.add_new([], NOW) == set()


async def test_a_rotation_re_encrypts_every_student_in_steps_under_the_new_key(repo, vault):
    await repo.add_new(new_students(5), NOW)
    old_key = vault.current
    assert await repo.count_not_under(old_key) == 0
    vault.add_key("k-2")
    assert await repo.count_not_under("k-2") == 5
    assert await repo.reencrypt(2) == 2
    assert await repo.count_not_under("k-2") == 3
    assert len(await repo.snapshots([f"ref-{n}" for n in range(5)])) == 5, "students under both keys read"
    assert await repo.reencrypt(10) == 3
    assert await repo.reencrypt(10) == 0
    assert await repo.count_not_under("k-2") == 0
    retire_older_keys(vault)
    snapshots = await repo.snapshots([f"ref-{n}" for n in range(5)])
    assert [snapshots[f"ref-{n}"].personal_id for n in range(5)] == [f"0793140000{n:02d}" for n in range(5)]
    assert list(await repo.find(["079314000003"])) == ["079314000003"]


async def test_a_student_under_a_retired_key_does_not_read(repo, vault):
    await repo.add_new(new_students(1), NOW)
    vault.add_key("k-2")
    retire_older_keys(vault)
    with pytest.raises(DecryptionError):
        await repo.snapshots(["ref-0"])


async def test_the_raw_collection_holds_no_personal_id_name_or_birth_date_in_clear(mongo_client, settings, vault):
    db = await service_database(mongo_client, settings, "identity", INDEXES)
    repo = MongoStudentRepository(db, vault)
    rows = [registration(f"0793140000{n:02d}", name=f"Lê Thị Hồng {n}", born=date(2014, 3, n + 1)) for n in range(5)]
    await repo.add_new([(f"ref-{n}", r.identity, r.enrolment) for n, r in enumerate(rows)], NOW)
    raw = [doc async for doc in db[STUDENTS].find()]
    assert len(raw) == 5
    dumped = json_util.dumps(raw, ensure_ascii=False)
    for row in rows:
        i = row.identity
        for plain in (i.personal_id, i.full_name, i.date_of_birth.isoformat(), i.guardian_name, i.place_of_birth):
            assert plain not in dumped, f"{plain!r} is stored in clear"
    assert "Lê Thị" not in dumped and "2014-03" not in dumped
    assert set(raw[0]) == {"_id", "pid_index", "key_id", "pii", "enrolments", "registered"}


async def test_a_students_enrolments_are_read_by_reference(repo):
    first = registration("079314000001")
    await repo.add_new([("ref-1", first.identity, first.enrolment)], NOW)
    later = first.enrolment.model_copy(update={"school_year": "2026-2027", "grade": 7})
    await repo.add_enrolment("ref-1", later)
    assert await repo.enrolments("ref-1") == [first.enrolment, later]
    assert await repo.enrolments("nobody") == []
