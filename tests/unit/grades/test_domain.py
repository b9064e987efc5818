"""Circular 22/2021 rules: validation, averages, rounding, learning results and the year record."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from services.grades.domain import (
    assemble_record,
    enrolled_entry_problems,
    entry_problems,
    record_id,
    round_half_up,
    term_average,
    year_average,
)
from services.grades.domain.entries import score_problems
from services.grades.domain.secondary import learning_result
from services.grades.rulesets import CIRCULAR_22_2021, GRADE_6
from services.grades.rulesets.model import SubjectRule


def regular_assessments(periods: int) -> int:
    return SubjectRule("x", "score", periods).regular_per_term
from tests.unit.grades.builders import SCHOOL, YEAR, commented, enrolled, full_year, scored, snapshot

D = Decimal
RULES = CIRCULAR_22_2021


def rule(name: str):
    return RULES.subject(6, name)


# -- the subject table ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("periods", "regular"), [(35, 2), (36, 3), (70, 3), (71, 4), (105, 4), (140, 4)]
)
def test_regular_assessments_per_term_follow_the_periods(periods, regular):
    assert regular_assessments(periods) == regular


def test_grade_6_has_eight_scored_and_four_comment_subjects():
    assert [s.name for s in GRADE_6 if s.scored] == [
        "Ngữ văn", "Toán", "Ngoại ngữ 1", "Lịch sử và Địa lí",
        "Khoa học tự nhiên", "Giáo dục công dân", "Công nghệ", "Tin học",
    ]
    assert [s.name for s in GRADE_6 if not s.scored] == [
        "Giáo dục thể chất", "Nghệ thuật", "Hoạt động trải nghiệm, hướng nghiệp", "Nội dung giáo dục của địa phương",
    ]
    assert {s.name: s.regular_per_term for s in GRADE_6 if s.scored} == {
        "Ngữ văn": 4, "Toán": 4, "Ngoại ngữ 1": 4, "Lịch sử và Địa lí": 4,
        "Khoa học tự nhiên": 4, "Giáo dục công dân": 2, "Công nghệ": 2, "Tin học": 2,
    }
    assert RULES.key == "circular-22-2021/v2"
    assert RULES.subjects(10) is None


# -- rounding and averages --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rounded"),
    [
        ("7.25", "7.3"),
        ("8.25", "8.3"),
        ("6.45", "6.5"),
        ("7.24999", "7.2"),
        ("3.45", "3.5"),
        ("0", "0.0"),
        ("10", "10.0"),
    ],
)
def test_round_half_up_to_one_decimal(value, rounded):
    assert str(round_half_up(D(value))) == rounded


@pytest.mark.parametrize(
    ("regular", "midterm", "final", "average"),
    [
        # (21 + 16 + 21) / 8 = 7.25
        (["7", "7", "7"], "8", "7", "7.3"),
        # (24 + 18 + 24) / 8 = 8.25: binary floating point rounds this to 8.2
        (["8", "8", "8"], "9", "8", "8.3"),
        # (18 + 12.6 + 21) / 8 = 6.45 exactly
        (["6", "6", "6"], "6.3", "7.0", "6.5"),
        # (11 + 14 + 24) / 7 = 7
        (["5", "6"], "7", "8", "7.0"),
        # (31 + 14 + 25.5) / 9 = 7.833...
        (["8", "7.5", "9", "6.5"], "7", "8.5", "7.8"),
        # (6.5 + 6.9 + 2·6.1 + 3·6.6) / 7 = 45.4 / 7 = 6.4857...
        (["6.5", "6.9"], "6.1", "6.6", "6.5"),
        (["10", "10"], "10", "10", "10.0"),
        (["0", "0", "0", "0"], "0", "0", "0.0"),
    ],
)
def test_term_average(regular, midterm, final, average):
    assert str(term_average([D(v) for v in regular], D(midterm), D(final))) == average


def test_the_8_25_case_is_one_that_floating_point_gets_wrong():
    assert round((8 + 8 + 8 + 2 * 9 + 3 * 8) / 8, 1) == 8.2
    assert str(term_average([D(8)] * 3, D(9), D(8))) == "8.3"


@pytest.mark.parametrize(
    ("term_1", "term_2", "year"),
    [
        ("6.4", "6.5", "6.5"),  # 19.4 / 3 = 6.466...
        ("7.0", "8.0", "7.7"),  # 23 / 3 = 7.666...
        ("3.5", "3.4", "3.4"),  # 10.3 / 3 = 3.433...
        ("8.3", "7.9", "8.0"),  # 24.1 / 3 = 8.033...
        ("5.0", "5.0", "5.0"),
        ("4.9", "5.1", "5.0"),  # 15.1 / 3 = 5.033...
        ("9.9", "10.0", "10.0"),  # 29.9 / 3 = 9.966...
    ],
)
def test_year_average_weights_term_two_twice(term_1, term_2, year):
    assert str(year_average(D(term_1), D(term_2))) == year


# -- learning result --------------------------------------------------------------------------

PASS4 = ["Đ"] * 4


@pytest.mark.parametrize(
    ("scores", "comments", "result"),
    [
        (["8.0"] * 6 + ["6.5", "6.5"], PASS4, "Tốt"),  # both boundaries reached
        (["8.0"] * 5 + ["7.9", "6.5", "6.5"], PASS4, "Khá"),  # only five at 8.0
        (["8.0"] * 6 + ["6.4", "9.0"], PASS4, "Khá"),  # one below 6.5
        (["9.0"] * 8, ["Đ", "Đ", "Đ", "CĐ"], "Đạt"),  # one comment subject Chưa đạt
        (["6.5"] * 6 + ["5.0", "5.0"], PASS4, "Khá"),
        (["6.5"] * 5 + ["6.4", "5.0", "5.0"], PASS4, "Đạt"),  # only five at 6.5
        (["6.5"] * 6 + ["4.9", "9.0"], PASS4, "Đạt"),  # one below 5.0
        (["5.0"] * 6 + ["3.5", "3.5"], PASS4, "Đạt"),
        (["5.0"] * 6 + ["3.4", "9.0"], PASS4, "Chưa đạt"),  # one below 3.5
        (["5.0"] * 5 + ["4.9", "4.9", "4.9"], PASS4, "Chưa đạt"),  # only five at 5.0
        (["5.0"] * 5 + ["4.9", "4.9", "9.0"], PASS4, "Đạt"),
        (["9.0"] * 8, ["Đ", "Đ", "CĐ", "CĐ"], "Chưa đạt"),  # two comment subjects Chưa đạt
    ],
)
def test_learning_result_thresholds(scores, comments, result):
    assert learning_result(RULES, [D(s) for s in scores], comments) == result


# -- entry validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "codes"),
    [
        (scored("s", "Toán", 1, ["8", "7.5", "9", "6"], "7", "8.5"), []),
        (scored("s", "Toán", 1, ["8.50", "7.5", "9", "6"], "7", "8.5"), []),  # 8.50 is 8.5
        (scored("s", "Tin học", 2, ["8", "7"], "7", "8"), []),
        (scored("s", "Toán", 1, ["8", "7.5", "9"], "7", "8.5"), ["regular-count"]),
        (scored("s", "Giáo dục công dân", 1, ["8", "7", "6"], "7", "8"), ["regular-count"]),
        (scored("s", "Ngoại ngữ 1", 1, ["8", "7", "6"], "7", "8"), ["regular-count"]),
        (scored("s", "Tin học", 1, ["10.5", "7"], "7", "8"), ["score-range"]),
        (scored("s", "Tin học", 1, ["8", "7"], "-1", "8"), ["score-range"]),
        (scored("s", "Tin học", 1, ["8", "7"], "7", "7.25"), ["score-precision"]),
        (scored("s", "Tin học", 1, ["8", "7"], None, "8"), ["missing-score"]),
        (scored("s", "Tin học", 1, ["8", "7"], "7", None), ["missing-score"]),
        (scored("s", "Tin học", 1, ["8"], "7", "11"), ["regular-count", "score-range"]),
        (scored("s", "Hóa học", 1, ["8", "7"], "7", "8"), ["unknown-subject"]),
        (scored("s", "Nghệ thuật", 1, ["8", "7"], "7", "8"), ["comment-only", "missing-level"]),
        (commented("s", "Nghệ thuật", 1, "CĐ"), []),
        (commented("s", "Toán", 1), ["score-only", "regular-count", "missing-score", "missing-score"]),
    ],
)
def test_entry_problems(entry, codes):
    assert [p.code for p in entry_problems(entry, rule(entry.subject))] == codes


def test_a_problem_says_what_is_wrong():
    (problem,) = entry_problems(scored("s", "Toán", 1, ["8", "7"], "7", "8"), rule("Toán"))
    assert problem.message == "Toán (140 periods a year) needs 4 regular assessments per term, got 2"


@pytest.mark.parametrize("value", ["NaN", "Infinity"])
def test_a_score_must_be_a_number(value):
    assert [p.code for p in score_problems("final", D(value))] == ["score-format"]


@pytest.mark.parametrize(
    ("student", "codes"),
    [
        (enrolled("s"), []),
        (enrolled("s", school="79000702"), ["wrong-school"]),
        (enrolled("s", grade=10), ["no-rule-set"]),
    ],
)
def test_entries_are_checked_against_the_enrolment(student, codes):
    entry = scored("s", "Tin học", 1, ["8", "7"], "7", "8")
    assert [p.code for p in enrolled_entry_problems(RULES, SCHOOL, student, entry)] == codes


# -- the year record --------------------------------------------------------------------------


def test_record_id_is_deterministic_per_student_school_and_year():
    assert record_id(SCHOOL, YEAR, "a") == record_id(SCHOOL, YEAR, "a")
    assert len({record_id(SCHOOL, YEAR, "a"), record_id(SCHOOL, YEAR, "b"), record_id(SCHOOL, "2026-2027", "a")}) == 3
    assert len(record_id(SCHOOL, YEAR, "a")) == 32 and int(record_id(SCHOOL, YEAR, "a"), 16) >= 0


def test_a_complete_record_document():
    entries = full_year("s1", score="8.0")
    # Toán: term I (8·4 + 2·7 + 3·9) / 9 = 73/9 = 8.11 -> 8.1; term II 8.0; year (8.1 + 16) / 3 = 8.03 -> 8.0
    entries = [e for e in entries if not (e.subject == "Toán" and e.term == 1)]
    entries.append(scored("s1", "Toán", 1, ["8", "8", "8", "8"], "7", "9"))
    doc = assemble_record(RULES, enrolled("s1"), snapshot("s1"), entries).document()

    assert json.loads(json.dumps(doc, ensure_ascii=False)) == doc, "the document holds JSON values only"
    assert doc["record_id"] == record_id(SCHOOL, YEAR, "s1")
    assert doc["version"] == 1
    assert doc["rule_set"] == "circular-22-2021/v2"
    assert doc["school"] == {"code": SCHOOL}
    assert (doc["school_year"], doc["grade"], doc["class_name"]) == (YEAR, 6, "6A1")
    assert doc["student"]["student_ref"] == "s1"
    assert doc["student"]["identity"]["personal_id"] == "079214000123"
    assert doc["student"]["identity"]["date_of_birth"] == "2014-09-05"
    assert [s["name"] for s in doc["subjects"]] == [r.name for r in GRADE_6]
    toan = next(s for s in doc["subjects"] if s["name"] == "Toán")
    assert toan == {
        "name": "Toán",
        "kind": "score",
        "term_1": {"regular": ["8.0"] * 4, "midterm": "7.0", "final": "9.0", "average": "8.1"},
        "term_2": {"regular": ["8.0"] * 4, "midterm": "8.0", "final": "8.0", "average": "8.0"},
        "year": {"average": "8.0"},
    }
    art = next(s for s in doc["subjects"] if s["name"] == "Nghệ thuật")
    assert art == {"name": "Nghệ thuật", "kind": "comment", "term_1": {"level": "Đ"}, "term_2": {"level": "Đ"},
                   "year": {"level": "Đ"}}
    assert doc["learning_result"] == {"term_1": "Tốt", "term_2": "Tốt", "year": "Tốt"}
    assert doc["complete"] is False, "the homeroom entries are missing"
    assert doc["missing"] == [{"entry": "homeroom", "term": 1}, {"entry": "homeroom", "term": 2}]


def test_a_comment_subject_takes_its_year_result_from_term_two():
    entries = [e for e in full_year("s1") if e.subject != "Giáo dục thể chất"]
    entries += [commented("s1", "Giáo dục thể chất", 1, "CĐ"), commented("s1", "Giáo dục thể chất", 2, "Đ")]
    doc = assemble_record(RULES, enrolled("s1"), snapshot("s1"), entries).document()
    pe = next(s for s in doc["subjects"] if s["name"] == "Giáo dục thể chất")
    assert pe["year"] == {"level": "Đ"}
    # term I: Đạt by the thresholds, raised to Khá (Art. 9.3: only Giáo dục thể chất kept it from Tốt)
    assert doc["learning_result"] == {"term_1": "Khá", "term_2": "Tốt", "year": "Tốt"}


def test_a_record_with_missing_entries_is_assembled_and_says_what_is_missing():
    entries = full_year("s1", score="6.0", skip=frozenset({("Toán", 2), ("Nghệ thuật", 1)}))
    doc = assemble_record(RULES, enrolled("s1"), snapshot("s1"), entries).document()
    assert doc["complete"] is False
    assert doc["missing"][:2] == [{"subject": "Toán", "term": 2}, {"subject": "Nghệ thuật", "term": 1}]
    toan = next(s for s in doc["subjects"] if s["name"] == "Toán")
    assert toan["term_1"]["average"] == "6.0" and toan["term_2"] is None and toan["year"] is None
    art = next(s for s in doc["subjects"] if s["name"] == "Nghệ thuật")
    assert art["term_1"] is None and art["year"] == {"level": "Đ"}
    # term I lacks Nghệ thuật, term II and the year lack Toán
    assert doc["learning_result"] == {"term_1": None, "term_2": None, "year": None}


def test_a_record_needs_a_subject_table_for_the_grade():
    with pytest.raises(ValueError, match="grade 10"):
        assemble_record(RULES, enrolled("s1", grade=10), snapshot("s1"), [])
