"""Circular 27/2020 results, pure: the year-end outcome, the award and the completion note."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from services.grades.domain.explanation import Explanation, listing
from services.grades.domain.scores import plain
from services.grades.rulesets.model import RuleSet


def explain_outcome(
    rule_set: RuleSet,
    subject_levels: Mapping[str, str],
    qualities: Mapping[str, str],
    tests: Mapping[str, Decimal],
) -> Explanation:
    """The best outcome whose conditions all hold: subject levels (end of year), qualities and
    competencies (end of year), and every end-of-year periodic test."""
    inputs = {
        "subject_levels": dict(subject_levels),
        "qualities_and_competencies": dict(qualities),
        "tests": {n: plain(v) for n, v in tests.items()},
    }
    for outcome in rule_set.outcomes:
        if (
            all(level in outcome.subject_levels for level in subject_levels.values())
            and all(level in outcome.quality_levels for level in qualities.values())
            and all(score >= outcome.min_test for score in tests.values())
        ):
            text = (
                f"Year-end outcome {outcome.name}: every subject {_levels(outcome.subject_levels)}, "
                f"every quality and competency {_levels(outcome.quality_levels)}, every end-of-year test "
                f"at least {plain(outcome.min_test)} ({outcome.clause.ref})."
            )
            return Explanation("outcome", outcome.name, "primary-outcome", outcome.clause.ref, inputs, text)
    lowest = rule_set.outcomes[-1]
    reasons = []
    if weak := [n for n, lv in subject_levels.items() if lv not in lowest.subject_levels]:
        reasons.append(f"{listing(weak)} not completed")
    if weak := [n for n, lv in qualities.items() if lv not in lowest.quality_levels]:
        reasons.append(f"{listing(weak)} need more effort")
    if low := [f"{n} {plain(v)}" for n, v in tests.items() if v < lowest.min_test]:
        reasons.append(f"test(s) below {plain(lowest.min_test)}: {listing(low)}")
    text = f"Year-end outcome {rule_set.fallback_outcome}: {'; '.join(reasons)} ({lowest.clause.ref})."
    return Explanation("outcome", rule_set.fallback_outcome, "primary-outcome", lowest.clause.ref, inputs, text)


def _levels(allowed: frozenset[str]) -> str:
    return " or ".join(sorted(allowed, key=lambda lv: "TĐHC".index(lv)))


def explain_primary_award(rule_set: RuleSet, outcome: str) -> Explanation:
    clause = rule_set.clause("award").ref
    best = rule_set.outcomes[0].name
    if outcome == best:
        text = f"Award {rule_set.primary_award}: the outcome is {best} ({clause})."
        return Explanation("awards", rule_set.primary_award, "award", clause, {"outcome": outcome}, text)
    text = f"No award: {rule_set.primary_award} goes with {best}; the outcome is {outcome}."
    return Explanation("awards", None, "award", clause, {"outcome": outcome}, text)


def explain_completion(rule_set: RuleSet, grade: int, outcome: str) -> Explanation | None:
    """Grade 5 completers get the completion note; None in other grades."""
    if grade != rule_set.completion_grade:
        return None
    clause = rule_set.clause("completion").ref
    completed = outcome != rule_set.fallback_outcome
    note = rule_set.completion_note if completed else None
    text = (
        f"Written in the record: {rule_set.completion_note} (outcome {outcome}; {clause})."
        if completed
        else f"Not written: {rule_set.completion_note} needs the outcome Hoàn thành or better; it is {outcome}."
    )
    return Explanation("completion", note, "completion", clause, {"grade": grade, "outcome": outcome}, text)
