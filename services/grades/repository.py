"""grades' collections (enrolments, assessments, terms, records): a Protocol, MongoDB, indexes.

`assessments` holds both subject entries (kind "subject") and homeroom entries (kind
"homeroom": conduct, absences, qualities, comments), each with its revision, the ids of the
messages that set it and the log of its changes (who, when, old value, new value, reason).
`terms` holds each term's lock with its history, and the year's close. `records` holds each
record version as assembled, with grades' seal, its document (the student's identity in it) sealed
under grades' key ring (`shared.at_rest`). Enrolments and entries name the student by the opaque
reference only. (grades' access log, one `AccessEntry` per record
explained, is `shared.access`'s store.) `record_statuses` holds, insert-only, each step a record version
reached after grades, as signing, the archive and sync announced it (one document a version and step).
A version an amendment made is kept in `records` like the first, with the id of the amendment's message
(`amended_by`): the unique record id and version decide which amendment makes a version, and the message finds
the version it made when it is delivered again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

from pymongo.asynchronous.database import AsyncDatabase

from services.grades.domain.entries import Entry
from services.grades.domain.terms import Stored, TermStatus
from shared.at_rest import owner_of, sealed_records
from shared.contracts.grades import RecordVersion, StudentTermConduct, SubjectTermScores, VersionKey
from shared.contracts.identity import Enrolment, RegisteredStudent
from shared.crypto.canonical import canonical_json
from shared.crypto.vault import Vault
from shared.errors import TransientError
from shared.mongo import Index, insert_new, insert_one_new

ENROLMENTS = "enrolments"
ASSESSMENTS = "assessments"
TERMS = "terms"
RECORDS = "records"
RECORD_STATUSES = "record_statuses"
#: A stored record version written by this release holds its canonical bytes, and says so; one from an
#: earlier release holds its document as plain JSON, made canonical when read.
CANONICAL = "canonical"
#: The message id of the amendment that made a stored record version (absent from versions assembled at a close).
AMENDED_BY = "amended_by"
#: A version's history of replacements: a first version nobody signed and sealed, assembled again at a later close.
REPLACED = "replaced"

Kind = Literal["subject", "homeroom"]
HOMEROOM = "(homeroom)"  # the `subject` key of homeroom entries; no subject has this name
YEAR = 0  # the `term` key of the year's close in `terms`
ENTRY_TERMS = (1, 2)  # the `term` key of an entry

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
    Index(TERMS, [("school_code", 1), ("school_year", 1), ("term", 1)], unique=True, name="school_year_term_unique"),
    Index(RECORDS, [("record_id", 1), ("version", 1)], unique=True, name="record_version_unique"),
    Index(RECORDS, [("school_code", 1), ("school_year", 1)], name="school_year"),
    Index(RECORDS, [(AMENDED_BY, 1)], name="amended_by"),
    Index(RECORD_STATUSES, [("record_id", 1)], name="record"),
]

#: (student ref, subject, term): one entry's key within a school year.
EntryKey = tuple[str, str, int]

M = TypeVar("M", SubjectTermScores, StudentTermConduct)


@dataclass(frozen=True)
class Write:
    """One entry to store: new (revision 0 expected) or a change of revision `revision`."""

    key: EntryKey
    values: Entry
    message_id: str
    by: str
    at: datetime
    reason: str = ""
    revision: int = 0
    old: Entry | None = None
    #: The kind of message that made it (its routing key), when not the one that records its kind of entry.
    message: str = ""

    def recorded(self) -> dict[str, Any]:
        """Who first recorded the entry and when (and by which kind of message, when said)."""
        return {"at": self.at, "by": self.by, **({"message": self.message} if self.message else {})}


@dataclass(frozen=True)
class TermAction:
    """A term closed (or reopened): by whom, when, why, and the message that asked for it."""

    term: int
    closed: bool
    by: str
    at: datetime
    message_id: str
    reason: str = ""

    def logged(self) -> dict[str, Any]:
        """The action as the term's history keeps it."""
        action = "close" if self.closed else "reopen"
        return {"action": action, "by": self.by, "at": self.at, "reason": self.reason, "message_id": self.message_id}


@dataclass(frozen=True)
class StatusNote:
    """A step a record version reached after grades (`shared.contracts.grades.RecordStatus`), as announced, and when."""

    record_id: str
    version: int
    status: str
    at: datetime

    @property
    def key(self) -> str:
        return f"{self.record_id}/{self.version}/{self.status}"


