"""Amending a signed record: which version an amendment replaces, which corrections it takes, what it changes.

A record version that carries every signature is never corrected in place. The issuing school's principal or
records administrator (`authority.authorise_amendment`) asks for a new version instead: it supersedes the
record's latest version, which must be signed and sealed (and so on its way to the archive, which keeps every
version), and it says why (a reason code of the amendment contract) and who asked, in its document, under its
own signatures. Pure: what grades knows of the record in, a refusal or the amendment's parts out.

The corrections are entries of the record's student, checked by the same rules as every entry (the grade's rule
set, the subjects the student takes, the values: `entries`), but not against the term and year locks: a signed
record belongs to a closed year, and the amendment is the way to correct it. An amendment that changes nothing of
the record is refused: a new version must differ from the one it supersedes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.grades.domain.entries import Entry, EntryProblem, conduct_problems, enrolled_entry_problems
from services.grades.domain.record import YearRecord
from services.grades.rulesets.model import RuleSet
from shared.contracts.grades import SIGNED, RejectedCorrection, StudentTermConduct, SubjectTermScores
from shared.contracts.identity import RegisteredStudent
from shared.contracts.limits import WORDS
from shared.contracts.record import Amendment
from shared.errors import InvalidMessage

#: The parts of a record document that name the version rather than the record: never "a change" of it.
VERSION_PARTS = frozenset({"version", "amendment"})

OTHER_STUDENT = EntryProblem(
    "other-student", "the correction is another student's entry: an amendment corrects the record's own student"
)
DUPLICATE = EntryProblem("duplicate", "the same entry is corrected twice in this amendment")


class AmendmentRefused(InvalidMessage):
    """An amendment grades does not make; `reason` says why ("not-latest", "not-signed", "nothing-changed")."""


@dataclass(frozen=True)
class Versions:
    """What grades knows of one record's versions: the latest it holds (it assembled the first at the year's
    close, and each amendment's since), and the steps each version reached after it, as the services announced
    them (signed and sealed, archived, delivered)."""

    record_id: str
    held: int
    reached: Mapping[int, frozenset[str]]

    @property
    def latest(self) -> int:
        """The highest version grades knows of, held or announced."""
        return max([self.held, *self.reached])

    def signed(self, version: int) -> bool:
        return not self.reached.get(version, frozenset()).isdisjoint(SIGNED)


def supersession_problem(versions: Versions, supersedes: int) -> AmendmentRefused | None:
    """Why an amendment cannot supersede version `supersedes` of the record, if it cannot.

    It supersedes the latest version only (the archive keeps the versions as a chain, each replacing the one
    before), and only once that version carries every signature: a version still awaiting its signatures is not
    yet part of the record that was issued.
    """
    rid, latest = versions.record_id, versions.latest
    if supersedes != latest:
        which = f"there is no v{supersedes}" if supersedes > latest else f"v{supersedes} is not its latest version"
        return AmendmentRefused(
            f"record {rid}: {which}; v{latest} is the latest, and an amendment supersedes the latest version "
            f"(amend v{latest})",
            reason="not-latest",
        )
    if not versions.signed(latest):
        return AmendmentRefused(
            f"record {rid} v{latest} is not signed and sealed yet: an amendment supersedes a version that carries "
            "every signature (homeroom teacher, principal, school seal), so that the archive keeps both; a version "
            "awaiting its signatures is signed first (`hocba records list` shows where it stands)",
            reason="not-signed",
        )
    if versions.held != latest:
        return AmendmentRefused(
            f"record {rid} v{latest} was not assembled by grades (it holds v{versions.held}): amend it where it was "
            "made",
            reason="not-held",
        )
    return None


# --- the corrections -------------------------------------------------------------------------


def correction_problems(
    rule_set: RuleSet, school_code: str, student: RegisteredStudent, entry: SubjectTermScores | StudentTermConduct
) -> list[EntryProblem]:
    """Every way one correction disagrees with the rules of an entry of the record's student (no term lock)."""
    if entry.student_ref != student.student_ref:
        return [OTHER_STUDENT]
    if isinstance(entry, SubjectTermScores):
        return enrolled_entry_problems(rule_set, school_code, student, entry)
    return conduct_problems(rule_set, entry)


def rejected_corrections(
    rule_set: RuleSet,
    school_code: str,
    student: RegisteredStudent,
    scores: Sequence[SubjectTermScores],
    conduct: Sequence[StudentTermConduct],
) -> list[RejectedCorrection]:
    """The corrections that cannot be taken, each with every problem it has: all of them are said at once, and an
    amendment with any is not made (its corrections go together, as one new version)."""
    rejected: list[RejectedCorrection] = []
    parts: tuple[tuple[str, Sequence[SubjectTermScores | StudentTermConduct]], ...] = (
        ("scores", scores),
        ("conduct", conduct),
    )
    for part, entries in parts:
        seen: set[tuple[str, int]] = set()
        for index, entry in enumerate(entries):
            problems = correction_problems(rule_set, school_code, student, entry)
            key = (entry.subject if isinstance(entry, SubjectTermScores) else "", entry.term)
            if not problems and key in seen:
                problems = [DUPLICATE]
            seen.add(key)
            if problems:
                reason = "; ".join(p.message for p in problems)
                rejected.append(RejectedCorrection(part=part, index=index, code=problems[0].code, reason=reason))
    return rejected


def holds_corrections(record: YearRecord, corrections: Sequence[Entry]) -> bool:
    """Whether each correction is the entry the record holds for its subject (or the homeroom teacher's) and term:
    the record was assembled with these corrections in place."""
    subjects = {(s.rule.name, term): entry for s in record.subjects for term, entry in s.entries.items()}
    for correction in corrections:
        if isinstance(correction, SubjectTermScores):
            held: Entry | None = subjects.get((correction.subject, correction.term))
        else:
            held = record.homeroom.get(correction.term)
        if held != correction:
            return False
    return True


# --- the new version -------------------------------------------------------------------------


def amendment_of(supersedes: int, reason_code: str, note: str, requested_by: str) -> dict[str, Any]:
    """What the new version's document says of itself: the version it supersedes, why, and who asked.

    In the words signing writes under the signatures (`shared.contracts.record.Amendment`), so the version grades
    assembles is the very document that is signed and archived.
    """
    return Amendment(supersedes=supersedes, reason=reason_code, note=note, requested_by=requested_by).model_dump()


def changed_parts(superseded: Mapping[str, Any], amended: Mapping[str, Any]) -> list[str]:
    """The parts of the record document that differ between the version superseded and the new one, by name (its
    version and amendment aside): empty when the amendment changes nothing."""
    keys = sorted(superseded.keys() | amended.keys())
    return [k for k in keys if k not in VERSION_PARTS and superseded.get(k) != amended.get(k)]


def nothing_changed(record_id: str, supersedes: int) -> AmendmentRefused:
    return AmendmentRefused(
        f"nothing changed: the corrections give record {record_id} as v{supersedes} has it (every corrected entry is "
        "as stored, and the student's identity as recorded); a new version must differ from the one it supersedes",
        reason="nothing-changed",
    )


def history_reason(supersedes: int, reason_code: str, note: str) -> str:
    """Why an entry changed, as its history keeps it: the amendment, its reason code and note (cut to fit)."""
    said = f"amendment of v{supersedes} ({reason_code})" + (f": {note}" if note else "")
    return said if len(said) <= WORDS else said[: WORDS - 1] + "…"
