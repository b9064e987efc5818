"""A school's records as a list: where each record version stands, and what of the student a reader sees.

Pure: the statuses a record version reached (as grades noted them from the services that took it further)
and the reader (a verified actor) in, a line's status and the student's shown identity out.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import get_args

from shared.auth import Actor
from shared.contracts.grades import SIGNED, ClassSummary, RecordStatus

#: What the services after grades announce of a record version, in the order it happens: all three signatures
#: (signing's RecordsCompleted), kept in the archive (RecordsArchived), received by the ministry (RecordsDelivered).
LATER: tuple[RecordStatus, ...] = SIGNED
STATUSES: tuple[RecordStatus, ...] = get_args(RecordStatus)
#: Each step after assembly as a summary names its count (`ClassSummary`).
STEPS: dict[RecordStatus, str] = {
    "signed-and-sealed": "signed_and_sealed",
    "archived": "archived",
    "delivered": "delivered",
}
#: Digits of a personal ID a listing shows; the others are hidden.
SHOWN_DIGITS = 4


def status_of(complete: bool, reached: Iterable[str]) -> RecordStatus:
    """A version's status: the furthest step announced for it, else assembled (or incomplete, when it lacks entries).

    A step is taken as announced even when an earlier one's announcement was not seen: the archive keeps only
    what carries every signature, and the ministry receives only what the archive keeps.
    """
    noted = set(reached)
    for status in reversed(LATER):
        if status in noted:
            return status
    return "assembled" if complete else "incomplete"


def summaries(standing: Iterable[tuple[str, bool, RecordStatus]]) -> list[ClassSummary]:
    """Records counted per class (class order), from each record's (class, complete, status): how many, how many
    lack entries, and how many reached each step after assembly (each step counts the records gone past it too)."""
    counts: dict[str, dict[str, int]] = {}
    for class_name, complete, status in standing:
        n = counts.setdefault(class_name, dict.fromkeys(("records", "incomplete", *STEPS.values()), 0))
        n["records"] += 1
        n["incomplete"] += not complete
        reached = LATER.index(status) if status in LATER else -1
        for step in LATER[: reached + 1]:
            n[STEPS[step]] += 1
    return [ClassSummary(class_name=name, **counts[name]) for name in sorted(counts, key=class_order)]


def class_order(class_name: str) -> tuple[int, str]:
    """Classes in the order a school lists them: by grade (6A1 before 10A1), then by name (6A2 before 6A10)."""
    parts = re.split(r"(\d+)", class_name)
    grade = int(parts[1]) if len(parts) > 1 and parts[0] == "" else 0
    return grade, "".join(part.zfill(4) if part.isdigit() else part for part in parts[2:] or parts)


def name_order(full_name: str | None) -> tuple[str, str]:
    """Students in the order a Vietnamese class list has them: by given name (the last word), then by the whole
    name, letters compared without their tone marks and đ as d, so Đặng stands beside Dương, not after Võ."""
    if not full_name:
        return "", ""
    plain = "".join(
        c for c in unicodedata.normalize("NFD", full_name.casefold().replace("đ", "d")) if not unicodedata.combining(c)
    )
    return plain.split()[-1], plain


def masked(personal_id: str) -> str:
    """A personal ID with all but its last `SHOWN_DIGITS` digits hidden: "079214000123" -> "********0123"."""
    if len(personal_id) <= SHOWN_DIGITS:
        return "*" * len(personal_id)
    return "*" * (len(personal_id) - SHOWN_DIGITS) + personal_id[-SHOWN_DIGITS:]


def sees_names(actor: Actor, school_code: str, class_name: str) -> bool:
    """Whether a reader of a school's records list sees the students' names.

    The school's principal and records administrator see every student's name; a teacher sees the names in the
    classes they teach or lead. A department operator, and anyone else, sees the masked personal ID only: a
    listing serves to find a record and its status, which needs no name (data minimisation, Law 91/2025/QH15).
    """
    if actor.school_code != school_code or actor.has("operator"):
        return False
    if actor.has("principal") or actor.has("school_admin"):
        return True
    return class_name in actor.classes or actor.homeroom_class == class_name
