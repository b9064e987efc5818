"""The province table in code is the one in the domain facts (shared/domain/province_codes.csv)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from services.identity.provinces import PROVINCES

CSV = Path(__file__).resolve().parents[4] / "shared" / "domain" / "province_codes.csv"


@pytest.mark.skipif(not CSV.exists(), reason="the domain facts are not beside this checkout")
def test_province_codes_match_the_domain_facts():
    with CSV.open(encoding="utf-8") as handle:
        official = {row["code"]: row["province"] for row in csv.DictReader(handle)}
    assert PROVINCES == official
