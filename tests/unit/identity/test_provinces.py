"""The province table in code is the one in the domain facts (shared/domain/province_codes.csv)."""

from __future__ import annotations

import csv
from pathlib import Path

from services.identity.provinces import PROVINCES
from tests.support import needs

CSV = Path(__file__).resolve().parents[4] / "shared" / "domain" / "province_codes.csv"


def test_province_codes_match_the_domain_facts():
    needs(CSV.exists(), f"the domain facts ({CSV})")
    with CSV.open(encoding="utf-8") as handle:
        official = {row["code"]: row["province"] for row in csv.DictReader(handle)}
    assert official == PROVINCES