@dataclass(frozen=True)
class Revision:
    """One revision of a stored entry: as first recorded (`old` None), or a change of it."""

    kind: Kind
    subject: str
    term: int
    revision: int
    #: None: not kept (an entry stored by an earlier release).
    at: datetime | None
    by: str
    old: dict[str, Any] | None
    new: dict[str, Any]
    reason: str
    message_id: str
    #: The kind of message that made it (its routing key); "" when it is the one that records its kind of entry.
    message: str = ""


class GradesRepository(Protocol):
    async def enrol(self, students: list[RegisteredStudent]) -> int:
        """Store enrolments not yet known for their student and year; returns how many were new."""

    async def enrolments_of(self, school_year: str, refs: list[str]) -> dict[str, RegisteredStudent]:
        """student ref -> enrolment in `school_year`, for those enrolled."""

    async def enrolled(self, school_code: str, school_year: str) -> list[RegisteredStudent]:
        """Every student enrolled in the school that year."""

    async def schools_of(self, student_ref: str) -> set[str]:
        """The schools a student is (or was) enrolled at, any year."""

    async def is_closed(self, school_code: str, school_year: str) -> bool:
        """Whether the school's year has been closed."""

    async def close_year(self, school_code: str, school_year: str, closed_at: datetime) -> bool:
        """Record that the year is closed; False when it already was."""

    async def reopen_year(self, school_code: str, school_year: str, reopened_at: datetime) -> bool:
        """Record that the closed year is open again (a term reopened after its close); False when it was not closed."""

    async def term_statuses(self, school_code: str, school_year: str) -> dict[int, TermStatus]:
        """Terms 1 and 2 with their locks."""

    async def set_term(self, school_code: str, school_year: str, action: TermAction) -> bool:
        """Close (or reopen) a term, logging who, when and why; False when it already was, or when
        the same message already acted on it."""

    async def term_log(self, school_code: str, school_year: str) -> list[dict[str, Any]]:
        """Every close and reopen of the year's terms, by term, oldest first: each with its term."""

    async def stored(self, school_code: str, school_year: str, kind: Kind, keys: list[EntryKey]) -> dict[EntryKey, Stored]:
        """The stored entries among `keys`."""

    async def write(self, school_code: str, school_year: str, kind: Kind, writes: list[Write]) -> None:
        """Insert the new entries and apply the changes; a lost race raises TransientError."""

    async def assessments(self, school_code: str, school_year: str) -> list[SubjectTermScores]:
        """Every subject entry of the school's year."""

    async def homeroom(self, school_code: str, school_year: str) -> list[StudentTermConduct]:
        """Every homeroom entry of the school's year."""

    async def entries_of(self, school_year: str, refs: list[str], subjects: list[str]) -> list[Entry]:
        """The homeroom entries and the entries of `subjects` of these students in `school_year`: one read, however
        many they are."""

    async def changes(self, school_code: str, school_year: str) -> list[dict[str, Any]]:
        """The change log of the school's year: each change with its entry's key."""

    async def add_records(self, records: list[RecordVersion]) -> int:
        """Store record versions not yet stored; returns how many were new."""

    async def add_amended(self, record: RecordVersion, message_id: str) -> bool:
        """Store an amended record version made by message `message_id`; False when that version is stored already
        (by this message or another)."""

    async def replace_record(self, kept: RecordVersion, record: RecordVersion, note: dict[str, Any]) -> bool:
        """Put `record` in the place of the version `kept` (same record and version, assembled anew), as long as that
        version is still kept as it was, and add `note` (when, by whom, which message, the digest of the content
        replaced) to its history of replacements; False when it is not kept as it was."""

    async def replacements(self, record_id: str, version: int) -> list[dict[str, Any]]:
        """The history of a version's replacements, oldest first (`replace_record`)."""

    async def amended_by(self, message_id: str) -> RecordVersion | None:
        """The record version the amendment `message_id` made, if it made one."""

    async def amended_versions(self, record_ids: list[str]) -> list[VersionKey]:
        """The versions after the first that grades holds of these records (each amendment's): one read, however many
        they are."""

    async def records(self, school_code: str, school_year: str, version: int) -> list[RecordVersion]:
        """The stored records of the school's year at `version`, ordered by record id."""

    async def records_of(self, record_ids: list[str], version: int) -> list[RecordVersion]:
        """The stored ones among these records at `version`, ordered by record id: one read, however many they are."""

    async def record(self, record_id: str, version: int | None) -> RecordVersion | None:
        """One record at `version` (None: the latest)."""

    async def has_enrolments(self, school_code: str, school_year: str) -> bool:
        """Whether any student is enrolled in the school that year."""

    async def note_statuses(self, notes: list[StatusNote]) -> int:
        """Keep the steps record versions reached, each once; returns how many were new."""

    async def statuses_of(self, record_ids: list[str]) -> dict[VersionKey, set[str]]:
        """The steps noted for every version of these records: one read, however many they are."""

    async def entry_history(self, school_year: str, student_ref: str, subjects: list[str]) -> list[Revision]:
        """Every revision of the student's entries in `subjects` (HOMEROOM: the homeroom entries) that year, entry by
        entry, oldest first."""


