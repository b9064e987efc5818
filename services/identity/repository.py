"""identity's collections, personal data sealed field by field: a Protocol, MongoDB, indexes.

A `students` document holds the opaque reference (`_id`), the HMAC blind index of the personal ID
(`pid_index`, unique), every identity field encrypted (`pii`), the id of the key they are under
(`key_id`) and the enrolments in clear. No personal ID, name or date of birth is stored in clear.
(identity's access log, by student reference, is `shared.access`'s store.)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from shared.contracts.identity import Enrolment, StudentIdentity
from shared.crypto.vault import Vault
from shared.mongo import DUPLICATE_KEY, Index

STUDENTS = "students"

#: Look-ups by blind index in flight at once (each is one round trip on its own connection).
LOOKUPS_AT_ONCE = 16

INDEXES = [
    Index(STUDENTS, [("pid_index", 1)], unique=True, name="pid_index_unique"),
    Index(STUDENTS, [("key_id", 1)], name="key_id"),
]


@dataclass(frozen=True)
class Registered:
    """A stored student: reference, identity (decrypted) and enrolments."""

    ref: str
    identity: StudentIdentity
    enrolments: list[Enrolment] = field(default_factory=list)


def seal(vault: Vault, ref: str, identity: StudentIdentity) -> dict[str, Any]:
    """The stored form of an identity: blind index, key id and every field encrypted."""
    values = {name: str(value) for name, value in identity.model_dump(mode="json").items()}
    return {
        "pid_index": vault.cipher.blind_index(identity.personal_id),
        "key_id": vault.current,
        "pii": vault.cipher.encrypt_fields(ref, values),
    }


def unseal(vault: Vault, ref: str, doc: dict[str, Any]) -> StudentIdentity:
    for sealed in doc["pii"].values():
        vault.knows(sealed["k"])  # reloads the ring when another process rotated it
    return StudentIdentity.model_validate(vault.cipher.decrypt_fields(ref, doc["pii"]))


def enrolment_documents(doc: dict[str, Any]) -> list[Enrolment]:
    return [Enrolment.model_validate(e) for e in doc.get("enrolments", [])]


class StudentRepository(Protocol):
    async def add_new(self, students: list[tuple[str, StudentIdentity, Enrolment]], at: datetime) -> set[str]:
        """Store the students whose personal ID is new; returns the personal IDs that were."""

    async def find(self, personal_ids: list[str]) -> dict[str, Registered]:
        """personal ID -> the stored student, for those known (looked up by blind index)."""

    async def add_enrolment(self, ref: str, enrolment: Enrolment) -> bool:
        """Add an enrolment to a stored student; False when it was there already."""

    async def snapshots(self, refs: list[str]) -> dict[str, StudentIdentity]:
        """student ref -> identity, for those known."""

    async def enrolments(self, ref: str) -> list[Enrolment]:
        """The enrolments of a stored student (none when the reference is unknown); nothing is decrypted."""

    async def count_not_under(self, key_id: str) -> int:
        """Students whose fields are not (all) under `key_id`."""

    async def reencrypt(self, limit: int) -> int:
        """Re-encrypt up to `limit` students not under the current key; returns how many were."""


class MongoStudentRepository:
    """The students in identity's MongoDB database, sealed under `vault`."""

    def __init__(self, db: AsyncDatabase, vault: Vault) -> None:
        self.students = db[STUDENTS]
        self.vault = vault

    async def add_new(self, students: list[tuple[str, StudentIdentity, Enrolment]], at: datetime) -> set[str]:
        if not students:
            return set()
        docs = [
            {
                "_id": ref,
                **seal(self.vault, ref, identity),
                "enrolments": [enrolment.model_dump()],
                "registered": {"at": at},
            }
            for ref, identity, enrolment in students
        ]
        failed: set[int] = set()
        try:
            await self.students.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            failed = {e["index"] for e in errors}
        return {identity.personal_id for n, (_, identity, _) in enumerate(students) if n not in failed}

    async def find(self, personal_ids: list[str]) -> dict[str, Registered]:
        by_index = {self.vault.cipher.blind_index(pid): pid for pid in personal_ids}
        # Each blind index by equality, a few at once: the form every MongoDB-wire server answers from the unique
        # index (the embedded one scans the whole collection for an `$in` on a field other than `_id`).
        at_once = asyncio.Semaphore(LOOKUPS_AT_ONCE)

        async def one(index: str) -> dict[str, Any] | None:
            async with at_once:
                return await self.students.find_one({"pid_index": index})

        docs = await asyncio.gather(*(one(index) for index in by_index))
        found = {}
        for doc in docs:
            if doc is not None:
                identity = unseal(self.vault, doc["_id"], doc)
                found[by_index[doc["pid_index"]]] = Registered(doc["_id"], identity, enrolment_documents(doc))
        return found

    async def add_enrolment(self, ref: str, enrolment: Enrolment) -> bool:
        result = await self.students.update_one({"_id": ref}, {"$addToSet": {"enrolments": enrolment.model_dump()}})
        return result.modified_count == 1

    async def snapshots(self, refs: list[str]) -> dict[str, StudentIdentity]:
        cursor = self.students.find({"_id": {"$in": refs}}, {"pii": 1})
        return {doc["_id"]: unseal(self.vault, doc["_id"], doc) async for doc in cursor}

    async def enrolments(self, ref: str) -> list[Enrolment]:
        doc = await self.students.find_one({"_id": ref}, {"enrolments": 1})
        return enrolment_documents(doc) if doc else []

    async def count_not_under(self, key_id: str) -> int:
        return await self.students.count_documents({"key_id": {"$nin": [key_id]}})

    async def reencrypt(self, limit: int) -> int:
        current = self.vault.current
        batch = [
            doc
            async for doc in self.students.find({"key_id": {"$nin": [current]}}, {"pii": 1, "key_id": 1}).limit(limit)
        ]
        if not batch:
            return 0
        updates = []
        for doc in batch:
            sealed = seal(self.vault, doc["_id"], unseal(self.vault, doc["_id"], doc))
            updates.append(
                UpdateOne(
                    {"_id": doc["_id"], "key_id": doc["key_id"]}, {"$set": {"pii": sealed["pii"], "key_id": current}}
                )
            )
        result = await self.students.bulk_write(updates, ordered=False)
        return result.modified_count


