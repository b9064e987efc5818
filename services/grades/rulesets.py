"""Rule sets as data: subject tables and learning-result thresholds (Circular 22/2021/TT-BGDĐT)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Literal

Kind = Literal["score", "comment"]

#: Learning levels, best first, and the level a student reaches when no threshold is met.
TOT, KHA, DAT, CHUA_DAT = "Tốt", "Khá", "Đạt", "Chưa đạt"

#: Term levels of comment-assessed subjects, as entered.
PASSED, FAILED = "Đ", "CĐ"


def regular_assessments(periods_per_year: int) -> int:
    """ĐĐGtx per term of a score-assessed subject: 2 for 35 periods a year, 3 up to 70, 4 above."""
    if periods_per_year <= 35:
        return 2
    if periods_per_year <= 70:
        return 3
    return 4


@dataclass(frozen=True)
class SubjectRule:
    """One subject of one grade: how it is assessed and how many regular assessments a term has."""

    name: str
    kind: Kind
    periods_per_year: int

    @property
    def scored(self) -> bool:
        return self.kind == "score"

    @property
    def regular_per_term(self) -> int:
        """Regular assessments a score entry carries; comment entries carry only the term level."""
        return regular_assessments(self.periods_per_year) if self.scored else 0


@dataclass(frozen=True)
class LevelRule:
    """A learning level: every scored subject ≥ `floor`, at least `count` of them ≥ `count_at`,
    and at most `comment_failures` comment subjects Chưa đạt."""

    level: str
    floor: Decimal
    count: int
    count_at: Decimal
    comment_failures: int


@dataclass(frozen=True)
class RuleSet:
    """Everything a year record is computed by; its `key` is written into every record."""

    id: str
    version: str
    subjects_by_grade: Mapping[int, tuple[SubjectRule, ...]]
    levels: tuple[LevelRule, ...]
    fallback_level: str

    @property
    def key(self) -> str:
        return f"{self.id}/{self.version}"

    def subjects(self, grade: int) -> tuple[SubjectRule, ...] | None:
        """The grade's subject table, or None when this rule set has none for it."""
        return self.subjects_by_grade.get(grade)

    def subject(self, grade: int, name: str) -> SubjectRule | None:
        return next((s for s in self.subjects(grade) or () if s.name == name), None)


#: Grade 6 subjects and periods a year (RULES §4).
GRADE_6 = (
    SubjectRule("Ngữ văn", "score", 140),
    SubjectRule("Toán", "score", 140),
    SubjectRule("Ngoại ngữ 1", "score", 105),
    SubjectRule("Lịch sử và Địa lí", "score", 105),
    SubjectRule("Khoa học tự nhiên", "score", 140),
    SubjectRule("Giáo dục công dân", "score", 35),
    SubjectRule("Công nghệ", "score", 35),
    SubjectRule("Tin học", "score", 35),
    SubjectRule("Giáo dục thể chất", "comment", 70),
    SubjectRule("Nghệ thuật", "comment", 70),
    SubjectRule("Hoạt động trải nghiệm, hướng nghiệp", "comment", 105),
    SubjectRule("Nội dung giáo dục của địa phương", "comment", 35),
)

#: Learning result per term and year (Circular 22/2021 Art. 9), best level first.
SECONDARY_LEVELS = (
    LevelRule(TOT, floor=Decimal("6.5"), count=6, count_at=Decimal("8.0"), comment_failures=0),
    LevelRule(KHA, floor=Decimal("5.0"), count=6, count_at=Decimal("6.5"), comment_failures=0),
    LevelRule(DAT, floor=Decimal("3.5"), count=6, count_at=Decimal("5.0"), comment_failures=1),
)

CIRCULAR_22_2021 = RuleSet(
    id="circular-22-2021",
    version="v1",
    subjects_by_grade=MappingProxyType({6: GRADE_6}),
    levels=SECONDARY_LEVELS,
    fallback_level=CHUA_DAT,
)

#: The rule set new records are computed by.
CURRENT = CIRCULAR_22_2021