def enrolment_id(school_year: str, student_ref: str) -> str:
    return f"{school_year}/{student_ref}"


def enrolment_document(student: RegisteredStudent) -> dict[str, Any]:
    return {
        "_id": enrolment_id(student.enrolment.school_year, student.student_ref),
        "student_ref": student.student_ref,
        **student.enrolment.model_dump(),
    }


def registered(doc: dict[str, Any]) -> RegisteredStudent:
    return RegisteredStudent(student_ref=doc["student_ref"], enrolment=Enrolment.model_validate(doc))


def entry_id(school_year: str, key: EntryKey) -> str:
    return "/".join((school_year, key[0], key[1], str(key[2])))


def entry_key(values: Entry) -> EntryKey:
    subject = values.subject if isinstance(values, SubjectTermScores) else HOMEROOM
    return (values.student_ref, subject, values.term)


def model_for(kind: Kind) -> type[Entry]:
    return SubjectTermScores if kind == "subject" else StudentTermConduct


def kind_of(model: type[Entry]) -> Kind:
    return "subject" if model is SubjectTermScores else "homeroom"


def revisions(entry: dict[str, Any]) -> list[Revision]:
    """A stored entry's history (its `kind`, `subject`, `term`, `values`, `recorded`, `message_ids`, `changes`): as
    first recorded, by the first of its messages (its values then are the first change's old values, or its values
    now), then each change in order."""
    kind, subject, term, changes = entry["kind"], entry["subject"], entry["term"], entry["changes"]
    first = changes[0]["old"] if changes and changes[0].get("old") is not None else entry["values"]
    recorded = entry.get("recorded") or {}
    history = [
        Revision(
            kind,
            subject,
            term,
            1,
            recorded.get("at"),
            recorded.get("by", ""),
            None,
            first,
            "",
            entry["message_ids"][0],
            recorded.get("message", ""),
        )
    ]
    for number, change in enumerate(changes, start=2):
        history.append(
            Revision(
                kind,
                subject,
                term,
                number,
                change["at"],
                change["by"],
                change.get("old"),
                change["new"],
                change.get("reason", ""),
                change.get("message_id", ""),
                change.get("message", ""),
            )
        )
    return history


def change_entry(write: Write) -> dict[str, Any]:
    return {
        "at": write.at,
        "by": write.by,
        "old": write.old.model_dump(mode="json") if write.old is not None else None,
        "new": write.values.model_dump(mode="json"),
        "reason": write.reason,
        "message_id": write.message_id,
        **({"message": write.message} if write.message else {}),
    }