class InMemoryStudentRepository:
    """For unit and wiring tests: the same sealed documents under `vault`, in a dict."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.docs: dict[str, dict[str, Any]] = {}

    async def add_new(self, students: list[tuple[str, StudentIdentity, Enrolment]], at: datetime) -> set[str]:
        indexes = {d["pid_index"] for d in self.docs.values()}
        added = set()
        for ref, identity, enrolment in students:
            sealed = seal(self.vault, ref, identity)
            if sealed["pid_index"] in indexes:
                continue
            self.docs[ref] = {**sealed, "enrolments": [enrolment.model_dump()], "registered": {"at": at}}
            indexes.add(sealed["pid_index"])
            added.add(identity.personal_id)
        return added

    async def find(self, personal_ids: list[str]) -> dict[str, Registered]:
        by_index = {self.vault.cipher.blind_index(pid): pid for pid in personal_ids}
        return {
            by_index[d["pid_index"]]: Registered(ref, unseal(self.vault, ref, d), enrolment_documents(d))
            for ref, d in self.docs.items()
            if d["pid_index"] in by_index
        }

    async def add_enrolment(self, ref: str, enrolment: Enrolment) -> bool:
        enrolments = self.docs[ref]["enrolments"]
        if enrolment.model_dump() in enrolments:
            return False
        enrolments.append(enrolment.model_dump())
        return True

    async def snapshots(self, refs: list[str]) -> dict[str, StudentIdentity]:
        return {ref: unseal(self.vault, ref, self.docs[ref]) for ref in refs if ref in self.docs}

    async def enrolments(self, ref: str) -> list[Enrolment]:
        return enrolment_documents(self.docs[ref]) if ref in self.docs else []

    async def count_not_under(self, key_id: str) -> int:
        return sum(1 for d in self.docs.values() if d["key_id"] != key_id)

    async def reencrypt(self, limit: int) -> int:
        current = self.vault.current
        todo = [ref for ref, d in self.docs.items() if d["key_id"] != current][:limit]
        for ref in todo:
            doc = self.docs[ref]
            doc.update(
                {k: v for k, v in seal(self.vault, ref, unseal(self.vault, ref, doc)).items() if k != "pid_index"}
            )
        return len(todo)
