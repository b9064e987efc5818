"""A signed year record read back into the entries it was computed from, so its results can be explained again.

A record document holds every entry a result follows from (scores, levels, tests, comment levels,
conduct, ratings, absences, comments) and names the rule set that computed the results. Put back
under that rule set, the entries give the same record again: `record_from_document` returns it
only when it writes the very same document, so whatever is explained from it is what was decided
when the record was signed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from services.grades.domain.combination import own_subjects
from services.grades.domain.record import TERMS, YearRecord, assemble_record
from services.grades.rulesets.model import RuleSet, SubjectRule
from shared.contracts.grades import StudentTermConduct, SubjectTermScores
from shared.contracts.identity import Enrolment, RegisteredStudent, StudentSnapshot
from shared.contracts.record import RecordDocument

#: What a document of an earlier release may hold that is not read: every result's explanation,
#: which the rule set gives again from the rest.
NOT_READ = frozenset({"explanations"})

#: A part of a document that the document, or the record rebuilt from it, does not have.
_ABSENT = object()


class UnreadableRecord(ValueError):
    """A record document that cannot be read back into the entries and rule set that made it; says why."""


class UnknownRuleSet(UnreadableRecord):
    """A record document computed by a rule set this release does not hold."""


def record_from_document(document: Mapping[str, Any], rule_sets: Mapping[str, RuleSet]) -> YearRecord:
    """The year record that wrote `document`: its entries put back under the rule set the document names.

    The rebuilt record writes the same document (less the explanations an earlier release kept in
    it); a document it would write otherwise, in any part, is refused with the parts that differ.
    """
    name = _name(document)
    rule_set = _rule_set(name, document, rule_sets)
    with _reading(name, "enrolment and student"):
        student, snapshot = _student(document)
    with _reading(name, "combination"):
        table = own_subjects(rule_set, student.enrolment)
    if table is None:
        raise UnreadableRecord(f"{name}: {rule_set.key} has no subject table for grade {student.enrolment.grade}")
    with _reading(name, "missing entries"):
        missing = _missing(document)
    entries = [e for rule in table for e in _subject_entries(name, document, rule, missing, snapshot.student_ref)]
    with _reading(name, "homeroom entries"):
        homeroom = [_homeroom_entry(document, rule_set, t, snapshot.student_ref) for t in TERMS if t not in missing[""]]
    with _reading(name, "version and amendment"):
        version, amendment = _version(document)
        record = replace(assemble_record(rule_set, student, snapshot, entries, homeroom, version), amendment=amendment)
    with _reading(name, "results"):
        written = record.document()
    expected = {key: value for key, value in document.items() if key not in NOT_READ}
    if differing := sorted(k for k in expected.keys() | written.keys() if expected.get(k, _ABSENT) != written.get(k, _ABSENT)):
        raise UnreadableRecord(
            f"{name}: its entries under {rule_set.key} do not give the record it is: {', '.join(differing)} differ"
        )
    return record


def _name(document: Mapping[str, Any]) -> str:
    """The record as errors name it: its id and version, as far as the document says them."""
    if not isinstance(document, Mapping):
        return "the record document"
    return f"record {document.get('record_id', '(no id)')} v{document.get('version', '?')}"


def _rule_set(name: str, document: Mapping[str, Any], rule_sets: Mapping[str, RuleSet]) -> RuleSet:
    if not isinstance(document, Mapping):
        raise UnreadableRecord(f"{name} is not a JSON object")
    key = document.get("rule_set")
    found = rule_sets.get(key) if isinstance(key, str) else None
    if found is None:
        raise UnknownRuleSet(
            f"{name} was computed by rule set {key!r}, which this release does not hold "
            f"(it holds {', '.join(sorted(rule_sets)) or 'none'})"
        )
    return found


@contextmanager
def _reading(name: str, part: str) -> Iterator[None]:
    """A part of the document not shaped as this release writes it is an UnreadableRecord naming that part."""
    try:
        yield
    except UnreadableRecord:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ArithmeticError, ValueError) as problem:
        raise UnreadableRecord(f"{name}: its {part} cannot be read ({_why(problem)})") from problem


def _why(problem: Exception) -> str:
    if isinstance(problem, KeyError):
        return f"no {problem.args[0]!r}"
    if isinstance(problem, ValidationError):
        first = problem.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc']) or 'value'}: {first['msg']}"
    return str(problem) or type(problem).__name__


def _student(document: Mapping[str, Any]) -> tuple[RegisteredStudent, StudentSnapshot]:
    """The student and their enrolment, as the record contract reads them from the document, with the
    electives and learning topics the document notes (grades 10-12)."""
    fields = RecordDocument.model_validate(document)
    combination = document.get("combination") or {}
    enrolment = Enrolment(
        school_code=fields.school.code,
        school_year=fields.school_year,
        grade=fields.grade,
        class_name=fields.class_name,
        electives=tuple(combination.get("electives", ())),
        learning_topics=tuple(combination.get("learning_topics", ())),
    )
    return RegisteredStudent(student_ref=fields.student.student_ref, enrolment=enrolment), fields.student


def _version(document: Mapping[str, Any]) -> tuple[int, Mapping[str, Any] | None]:
    version, amendment = document["version"], document.get("amendment")
    if not isinstance(version, int) or isinstance(version, bool):
        raise TypeError(f"version {version!r} is not a number")
    if amendment is not None and not isinstance(amendment, Mapping):
        raise TypeError("the amendment is not a JSON object")
    return version, amendment


def _missing(document: Mapping[str, Any]) -> dict[str, set[int]]:
    """The terms without an entry, by subject ("" for the homeroom teacher's)."""
    missing: dict[str, set[int]] = {"": set()}
    for item in document["missing"]:
        subject = "" if item.get("entry") == "homeroom" else item["subject"]
        missing.setdefault(subject, set()).add(item["term"])
    return missing


def _subject_entries(
    name: str, document: Mapping[str, Any], rule: SubjectRule, missing: Mapping[str, set[int]], student_ref: str
) -> list[SubjectTermScores]:
    """One subject's entries, one per term with an entry, each with the subject teacher's comment."""
    with _reading(name, f"{rule.name} entries"):
        written = next((s for s in document["subjects"] if s["name"] == rule.name), None)
        if written is None:
            raise KeyError(rule.name)
        comments = document["comments"]["subjects"].get(rule.name, {})
        return [
            SubjectTermScores(
                student_ref=student_ref,
                subject=rule.name,
                term=term,
                comment=comments.get(f"term_{term}", ""),
                **_assessments(rule, written[f"term_{term}"]),
            )
            for term in TERMS
            if term not in missing.get(rule.name, ())
        ]


def _assessments(rule: SubjectRule, written: Mapping[str, Any] | None) -> dict[str, Any]:
    """A term's assessments as the subject's kind writes them: scores, a comment level, or a level and tests."""
    if rule.kind == "comment":
        return {"comment_level": written["level"] if written is not None else None}
    if not isinstance(written, Mapping):
        raise TypeError(f"{rule.name} has an entry but its assessments are {written!r}")
    if rule.scored:
        return {
            "regular": tuple(_score(v) for v in written["regular"]),
            "midterm": _score(written["midterm"]),
            "final": _score(written["final"]),
        }
    return {
        "level": written["level"],
        "midterm_level": written.get("midterm_level"),
        "midterm": _score(written["midterm_test"]) if "midterm_test" in written else None,
        "final": _score(written["test"]) if "test" in written else None,
    }


def _score(text: Any) -> Decimal:
    """A score as the document writes it ("7.5", "8.0", "9"): exactly that decimal."""
    if not isinstance(text, str):
        raise TypeError(f"score {text!r} is not written as text")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"score {text!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"score {text!r} is not a number")
    return value


def _homeroom_entry(document: Mapping[str, Any], rule_set: RuleSet, term: int, student_ref: str) -> StudentTermConduct:
    """The homeroom teacher's entry of a term: conduct (secondary) or ratings (primary), absences, comment."""
    period = f"term_{term}"
    ratings: dict[str, Any] = (
        {"conduct": document["conduct"][period]}
        if rule_set.family == "secondary"
        else {"qualities": document["qualities"][period], "competencies": document["competencies"][period]}
    )
    return StudentTermConduct(
        student_ref=student_ref,
        term=term,
        absences=document["absences"][period],
        comment=document["comments"]["homeroom"][period],
        **ratings,
    )
