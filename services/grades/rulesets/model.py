"""The shape of a rule set: subject tables, level thresholds, conduct table, promotion and awards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

Kind = Literal["score", "comment", "level"]
Family = Literal["primary", "secondary"]

#: Secondary learning and conduct levels, best first (Circular 22/2021).
TOT, KHA, DAT, CHUA_DAT = "Tốt", "Khá", "Đạt", "Chưa đạt"
SECONDARY_LEVELS_ORDER = (TOT, KHA, DAT, CHUA_DAT)

#: Term levels of comment-assessed secondary subjects, as entered.
PASSED, FAILED = "Đ", "CĐ"

#: Primary subject levels (Circular 27/2020) the outcomes ask for: Hoàn thành tốt, Hoàn thành.
SUBJECT_T, SUBJECT_H = "T", "H"
#: Primary quality and competency ratings the outcomes ask for: Tốt, Đạt.
QUALITY_T, QUALITY_D = "T", "Đ"

#: Primary year-end outcomes, best first.
HTXS, HTT, HT, CHT = "Hoàn thành xuất sắc", "Hoàn thành tốt", "Hoàn thành", "Chưa hoàn thành"


@dataclass(frozen=True)
class Clause:
    """Where a rule comes from, and whether the text behind it was confirmed."""

    ref: str
    confirmed: bool = True
    note: str = ""


@dataclass(frozen=True)
class SubjectRule:
    """One subject of one grade: how it is assessed and, for scores, how often."""

    name: str
    kind: Kind
    periods_per_year: int = 0
    #: Primary: whether the subject has periodic tests, and at mid-term too (grades 4-5).
    tested: bool = False
    midterm_tested: bool = False
    #: Set when this row of the table is not confirmed against the official text.
    unconfirmed: str = ""

    @property
    def scored(self) -> bool:
        return self.kind == "score"

    @property
    def regular_per_term(self) -> int:
        """Regular assessments a secondary score entry carries per term."""
        if not self.scored:
            return 0
        if self.periods_per_year <= 35:
            return 2
        if self.periods_per_year <= 70:
            return 3
        return 4


@dataclass(frozen=True)
class LevelRule:
    """A secondary learning level: every scored subject ≥ `floor`, at least `count` of them
    ≥ `count_at`, and at most `comment_failures` comment subjects Chưa đạt."""

    level: str
    floor: Decimal
    count: int
    count_at: Decimal
    comment_failures: int
    clause: Clause


@dataclass(frozen=True)
class Adjustment:
    """Art. 9.3: a result `min_drop` or more levels below one of `targets`, caused by one subject,
    is raised by `raise_by` level(s)."""

    targets: tuple[str, ...]
    min_drop: int
    raise_by: int
    clause: Clause


@dataclass(frozen=True)
class Promotion:
    """Promotion: year conduct and learning at least `min_level`, absences at most `max_absences`."""

    min_level: str
    max_absences: int
    clause: Clause
    absence_clause: Clause


@dataclass(frozen=True)
class Award:
    """An award: conduct and learning at least the levels given, and optionally `count`
    scored subjects with year average ≥ `count_at`. Awards are listed best first; a student
    receives the first they qualify for."""

    name: str
    conduct: str
    learning: str
    count: int = 0
    count_at: Decimal = Decimal(0)
    clause: Clause = Clause("")


@dataclass(frozen=True)
class Outcome:
    """A primary year-end outcome: every subject level in `subject_levels`, every quality and
    competency in `quality_levels`, every end-of-year test ≥ `min_test`."""

    name: str
    subject_levels: frozenset[str]
    quality_levels: frozenset[str]
    min_test: Decimal
    clause: Clause


@dataclass(frozen=True)
class RuleSet:
    """Everything a year record is computed by; its `key` (id/version) is written into every record."""

    id: str
    version: str
    family: Family
    regulation: str
    subjects_by_grade: Mapping[int, tuple[SubjectRule, ...]]
    clauses: Mapping[str, Clause] = field(default_factory=dict)
    # secondary
    levels: tuple[LevelRule, ...] = ()
    fallback_level: str = CHUA_DAT
    adjustment: Adjustment | None = None
    conduct_year: Mapping[tuple[str, str], str] = field(default_factory=dict)
    conduct_clause: Clause = Clause("")
    promotion: Promotion | None = None
    awards: tuple[Award, ...] = ()
    # primary
    allow_zero: bool = True
    qualities: tuple[str, ...] = ()
    competencies: tuple[str, ...] = ()
    outcomes: tuple[Outcome, ...] = ()
    fallback_outcome: str = CHT
    primary_award: str = ""
    completion_grade: int = 0
    completion_note: str = ""

    @property
    def key(self) -> str:
        return f"{self.id}/{self.version}"

    def subjects(self, grade: int) -> tuple[SubjectRule, ...] | None:
        """The grade's subject table, or None when this rule set has none for it."""
        return self.subjects_by_grade.get(grade)

    def subject(self, grade: int, name: str) -> SubjectRule | None:
        return next((s for s in self.subjects(grade) or () if s.name == name), None)

    def clause(self, name: str) -> Clause:
        return self.clauses[name]

    def unconfirmed(self, grade: int | None = None) -> list[str]:
        """Points of this rule set marked as not confirmed against the official text, in words
        (the clauses, and the subject table of `grade`, or of every grade)."""
        notes = [f"{name}: {c.note or c.ref}" for name, c in self.clauses.items() if not c.confirmed]
        grades = sorted(self.subjects_by_grade) if grade is None else [grade]
        for g in grades:
            by_note: dict[str, list[str]] = {}
            for s in self.subjects_by_grade.get(g, ()):
                if s.unconfirmed:
                    by_note.setdefault(s.unconfirmed, []).append(s.name)
            notes += [f"grade {g} ({', '.join(names)}): {note}" for note, names in by_note.items()]
        return notes
