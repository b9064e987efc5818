"""Circular 22/2021 rules, pure: entry validation, averages, learning results, the year record."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal, DivisionByZero, InvalidOperation, localcontext
from typing import Any, Literal
from uuid import NAMESPACE_URL, uuid5

from services.grades.rulesets import FAILED, LevelRule, RuleSet, SubjectRule
from shared.contracts.grades import SubjectTermScores
from shared.contracts.identity import RegisteredStudent, StudentSnapshot

STEP = Decimal("0.1")
MIN_SCORE, MAX_SCORE = Decimal(0), Decimal(10)
TERMS = (1, 2)

#: Exact enough for sums of one-decimal scores and their quotients; every operation traps errors.
ARITHMETIC = Context(prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero])

Period = Literal["term_1", "term_2", "year"]
Value = Decimal | str | None  # an average, a comment level, or nothing yet


# -- entries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryProblem:
    code: str
    message: str


def score_problems(label: str, value: Decimal) -> list[EntryProblem]:
    """A score is 0-10, an integer or one decimal."""
    if not value.is_finite():
        return [EntryProblem("score-format", f"{label} '{value}' is not a number")]
    if not MIN_SCORE <= value <= MAX_SCORE:
        return [EntryProblem("score-range", f"{label} {value} is outside 0-10")]
    if value != value.quantize(STEP, context=ARITHMETIC):
        return [EntryProblem("score-precision", f"{label} {value} has more than one decimal")]
    return []


def enrolled_entry_problems(
    rule_set: RuleSet, school_code: str, student: RegisteredStudent, entry: SubjectTermScores
) -> list[EntryProblem]:
    """An entry checked against the student's enrolment and the subject table of their grade."""
    enrolment = student.enrolment
    if enrolment.school_code != school_code:
        return [EntryProblem("wrong-school", f"the student is enrolled in school {enrolment.school_code}")]
    if rule_set.subjects(enrolment.grade) is None:
        return [EntryProblem("no-rule-set", f"{rule_set.key} has no subject table for grade {enrolment.grade}")]
    return entry_problems(entry, rule_set.subject(enrolment.grade, entry.subject))


def entry_problems(entry: SubjectTermScores, rule: SubjectRule | None) -> list[EntryProblem]:
    """Every way one subject-term entry disagrees with its subject's rule (None: unknown subject)."""
    if rule is None:
        return [EntryProblem("unknown-subject", f"'{entry.subject}' is not a subject of this grade")]
    if not rule.scored:
        problems = []
        if entry.regular or entry.midterm is not None or entry.final is not None:
            problems.append(EntryProblem("comment-only", f"{rule.name} is comment-assessed: only comment_level"))
        if entry.comment_level is None:
            problems.append(EntryProblem("missing-level", f"{rule.name} needs comment_level"))
        return problems
    problems = []
    if entry.comment_level is not None:
        problems.append(EntryProblem("score-only", f"{rule.name} is score-assessed: no comment_level"))
    if len(entry.regular) != rule.regular_per_term:
        problems.append(
            EntryProblem(
                "regular-count",
                f"{rule.name} ({rule.periods_per_year} periods a year) needs {rule.regular_per_term} "
                f"regular assessments per term, got {len(entry.regular)}",
            )
        )
    for label, value in (("midterm", entry.midterm), ("final", entry.final)):
        if value is None:
            problems.append(EntryProblem("missing-score", f"{rule.name} {label} score is missing"))
    labelled = [(f"regular {n + 1}", v) for n, v in enumerate(entry.regular)]
    labelled += [(label, v) for label, v in (("midterm", entry.midterm), ("final", entry.final)) if v is not None]
    for label, value in labelled:
        problems.extend(score_problems(label, value))
    return problems


# -- averages and levels ----------------------------------------------------------------------


def round_half_up(value: Decimal) -> Decimal:
    """One decimal, half up: 7.25 -> 7.3, 8.25 -> 8.3."""
    return value.quantize(STEP, rounding=ROUND_HALF_UP, context=ARITHMETIC)


def term_average(regular: Sequence[Decimal], midterm: Decimal, final: Decimal) -> Decimal:
    """ĐTBmhk = (Σ ĐĐGtx + 2·ĐĐGgk + 3·ĐĐGck) / (n_tx + 5), rounded."""
    with localcontext(ARITHMETIC):
        total = sum(regular, Decimal(0)) + 2 * midterm + 3 * final
        return round_half_up(total / (len(regular) + 5))


