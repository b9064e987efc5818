"""A class's records set against identity's register, as a review before signing shows them.

Pure: the students enrolled in a class, the records grades assembled for it and the register's identity of each
student today in; per class, the students a reviewer must look at out: those without a record, those the register
no longer knows, those whose record lacks entries, and those whose record's identity fields differ from the
register's (which field, as the record has it and as the register has it now).

grades makes this comparison because it wrote the record's identity fields, from identity's register, when it
assembled the record; it is the one service identity answers look-ups by student reference (with its own
certificate, each look-up in identity's access log); and it knows who is enrolled in each class.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.contracts.grades import ClassIdentities, IdentityDifference, RecordVersion, StudentFinding
from shared.contracts.identity import RegisteredStudent, StudentIdentity


def _shown(value: Any) -> str:
    return "" if value is None else str(value)


def identity_differences(in_record: StudentIdentity, in_register: StudentIdentity) -> list[IdentityDifference]:
    """The identity fields whose value in the record is not the register's now, in the fields' order."""
    then, now = in_record.model_dump(mode="json"), in_register.model_dump(mode="json")
    return [
        IdentityDifference(field=name, in_record=_shown(then.get(name)), in_register=_shown(now.get(name)))
        for name in StudentIdentity.model_fields
        if then.get(name) != now.get(name)
    ]


def finding(
    student_ref: str, record: RecordVersion | None, in_register: StudentIdentity | None
) -> StudentFinding | None:
    """What a reviewer must look at for one student of the class, or None when the record agrees with the register."""
    fields = record.fields if record is not None else None
    differences = identity_differences(fields.student.identity, in_register) if fields and in_register else []
    complete = fields.complete and not fields.missing if fields else None
    if fields is not None and in_register is not None and not differences and complete:
        return None
    named = in_register or (fields.student.identity if fields else None)
    return StudentFinding(
        student_ref=student_ref,
        record_id=record.record_id if record is not None else None,
        full_name=named.full_name if named else "",
        in_register=in_register is not None,
        complete=complete,
        differences=differences,
    )


def compare_classes(
    enrolled: Iterable[RegisteredStudent],
    records: Iterable[RecordVersion],
    register: Mapping[str, StudentIdentity],
) -> list[ClassIdentities]:
    """Per class (in name order): how many students are enrolled, how many records it has, and each student's
    finding (`finding`), the students in name order.

    A record belongs to the class its document names; a student to the class they are enrolled in.
    """
    students: dict[str, set[str]] = {}
    for student in enrolled:
        students.setdefault(student.enrolment.class_name, set()).add(student.student_ref)
    by_ref: dict[str, dict[str, RecordVersion]] = {}
    for record in records:
        by_ref.setdefault(record.fields.class_name, {})[record.student_ref] = record
    classes = []
    for class_name in sorted(students.keys() | by_ref.keys()):
        recorded = by_ref.get(class_name, {})
        found = [
            f
            for ref in (students.get(class_name, set()) | recorded.keys())
            if (f := finding(ref, recorded.get(ref), register.get(ref))) is not None
        ]
        found.sort(key=lambda f: (f.full_name, f.student_ref))
        classes.append(
            ClassIdentities(
                class_name=class_name,
                students=len(students.get(class_name, ())),
                records=len(recorded),
                findings=found,
            )
        )
    return classes
