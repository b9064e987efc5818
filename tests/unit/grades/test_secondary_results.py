"""Circular 22/2021 results as tables: level boundaries, the Art. 9.3 adjustment, conduct, promotion, awards."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.grades.domain import assemble_record
from services.grades.domain.scores import term_average
from services.grades.domain.secondary import (
    decide_learning,
    explain_award,
    explain_promotion,
    explain_year_conduct,
)
from services.grades.rulesets import CIRCULAR_22_2021 as RULES
from tests.unit.grades.builders import enrolled, full_year, homeroom, scored, snapshot

D = Decimal
SCORED = ["Ngữ văn", "Toán", "Ngoại ngữ 1", "Lịch sử và Địa lí", "Khoa học tự nhiên", "Giáo dục công dân", "Công nghệ", "Tin học"]
COMMENT = ["Giáo dục thể chất", "Nghệ thuật", "Hoạt động trải nghiệm", "Nội dung giáo dục của địa phương"]


def values(scores: list[str], comments: list[str] | None = None) -> dict[str, Decimal | str]:
    found: dict[str, Decimal | str] = {name: D(v) for name, v in zip(SCORED, scores, strict=True)}
    found.update(zip(COMMENT, comments or ["Đ"] * 4, strict=True))
    return found


# -- every boundary of the levels, and the 6-subject counts -----------------------------------


@pytest.mark.parametrize(
    ("scores", "comments", "level"),
    [
        # Tốt: all ≥ 6.5, six ≥ 8.0
        (["8.0"] * 6 + ["6.5"] * 2, None, "Tốt"),
        (["8.0"] * 5 + ["7.9"] + ["6.5"] * 2, None, "Khá"),  # five at 8.0
        (["8.0"] * 6 + ["6.4", "6.5"], None, "Khá"),  # 6.4 below the Tốt floor (one subject: 1 level, no lift)
        (["8.0"] * 7 + ["6.5"], ["Đ", "Đ", "Đ", "CĐ"], "Khá"),  # Đạt by thresholds, lifted by Art. 9.3
        # Khá: all ≥ 5.0, six ≥ 6.5
        (["6.5"] * 6 + ["5.0"] * 2, None, "Khá"),
        (["6.5"] * 5 + ["6.4"] + ["5.0"] * 2, None, "Đạt"),  # five at 6.5
        (["6.5"] * 6 + ["4.9", "5.0"], None, "Đạt"),  # 4.9 below the Khá floor
        # Đạt: none below 3.5, six ≥ 5.0, at most one comment Chưa đạt
        (["5.0"] * 6 + ["3.5"] * 2, None, "Đạt"),
        (["5.0"] * 6 + ["3.4", "3.5"], None, "Chưa đạt"),  # 3.4 below the Đạt floor
        (["5.0"] * 5 + ["4.9"] * 3, None, "Chưa đạt"),  # only five at 5.0
        (["5.0"] * 6 + ["3.5"] * 2, ["Đ", "Đ", "CĐ", "CĐ"], "Chưa đạt"),  # two comment subjects Chưa đạt
        (["5.0"] * 6 + ["3.5"] * 2, ["Đ", "Đ", "Đ", "CĐ"], "Đạt"),
    ],
)
def test_levels_at_every_boundary(scores, comments, level):
    assert decide_learning(RULES, values(scores, comments)).level == level


# -- Art. 9.3: two or more levels down because of one subject: raised by one -------------------


@pytest.mark.parametrize(
    ("scores", "comments", "base", "level", "subject"),
    [
        # Tốt but one subject below 5.0 -> Đạt, raised to Khá
        (["9.0"] * 7 + ["4.9"], None, "Đạt", "Khá", "Tin học"),
        # Tốt but one subject below 3.5 -> Chưa đạt, raised to Đạt
        (["9.0"] * 7 + ["3.4"], None, "Chưa đạt", "Đạt", "Tin học"),
        # Khá but one subject below 3.5 -> Chưa đạt, raised to Đạt
        (["7.0"] * 7 + ["2.0"], None, "Chưa đạt", "Đạt", "Tin học"),
        # Tốt but one comment subject Chưa đạt -> Đạt, raised to Khá
        (["9.0"] * 8, ["CĐ", "Đ", "Đ", "Đ"], "Đạt", "Khá", "Giáo dục thể chất"),
        # Tốt but the first subject below 6.5 -> Khá: one level only, no lift
        (["4.0"] + ["9.0"] * 7, None, "Đạt", "Khá", "Ngữ văn"),
    ],
)
def test_one_subject_two_levels_down_is_raised_one_level(scores, comments, base, level, subject):
    decision = decide_learning(RULES, values(scores, comments))
    assert (decision.base, decision.level, decision.adjusted_for) == (base, level, subject)


@pytest.mark.parametrize(
    ("scores", "comments", "level"),
    [
        (["9.0"] * 7 + ["6.0"], None, "Khá"),  # Tốt -> Khá: one level, no lift
        (["9.0"] * 6 + ["4.9", "4.9"], None, "Đạt"),  # two subjects cause it: no lift
        (["6.0"] * 7 + ["4.0"], None, "Đạt"),  # would reach only Đạt: not a target
        (["9.0"] * 7 + ["3.4"], ["CĐ", "Đ", "Đ", "Đ"], "Chưa đạt"),  # a score and a comment: two subjects
        (["5.0"] * 5 + ["4.9"] * 3, None, "Chưa đạt"),  # even at best, one subject reaches only Đạt
    ],
)
def test_no_adjustment_when_one_subject_does_not_explain_two_levels(scores, comments, level):
    decision = decide_learning(RULES, values(scores, comments))
    assert decision.level == level and decision.adjusted_for is None


def test_the_adjustment_is_marked_unconfirmed_data_with_its_clause():
    assert RULES.adjustment is not None
    assert RULES.adjustment.clause.ref == "Circular 22/2021 Art. 9.3" and not RULES.adjustment.clause.confirmed
    assert any("Art. 9.3" in note for note in RULES.unconfirmed())


# -- year conduct: every pair ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("term_1", "term_2", "year"),
    [
        ("Tốt", "Tốt", "Tốt"), ("Khá", "Tốt", "Tốt"), ("Đạt", "Tốt", "Khá"), ("Chưa đạt", "Tốt", "Khá"),
        ("Tốt", "Khá", "Khá"), ("Khá", "Khá", "Khá"), ("Đạt", "Khá", "Khá"), ("Chưa đạt", "Khá", "Đạt"),
        ("Tốt", "Đạt", "Khá"), ("Khá", "Đạt", "Đạt"), ("Đạt", "Đạt", "Đạt"), ("Chưa đạt", "Đạt", "Đạt"),
        ("Tốt", "Chưa đạt", "Chưa đạt"), ("Khá", "Chưa đạt", "Chưa đạt"), ("Đạt", "Chưa đạt", "Chưa đạt"),
        ("Chưa đạt", "Chưa đạt", "Chưa đạt"),
    ],
)
def test_year_conduct_from_each_pair_of_terms(term_1, term_2, year):
    explained = explain_year_conduct(RULES, term_1, term_2)
    assert explained.result == year
    assert explained.inputs == {"term_1": term_1, "term_2": term_2}
    assert "Art. 8.2" in explained.clause


def test_the_conduct_table_covers_all_sixteen_pairs_and_is_marked_partly_confirmed():
    assert len(RULES.conduct_year) == 16
    assert not RULES.conduct_clause.confirmed


# -- promotion (45 sessions) and awards --------------------------------------------------------


@pytest.mark.parametrize(
    ("conduct", "learning", "absences", "decision", "rule"),
    [
        ("Đạt", "Đạt", 45, "Được lên lớp", "promotion"),
        ("Tốt", "Tốt", 46, "Ở lại lớp", "absence-limit"),
        ("Tốt", "Chưa đạt", 0, "Chưa được lên lớp", "promotion-pending"),
        ("Chưa đạt", "Khá", 10, "Chưa được lên lớp", "promotion-pending"),
        ("Chưa đạt", "Chưa đạt", 46, "Ở lại lớp", "absence-limit"),
    ],
)
def test_promotion(conduct, learning, absences, decision, rule):
    explained = explain_promotion(RULES, conduct, learning, absences)
    assert (explained.result, explained.rule) == (decision, rule)


def test_what_follows_when_not_yet_promoted():
    explained = explain_promotion(RULES, "Chưa đạt", "Chưa đạt", 3)
    assert explained.inputs["next"] == ["re-test in summer (kiểm tra lại)", "conduct training in summer (rèn luyện trong hè)"]


@pytest.mark.parametrize(
    ("conduct", "learning", "averages", "award"),
    [
        ("Tốt", "Tốt", ["9.0"] * 6 + ["8.0"] * 2, "Học sinh Xuất sắc"),
        ("Tốt", "Tốt", ["9.0"] * 5 + ["8.9"] + ["8.0"] * 2, "Học sinh Giỏi"),  # five at 9.0
        ("Khá", "Tốt", ["10.0"] * 8, None),
        ("Tốt", "Khá", ["9.0"] * 8, None),
    ],
)
def test_awards(conduct, learning, averages, award):
    year = {name: D(v) for name, v in zip(SCORED, averages, strict=True)}
    assert explain_award(RULES, conduct, learning, year).result == award


# -- the record has every result, and each result its explanation -----------------------------


def test_a_complete_record_has_conduct_promotion_awards_and_explanations_a_verifier_can_recompute():
    entries = full_year("s1", score="9.0")
    record = assemble_record(RULES, enrolled("s1"), snapshot("s1"), entries, homeroom("s1", ("Khá", "Tốt"), (20, 25)))
    doc = record.document()
    assert doc["complete"] is True and doc["missing"] == []
    assert doc["conduct"] == {"term_1": "Khá", "term_2": "Tốt", "year": "Tốt"}
    assert doc["absences"] == {"term_1": 20, "term_2": 25, "year": 45}
    assert doc["learning_result"] == {"term_1": "Tốt", "term_2": "Tốt", "year": "Tốt"}
    assert doc["promotion"] == {"decision": "Được lên lớp"}
    assert doc["awards"] == ["Học sinh Xuất sắc"]
    assert doc["comments"]["homeroom"] == {"term_1": "ghi chú 1", "term_2": "ghi chú 2"}

    assert doc["rule_set"] == "circular-22-2021/v2"
    explained = {e.about: e for e in record.explanations()}
    assert {"learning/term_1", "learning/year", "conduct/year", "promotion", "awards"} <= set(explained)
    assert all(e.clause and e.text for e in record.explanations())
    # every term average can be recomputed from the inputs it names
    averages = [e for e in record.explanations() if e.rule == "term-average"]
    assert len(averages) == 16
    for e in averages:
        i = e.inputs
        assert str(term_average([D(v) for v in i["regular"]], D(i["midterm"]), D(i["final"]))) == e.result
    assert "45 sessions absent (at most 45)" in explained["promotion"].text


def test_the_adjusted_level_is_explained():
    entries = [e for e in full_year("s1", score="9.0") if e.subject != "Tin học"]
    entries += [scored("s1", "Tin học", t, ["4", "4"], "4", "4") for t in (1, 2)]
    record = assemble_record(RULES, enrolled("s1"), snapshot("s1"), entries, homeroom("s1"))
    assert record.document()["learning_result"]["year"] == "Khá"
    year = next(e for e in record.explanations() if e.about == "learning/year")
    assert year.result == "Khá" and year.rule == "learning-level-adjusted"
    assert year.inputs["base"] == "Đạt" and year.inputs["adjusted_for"] == "Tin học"
    assert "Raised to Khá: only Tin học kept it from Tốt" in year.text
