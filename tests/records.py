"""Record versions for tests: a document with every field a record has, written as its canonical bytes."""

from __future__ import annotations

from typing import Any

from shared.contracts.grades import RecordVersion
from shared.contracts.record import content_of

RULE_SET = "circular-22-2021/v2"


def identity(personal_id: str) -> dict[str, Any]:
    """A student's identity as a record document holds it."""
    return {"personal_id": personal_id, "full_name": "Nguyễn Văn An", "date_of_birth": "2014-05-06", "sex": "M"}


def record_document(
    record_id: str, version: int, school_code: str, school_year: str, student_ref: str, **fields: Any
) -> dict[str, Any]:
    """A small record document with every field `shared.contracts.record.RecordDocument` names; `fields` add or replace."""
    serial = sum(map(ord, student_ref)) % 10**6
    return {
        "record_id": record_id,
        "version": version,
        "rule_set": RULE_SET,
        "regulation": "Thông tư 22/2021/TT-BGDĐT",
        "school": {"code": school_code},
        "school_year": school_year,
        "grade": 6,
        "class_name": "6A1",
        "student": {
            "student_ref": student_ref,
            "identity": identity(f"079214{serial:06d}"),
        },
        "subjects": [],
        "complete": True,
        "missing": [],
        **fields,
    }


def record_version(
    record_id: str,
    version: int = 1,
    school_code: str = "79000701",
    school_year: str = "2025-2026",
    student_ref: str = "student-0001",
    seal: str | None = None,
    **fields: Any,
) -> RecordVersion:
    """A record version whose content is `record_document(...)`."""
    document = record_document(record_id, version, school_code, school_year, student_ref, **fields)
    return RecordVersion(
        record_id=record_id,
        version=version,
        school_code=school_code,
        school_year=school_year,
        student_ref=student_ref,
        content=content_of(document),
        seal=seal,
    )


def record_documents(made: list[object]) -> list[dict]:
    """Of what was made canonical (the `canonicalised` fixture), the record documents: a record names its student,
    nothing else that is made canonical does."""
    return [value for value in made if isinstance(value, dict) and "student" in value and "record_id" in value]