class MongoGradesRepository:
    def __init__(self, db: AsyncDatabase, vault: Vault) -> None:
        self._enrolments = db[ENROLMENTS]
        self._assessments = db[ASSESSMENTS]
        self._terms = db[TERMS]
        self._records = db[RECORDS]
        self._statuses = db[RECORD_STATUSES]
        #: The record documents, sealed under grades' key ring; what a key rotation re-encrypts.
        self.sealed = sealed_records(self._records, vault)

    def _record_version(self, doc: dict[str, Any]) -> RecordVersion:
        plain = self.sealed.opened_bytes(doc)
        content = plain if doc.get(CANONICAL) else canonical_json(json.loads(plain))
        return RecordVersion.model_validate({**doc, "content": content})

    async def enrol(self, students: list[RegisteredStudent]) -> int:
        return await insert_new(self._enrolments, [enrolment_document(s) for s in students])

    async def enrolments_of(self, school_year: str, refs: list[str]) -> dict[str, RegisteredStudent]:
        # By _id: the embedded MongoDB-wire server serves `_id` look-ups from its key, other `$in` by a scan.
        ids = [enrolment_id(school_year, ref) for ref in refs]
        cursor = self._enrolments.find({"_id": {"$in": ids}}, {"_id": 0})
        return {doc["student_ref"]: registered(doc) async for doc in cursor}

    async def enrolled(self, school_code: str, school_year: str) -> list[RegisteredStudent]:
        cursor = self._enrolments.find({"school_code": school_code, "school_year": school_year}, {"_id": 0})
        return [registered(doc) async for doc in cursor]

    async def schools_of(self, student_ref: str) -> set[str]:
        cursor = self._enrolments.find({"student_ref": student_ref}, {"school_code": 1})
        return {doc["school_code"] async for doc in cursor}

    async def is_closed(self, school_code: str, school_year: str) -> bool:
        key = {"school_code": school_code, "school_year": school_year, "term": YEAR}
        found = await self._terms.find_one({**key, "closed": {"$exists": True}})
        return found is not None

    async def close_year(self, school_code: str, school_year: str, closed_at: datetime) -> bool:
        key = {"school_code": school_code, "school_year": school_year, "term": YEAR}
        if await insert_one_new(self._terms, {**key, "closed": {"at": closed_at}}):
            return True
        # Closed again after a term was reopened: the year's document is there, open.
        open_again = {**key, "closed": {"$exists": False}}
        again = await self._terms.update_one(open_again, {"$set": {"closed": {"at": closed_at}}})
        return again.modified_count == 1

    async def reopen_year(self, school_code: str, school_year: str, reopened_at: datetime) -> bool:
        key = {"school_code": school_code, "school_year": school_year, "term": YEAR}
        reopened = await self._terms.update_one(
            {**key, "closed": {"$exists": True}}, {"$unset": {"closed": ""}, "$set": {"reopened": {"at": reopened_at}}}
        )
        return reopened.modified_count == 1

    async def term_statuses(self, school_code: str, school_year: str) -> dict[int, TermStatus]:
        statuses = {t: TermStatus(t) for t in (1, 2)}
        async for doc in self._terms.find({"school_code": school_code, "school_year": school_year, "term": {"$in": [1, 2]}}):
            statuses[doc["term"]] = TermStatus(doc["term"], closed=doc["state"] == "closed", reopened=doc.get("reopened", 0) > 0)
        return statuses

    async def set_term(self, school_code: str, school_year: str, action: TermAction) -> bool:
        key = {"school_code": school_code, "school_year": school_year, "term": action.term}
        event = action.logged()
        state, other = ("closed", "open") if action.closed else ("open", "closed")
        first = {**key, "state": state, "reopened": 0, "revision": 1, "history": [event], "message_ids": [action.message_id]}
        if action.closed and await insert_one_new(self._terms, first):
            return True
        # Arrays of documents are rewritten whole under a revision check ($push of documents is
        # not portable to the embedded server); a message that already acted never acts again.
        doc = await self._terms.find_one({**key, "state": other, "message_ids": {"$nin": [action.message_id]}})
        if doc is None:
            return False
        result = await self._terms.update_one(
            {**key, "revision": doc["revision"]},
            {
                "$set": {
                    "state": state,
                    "revision": doc["revision"] + 1,
                    "reopened": doc["reopened"] + (0 if action.closed else 1),
                    "history": [*doc["history"], event],
                },
                "$push": {"message_ids": action.message_id},
            },
        )
        if result.modified_count != 1:
            raise TransientError(f"term {action.term} changed meanwhile; the command is tried again")
        return True

    async def term_log(self, school_code: str, school_year: str) -> list[dict[str, Any]]:
        cursor = self._terms.find(
            {"school_code": school_code, "school_year": school_year, "term": {"$in": [1, 2]}}, {"term": 1, "history": 1}
        )
        docs = sorted([doc async for doc in cursor], key=lambda doc: doc["term"])
        return [{"term": doc["term"], **event} for doc in docs for event in doc["history"]]

    async def stored(self, school_code: str, school_year: str, kind: Kind, keys: list[EntryKey]) -> dict[EntryKey, Stored]:
        if not keys:
            return {}
        wanted = set(keys)
        cursor = self._assessments.find(
            {"_id": {"$in": [entry_id(school_year, key) for key in keys]}, "kind": kind},
            {"values": 1, "revision": 1, "message_ids": 1, "student_ref": 1, "subject": 1, "term": 1},
        )
        model = model_for(kind)
        found = {}
        async for doc in cursor:
            key = (doc["student_ref"], doc["subject"], doc["term"])
            if key in wanted:
                found[key] = Stored(model.model_validate(doc["values"]), doc["revision"], frozenset(doc["message_ids"]))
        return found

    async def write(self, school_code: str, school_year: str, kind: Kind, writes: list[Write]) -> None:
        new = [w for w in writes if w.revision == 0]
        inserted = await insert_new(
            self._assessments,
            [
                {
                    "_id": entry_id(school_year, w.key),
                    "school_code": school_code,
                    "school_year": school_year,
                    "kind": kind,
                    "student_ref": w.key[0],
                    "subject": w.key[1],
                    "term": w.key[2],
                    "values": w.values.model_dump(mode="json"),
                    "revision": 1,
                    "message_ids": [w.message_id],
                    "recorded": w.recorded(),
                    "changes": [],
                }
                for w in new
            ],
        )
        lost = len(new) - inserted
        for w in writes:
            if w.revision == 0:
                continue
            where = {"_id": entry_id(school_year, w.key), "revision": w.revision}
            doc = await self._assessments.find_one(where, {"changes": 1})
            result = None if doc is None else await self._assessments.update_one(
                where,
                {
                    "$set": {
                        "values": w.values.model_dump(mode="json"),
                        "revision": w.revision + 1,
                        "changes": [*doc["changes"], change_entry(w)],
                    },
                    "$push": {"message_ids": w.message_id},
                },
            )
            lost += 1 if result is None else 1 - result.modified_count
        if lost:
            raise TransientError(f"{lost} entr(ies) changed meanwhile; the command is tried again")

    async def assessments(self, school_code: str, school_year: str) -> list[SubjectTermScores]:
        return await self._values(school_code, school_year, SubjectTermScores)

    async def homeroom(self, school_code: str, school_year: str) -> list[StudentTermConduct]:
        return await self._values(school_code, school_year, StudentTermConduct)

    async def _values(self, school_code: str, school_year: str, model: type[M]) -> list[M]:
        cursor = self._assessments.find(
            {"school_code": school_code, "school_year": school_year, "kind": kind_of(model)}, {"values": 1}
        )
        return [model.model_validate(doc["values"]) async for doc in cursor]

    async def entries_of(self, school_year: str, refs: list[str], subjects: list[str]) -> list[Entry]:
        # By `_id`, every key the entries may have: the embedded MongoDB-wire server answers an `_id` `$in` from its
        # key, and any other filter on a student by scanning every entry of every school.
        ids = [entry_id(school_year, (ref, subject, term)) for ref in refs for subject in [*subjects, HOMEROOM] for term in ENTRY_TERMS]
        if not ids:
            return []
        cursor = self._assessments.find({"_id": {"$in": ids}}, {"_id": 0, "kind": 1, "values": 1})
        return [model_for(doc["kind"]).model_validate(doc["values"]) async for doc in cursor]

    async def changes(self, school_code: str, school_year: str) -> list[dict[str, Any]]:
        cursor = self._assessments.find(
            {"school_code": school_code, "school_year": school_year, "revision": {"$gt": 1}},
            {"student_ref": 1, "subject": 1, "term": 1, "changes": 1},
        )
        return [
            {"student_ref": d["student_ref"], "subject": d["subject"], "term": d["term"], **change}
            async for d in cursor
            for change in d["changes"]
        ]

    def _record_document(self, record: RecordVersion) -> dict[str, Any]:
        return {
            **record.model_dump(mode="json", exclude={"content"}),
            CANONICAL: True,
            **self.sealed.sealed_bytes(owner_of(record.key), record.content),
        }

    async def add_records(self, records: list[RecordVersion]) -> int:
        return await insert_new(self._records, [self._record_document(r) for r in records])

    async def add_amended(self, record: RecordVersion, message_id: str) -> bool:
        return await insert_one_new(self._records, {**self._record_document(record), AMENDED_BY: message_id})

    async def replace_record(self, kept: RecordVersion, record: RecordVersion, note: dict[str, Any]) -> bool:
        as_kept = {"record_id": kept.record_id, "version": kept.version, "seal": kept.seal}
        doc = await self._records.find_one(as_kept, {REPLACED: 1})
        if doc is None:
            return False
        history = [*doc.get(REPLACED, []), note]
        # Field by field ($set): the embedded server takes no whole-document replacement carrying bytes.
        replaced = await self._records.update_one(
            {"_id": doc["_id"], "seal": kept.seal}, {"$set": {**self._record_document(record), REPLACED: history}}
        )
        return replaced.modified_count == 1

    async def replacements(self, record_id: str, version: int) -> list[dict[str, Any]]:
        doc = await self._records.find_one({"record_id": record_id, "version": version}, {REPLACED: 1})
        return [] if doc is None else list(doc.get(REPLACED, []))

    async def amended_by(self, message_id: str) -> RecordVersion | None:
        found = await self._records.find_one({AMENDED_BY: message_id})
        return None if found is None else self._record_version(found)

    async def amended_versions(self, record_ids: list[str]) -> list[VersionKey]:
        # By record id alone, the versions picked here (see `records_of`); only the keys are read, nothing opened.
        if not record_ids:
            return []
        cursor = self._records.find({"record_id": {"$in": record_ids}}, {"_id": 0, "record_id": 1, "version": 1})
        return sorted([(doc["record_id"], doc["version"]) async for doc in cursor if doc["version"] > 1])

    async def records(self, school_code: str, school_year: str, version: int) -> list[RecordVersion]:
        cursor = self._records.find(
            {"school_code": school_code, "school_year": school_year, "version": version}
        )
        found = [self._record_version(doc) async for doc in cursor]
        return sorted(found, key=lambda r: r.record_id)

    async def records_of(self, record_ids: list[str], version: int) -> list[RecordVersion]:
        # By record id alone, the version picked here (see `entries_of`): a record has a handful of versions.
        if not record_ids:
            return []
        cursor = self._records.find({"record_id": {"$in": record_ids}})
        found = [self._record_version(doc) async for doc in cursor if doc["version"] == version]
        return sorted(found, key=lambda r: r.record_id)

    async def record(self, record_id: str, version: int | None) -> RecordVersion | None:
        query: dict[str, Any] = {"record_id": record_id}
        if version is not None:
            query["version"] = version
        found = [self._record_version(doc) async for doc in self._records.find(query)]
        return max(found, key=lambda r: r.version, default=None)

    async def has_enrolments(self, school_code: str, school_year: str) -> bool:
        found = await self._enrolments.find_one({"school_code": school_code, "school_year": school_year}, {"_id": 1})
        return found is not None

    async def note_statuses(self, notes: list[StatusNote]) -> int:
        return await insert_new(
            self._statuses,
            [
                {"_id": n.key, "record_id": n.record_id, "version": n.version, "status": n.status, "at": n.at}
                for n in notes
            ],
        )

    async def statuses_of(self, record_ids: list[str]) -> dict[VersionKey, set[str]]:
        # By record id, a single indexed field (the embedded MongoDB-wire server scans for a compound `$in`).
        found: dict[VersionKey, set[str]] = {}
        if not record_ids:
            return found
        cursor = self._statuses.find({"record_id": {"$in": record_ids}}, {"record_id": 1, "version": 1, "status": 1})
        async for doc in cursor:
            found.setdefault((doc["record_id"], doc["version"]), set()).add(doc["status"])
        return found

    async def entry_history(self, school_year: str, student_ref: str, subjects: list[str]) -> list[Revision]:
        # By `_id`, every key the entries may have (see `entries_of`).
        ids = [entry_id(school_year, (student_ref, subject, term)) for subject in subjects for term in ENTRY_TERMS]
        if not ids:
            return []
        projection = {"kind": 1, "subject": 1, "term": 1, "values": 1, "recorded": 1, "message_ids": 1, "changes": 1}
        found = [d async for d in self._assessments.find({"_id": {"$in": ids}}, projection)]
        return [revision for d in sorted(found, key=lambda d: d["_id"]) for revision in revisions(d)]


