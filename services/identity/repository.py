"""identity's `students` collection: a Protocol, the MongoDB implementation and its indexes."""

from __future__ import annotations

from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase

from shared.contracts.identity import Enrolment, StudentIdentity
from shared.mongo import Index, insert_new

STUDENTS = "students"

INDEXES = [Index(STUDENTS, [("personal_id", 1)], unique=True, name="personal_id_unique")]


class StudentRepository(Protocol):
    async def add_new(self, students: list[tuple[str, StudentIdentity, Enrolment]]) -> int:
        """Store (ref, identity, enrolment) rows whose personal ID is new; returns how many were."""

    async def refs_by_personal_id(self, personal_ids: list[str]) -> dict[str, str]:
        """personal ID -> student ref, for those known."""

    async def snapshots(self, refs: list[str]) -> dict[str, StudentIdentity]:
        """student ref -> identity, for those known."""


class MongoStudentRepository:
    def __init__(self, db: AsyncDatabase) -> None:
        self.students = db[STUDENTS]

    async def add_new(self, students: list[tuple[str, StudentIdentity, Enrolment]]) -> int:
        return await insert_new(
            self.students,
            [
                {"_id": ref, **identity.model_dump(mode="json"), "enrolments": [enrolment.model_dump()]}
                for ref, identity, enrolment in students
            ],
        )

    async def refs_by_personal_id(self, personal_ids: list[str]) -> dict[str, str]:
        cursor = self.students.find({"personal_id": {"$in": personal_ids}}, {"personal_id": 1})
        return {doc["personal_id"]: doc["_id"] async for doc in cursor}

    async def snapshots(self, refs: list[str]) -> dict[str, StudentIdentity]:
        cursor = self.students.find({"_id": {"$in": refs}}, {"enrolments": 0})
        return {doc.pop("_id"): StudentIdentity.model_validate(doc) async for doc in cursor}


class InMemoryStudentRepository:
    """For unit and wiring tests: same behaviour, no database."""

    def __init__(self) -> None:
        self.by_ref: dict[str, tuple[StudentIdentity, list[Enrolment]]] = {}

    async def add_new(self, students: list[tuple[str, StudentIdentity, Enrolment]]) -> int:
        known = {identity.personal_id for identity, _ in self.by_ref.values()}
        added = 0
        for ref, identity, enrolment in students:
            if identity.personal_id not in known:
                self.by_ref[ref] = (identity, [enrolment])
                known.add(identity.personal_id)
                added += 1
        return added

    async def refs_by_personal_id(self, personal_ids: list[str]) -> dict[str, str]:
        wanted = set(personal_ids)
        return {i.personal_id: ref for ref, (i, _) in self.by_ref.items() if i.personal_id in wanted}

    async def snapshots(self, refs: list[str]) -> dict[str, StudentIdentity]:
        return {ref: self.by_ref[ref][0] for ref in refs if ref in self.by_ref}
