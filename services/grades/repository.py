"""grades' collections (enrolments, assessments, terms, records): a Protocol, MongoDB, indexes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase

from shared.contracts.grades import RecordVersion, SubjectTermScores
from shared.contracts.identity import Enrolment, RegisteredStudent
from shared.mongo import Index, insert_new, insert_one_new

ENROLMENTS = "enrolments"
ASSESSMENTS = "assessments"
TERMS = "terms"
RECORDS = "records"

INDEXES = [
    Index(ENROLMENTS, [("student_ref", 1), ("school_year", 1)], unique=True, name="student_year_unique"),
    Index(ENROLMENTS, [("school_code", 1), ("school_year", 1)], name="school_year"),
    Index(
        ASSESSMENTS,
        [("student_ref", 1), ("school_year", 1), ("subject", 1), ("term", 1)],
        unique=True,
        name="student_year_subject_term_unique",
    ),
    Index(ASSESSMENTS, [("school_code", 1), ("school_year", 1)], name="school_year"),
    Index(TERMS, [("school_code", 1), ("school_year", 1)], unique=True, name="school_year_unique"),
    Index(RECORDS, [("record_id", 1), ("version", 1)], unique=True, name="record_version_unique"),
    Index(RECORDS, [("school_code", 1), ("school_year", 1)], name="school_year"),
]


class GradesRepository(Protocol):
    async def enrol(self, students: list[RegisteredStudent]) -> int:
        """Store enrolments not yet known for their student and year; returns how many were new."""

    async def enrolments_of(self, school_year: str, refs: list[str]) -> dict[str, RegisteredStudent]:
        """student ref -> enrolment in `school_year`, for those enrolled."""

    async def enrolled(self, school_code: str, school_year: str) -> list[RegisteredStudent]:
        """Every student enrolled in the school that year."""

    async def is_closed(self, school_code: str, school_year: str) -> bool:
        """Whether the school's year has been closed."""

    async def close_year(self, school_code: str, school_year: str, closed_at: datetime) -> bool:
        """Record that the year is closed; False when it already was."""

    async def add_assessments(self, school_code: str, school_year: str, entries: list[SubjectTermScores]) -> int:
        """Store entries whose (student, year, subject, term) is new; returns how many were."""

    async def assessments(self, school_code: str, school_year: str) -> list[SubjectTermScores]:
        """Every entry of the school's year."""

    async def add_records(self, records: list[RecordVersion]) -> int:
        """Store record versions not yet stored; returns how many were new."""

    async def records(self, school_code: str, school_year: str, version: int) -> list[RecordVersion]:
        """The stored records of the school's year at `version`, ordered by record id."""


def enrolment_document(student: RegisteredStudent) -> dict[str, Any]:
    return {"student_ref": student.student_ref, **student.enrolment.model_dump()}


def registered(doc: dict[str, Any]) -> RegisteredStudent:
    return RegisteredStudent(student_ref=doc["student_ref"], enrolment=Enrolment.model_validate(doc))


def assessment_document(school_code: str, school_year: str, entry: SubjectTermScores) -> dict[str, Any]:
    return {"school_code": school_code, "school_year": school_year, **entry.model_dump(mode="json")}