@dataclass
class _Row:
    school_code: str
    kind: Kind
    values: Entry
    revision: int
    message_ids: set[str]
    changes: list[dict[str, Any]]
    recorded: dict[str, Any] = field(default_factory=dict)
    first_message: str = ""


@dataclass
class _Term:
    state: str
    reopened: int
    history: list[dict[str, Any]]


class InMemoryGradesRepository:
    """For unit and wiring tests: the same promises as the MongoDB repository (the contract tests hold both to them)."""

    def __init__(self) -> None:
        self._enrolments: dict[tuple[str, str], RegisteredStudent] = {}  # (student ref, school year)
        self._rows: dict[tuple[str, EntryKey], _Row] = {}  # (school year, entry key)
        self._closed: dict[tuple[str, str], datetime] = {}  # (school code, school year)
        self._terms: dict[tuple[str, str, int], _Term] = {}  # (school code, school year, term)
        self._records: dict[VersionKey, RecordVersion] = {}
        self._amended_by: dict[str, VersionKey] = {}  # amendment's message id -> the version it made
        self._replaced: dict[VersionKey, list[dict[str, Any]]] = {}  # a version's replacements, oldest first
        self._statuses: dict[str, StatusNote] = {}

    async def enrol(self, students: list[RegisteredStudent]) -> int:
        added = 0
        for student in students:
            key = (student.student_ref, student.enrolment.school_year)
            if key not in self._enrolments:
                self._enrolments[key] = student
                added += 1
        return added

    async def enrolments_of(self, school_year: str, refs: list[str]) -> dict[str, RegisteredStudent]:
        known = self._enrolments
        return {ref: known[(ref, school_year)] for ref in refs if (ref, school_year) in known}

    async def enrolled(self, school_code: str, school_year: str) -> list[RegisteredStudent]:
        return [
            s
            for s in self._enrolments.values()
            if s.enrolment.school_code == school_code and s.enrolment.school_year == school_year
        ]

    async def schools_of(self, student_ref: str) -> set[str]:
        return {s.enrolment.school_code for (ref, _), s in self._enrolments.items() if ref == student_ref}

    async def is_closed(self, school_code: str, school_year: str) -> bool:
        return (school_code, school_year) in self._closed

    async def close_year(self, school_code: str, school_year: str, closed_at: datetime) -> bool:
        if (school_code, school_year) in self._closed:
            return False
        self._closed[(school_code, school_year)] = closed_at
        return True

    async def reopen_year(self, school_code: str, school_year: str, reopened_at: datetime) -> bool:
        return self._closed.pop((school_code, school_year), None) is not None

    async def term_statuses(self, school_code: str, school_year: str) -> dict[int, TermStatus]:
        statuses = {}
        for t in (1, 2):
            lock = self._terms.get((school_code, school_year, t))
            statuses[t] = TermStatus(t) if lock is None else TermStatus(t, lock.state == "closed", lock.reopened > 0)
        return statuses

    async def set_term(self, school_code: str, school_year: str, action: TermAction) -> bool:
        lock = self._terms.get((school_code, school_year, action.term))
        if lock is None:
            if not action.closed:
                return False
            self._terms[(school_code, school_year, action.term)] = _Term("closed", 0, [action.logged()])
            return True
        wanted = "closed" if action.closed else "open"
        if lock.state == wanted or any(h["message_id"] == action.message_id for h in lock.history):
            return False
        lock.state = wanted
        lock.reopened += 0 if action.closed else 1
        lock.history.append(action.logged())
        return True

    async def term_log(self, school_code: str, school_year: str) -> list[dict[str, Any]]:
        return [
            {"term": term, **event}
            for term in (1, 2)
            if (lock := self._terms.get((school_code, school_year, term))) is not None
            for event in lock.history
        ]

    async def stored(self, school_code: str, school_year: str, kind: Kind, keys: list[EntryKey]) -> dict[EntryKey, Stored]:
        found = {}
        for key in keys:
            row = self._rows.get((school_year, key))
            if row is not None and row.kind == kind:
                found[key] = Stored(row.values, row.revision, frozenset(row.message_ids))
        return found

    async def write(self, school_code: str, school_year: str, kind: Kind, writes: list[Write]) -> None:
        lost = 0
        for w in writes:
            row = self._rows.get((school_year, w.key))
            if w.revision == 0:
                if row is None:
                    recorded = w.recorded()
                    self._rows[(school_year, w.key)] = _Row(
                        school_code, kind, w.values, 1, {w.message_id}, [], recorded, w.message_id
                    )
                else:
                    lost += 1
            elif row is None or row.revision != w.revision:
                lost += 1
            else:
                row.values, row.revision = w.values, row.revision + 1
                row.message_ids.add(w.message_id)
                row.changes.append(change_entry(w))
        if lost:
            raise TransientError(f"{lost} entr(ies) changed meanwhile; the command is tried again")

    async def assessments(self, school_code: str, school_year: str) -> list[SubjectTermScores]:
        return [r.values for r in self._rows_of(school_code, school_year) if isinstance(r.values, SubjectTermScores)]

    async def homeroom(self, school_code: str, school_year: str) -> list[StudentTermConduct]:
        return [r.values for r in self._rows_of(school_code, school_year) if isinstance(r.values, StudentTermConduct)]

    async def entries_of(self, school_year: str, refs: list[str], subjects: list[str]) -> list[Entry]:
        students, kept = set(refs), {*subjects, HOMEROOM}
        return [
            r.values
            for (y, key), r in self._rows.items()
            if y == school_year and key[0] in students and key[1] in kept and key[2] in ENTRY_TERMS
        ]

    def _rows_of(self, school_code: str, school_year: str) -> list[_Row]:
        return [r for (y, _), r in self._rows.items() if y == school_year and r.school_code == school_code]

    async def changes(self, school_code: str, school_year: str) -> list[dict[str, Any]]:
        return [
            {"student_ref": key[0], "subject": key[1], "term": key[2], **change}
            for (y, key), r in self._rows.items()
            if y == school_year and r.school_code == school_code
            for change in r.changes
        ]

    async def add_records(self, records: list[RecordVersion]) -> int:
        added = 0
        for record in records:
            if record.key not in self._records:
                self._records[record.key] = record
                added += 1
        return added

    async def add_amended(self, record: RecordVersion, message_id: str) -> bool:
        if not await self.add_records([record]):
            return False
        self._amended_by[message_id] = record.key
        return True

    async def replace_record(self, kept: RecordVersion, record: RecordVersion, note: dict[str, Any]) -> bool:
        if self._records.get(kept.key) != kept:
            return False
        self._records[kept.key] = record
        self._replaced.setdefault(kept.key, []).append(note)
        return True

    async def replacements(self, record_id: str, version: int) -> list[dict[str, Any]]:
        return list(self._replaced.get((record_id, version), []))

    async def amended_by(self, message_id: str) -> RecordVersion | None:
        key = self._amended_by.get(message_id)
        return None if key is None else self._records[key]

    async def amended_versions(self, record_ids: list[str]) -> list[VersionKey]:
        wanted = set(record_ids)
        return sorted(key for key in self._records if key[0] in wanted and key[1] > 1)

    async def records(self, school_code: str, school_year: str, version: int) -> list[RecordVersion]:
        found = [
            r
            for r in self._records.values()
            if r.school_code == school_code and r.school_year == school_year and r.version == version
        ]
        return sorted(found, key=lambda r: r.record_id)

    async def records_of(self, record_ids: list[str], version: int) -> list[RecordVersion]:
        found = [self._records[(rid, version)] for rid in set(record_ids) if (rid, version) in self._records]
        return sorted(found, key=lambda r: r.record_id)

    async def record(self, record_id: str, version: int | None) -> RecordVersion | None:
        found = [r for (rid, v), r in self._records.items() if rid == record_id and (version is None or v == version)]
        return max(found, key=lambda r: r.version, default=None)

    async def has_enrolments(self, school_code: str, school_year: str) -> bool:
        return bool(await self.enrolled(school_code, school_year))

    async def note_statuses(self, notes: list[StatusNote]) -> int:
        added = 0
        for note in notes:
            if note.key not in self._statuses:
                self._statuses[note.key] = note
                added += 1
        return added

    async def statuses_of(self, record_ids: list[str]) -> dict[VersionKey, set[str]]:
        wanted = set(record_ids)
        found: dict[VersionKey, set[str]] = {}
        for note in self._statuses.values():
            if note.record_id in wanted:
                found.setdefault((note.record_id, note.version), set()).add(note.status)
        return found

    async def entry_history(self, school_year: str, student_ref: str, subjects: list[str]) -> list[Revision]:
        kept = set(subjects)
        rows = sorted(
            (entry_id(y, key), key, r)
            for (y, key), r in self._rows.items()
            if y == school_year and key[0] == student_ref and key[1] in kept and key[2] in ENTRY_TERMS
        )
        return [
            revision
            for _, key, r in rows
            for revision in revisions(
                {
                    "kind": r.kind,
                    "subject": key[1],
                    "term": key[2],
                    "values": r.values.model_dump(mode="json"),
                    "recorded": r.recorded,
                    "message_ids": [r.first_message],
                    "changes": r.changes,
                }
            )
        ]
