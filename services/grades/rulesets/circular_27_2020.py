"""Circular 27/2020/TT-BGDĐT (primary) as data.

RULES.md §3 is the source. Subject tables per grade follow the 2018 programme (Ngoại ngữ 1 and
Tin học và Công nghệ from grade 3, Lịch sử và Địa lí and Khoa học from grade 4); points RULES.md
calls unconfirmed are marked so.
"""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType

from services.grades.rulesets.model import (
    CHT,
    HT,
    HTT,
    HTXS,
    QUALITY_D,
    QUALITY_T,
    SUBJECT_H,
    SUBJECT_T,
    Clause,
    Outcome,
    RuleSet,
    SubjectRule,
)

C = "Circular 27/2020"
_KHOA_HOC = "Khoa học in the tested list is from the Vietnamese text, not confirmed in translation"
_TABLE = "grade's subject table from the 2018 programme, not in RULES.md: confirm"


def _level(name: str, tested: bool = False, midterm: bool = False, note: str = _TABLE) -> SubjectRule:
    return SubjectRule(name, "level", tested=tested, midterm_tested=midterm, unconfirmed=note)


_COMMON_LATE = (
    _level("Đạo đức"),
    _level("Giáo dục thể chất"),
    _level("Âm nhạc"),
    _level("Mĩ thuật"),
    _level("Hoạt động trải nghiệm"),
)

GRADE_1 = (
    _level("Tiếng Việt", tested=True, note=""),
    _level("Toán", tested=True, note=""),
    _level("Tự nhiên và Xã hội"),
    *_COMMON_LATE,
)
GRADE_3 = (
    _level("Tiếng Việt", tested=True, note=""),
    _level("Toán", tested=True, note=""),
    _level("Ngoại ngữ 1", tested=True, note=""),
    _level("Tin học và Công nghệ", tested=True, note=""),
    _level("Tự nhiên và Xã hội"),
    *_COMMON_LATE,
)
GRADE_4 = (
    _level("Tiếng Việt", tested=True, midterm=True, note=""),
    _level("Toán", tested=True, midterm=True, note=""),
    _level("Ngoại ngữ 1", tested=True, note=""),
    _level("Lịch sử và Địa lí", tested=True, note=""),
    _level("Khoa học", tested=True, note=_KHOA_HOC),
    _level("Tin học và Công nghệ", tested=True, note=""),
    *_COMMON_LATE,
)

QUALITIES = ("Yêu nước", "Nhân ái", "Chăm chỉ", "Trung thực", "Trách nhiệm")
COMPETENCIES = (
    # general
    "Tự chủ và tự học",
    "Giao tiếp và hợp tác",
    "Giải quyết vấn đề và sáng tạo",
    # specific
    "Ngôn ngữ",
    "Tính toán",
    "Khoa học",
    "Công nghệ",
    "Tin học",
    "Thẩm mĩ",
    "Thể chất",
)

CLAUSES = MappingProxyType(
    {
        "subject-level": Clause(f"{C} Art. 6", note="T / H / C at mid-term I, end of term I, mid-term II, end of year"),
        "test": Clause(f"{C} Art. 7", note="periodic tests on a 10-point scale, no decimals"),
        "allow-zero": Clause(f"{C} Art. 7", confirmed=False, note="whether a test may score 0 is not confirmed"),
        "tested-subjects": Clause(f"{C} Art. 7", confirmed=False, note=_KHOA_HOC),
        "qualities": Clause(f"{C} Art. 6", note="qualities and competencies Tốt / Đạt / Cần cố gắng"),
        "completion": Clause(f"{C} Art. 14", note="grade 5 completers: Hoàn thành chương trình tiểu học"),
        "award": Clause(f"{C} Art. 15", note="Học sinh Xuất sắc for Hoàn thành xuất sắc"),
    }
)

TOP = frozenset({SUBJECT_T})
PASS = frozenset({SUBJECT_T, SUBJECT_H})
GOOD = frozenset({QUALITY_T})
FAIR = frozenset({QUALITY_T, QUALITY_D})

CIRCULAR_27_2020 = RuleSet(
    id="circular-27-2020",
    version="v1",
    family="primary",
    regulation="Circular 27/2020/TT-BGDĐT",
    subjects_by_grade=MappingProxyType({1: GRADE_1, 2: GRADE_1, 3: GRADE_3, 4: GRADE_4, 5: GRADE_4}),
    clauses=CLAUSES,
    allow_zero=True,
    qualities=QUALITIES,
    competencies=COMPETENCIES,
    outcomes=(
        Outcome(HTXS, TOP, GOOD, Decimal(9), Clause(f"{C} Art. 9.2.a")),
        Outcome(HTT, TOP, GOOD, Decimal(7), Clause(f"{C} Art. 9.2.b")),
        Outcome(HT, PASS, FAIR, Decimal(5), Clause(f"{C} Art. 9.2.c")),
    ),
    fallback_outcome=CHT,
    primary_award="Học sinh Xuất sắc",
    completion_grade=5,
    completion_note="Hoàn thành chương trình tiểu học",
)
