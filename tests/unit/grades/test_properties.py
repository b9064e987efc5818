"""Invariants over any scores (hypothesis): averages stay within 0-10; raising a score lowers nothing."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.grades.domain.scores import term_average, year_average
from services.grades.domain.secondary import decide_learning, rank
from services.grades.rulesets import CIRCULAR_22_2021 as RULES

#: A score as entered: 0.0 to 10.0 in steps of 0.1.
scores = st.integers(min_value=0, max_value=100).map(lambda n: Decimal(n) / 10)
ONE_DECIMAL = Decimal("0.1")

SCORED = [s.name for s in RULES.subjects(6) or () if s.scored]
COMMENT = [s.name for s in RULES.subjects(6) or () if not s.scored]


@st.composite
def term_entries(draw):
    regular = draw(st.lists(scores, min_size=2, max_size=4))
    return regular, draw(scores), draw(scores)


@given(term_entries())
def test_a_term_average_is_within_0_and_10_with_one_decimal(entry):
    average = term_average(*entry)
    assert Decimal(0) <= average <= Decimal(10)
    assert average == average.quantize(ONE_DECIMAL)


@given(scores, scores)
def test_a_year_average_is_within_0_and_10_and_between_its_terms(term_1, term_2):
    average = year_average(term_1, term_2)
    assert Decimal(0) <= average <= Decimal(10)
    assert min(term_1, term_2) <= average <= max(term_1, term_2)


@given(term_entries(), st.data())
def test_raising_one_score_never_lowers_the_term_average(entry, data):
    regular, midterm, final = entry
    slot = data.draw(st.integers(min_value=0, max_value=len(regular) + 1))
    raised = data.draw(scores)
    new_regular, new_midterm, new_final = list(regular), midterm, final
    if slot < len(regular):
        new_regular[slot] = max(raised, regular[slot])
    elif slot == len(regular):
        new_midterm = max(raised, midterm)
    else:
        new_final = max(raised, final)
    assert term_average(new_regular, new_midterm, new_final) >= term_average(regular, midterm, final)


@given(scores, scores, scores)
def test_raising_a_term_average_never_lowers_the_year_average(term_1, term_2, higher):
    assert year_average(max(term_1, higher), term_2) >= year_average(term_1, term_2)
    assert year_average(term_1, max(term_2, higher)) >= year_average(term_1, term_2)


@st.composite
def period_values(draw):
    values: dict[str, Decimal | str] = {name: draw(scores) for name in SCORED}
    values.update({name: draw(st.sampled_from(["Đ", "Đ", "Đ", "CĐ"])) for name in COMMENT})
    return values


@settings(max_examples=300)
@given(period_values(), st.data())
def test_raising_one_subject_never_lowers_the_learning_level(values, data):
    subject = data.draw(st.sampled_from(sorted(values)))
    before = decide_learning(RULES, values).level
    current = values[subject]
    better: Decimal | str = max(current, data.draw(scores)) if isinstance(current, Decimal) else "Đ"
    after = decide_learning(RULES, {**values, subject: better}).level
    assert rank(after) <= rank(before), f"{subject} {current} -> {better} lowered {before} to {after}"


@given(period_values())
def test_the_adjustment_lifts_by_at_most_one_level(values):
    decision = decide_learning(RULES, values)
    assert 0 <= rank(decision.base) - rank(decision.level) <= 1