class MongoGradesRepository:
    def __init__(self, db: AsyncDatabase) -> None:
        self._enrolments = db[ENROLMENTS]
        self._assessments = db[ASSESSMENTS]
        self._terms = db[TERMS]
        self._records = db[RECORDS]

    async def enrol(self, students: list[RegisteredStudent]) -> int:
        return await insert_new(self._enrolments, [enrolment_document(s) for s in students])

    async def enrolments_of(self, school_year: str, refs: list[str]) -> dict[str, RegisteredStudent]:
        cursor = self._enrolments.find({"school_year": school_year, "student_ref": {"$in": refs}}, {"_id": 0})
        return {doc["student_ref"]: registered(doc) async for doc in cursor}

    async def enrolled(self, school_code: str, school_year: str) -> list[RegisteredStudent]:
        cursor = self._enrolments.find({"school_code": school_code, "school_year": school_year}, {"_id": 0})
        return [registered(doc) async for doc in cursor]

    async def is_closed(self, school_code: str, school_year: str) -> bool:
        return await self._terms.find_one({"school_code": school_code, "school_year": school_year}) is not None

    async def close_year(self, school_code: str, school_year: str, closed_at: datetime) -> bool:
        return await insert_one_new(
            self._terms, {"school_code": school_code, "school_year": school_year, "closed_at": closed_at}
        )

    async def add_assessments(self, school_code: str, school_year: str, entries: list[SubjectTermScores]) -> int:
        return await insert_new(
            self._assessments, [assessment_document(school_code, school_year, e) for e in entries]
        )

    async def assessments(self, school_code: str, school_year: str) -> list[SubjectTermScores]:
        cursor = self._assessments.find({"school_code": school_code, "school_year": school_year}, {"_id": 0})
        return [SubjectTermScores.model_validate(doc) async for doc in cursor]

    async def add_records(self, records: list[RecordVersion]) -> int:
        return await insert_new(self._records, [r.model_dump(mode="json") for r in records])

    async def records(self, school_code: str, school_year: str, version: int) -> list[RecordVersion]:
        cursor = self._records.find(
            {"school_code": school_code, "school_year": school_year, "version": version}, {"_id": 0}
        )
        found = [RecordVersion.model_validate(doc) async for doc in cursor]
        return sorted(found, key=lambda r: r.record_id)


class InMemoryGradesRepository:
    """For unit and wiring tests: same behaviour, no database."""

    def __init__(self) -> None:
        self.enrolment_by_key: dict[tuple[str, str], RegisteredStudent] = {}
        self.entry_by_key: dict[tuple[str, str, str, int], tuple[str, SubjectTermScores]] = {}
        self.closed: dict[tuple[str, str], datetime] = {}
        self.record_by_key: dict[tuple[str, int], RecordVersion] = {}

    async def enrol(self, students: list[RegisteredStudent]) -> int:
        added = 0
        for student in students:
            key = (student.student_ref, student.enrolment.school_year)
            if key not in self.enrolment_by_key:
                self.enrolment_by_key[key] = student
                added += 1
        return added

    async def enrolments_of(self, school_year: str, refs: list[str]) -> dict[str, RegisteredStudent]:
        known = self.enrolment_by_key
        return {ref: known[(ref, school_year)] for ref in refs if (ref, school_year) in known}

    async def enrolled(self, school_code: str, school_year: str) -> list[RegisteredStudent]:
        return [
            s
            for s in self.enrolment_by_key.values()
            if s.enrolment.school_code == school_code and s.enrolment.school_year == school_year
        ]

    async def is_closed(self, school_code: str, school_year: str) -> bool:
        return (school_code, school_year) in self.closed

    async def close_year(self, school_code: str, school_year: str, closed_at: datetime) -> bool:
        if (school_code, school_year) in self.closed:
            return False
        self.closed[(school_code, school_year)] = closed_at
        return True

    async def add_assessments(self, school_code: str, school_year: str, entries: list[SubjectTermScores]) -> int:
        added = 0
        for entry in entries:
            key = (entry.student_ref, school_year, entry.subject, entry.term)
            if key not in self.entry_by_key:
                self.entry_by_key[key] = (school_code, entry)
                added += 1
        return added

    async def assessments(self, school_code: str, school_year: str) -> list[SubjectTermScores]:
        return [
            entry
            for (_, year, _, _), (code, entry) in self.entry_by_key.items()
            if code == school_code and year == school_year
        ]

    async def add_records(self, records: list[RecordVersion]) -> int:
        added = 0
        for record in records:
            if (record.record_id, record.version) not in self.record_by_key:
                self.record_by_key[(record.record_id, record.version)] = record
                added += 1
        return added

    async def records(self, school_code: str, school_year: str, version: int) -> list[RecordVersion]:
        found = [
            r
            for r in self.record_by_key.values()
            if r.school_code == school_code and r.school_year == school_year and r.version == version
        ]
        return sorted(found, key=lambda r: r.record_id)
