"""Circular 22/2021 results, pure: learning levels with the Art. 9.3 adjustment, conduct, promotion, awards."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.grades.domain.explanation import Explanation, listing
from services.grades.domain.scores import MAX_SCORE, score_text
from services.grades.rulesets.model import (
    AT_BEST,
    FAILED,
    PASSED,
    READING_WORDS,
    REMOVED,
    SECONDARY_LEVELS_ORDER,
    Adjustment,
    LevelRule,
    RuleSet,
)

#: A subject's value for a period: an average (scored) or a level Đ / CĐ (comment).
SubjectValues = Mapping[str, Decimal | str]


def rank(level: str) -> int:
    """0 for Tốt … 3 for Chưa đạt."""
    return SECONDARY_LEVELS_ORDER.index(level)


def at_least(level: str, minimum: str) -> bool:
    return rank(level) <= rank(minimum)


def split(values: SubjectValues) -> tuple[list[Decimal], list[str]]:
    scored = [v for v in values.values() if isinstance(v, Decimal)]
    comments = [v for v in values.values() if isinstance(v, str)]
    return scored, comments


def meets(level: LevelRule, scored: Sequence[Decimal], comments: Sequence[str]) -> bool:
    failures = sum(1 for c in comments if c == FAILED)
    reaching = sum(1 for s in scored if s >= level.count_at)
    return failures <= level.comment_failures and all(s >= level.floor for s in scored) and reaching >= level.count


def learning_result(rule_set: RuleSet, scored: Sequence[Decimal], comments: Sequence[str]) -> str:
    """The best level whose thresholds the averages (scored) and levels (comment) all meet."""
    return next((lv.level for lv in rule_set.levels if meets(lv, scored, comments)), rule_set.fallback_level)


def _level_rule(rule_set: RuleSet, level: str) -> LevelRule | None:
    return next((lv for lv in rule_set.levels if lv.level == level), None)


def _at_best(values: SubjectValues, subject: str) -> dict[str, Decimal | str]:
    """The values with one subject as good as it can be (10.0, or Đ)."""
    best: Decimal | str = MAX_SCORE if isinstance(values[subject], Decimal) else PASSED
    return {**values, subject: best}


def _removed(values: SubjectValues, subject: str) -> dict[str, Decimal | str]:
    """The values of every other subject."""
    return {name: value for name, value in values.items() if name != subject}


#: Art. 9.3 readings (`Adjustment.reading`): the values to judge "but for this one subject" by.
WITHOUT_SUBJECT = {AT_BEST: _at_best, REMOVED: _removed}


@dataclass(frozen=True)
class LearningDecision:
    level: str
    base: str
    #: The one subject that held the result two or more levels down (Art. 9.3), if the rule applied.
    adjusted_for: str | None = None
    would_reach: str | None = None


def decide_learning(rule_set: RuleSet, values: SubjectValues) -> LearningDecision:
    """The learning result of a term or year, with the Art. 9.3 one-subject adjustment.

    A subject "causes" the drop when, but for that subject, the student would reach a target level
    (Tốt or Khá) two or more levels above the result; the result is then raised by one level. "But for
    that subject" is the rule set's reading: that subject counted at its best (`at-best`), or left out
    with the other subjects reaching the target on their own (`removed`). Of several such subjects the
    one with the best target is named.
    """
    base = learning_result(rule_set, *split(values))
    rule = rule_set.adjustment
    if rule is None:
        return LearningDecision(base, base)
    without = WITHOUT_SUBJECT[rule.reading]
    best: tuple[int, str, str] | None = None
    for subject in values:
        reach = learning_result(rule_set, *split(without(values, subject)))
        causes_drop = reach in rule.targets and rank(base) - rank(reach) >= rule.min_drop
        if causes_drop and (best is None or rank(reach) < best[0]):
            best = (rank(reach), reach, subject)
    if best is None:
        return LearningDecision(base, base)
    raised = SECONDARY_LEVELS_ORDER[rank(base) - rule.raise_by]
    return LearningDecision(raised, base, adjusted_for=best[2], would_reach=best[1])


def explain_learning(rule_set: RuleSet, about: str, period: str, values: SubjectValues) -> Explanation:
    """The learning result with the thresholds that decided it, in data and words."""
    decision = decide_learning(rule_set, values)
    scored = {n: score_text(v) for n, v in values.items() if isinstance(v, Decimal)}
    comments = {n: v for n, v in values.items() if isinstance(v, str)}
    inputs: dict[str, Any] = {"scored": scored, "comment": comments}
    rule = _level_rule(rule_set, decision.base)
    if rule is not None:
        reaching = sum(1 for v in values.values() if isinstance(v, Decimal) and v >= rule.count_at)
        why = (
            f"every scored subject is at least {rule.floor}, {reaching} of {len(scored)} reach {rule.count_at} "
            f"(at least {rule.count} needed), and {sum(1 for c in comments.values() if c == FAILED)} comment "
            f"subject(s) are Chưa đạt (at most {rule.comment_failures})"
        )
        clause = rule.clause.ref
    else:
        why = _why_not(rule_set, values)
        clause = rule_set.clause("learning-fallback").ref
    text = f"{period}: {decision.base} because {why} ({clause})."
    rule_name = "learning-level"
    adjustment = rule_set.adjustment
    if decision.adjusted_for is not None:
        assert adjustment is not None
        text += (
            f" Raised to {decision.level}: only {decision.adjusted_for} kept it from {decision.would_reach}, "
            f"two or more levels above ({_read_as(adjustment)})."
        )
        clause = adjustment.clause.ref
        rule_name = "learning-level-adjusted"
        inputs = {**inputs, "base": decision.base, "adjusted_for": decision.adjusted_for,
                  "would_reach": decision.would_reach, "reading": adjustment.reading}
    elif adjustment is not None and _adjustable(adjustment, decision.base):
        text += (
            f" Not raised: no one subject kept it from {' or '.join(adjustment.targets)} two or more levels above "
            f"({_read_as(adjustment)})."
        )
        inputs = {**inputs, "reading": adjustment.reading}
    return Explanation(about, decision.level, rule_name, clause, inputs, text)


def _adjustable(adjustment: Adjustment, base: str) -> bool:
    """Whether a result is far enough below a target for the one-subject adjustment to be weighed."""
    return any(rank(base) - rank(target) >= adjustment.min_drop for target in adjustment.targets)


def _read_as(adjustment: Adjustment) -> str:
    """The clause and the reading of "only one subject causes it" the rule set applies."""
    return f"{adjustment.clause.ref}, read with the one subject {READING_WORDS[adjustment.reading]}"


def _why_not(rule_set: RuleSet, values: SubjectValues) -> str:
    """Why the lowest threshold (Đạt) is not met."""
    lowest = rule_set.levels[-1]
    scored, comments = split(values)
    reasons = []
    if below := [n for n, v in values.items() if isinstance(v, Decimal) and v < lowest.floor]:
        reasons.append(f"{listing(below)} {'is' if len(below) == 1 else 'are'} below {lowest.floor}")
    reaching = sum(1 for s in scored if s >= lowest.count_at)
    if reaching < lowest.count:
        reasons.append(f"only {reaching} scored subject(s) reach {lowest.count_at} ({lowest.count} needed)")
    failures = [n for n, v in values.items() if v == FAILED]
    if len(failures) > lowest.comment_failures:
        reasons.append(f"{listing(failures)} are Chưa đạt (at most {lowest.comment_failures} allowed)")
    return "; ".join(reasons) or "the thresholds of Đạt are not met"


def explain_year_conduct(rule_set: RuleSet, term_1: str, term_2: str) -> Explanation:
    year = rule_set.conduct_year[(term_1, term_2)]
    clause = rule_set.conduct_clause
    text = f"Year conduct: {year}, from term I {term_1} and term II {term_2} by the conduct table ({clause.ref})."
    return Explanation("conduct/year", year, "conduct-year-table", clause.ref, {"term_1": term_1, "term_2": term_2}, text)


def explain_promotion(rule_set: RuleSet, conduct: str, learning: str, absences: int) -> Explanation:
    """Promoted when conduct and learning are at least Đạt and absences are within the limit.

    Otherwise the record says what follows: held back for too many absences; a summer re-test for
    learning Chưa đạt; summer conduct training for conduct Chưa đạt.
    """
    rule = rule_set.promotion
    assert rule is not None
    inputs = {"conduct": conduct, "learning": learning, "absences": absences, "max_absences": rule.max_absences}
    if absences > rule.max_absences:
        decision = "Ở lại lớp"
        text = (f"Held back (Ở lại lớp): {absences} sessions absent, more than {rule.max_absences} "
                f"({rule.absence_clause.ref}).")
        return Explanation("promotion", decision, "absence-limit", rule.absence_clause.ref, inputs, text)
    pending = []
    if not at_least(learning, rule.min_level):
        pending.append("re-test in summer (kiểm tra lại)")
    if not at_least(conduct, rule.min_level):
        pending.append("conduct training in summer (rèn luyện trong hè)")
    if pending:
        decision = "Chưa được lên lớp"
        text = (f"Not yet promoted: learning {learning}, conduct {conduct}; both must be at least "
                f"{rule.min_level}. Next: {' and '.join(pending)} ({rule.clause.ref}).")
        return Explanation("promotion", decision, "promotion-pending", rule.clause.ref, {**inputs, "next": pending}, text)
    decision = "Được lên lớp"
    text = (f"Promoted (Được lên lớp): learning {learning} and conduct {conduct} are at least {rule.min_level}, "
            f"{absences} sessions absent (at most {rule.max_absences}) ({rule.clause.ref}).")
    return Explanation("promotion", decision, "promotion", rule.clause.ref, inputs, text)


def explain_award(rule_set: RuleSet, conduct: str, learning: str, year_averages: Mapping[str, Decimal]) -> Explanation:
    """The first award the student qualifies for, or none."""
    inputs = {"conduct": conduct, "learning": learning,
              "year_averages": {n: score_text(v) for n, v in year_averages.items()}}
    for award in rule_set.awards:
        reaching = [n for n, v in year_averages.items() if v >= award.count_at]
        if at_least(conduct, award.conduct) and at_least(learning, award.learning) and len(reaching) >= award.count:
            extra = (f", and {len(reaching)} subjects have a year average of at least {award.count_at} "
                     f"({award.count} needed)" if award.count else "")
            text = f"Award {award.name}: conduct {conduct}, learning {learning}{extra} ({award.clause.ref})."
            return Explanation("awards", award.name, "award", award.clause.ref, inputs, text)
    clause = rule_set.awards[-1].clause.ref if rule_set.awards else ""
    text = f"No award: {rule_set.awards[-1].name} needs conduct and learning Tốt; here {conduct} and {learning}."
    return Explanation("awards", None, "award", clause, inputs, text)
