"""Circular 22/2021/TT-BGDĐT (lower and upper secondary) as data.

RULES.md §4 is the source. Article numbers other than Art. 9.3 are references for the reader;
points RULES.md calls unconfirmed carry `confirmed=False` (see `RuleSet.unconfirmed()`).
"""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType

from services.grades.rulesets.model import (
    AT_BEST,
    CHUA_DAT,
    DAT,
    KHA,
    TOT,
    Adjustment,
    Award,
    Clause,
    LevelRule,
    Promotion,
    RuleSet,
    SubjectRule,
)

C = "Circular 22/2021"

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

_FROM_PROGRAMME = "periods from the 2018 general education programme, not in RULES.md: confirm"


def _later_grade(technology_periods: int) -> tuple[SubjectRule, ...]:
    """Grades 7-9 have grade 6's subjects; Công nghệ grows to 52 periods in grades 8 and 9."""
    return tuple(
        SubjectRule(s.name, s.kind, technology_periods if s.name == "Công nghệ" else s.periods_per_year,
                    unconfirmed=_FROM_PROGRAMME)
        for s in GRADE_6
    )


CLAUSES = MappingProxyType(
    {
        "entry": Clause(f"{C} Art. 6", note="scores on a 10-point scale, integer or one decimal"),
        "regular-count": Clause(f"{C} Art. 6.1", note="2 regular assessments for 35 periods, 3 up to 70, 4 above"),
        "comment-term": Clause(f"{C} Art. 9.1.a", note="a comment subject's term is Đạt when its assessments are Đạt"),
        "comment-year": Clause(f"{C} Art. 9.1.a", note="a comment subject's year result is term II's"),
        "term-average": Clause(f"{C} Art. 9.1.b", note="ĐTBmhk = (ΣĐĐGtx + 2·ĐĐGgk + 3·ĐĐGck) / (n + 5)"),
        "year-average": Clause(f"{C} Art. 9.1.b", note="ĐTBmcn = (ĐTBmhk I + 2·ĐTBmhk II) / 3"),
        "rounding": Clause(f"{C} Art. 9.1.b", note="rounded to one decimal, half up"),
        "learning-fallback": Clause(f"{C} Art. 9.2.d", note="Chưa đạt: the thresholds of Đạt are not met"),
        "adjustment": Clause(
            f"{C} Art. 9.3",
            confirmed=False,
            note="Art. 9.3 adjustment worded from secondary sources; how 'only one subject causes it' is read is the "
            "adjustment's setting (at-best or removed)",
        ),
        "conduct-term": Clause(f"{C} Art. 8.1", note="term conduct set by the homeroom teacher"),
        "conduct-year": Clause(
            f"{C} Art. 8.2", confirmed=False, note="year conduct table partly confirmed: kept as a table"
        ),
    }
)

#: Learning result per term and year (Art. 9.2), best level first.
LEVELS = (
    LevelRule(TOT, floor=Decimal("6.5"), count=6, count_at=Decimal("8.0"), comment_failures=0,
              clause=Clause(f"{C} Art. 9.2.a")),
    LevelRule(KHA, floor=Decimal("5.0"), count=6, count_at=Decimal("6.5"), comment_failures=0,
              clause=Clause(f"{C} Art. 9.2.b")),
    LevelRule(DAT, floor=Decimal("3.5"), count=6, count_at=Decimal("5.0"), comment_failures=1,
              clause=Clause(f"{C} Art. 9.2.c")),
)

#: Art. 9.3, "only one subject causes it", as read by this rule set: the subject counted at its best.
#: RULES.md §4 words the rule from secondary sources ("the Tốt or Khá it would otherwise reach") and does not
#: choose between this reading and the subject left out; `at-best` is the reading every record computed by this
#: rule set has followed since its first version, kept so that those records read back as they were decided.
ADJUSTMENT = Adjustment(
    targets=(TOT, KHA),
    min_drop=2,
    raise_by=1,
    clause=CLAUSES["adjustment"],
    reading=AT_BEST,
    reading_source="RULES.md §4 words Art. 9.3 from secondary sources and leaves the reading open; at-best is the "
    "reading this rule set has followed since its first version",
)

#: Year conduct from (term I, term II), every pair (RULES §4). Partly confirmed: see CLAUSES.
CONDUCT_YEAR = MappingProxyType(
    {
        (TOT, TOT): TOT, (KHA, TOT): TOT, (DAT, TOT): KHA, (CHUA_DAT, TOT): KHA,
        (TOT, KHA): KHA, (KHA, KHA): KHA, (DAT, KHA): KHA, (CHUA_DAT, KHA): DAT,
        (TOT, DAT): KHA, (KHA, DAT): DAT, (DAT, DAT): DAT, (CHUA_DAT, DAT): DAT,
        (TOT, CHUA_DAT): CHUA_DAT, (KHA, CHUA_DAT): CHUA_DAT, (DAT, CHUA_DAT): CHUA_DAT,
        (CHUA_DAT, CHUA_DAT): CHUA_DAT,
    }
)

CIRCULAR_22_2021 = RuleSet(
    id="circular-22-2021",
    version="v2",
    family="secondary",
    regulation="Circular 22/2021/TT-BGDĐT",
    subjects_by_grade=MappingProxyType({6: GRADE_6, 7: _later_grade(35), 8: _later_grade(52), 9: _later_grade(52)}),
    clauses=CLAUSES,
    levels=LEVELS,
    fallback_level=CHUA_DAT,
    adjustment=ADJUSTMENT,
    conduct_year=CONDUCT_YEAR,
    conduct_clause=CLAUSES["conduct-year"],
    promotion=Promotion(
        min_level=DAT,
        max_absences=45,
        clause=Clause(f"{C} Art. 12.1", note="year conduct and learning at least Đạt"),
        absence_clause=Clause(f"{C} Art. 12.1", note="no more than 45 sessions absent, excused or not"),
    ),
    awards=(
        Award("Học sinh Xuất sắc", conduct=TOT, learning=TOT, count=6, count_at=Decimal("9.0"),
              clause=Clause(f"{C} Art. 15.1.a")),
        Award("Học sinh Giỏi", conduct=TOT, learning=TOT, clause=Clause(f"{C} Art. 15.1.b")),
    ),
)
