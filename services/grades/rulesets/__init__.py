"""Rule sets as versioned data, one per regulation, and which one a grade is computed by."""

from __future__ import annotations

from services.grades.rulesets.circular_22_2021 import CIRCULAR_22_2021, GRADE_6
from services.grades.rulesets.circular_22_2021_upper import CIRCULAR_22_2021_UPPER
from services.grades.rulesets.circular_27_2020 import CIRCULAR_27_2020
from services.grades.rulesets.model import RuleSet

__all__ = [
    "CIRCULAR_22_2021",
    "CIRCULAR_22_2021_UPPER",
    "CIRCULAR_27_2020",
    "GRADE_6",
    "RULE_SETS",
    "RuleSet",
    "rule_set_for",
]

#: Every rule set by key, so a record computed by an older version can still be explained.
RULE_SETS: dict[str, RuleSet] = {r.key: r for r in (CIRCULAR_22_2021, CIRCULAR_22_2021_UPPER, CIRCULAR_27_2020)}

#: The rule set new records of a grade are computed by.
_BY_GRADE = {
    **{g: CIRCULAR_27_2020 for g in range(1, 6)},
    **{g: CIRCULAR_22_2021 for g in range(6, 10)},
    **{g: CIRCULAR_22_2021_UPPER for g in range(10, 13)},
}


def rule_set_for(grade: int) -> RuleSet:
    return _BY_GRADE[grade]
