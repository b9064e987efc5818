"""Circular 27/2020 (primary): entry validation, the four year-end outcomes, award and completion."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from services.grades.domain import assemble_record, entry_problems
from services.grades.domain.primary import explain_outcome
from services.grades.rulesets import CIRCULAR_27_2020 as RULES
from services.grades.rulesets import rule_set_for
from shared.contracts.grades import StudentTermConduct, SubjectTermScores
from tests.unit.grades.builders import enrolled, snapshot

D = Decimal
ALL_T = {name: "T" for name in (*RULES.qualities, *RULES.competencies)}


def entry(subject: str, term: int = 2, level: str | None = "T", final: str | None = None, midterm: str | None = None,
          midterm_level: str | None = None) -> SubjectTermScores:
    return SubjectTermScores(
        student_ref="p1", subject=subject, term=term, level=level, midterm_level=midterm_level,
        final=None if final is None else D(final), midterm=None if midterm is None else D(midterm),
    )


def test_grades_1_to_5_use_circular_27_and_6_to_12_circular_22():
    assert {rule_set_for(g).id for g in range(1, 6)} == {"circular-27-2020"}
    assert {rule_set_for(g).regulation.startswith("Circular 22/2021/TT-BGDĐT") for g in range(6, 13)} == {True}
    assert {rule_set_for(g).id for g in range(6, 10)} == {"circular-22-2021"}
    assert {rule_set_for(g).id for g in range(10, 13)} == {"circular-22-2021-upper"}


@pytest.mark.parametrize(
    ("grade", "subject", "tested", "midterm"),
    [(1, "Tiếng Việt", True, False), (1, "Đạo đức", False, False), (3, "Tin học và Công nghệ", True, False),
     (4, "Toán", True, True), (5, "Khoa học", True, False), (5, "Lịch sử và Địa lí", True, False)],
)
def test_which_subjects_are_tested(grade, subject, tested, midterm):
    rule = RULES.subject(grade, subject)
    assert rule is not None and (rule.tested, rule.midterm_tested) == (tested, midterm)


@pytest.mark.parametrize(
    ("grade", "given", "codes"),
    [
        (1, entry("Toán", final="9"), []),
        (1, entry("Toán", final="0"), []),  # zero allowed by the rule set's flag
        (1, entry("Toán", final="9.5"), ["score-precision"]),  # primary tests have no decimals
        (1, entry("Toán", final="11"), ["score-range"]),
        (1, entry("Toán"), ["missing-score"]),
        (1, entry("Đạo đức", final="9"), ["not-tested"]),
        (1, entry("Đạo đức", level=None), ["missing-level"]),
        (4, entry("Toán", final="8"), ["missing-score"]),  # grade 4 also tests at mid-term
        (4, entry("Toán", final="8", midterm="7", midterm_level="H"), []),
        (1, SubjectTermScores(student_ref="p1", subject="Toán", term=1, regular=(D(8),), final=D(8), level="T"),
         ["secondary-only"]),
    ],
)
def test_primary_entries(grade, given, codes):
    assert [p.code for p in entry_problems(given, RULES.subject(grade, given.subject), RULES)] == codes


def test_zero_can_be_refused_by_the_rule_set_flag():
    strict = replace(RULES, allow_zero=False)
    assert [p.code for p in entry_problems(entry("Toán", final="0"), RULES.subject(1, "Toán"), strict)] == ["score-zero"]
    assert not RULES.clause("allow-zero").confirmed


@pytest.mark.parametrize(
    ("levels", "ratings", "tests", "outcome"),
    [
        ({"a": "T", "b": "T"}, ALL_T, {"a": "9", "b": "10"}, "Hoàn thành xuất sắc"),
        ({"a": "T", "b": "T"}, ALL_T, {"a": "8", "b": "10"}, "Hoàn thành tốt"),  # a test below 9
        ({"a": "T", "b": "T"}, ALL_T, {"a": "7", "b": "7"}, "Hoàn thành tốt"),
        ({"a": "T", "b": "H"}, ALL_T, {"a": "10", "b": "10"}, "Hoàn thành"),  # a subject H
        ({"a": "T", "b": "T"}, {**ALL_T, "Trung thực": "Đ"}, {"a": "10", "b": "10"}, "Hoàn thành"),
        ({"a": "T", "b": "T"}, ALL_T, {"a": "6", "b": "10"}, "Hoàn thành"),  # a test below 7
        ({"a": "T", "b": "T"}, ALL_T, {"a": "5", "b": "5"}, "Hoàn thành"),
        ({"a": "T", "b": "T"}, ALL_T, {"a": "4", "b": "10"}, "Chưa hoàn thành"),  # a test below 5
        ({"a": "C", "b": "T"}, ALL_T, {"a": "10", "b": "10"}, "Chưa hoàn thành"),
        ({"a": "T", "b": "T"}, {**ALL_T, "Tự chủ và tự học": "C"}, {"a": "10", "b": "10"}, "Chưa hoàn thành"),
    ],
)
def test_the_four_year_end_outcomes(levels, ratings, tests, outcome):
    explained = explain_outcome(RULES, levels, ratings, {k: D(v) for k, v in tests.items()})
    assert explained.result == outcome


def grade_entries(grade: int, level: str = "T", test: str = "10") -> list[SubjectTermScores]:
    found = []
    for rule in RULES.subjects(grade) or ():
        for term in (1, 2):
            found.append(entry(rule.name, term, level, final=test if rule.tested else None,
                               midterm=test if rule.midterm_tested else None))
    return found


def ratings(term: int, level: str = "T") -> StudentTermConduct:
    return StudentTermConduct(
        student_ref="p1", term=term, absences=0,
        qualities={q: level for q in RULES.qualities}, competencies={c: level for c in RULES.competencies},
    )


def test_a_grade_5_record_with_outcome_award_and_completion():
    record = assemble_record(RULES, enrolled("p1", grade=5, class_name="5A"), snapshot("p1"), grade_entries(5),
                             [ratings(1), ratings(2)])
    doc = record.document()
    assert doc["rule_set"] == "circular-27-2020/v1" and doc["complete"] is True
    assert doc["outcome"] == "Hoàn thành xuất sắc"
    assert doc["awards"] == ["Học sinh Xuất sắc"]
    assert doc["completion"] == "Hoàn thành chương trình tiểu học"
    toan = next(s for s in doc["subjects"] if s["name"] == "Toán")
    assert toan["term_2"] == {"level": "T", "midterm_test": "10", "test": "10"} and toan["year"] == {"level": "T"}
    about = {e.about for e in record.explanations()}
    assert {"outcome", "awards", "completion", "subjects/Toán/year/level"} <= about


def test_a_grade_1_record_has_no_completion_note_and_lower_outcomes_no_award():
    doc = assemble_record(RULES, enrolled("p1", grade=1, class_name="1A"), snapshot("p1"), grade_entries(1, "H", "6"),
                          [ratings(1, "Đ"), ratings(2, "Đ")]).document()
    assert doc["outcome"] == "Hoàn thành" and doc["awards"] == [] and doc["completion"] is None
