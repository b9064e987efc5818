"""One student's year record, assembled from locked entries and computed by a rule set.

The record's document holds the entries and the results; how each result follows from the entries
(`YearRecord.explanations`) is computed again whenever it is asked for, by the rule set the document names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal
from uuid import NAMESPACE_URL, uuid5

from services.grades.domain import primary, secondary
from services.grades.domain.combination import combination_document, own_subjects
from services.grades.domain.explanation import Explanation
from services.grades.domain.scores import (
    plain,
    score_text,
    term_average,
    term_average_exact,
    year_average,
    year_average_exact,
)
from services.grades.rulesets.model import RuleSet, SubjectRule
from shared.contracts.grades import StudentTermConduct, SubjectTermScores
from shared.contracts.identity import RegisteredStudent, StudentSnapshot

TERMS = (1, 2)
TERM_NAMES = {1: "term I", 2: "term II"}
Period = Literal["term_1", "term_2", "year"]
PERIODS: tuple[Period, ...] = ("term_1", "term_2", "year")
PERIOD_NAMES = {"term_1": "Term I", "term_2": "Term II", "year": "Year"}
Value = Decimal | str | None  # an average, a level, or nothing yet


def record_id(school_code: str, school_year: str, student_ref: str) -> str:
    """The same student, school and year always name the same record."""
    return uuid5(NAMESPACE_URL, f"hocba:record/{school_code}/{school_year}/{student_ref}").hex


@dataclass(frozen=True)
class SubjectResult:
    """One subject's entries for the year and what they add up to."""

    rule: SubjectRule
    entries: Mapping[int, SubjectTermScores]

    def term(self, term: int) -> Value:
        entry = self.entries.get(term)
        if entry is None:
            return None
        if self.rule.scored:
            assert entry.midterm is not None and entry.final is not None  # validated on entry
            return term_average(entry.regular, entry.midterm, entry.final)
        return entry.level if self.rule.kind == "level" else entry.comment_level

    def year(self) -> Value:
        if not self.rule.scored:
            return self.term(2)  # comment subjects and primary levels: the year result is term II's
        term_1, term_2 = self.term(1), self.term(2)
        if isinstance(term_1, Decimal) and isinstance(term_2, Decimal):
            return year_average(term_1, term_2)
        return None

    def value(self, period: Period) -> Value:
        return self.year() if period == "year" else self.term(int(period[-1]))

    def missing_terms(self) -> list[int]:
        return [t for t in TERMS if t not in self.entries]

    def explanations(self, rule_set: RuleSet) -> list[Explanation]:
        name, found = self.rule.name, []
        if self.rule.scored:
            for term in TERMS:
                entry = self.entries.get(term)
                if entry is None:
                    continue
                assert entry.midterm is not None and entry.final is not None
                found.append(_term_average(rule_set, name, term, entry))
            term_1, term_2 = self.term(1), self.term(2)
            if isinstance(term_1, Decimal) and isinstance(term_2, Decimal):
                found.append(_year_average(rule_set, name, term_1, term_2))
            return found
        year = self.year()
        if year is not None:
            clause = rule_set.clause("comment-year" if rule_set.family == "secondary" else "subject-level").ref
            what = "level" if self.rule.kind == "level" else "result"
            found.append(Explanation(
                f"subjects/{name}/year/{what}", year, "year-is-term-2", clause, {"term_2": year},
                f"{name} year {what} {year}: the year's result is the end-of-year (term II) one ({clause}).",
            ))
        return found


def _term_average(rule_set: RuleSet, name: str, term: int, entry: SubjectTermScores) -> Explanation:
    assert entry.midterm is not None and entry.final is not None
    average = term_average(entry.regular, entry.midterm, entry.final)
    exact = term_average_exact(entry.regular, entry.midterm, entry.final)
    regular = " + ".join(plain(v) for v in entry.regular)
    clause = rule_set.clause("term-average").ref
    text = (
        f"{name} {TERM_NAMES[term]} average {score_text(average)} = ({regular} + 2×{plain(entry.midterm)} + "
        f"3×{plain(entry.final)}) / ({len(entry.regular)} + 5) = {_approx(exact)}, rounded half up to one decimal "
        f"({clause})."
    )
    inputs = {"regular": [plain(v) for v in entry.regular], "midterm": plain(entry.midterm), "final": plain(entry.final)}
    return Explanation(f"subjects/{name}/term_{term}/average", score_text(average), "term-average", clause, inputs, text)


def _year_average(rule_set: RuleSet, name: str, term_1: Decimal, term_2: Decimal) -> Explanation:
    average = year_average(term_1, term_2)
    clause = rule_set.clause("year-average").ref
    text = (
        f"{name} year average {score_text(average)} = ({score_text(term_1)} + 2×{score_text(term_2)}) / 3 = "
        f"{_approx(year_average_exact(term_1, term_2))}, rounded half up to one decimal ({clause})."
    )
    inputs = {"term_1": score_text(term_1), "term_2": score_text(term_2)}
    return Explanation(f"subjects/{name}/year/average", score_text(average), "year-average", clause, inputs, text)


