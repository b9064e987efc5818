"""Art. 9.3 read two ways, as a rule-set setting: "only one subject causes it" is that subject counted at its
best (`at-best`, the default), or that subject left out with the other subjects reaching the level on their own
(`removed`). They differ where the subject counted at its best is one of the "at least 6" the level needs."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from services.grades.domain.secondary import decide_learning, explain_learning
from services.grades.rulesets import CIRCULAR_22_2021, CIRCULAR_22_2021_UPPER
from services.grades.rulesets.model import AT_BEST, REMOVED

SCORED = [
    "Ngữ văn",
    "Toán",
    "Ngoại ngữ 1",
    "Lịch sử và Địa lí",
    "Khoa học tự nhiên",
    "Giáo dục công dân",
    "Công nghệ",
    "Tin học",
]
COMMENT = ["Giáo dục thể chất", "Nghệ thuật", "Hoạt động trải nghiệm", "Nội dung giáo dục của địa phương"]


def values(scores: list[str], comments: list[str] | None = None) -> dict[str, Decimal | str]:
    found: dict[str, Decimal | str] = {name: Decimal(v) for name, v in zip(SCORED, scores, strict=True)}
    found.update(zip(COMMENT, comments or ["Đ"] * 4, strict=True))
    return found


def read_as(reading: str):
    """Grade 6's rule set with the adjustment read as `reading`."""
    assert CIRCULAR_22_2021.adjustment is not None
    return replace(CIRCULAR_22_2021, adjustment=replace(CIRCULAR_22_2021.adjustment, reading=reading))


def decided(
    reading: str, scores: list[str], comments: list[str] | None = None
) -> tuple[str, str, str | None, str | None]:
    decision = decide_learning(read_as(reading), values(scores, comments))
    return decision.base, decision.level, decision.adjusted_for, decision.would_reach


# -- where the readings differ ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "at_best", "removed"),
    [
        # Đạt for Tin học at 3.6; at its best it is the sixth 8.0 (Tốt: raised to Khá); left out, five of
        # the other seven reach 8.0 and the rest reach only Khá, one level up (not raised)
        (["8.0"] * 5 + ["7.0", "7.0", "3.6"], ("Đạt", "Khá", "Tin học", "Tốt"), ("Đạt", "Đạt", None, None)),
        # Chưa đạt for Tin học at 3.0; at its best it is the sixth 6.5 (Khá: raised to Đạt); left out, the
        # others reach only Đạt, not a target (not raised)
        (
            ["6.5"] * 5 + ["5.0", "5.0", "3.0"],
            ("Chưa đạt", "Đạt", "Tin học", "Khá"),
            ("Chưa đạt", "Chưa đạt", None, None),
        ),
        # both raise Chưa đạt to Đạt, from a different level it would otherwise reach: Tốt, or Khá
        (
            ["8.0"] * 5 + ["7.0", "7.0", "3.4"],
            ("Chưa đạt", "Đạt", "Tin học", "Tốt"),
            ("Chưa đạt", "Đạt", "Tin học", "Khá"),
        ),
    ],
)
def test_the_readings_differ_when_the_subject_at_its_best_is_one_of_the_six_the_level_needs(scores, at_best, removed):
    assert decided(AT_BEST, scores) == at_best
    assert decided(REMOVED, scores) == removed


# -- where they agree -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "comments", "expected"),
    [
        # Tốt but Tin học below 5.0: Đạt, raised to Khá; the seven others are Tốt on their own
        (["9.0"] * 7 + ["4.9"], None, ("Đạt", "Khá", "Tin học", "Tốt")),
        # Tốt but one comment subject Chưa đạt: Đạt, raised to Khá
        (["9.0"] * 8, ["CĐ", "Đ", "Đ", "Đ"], ("Đạt", "Khá", "Giáo dục thể chất", "Tốt")),
        # Khá but Tin học below 3.5: Chưa đạt, raised to Đạt
        (["7.0"] * 7 + ["2.0"], None, ("Chưa đạt", "Đạt", "Tin học", "Khá")),
        # two subjects below 5.0: no one subject causes it
        (["9.0"] * 6 + ["4.9", "4.9"], None, ("Đạt", "Đạt", None, None)),
        # one level down only
        (["9.0"] * 7 + ["6.0"], None, ("Khá", "Khá", None, None)),
    ],
)
def test_the_readings_agree_when_the_other_subjects_reach_the_level_on_their_own(scores, comments, expected):
    assert decided(AT_BEST, scores, comments) == expected
    assert decided(REMOVED, scores, comments) == expected


# -- the setting, its default and its source ------------------------------------------------------


@pytest.mark.parametrize("rule_set", [CIRCULAR_22_2021, CIRCULAR_22_2021_UPPER], ids=lambda r: r.key)
def test_the_default_reading_is_the_subject_at_its_best_with_its_source(rule_set):
    assert rule_set.adjustment is not None and rule_set.adjustment.reading == AT_BEST
    assert "RULES.md §4" in rule_set.adjustment.reading_source
    assert "since its first version" in rule_set.adjustment.reading_source
    assert any(
        note.startswith(
            "adjustment reading: 'at-best', with the one subject counted at its best (10.0, or Đạt) "
            "(RULES.md §4 words Art. 9.3 from secondary sources and leaves the reading open"
        )
        for note in rule_set.unconfirmed()
    )


def test_the_unconfirmed_list_names_the_reading_in_use():
    removed = read_as(REMOVED)
    assert any(
        note.startswith("adjustment reading: 'removed', with the one subject left out")
        for note in removed.unconfirmed()
    )


# -- explain names the reading --------------------------------------------------------------------


def test_an_adjusted_result_names_the_reading_it_was_decided_by():
    scores = values(["8.0"] * 5 + ["7.0", "7.0", "3.6"])
    at_best = explain_learning(read_as(AT_BEST), "learning/year", "Year learning result", scores)
    assert (
        at_best.result == "Khá" and at_best.rule == "learning-level-adjusted" and at_best.inputs["reading"] == AT_BEST
    )
    assert at_best.text.endswith(
        "Raised to Khá: only Tin học kept it from Tốt, two or more levels above (Circular 22/2021 Art. 9.3, read "
        "with the one subject counted at its best (10.0, or Đạt))."
    )
    removed = explain_learning(read_as(REMOVED), "learning/year", "Year learning result", scores)
    assert removed.result == "Đạt" and removed.rule == "learning-level" and removed.inputs["reading"] == REMOVED
    assert removed.text.endswith(
        "Not raised: no one subject kept it from Tốt or Khá two or more levels above (Circular 22/2021 Art. 9.3, "
        "read with the one subject left out and the other subjects reaching the level on their own)."
    )


def test_a_result_the_adjustment_cannot_reach_says_nothing_of_it():
    explained = explain_learning(
        CIRCULAR_22_2021, "learning/year", "Year learning result", values(["9.0"] * 7 + ["6.0"])
    )
    assert explained.result == "Khá" and "reading" not in explained.inputs and "Art. 9.3" not in explained.text
