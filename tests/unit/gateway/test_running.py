"""How the gateway process starts: in development only, on the current school year unless told another."""

from __future__ import annotations

import logging
from datetime import date

from hocba.web import __main__ as gateway_process


def test_outside_development_the_gateway_does_not_start_for_it_would_have_to_mint_tokens(monkeypatch, caplog):
    monkeypatch.setenv("HOCBA_ENVIRONMENT", "production")
    with caplog.at_level(logging.ERROR, logger="hocba.web"):
        assert gateway_process.main() == 2
    assert "outside development the school management system issues the tokens" in caplog.text


def test_the_pages_open_on_the_school_year_under_way():
    assert gateway_process.current_school_year(date(2026, 5, 20)) == "2025-2026"
    assert gateway_process.current_school_year(date(2026, 9, 5)) == "2026-2027"
