"""Scores in decimal: validation, half-up rounding to one decimal, term and year averages."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal, DivisionByZero, InvalidOperation, localcontext

STEP = Decimal("0.1")
MIN_SCORE, MAX_SCORE = Decimal(0), Decimal(10)

#: Exact enough for sums of one-decimal scores and their quotients; every operation traps errors.
ARITHMETIC = Context(prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero])


def score_problem(label: str, value: Decimal, *, integer: bool = False, allow_zero: bool = True) -> tuple[str, str] | None:
    """(code, message) when a score is not 0-10 with at most one decimal (or an integer), else None."""
    if not value.is_finite():
        return "score-format", f"{label} '{value}' is not a number"
    if not MIN_SCORE <= value <= MAX_SCORE:
        return "score-range", f"{label} {value} is outside 0-10"
    if integer and value != value.to_integral_value():
        return "score-precision", f"{label} {value} must be a whole number"
    if value != value.quantize(STEP, context=ARITHMETIC):
        return "score-precision", f"{label} {value} has more than one decimal"
    if not allow_zero and value == 0:
        return "score-zero", f"{label} is 0, which this rule set does not allow"
    return None


def round_half_up(value: Decimal) -> Decimal:
    """One decimal, half up: 7.25 -> 7.3, 8.25 -> 8.3, 6.45 -> 6.5."""
    return value.quantize(STEP, rounding=ROUND_HALF_UP, context=ARITHMETIC)


def term_average_exact(regular: Sequence[Decimal], midterm: Decimal, final: Decimal) -> Decimal:
    with localcontext(ARITHMETIC):
        return (sum(regular, Decimal(0)) + 2 * midterm + 3 * final) / (len(regular) + 5)


def term_average(regular: Sequence[Decimal], midterm: Decimal, final: Decimal) -> Decimal:
    """ĐTBmhk = (Σ ĐĐGtx + 2·ĐĐGgk + 3·ĐĐGck) / (n_tx + 5), rounded."""
    return round_half_up(term_average_exact(regular, midterm, final))


def year_average_exact(term_1: Decimal, term_2: Decimal) -> Decimal:
    with localcontext(ARITHMETIC):
        return (term_1 + 2 * term_2) / 3


def year_average(term_1: Decimal, term_2: Decimal) -> Decimal:
    """ĐTBmcn = (ĐTBmhk I + 2·ĐTBmhk II) / 3, from the rounded term averages, rounded."""
    return round_half_up(year_average_exact(term_1, term_2))


def score_text(value: Decimal) -> str:
    """A score or average as the record shows it: one decimal, "7.3"."""
    text = str(value.quantize(STEP, context=ARITHMETIC))
    return text.removeprefix("-") if value == 0 else text


def plain(value: Decimal) -> str:
    """A score as entered, without trailing zeros: "8", "7.5"."""
    text = format(value.normalize(ARITHMETIC), "f")
    return "0" if value == 0 else text