def year_average(term_1: Decimal, term_2: Decimal) -> Decimal:
    """ĐTBmcn = (ĐTBmhk I + 2·ĐTBmhk II) / 3, from the rounded term averages, rounded."""
    with localcontext(ARITHMETIC):
        return round_half_up((term_1 + 2 * term_2) / 3)


def meets(level: LevelRule, scored: Sequence[Decimal], comments: Sequence[str]) -> bool:
    failures = sum(1 for c in comments if c == FAILED)
    reaching = sum(1 for s in scored if s >= level.count_at)
    return failures <= level.comment_failures and all(s >= level.floor for s in scored) and reaching >= level.count


def learning_result(rule_set: RuleSet, scored: Sequence[Decimal], comments: Sequence[str]) -> str:
    """The best level whose thresholds the averages (scored) and levels (comment) all meet."""
    return next((lv.level for lv in rule_set.levels if meets(lv, scored, comments)), rule_set.fallback_level)


# -- the year record --------------------------------------------------------------------------


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
        return entry.comment_level

    def year(self) -> Value:
        if not self.rule.scored:
            return self.term(2)  # the year result of a comment subject is term II's
        term_1, term_2 = self.term(1), self.term(2)
        if isinstance(term_1, Decimal) and isinstance(term_2, Decimal):
            return year_average(term_1, term_2)
        return None

    def value(self, period: Period) -> Value:
        return self.year() if period == "year" else self.term(int(period[-1]))

    def missing_terms(self) -> list[int]:
        return [t for t in TERMS if t not in self.entries]


def period_result(rule_set: RuleSet, subjects: Sequence[SubjectResult], period: Period) -> str | None:
    """The learning result of a term or the year; None while any subject lacks its value."""
    values = [(s.rule, s.value(period)) for s in subjects]
    if any(v is None for _, v in values):
        return None
    scored = [v for rule, v in values if rule.scored and isinstance(v, Decimal)]
    comments = [v for rule, v in values if not rule.scored and isinstance(v, str)]
    return learning_result(rule_set, scored, comments)


@dataclass(frozen=True)
class YearRecord:
    """One student's year record, version `version`, computed by `rule_set`."""

    record_id: str
    version: int
    rule_set: RuleSet
    student: RegisteredStudent
    snapshot: StudentSnapshot
    subjects: tuple[SubjectResult, ...]

    def learning(self) -> dict[Period, str | None]:
        periods: tuple[Period, ...] = ("term_1", "term_2", "year")
        return {p: period_result(self.rule_set, self.subjects, p) for p in periods}

    def missing(self) -> list[dict[str, Any]]:
        return [{"subject": s.rule.name, "term": t} for s in self.subjects for t in s.missing_terms()]

    def document(self) -> dict[str, Any]:
        """The record as JSON values: what is signed and archived."""
        enrolment = self.student.enrolment
        missing = self.missing()
        return {
            "record_id": self.record_id,
            "version": self.version,
            "rule_set": self.rule_set.key,
            "school": {"code": enrolment.school_code},
            "school_year": enrolment.school_year,
            "grade": enrolment.grade,
            "class_name": enrolment.class_name,
            "student": self.snapshot.model_dump(mode="json"),
            "subjects": [subject_document(s) for s in self.subjects],
            "learning_result": self.learning(),
            "complete": not missing,
            "missing": missing,
        }


def assemble_record(
    rule_set: RuleSet,
    student: RegisteredStudent,
    snapshot: StudentSnapshot,
    entries: Iterable[SubjectTermScores],
    version: int = 1,
) -> YearRecord:
    """Put a student's entries under the grade's subject table; absent entries are listed as missing."""
    enrolment = student.enrolment
    table = rule_set.subjects(enrolment.grade)
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
    )


# -- JSON -------------------------------------------------------------------------------------


def score_text(value: Decimal) -> str:
    """A score or average as the record shows it: one decimal, "7.3"."""
    text = str(value.quantize(STEP, context=ARITHMETIC))
    return text.removeprefix("-") if value == 0 else text


def value_document(value: Value) -> dict[str, str] | None:
    if value is None:
        return None
    return {"average": score_text(value)} if isinstance(value, Decimal) else {"level": value}


def term_document(subject: SubjectResult, term: int) -> dict[str, Any] | None:
    entry = subject.entries.get(term)
    if entry is None:
        return None
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
