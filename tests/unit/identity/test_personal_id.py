"""The 12-digit personal identification number rules (RULES.md §2)."""

from __future__ import annotations

from datetime import date

import pytest

from services.identity.domain import personal_id_problems


def codes(personal_id: str, born: date, sex: str) -> list[str]:
    return [p.code for p in personal_id_problems(personal_id, born, sex)]


@pytest.mark.parametrize(
    ("personal_id", "born", "sex"),
    [
        ("079214000123", date(2014, 5, 1), "M"),  # HCMC, 2000s male
        ("001314999999", date(2014, 5, 1), "F"),  # Hà Nội, 2000s female
        ("096099000001", date(1999, 1, 1), "M"),  # 1900s male
        ("096199000001", date(1999, 1, 1), "F"),  # 1900s female
        ("079400000001", date(2100, 1, 1), "M"),  # 2100s male
        ("079500000001", date(2100, 1, 1), "F"),  # 2100s female
    ],
)
def test_valid_numbers_have_no_problems(personal_id, born, sex):
    assert codes(personal_id, born, sex) == []


@pytest.mark.parametrize(
    ("personal_id", "born", "sex", "expected"),
    [
        ("07921400012", date(2014, 5, 1), "M", ["format"]),
        ("0792140001234", date(2014, 5, 1), "M", ["format"]),
        ("07921400012a", date(2014, 5, 1), "M", ["format"]),
        ("０７９214000123", date(2014, 5, 1), "M", ["format"]),  # full-width digits are not ASCII
        ("003214000123", date(2014, 5, 1), "M", ["province"]),  # 003 is not a province code
        ("079314000123", date(2014, 5, 1), "M", ["century-sex"]),  # female digit for a male
        ("079014000123", date(2014, 5, 1), "M", ["century-sex"]),  # 1900s digit for 2014
        ("079215000123", date(2014, 5, 1), "M", ["birth-year"]),
        ("003315000123", date(2014, 5, 1), "M", ["province", "century-sex", "birth-year"]),
        ("079214000123", date(1850, 5, 1), "M", ["century", "birth-year"]),
    ],
)
def test_each_problem_is_named(personal_id, born, sex, expected):
    assert codes(personal_id, born, sex) == expected


def test_messages_name_the_field_and_the_rule_never_the_value():
    """They go to the registering school, the dead-letter queue and the logs (issue 9, item 6)."""
    problems = personal_id_problems("003315000123", date(2014, 5, 1), "M")
    assert [p.message for p in problems] == [
        "personal ID: digits 1-3 must be a known province code",
        "personal ID: digit 4 must encode the sex and the century of the date of birth",
        "personal ID: digits 5-6 must be the last two digits of the year of birth",
    ]
    [short] = personal_id_problems("0033150", date(2014, 5, 1), "M")
    assert short.message == "personal ID: must be exactly 12 digits (0-9)"
    [century] = personal_id_problems("079214000123", date(1850, 5, 1), "M")[:1]
    assert century.message == "date of birth: the year must be within 1900-2199"
    said = " ".join(p.message for p in [*problems, short, century])
    assert not any(value in said for value in ("003", "'3'", "15", "2014", "1850", "7"))