def _approx(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals[:4]}…" if len(decimals) > 4 else text


@dataclass(frozen=True)
class YearRecord:
    """One student's year record, version `version`, computed by `rule_set`.

    `amendment` is what an amended version says about itself (the version it supersedes and why):
    the school writes it into the document of a later version, and it is kept as it is.
    """

    record_id: str
    version: int
    rule_set: RuleSet
    student: RegisteredStudent
    snapshot: StudentSnapshot
    subjects: tuple[SubjectResult, ...]
    homeroom: Mapping[int, StudentTermConduct]
    amendment: Mapping[str, Any] | None = None

    # -- secondary ----------------------------------------------------------------------------

    def period_values(self, period: Period) -> dict[str, Decimal | str] | None:
        """Every subject's value for the period, or None while one is missing."""
        values = {s.rule.name: s.value(period) for s in self.subjects}
        known = {name: value for name, value in values.items() if value is not None}
        return known if len(known) == len(values) else None

    def learning_explanations(self) -> dict[Period, Explanation | None]:
        found: dict[Period, Explanation | None] = {}
        for period in PERIODS:
            values = self.period_values(period)
            found[period] = (
                None if values is None
                else secondary.explain_learning(self.rule_set, f"learning/{period}", PERIOD_NAMES[period] + " learning result", values)
            )
        return found

    def learning(self) -> dict[Period, str | None]:
        return {p: (e.result if e else None) for p, e in self.learning_explanations().items()}

    def conduct(self, term: int) -> str | None:
        entry = self.homeroom.get(term)
        return entry.conduct if entry else None

    def absences(self) -> dict[str, int | None]:
        terms = {f"term_{t}": (self.homeroom[t].absences if t in self.homeroom else None) for t in TERMS}
        known = [v for v in terms.values() if v is not None]
        return {**terms, "year": sum(known) if len(known) == len(TERMS) else None}

    # -- both ---------------------------------------------------------------------------------

    def missing(self) -> list[dict[str, Any]]:
        missing: list[dict[str, Any]] = [
            {"subject": s.rule.name, "term": t} for s in self.subjects for t in s.missing_terms()
        ]
        missing += [{"entry": "homeroom", "term": t} for t in TERMS if t not in self.homeroom]
        return missing

    def comments(self) -> dict[str, Any]:
        return {
            "homeroom": {f"term_{t}": self.homeroom[t].comment if t in self.homeroom else None for t in TERMS},
            "subjects": {
                s.rule.name: {f"term_{t}": s.entries[t].comment for t in TERMS if t in s.entries and s.entries[t].comment}
                for s in self.subjects
                if any(e.comment for e in s.entries.values())
            },
        }

    def results(self) -> tuple[dict[str, Any], list[Explanation]]:
        """The results of the record's rule set family as the document writes them, and the explanation of each."""
        return secondary_results(self) if self.rule_set.family == "secondary" else primary_results(self)

    def explanations(self) -> list[Explanation]:
        """Every computed result with its rule, clause, inputs and words: the subjects' first, then the year's."""
        subjects = [e for s in self.subjects for e in s.explanations(self.rule_set)]
        return subjects + self.results()[1]

    def document(self) -> dict[str, Any]:
        """The record as JSON values: what is signed and archived.

        Entries, results and decisions, with the rule set (`rule_set`, `regulation`) they follow from, and in
        grades 10-12 the student's electives and learning topics (`combination`); not the explanations, which
        that rule set gives again from the rest (`explanations`).
        """
        enrolment = self.student.enrolment
        missing = self.missing()
        body, _ = self.results()
        return {
            "record_id": self.record_id,
            "version": self.version,
            "rule_set": self.rule_set.key,
            "regulation": self.rule_set.regulation,
            "school": {"code": enrolment.school_code},
            "school_year": enrolment.school_year,
            "grade": enrolment.grade,
            "class_name": enrolment.class_name,
            "student": self.snapshot.model_dump(mode="json"),
            **({"combination": combination} if (combination := combination_document(self.rule_set, enrolment)) else {}),
            "subjects": [subject_document(s) for s in self.subjects],
            **body,
            "absences": self.absences(),
            "comments": self.comments(),
            "complete": not missing,
            "missing": missing,
            **({"amendment": dict(self.amendment)} if self.amendment is not None else {}),
        }


def secondary_results(record: YearRecord) -> tuple[dict[str, Any], list[Explanation]]:
    """Circular 22/2021: learning results, conduct, promotion and awards, and how each was decided."""
    rule_set = record.rule_set
    learning = record.learning_explanations()
    explanations = [e for e in learning.values() if e is not None]
    conduct: dict[str, str | None] = {"term_1": record.conduct(1), "term_2": record.conduct(2), "year": None}
    if conduct["term_1"] and conduct["term_2"]:
        year_conduct = secondary.explain_year_conduct(rule_set, conduct["term_1"], conduct["term_2"])
        conduct["year"] = year_conduct.result
        explanations.append(year_conduct)
    promotion, awards = None, []
    year_learning, year_absences = learning["year"], record.absences()["year"]
    if year_learning is not None and conduct["year"] and year_absences is not None:
        decided = secondary.explain_promotion(rule_set, conduct["year"], year_learning.result, year_absences)
        promotion = {"decision": decided.result, **({"next": decided.inputs["next"]} if "next" in decided.inputs else {})}
        averages = {s.rule.name: v for s in record.subjects if isinstance(v := s.year(), Decimal)}
        award = secondary.explain_award(rule_set, conduct["year"], year_learning.result, averages)
        awards = [award.result] if award.result else []
        explanations += [decided, award]
    results = {
        "learning_result": {p: (e.result if e else None) for p, e in learning.items()},
        "conduct": conduct,
        "promotion": promotion,
        "awards": awards,
    }
    return results, explanations


