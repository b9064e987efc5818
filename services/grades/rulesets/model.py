"""The shape of a rule set: subject tables, level thresholds, conduct table, promotion and awards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Literal

Kind = Literal["score", "comment", "level"]
Family = Literal["primary", "secondary"]
#: How Art. 9.3's "only one subject causes it" is read (`Adjustment.reading`): the subject counted at its best
#: (10.0, or Đạt), or the subject left out and the other subjects reaching the level on their own.
Reading = Literal["at-best", "removed"]
AT_BEST: Reading = "at-best"
REMOVED: Reading = "removed"
#: Each reading in words, after "with the one subject".
READING_WORDS: Mapping[Reading, str] = {
    AT_BEST: "counted at its best (10.0, or Đạt)",
    REMOVED: "left out and the other subjects reaching the level on their own",
}

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
class LearningTopic:
    """A learning topic (chuyên đề học tập, grades 10-12): `periods_per_year` periods tied to one subject, whose
    assessment adds `regular_per_term` regular assessments to that subject's each term (score-assessed
    subjects; a comment-assessed subject's term level covers it), with no periodic assessment of its own."""

    periods_per_year: int
    regular_per_term: int
    clause: Clause


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
    #: Grades 10-12: the learning topic the student takes in this subject, if any (`Choices.subjects_of`).
    learning_topic: LearningTopic | None = None

    @property
    def scored(self) -> bool:
        return self.kind == "score"

    @property
    def regular_per_term(self) -> int:
        """Regular assessments a secondary score entry carries per term: by the subject's periods a year, and
        those its learning topic adds."""
        if not self.scored:
            return 0
        topic = self.learning_topic.regular_per_term if self.learning_topic else 0
        if self.periods_per_year <= 35:
            return 2 + topic
        if self.periods_per_year <= 70:
            return 3 + topic
        return 4 + topic


@dataclass(frozen=True)
class Choices:
    """What each student of a grade chooses (grades 10-12): `electives_taken` of `electives`, and
    `topics_taken` learning topics, each in a different one of `topic_subjects`, each a subject the student takes.

    The grade's table (`RuleSet.subjects`) holds the compulsory subjects; a student's own subjects are those and
    their electives (`subjects_of`).
    """

    electives: tuple[SubjectRule, ...]
    electives_taken: int
    topic_subjects: tuple[str, ...]
    topics_taken: int
    topic: LearningTopic
    clause: Clause

    def elective(self, name: str) -> SubjectRule | None:
        return next((s for s in self.electives if s.name == name), None)

    def subjects_of(
        self, compulsory: tuple[SubjectRule, ...], electives: tuple[str, ...], topics: tuple[str, ...]
    ) -> tuple[SubjectRule, ...]:
        """The compulsory subjects, then the chosen electives in the table's order, each subject with a learning
        topic carrying it. Assumes a combination `combination_problems` finds nothing wrong with."""
        chosen = [*compulsory, *(s for s in self.electives if s.name in electives)]
        return tuple(replace(s, learning_topic=self.topic) if s.name in topics else s for s in chosen)


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
    is raised by `raise_by` level(s).

    `reading` says what "caused by one subject" means: `at-best`, the student reaches the target with that
    subject counted at its best (10.0, or Đạt); `removed`, the other subjects reach the target on their own,
    that subject left out (so the "at least 6 scored subjects" count is taken over the others).
    `reading_source` says where the rule set's choice comes from.
    """

    targets: tuple[str, ...]
    min_drop: int
    raise_by: int
    clause: Clause
    reading: Reading = AT_BEST
    reading_source: str = ""


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
    #: Grades whose students choose electives and learning topics (10-12): what they choose from.
    choices_by_grade: Mapping[int, Choices] = field(default_factory=dict)
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
        """A subject of the grade's table (in grades with choices, a compulsory one)."""
        return next((s for s in self.subjects(grade) or () if s.name == name), None)

    def choices(self, grade: int) -> Choices | None:
        """What a student of the grade chooses, or None when every student has the grade's table."""
        return self.choices_by_grade.get(grade)

    def clause(self, name: str) -> Clause:
        return self.clauses[name]

    def unconfirmed(self, grade: int | None = None) -> list[str]:
        """Points of this rule set marked as not confirmed against the official text, in words
        (the clauses, and the subject table of `grade`, or of every grade)."""
        notes = [f"{name}: {c.note or c.ref}" for name, c in self.clauses.items() if not c.confirmed]
        if self.adjustment is not None and not self.adjustment.clause.confirmed:
            reading = self.adjustment.reading
            notes.append(
                f"adjustment reading: '{reading}', with the one subject {READING_WORDS[reading]} "
                f"({self.adjustment.reading_source})"
            )
        grades = sorted(self.subjects_by_grade) if grade is None else [grade]
        for g in grades:
            by_note: dict[str, list[str]] = {}
            choices = self.choices_by_grade.get(g)
            for s in (*self.subjects_by_grade.get(g, ()), *(choices.electives if choices else ())):
                if s.unconfirmed:
                    by_note.setdefault(s.unconfirmed, []).append(s.name)
            notes += [f"grade {g} ({', '.join(names)}): {note}" for note, names in by_note.items()]
        return notes
