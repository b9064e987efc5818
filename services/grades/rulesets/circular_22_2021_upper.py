"""Circular 22/2021/TT-BGDĐT for grades 10-12 (upper secondary, 2018 programme) as data.

RULES.md §4a is the source: the formulas, levels, conduct, promotion and awards are those of grades 6-9
(`circular_22_2021`); what differs is the subject table, which each student's choices complete: compulsory
subjects, 4 of 9 electives, and 3 learning topics (chuyên đề học tập) each tied to a subject. A student's
combination comes with their enrolment (`Enrolment.electives`, `Enrolment.learning_topics`). Points RULES.md
calls unconfirmed carry `confirmed=False` (see `RuleSet.unconfirmed()`).
"""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType

from services.grades.rulesets.circular_22_2021 import ADJUSTMENT, CLAUSES, CONDUCT_YEAR
from services.grades.rulesets.circular_22_2021 import CIRCULAR_22_2021 as LOWER
from services.grades.rulesets.model import (
    CHUA_DAT,
    TOT,
    Award,
    Choices,
    Clause,
    LearningTopic,
    LevelRule,
    RuleSet,
    SubjectRule,
)

C = "Circular 22/2021"
PROGRAMME = "Circular 32/2018/TT-BGDĐT as amended by Circular 13/2022/TT-BGDĐT"

#: Compulsory subjects of grades 10-12 and their periods a year (RULES §4a).
COMPULSORY = (
    SubjectRule("Ngữ văn", "score", 105),
    SubjectRule("Toán", "score", 105),
    SubjectRule("Ngoại ngữ 1", "score", 105),
    SubjectRule("Lịch sử", "score", 52),
    SubjectRule("Giáo dục quốc phòng và an ninh", "score", 35),
    SubjectRule("Giáo dục thể chất", "comment", 70),
    SubjectRule("Hoạt động trải nghiệm, hướng nghiệp", "comment", 105),
    SubjectRule("Nội dung giáo dục của địa phương", "comment", 35),
)

#: The electives, 70 periods a year each; Âm nhạc and Mĩ thuật are comment-assessed (Circular 22 Art. 5).
ELECTIVES = (
    SubjectRule("Địa lí", "score", 70),
    SubjectRule("Giáo dục kinh tế và pháp luật", "score", 70),
    SubjectRule("Vật lí", "score", 70),
    SubjectRule("Hóa học", "score", 70),
    SubjectRule("Sinh học", "score", 70),
    SubjectRule("Công nghệ", "score", 70),
    SubjectRule("Tin học", "score", 70),
    SubjectRule("Âm nhạc", "comment", 70),
    SubjectRule("Mĩ thuật", "comment", 70),
)

#: The subjects a learning topic may be tied to (RULES §4a).
TOPIC_SUBJECTS = (
    "Ngữ văn",
    "Toán",
    "Lịch sử",
    "Địa lí",
    "Giáo dục kinh tế và pháp luật",
    "Vật lí",
    "Hóa học",
    "Sinh học",
    "Công nghệ",
    "Tin học",
    "Âm nhạc",
    "Mĩ thuật",
)

#: "At least 6 scored subjects" in the levels and in the Học sinh Xuất sắc award, counted over the student's own
#: scored subjects (9 with four scored electives, 7 or 8 with Âm nhạc or Mĩ thuật among them).
SCORED_COUNT = 6

UPPER_CLAUSES = MappingProxyType(
    {
        **CLAUSES,
        "combination": Clause(
            f"{PROGRAMME}; {C} Art. 5",
            note="each student takes 4 of the 9 electives and 3 learning topics, each tied to one of their subjects",
        ),
        "learning-topic": Clause(
            f"{C}, learning topics",
            confirmed=False,
            note="a learning topic's assessment counts as one regular assessment of its subject each term, with no "
            "periodic assessment of its own (secondary sources)",
        ),
        "scored-count": Clause(
            f"{C} Art. 9.2 and 15.1.a",
            confirmed=False,
            note=f"'at least {SCORED_COUNT} scored subjects' counted over the student's own scored subjects: whether "
            "the count stays 6 when a student has fewer scored subjects is not confirmed",
        ),
    }
)

LEARNING_TOPIC = LearningTopic(periods_per_year=35, regular_per_term=1, clause=UPPER_CLAUSES["learning-topic"])

CHOICES = Choices(
    electives=ELECTIVES,
    electives_taken=4,
    topic_subjects=TOPIC_SUBJECTS,
    topics_taken=3,
    topic=LEARNING_TOPIC,
    clause=UPPER_CLAUSES["combination"],
)

_COUNTED = UPPER_CLAUSES["scored-count"]

#: Learning result per term and year (Art. 9.2), best level first: grade 6's thresholds, the count as data.
LEVELS = tuple(
    LevelRule(
        lv.level,
        floor=lv.floor,
        count=SCORED_COUNT,
        count_at=lv.count_at,
        comment_failures=lv.comment_failures,
        clause=Clause(lv.clause.ref, confirmed=False, note=_COUNTED.note),
    )
    for lv in LOWER.levels
)

CIRCULAR_22_2021_UPPER = RuleSet(
    id="circular-22-2021-upper",
    version="v1",
    family="secondary",
    regulation="Circular 22/2021/TT-BGDĐT (grades 10-12, 2018 programme)",
    subjects_by_grade=MappingProxyType({10: COMPULSORY, 11: COMPULSORY, 12: COMPULSORY}),
    clauses=UPPER_CLAUSES,
    choices_by_grade=MappingProxyType({10: CHOICES, 11: CHOICES, 12: CHOICES}),
    levels=LEVELS,
    fallback_level=CHUA_DAT,
    adjustment=ADJUSTMENT,
    conduct_year=CONDUCT_YEAR,
    conduct_clause=CLAUSES["conduct-year"],
    promotion=LOWER.promotion,
    awards=(
        Award(
            "Học sinh Xuất sắc",
            conduct=TOT,
            learning=TOT,
            count=SCORED_COUNT,
            count_at=Decimal("9.0"),
            clause=Clause(f"{C} Art. 15.1.a"),
        ),
        Award("Học sinh Giỏi", conduct=TOT, learning=TOT, clause=Clause(f"{C} Art. 15.1.b")),
    ),
)