def primary_results(record: YearRecord) -> tuple[dict[str, Any], list[Explanation]]:
    """Circular 27/2020: qualities and competencies, the year-end outcome, award and completion, and how each was decided."""
    rule_set = record.rule_set
    ratings = {
        what: {f"term_{t}": (dict(getattr(record.homeroom[t], what)) if t in record.homeroom else None) for t in TERMS}
        for what in ("qualities", "competencies")
    }
    explanations: list[Explanation] = []
    outcome, awards, completion = None, [], None
    years = {s.rule.name: s.year() for s in record.subjects}
    levels = {name: level for name, level in years.items() if isinstance(level, str)}
    tests = {s.rule.name: s.entries[2].final for s in record.subjects if s.rule.tested and 2 in s.entries}
    scores = {name: score for name, score in tests.items() if score is not None}
    end = record.homeroom.get(2)
    if end is not None and len(levels) == len(years) and len(scores) == len(tests):
        decided = primary.explain_outcome(rule_set, levels, end_ratings(rule_set, end), scores)
        outcome = decided.result
        award = primary.explain_primary_award(rule_set, outcome)
        awards = [award.result] if award.result else []
        explanations += [decided, award]
        if (done := primary.explain_completion(rule_set, record.student.enrolment.grade, outcome)) is not None:
            completion = done.result
            explanations.append(done)
    return {**ratings, "outcome": outcome, "awards": awards, "completion": completion}, explanations


def end_ratings(rule_set: RuleSet, end: StudentTermConduct) -> dict[str, str]:
    """The end-of-year qualities and competencies in the rule set's order, whatever order they were entered in,
    so that the outcome says them in the same words for the record as assembled and as read back."""
    rated = {**end.qualities, **end.competencies}
    order = (*rule_set.qualities, *rule_set.competencies)
    return {name: rated[name] for name in (*order, *sorted(set(rated) - set(order))) if name in rated}


def assemble_record(
    rule_set: RuleSet,
    student: RegisteredStudent,
    snapshot: StudentSnapshot,
    entries: Iterable[SubjectTermScores],
    homeroom: Iterable[StudentTermConduct] = (),
    version: int = 1,
) -> YearRecord:
    """Put a student's entries under their own subjects (the grade's table, and in grades 10-12 their electives and
    learning topics); absent entries are listed as missing. Raises ValueError for a grade without a table or a
    combination the grade does not allow."""
    enrolment = student.enrolment
    table = own_subjects(rule_set, enrolment)
    if table is None:
        raise ValueError(f"{rule_set.key} has no subject table for grade {enrolment.grade}")
    by_subject: dict[str, dict[int, SubjectTermScores]] = {}
    for entry in entries:
        by_subject.setdefault(entry.subject, {})[entry.term] = entry
    return YearRecord(
        record_id=record_id(enrolment.school_code, enrolment.school_year, student.student_ref),
        version=version,
        rule_set=rule_set,
        student=student,
        snapshot=snapshot,
        subjects=tuple(SubjectResult(rule, by_subject.get(rule.name, {})) for rule in table),
        homeroom={h.term: h for h in homeroom},
    )


# -- JSON -------------------------------------------------------------------------------------


def value_document(value: Value) -> dict[str, str] | None:
    if value is None:
        return None
    return {"average": score_text(value)} if isinstance(value, Decimal) else {"level": value}


def term_document(subject: SubjectResult, term: int) -> dict[str, Any] | None:
    entry = subject.entries.get(term)
    if entry is None:
        return None
    if subject.rule.kind == "level":
        doc: dict[str, Any] = {"level": entry.level}
        if entry.midterm_level is not None:
            doc["midterm_level"] = entry.midterm_level
        if entry.midterm is not None:
            doc["midterm_test"] = plain(entry.midterm)
        if entry.final is not None:
            doc["test"] = plain(entry.final)
        return doc
    value = value_document(subject.term(term))
    if not subject.rule.scored:
        return value
    assert entry.midterm is not None and entry.final is not None  # validated on entry
    return {
        "regular": [score_text(v) for v in entry.regular],
        "midterm": score_text(entry.midterm),
        "final": score_text(entry.final),
        **(value or {}),
    }


def subject_document(subject: SubjectResult) -> dict[str, Any]:
    return {
        "name": subject.rule.name,
        "kind": subject.rule.kind,
        "term_1": term_document(subject, 1),
        "term_2": term_document(subject, 2),
        "year": value_document(subject.year()),
    }
