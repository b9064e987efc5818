"""How the gateway process starts: sign-in by token always, with the gateway's own certificate and the school
management system's public keys (production refuses to start without either, saying which); the development
picker in development only; the pages on the current school year unless told another."""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path

import pytest

from hocba.web import __main__ as gateway_process
from shared.auth import IssuerKey
from shared.crypto.pki import DevPki, service_holders
from shared.settings import Misconfigured, Settings

PASSPHRASE = b"gateway test passphrase"


@pytest.fixture(scope="module")
def web_part(tmp_path_factory) -> Path:
    """The gateway's part of a PKI, as `hocba pki export --service web` writes it."""
    folder = tmp_path_factory.mktemp("gateway-pki")
    pki = DevPki(folder / "pki", PASSPHRASE)
    pki.create(service_holders())
    return pki.export("web", folder / "web").folder


@pytest.fixture
def production(monkeypatch, tmp_path, web_part) -> dict[str, Path]:
    """A production environment with the gateway's part of the PKI, its passphrase file and the issuer's keys."""
    passphrase, jwks = tmp_path / "passphrase", tmp_path / "issuer.jwks.json"
    passphrase.write_bytes(PASSPHRASE)
    jwks.write_text(json.dumps({"keys": [IssuerKey.generate("sms-1").key.as_dict(private=False)]}))
    given = {"HOCBA_PKI_DIR": web_part, "HOCBA_PKI_PASSPHRASE_FILE": passphrase, "HOCBA_ACTOR_ISSUER_JWKS": jwks}
    monkeypatch.setenv("HOCBA_ENVIRONMENT", "production")
    monkeypatch.setenv("HOCBA_DATA_DIR", str(tmp_path / "data"))
    for name, path in given.items():
        monkeypatch.setenv(name, str(path))
    return given


def test_in_production_people_sign_in_with_tokens_only(production):
    gateway = gateway_process.gateway_from_environment(Settings())
    assert gateway.sign_in is not None and not gateway.picker
    assert gateway.sign_in.keys.sign_in_lifetime.total_seconds() == 8 * 3600


def test_in_production_the_gateway_does_not_start_without_its_own_certificate(
    production, monkeypatch, tmp_path, caplog
):
    empty = tmp_path / "no-pki"
    (empty / "ca").mkdir(parents=True)
    monkeypatch.setenv("HOCBA_PKI_DIR", str(empty))
    with caplog.at_level(logging.ERROR, logger="hocba.web"):
        assert gateway_process.main() == 2
    assert "the web gateway has no certificate of its own" in caplog.text
    assert "hocba pki export --service web" in caplog.text
    assert "Traceback" not in caplog.text


def test_in_production_the_gateway_does_not_start_without_the_issuers_keys(production, monkeypatch, caplog):
    monkeypatch.delenv("HOCBA_ACTOR_ISSUER_JWKS")
    with caplog.at_level(logging.ERROR, logger="hocba.web"):
        assert gateway_process.main() == 2
    assert "HOCBA_ACTOR_ISSUER_JWKS" in caplog.text


def test_in_production_the_gateway_does_not_start_without_its_keys_passphrase(production, monkeypatch, caplog):
    monkeypatch.delenv("HOCBA_PKI_PASSPHRASE_FILE")
    with caplog.at_level(logging.ERROR, logger="hocba.web"):
        assert gateway_process.main() == 2
    assert "HOCBA_PKI_PASSPHRASE_FILE" in caplog.text


@pytest.mark.parametrize(("given", "seconds"), [(None, 8 * 3600), ("3600", 3600)])
def test_a_sign_in_lasts_at_most_a_working_day_unless_configured_shorter(given, seconds):
    assert gateway_process.session_max_seconds(given) == seconds


@pytest.mark.parametrize("given", ["nine hours", "32400", "0"])
def test_a_session_longer_than_the_services_accept_or_not_a_number_is_refused(given):
    with pytest.raises(Misconfigured, match="HOCBA_WEB_SESSION_MAX_SECONDS"):
        gateway_process.session_max_seconds(given)


def test_the_pages_open_on_the_school_year_under_way():
    assert gateway_process.current_school_year(date(2026, 5, 20)) == "2025-2026"
    assert gateway_process.current_school_year(date(2026, 9, 5)) == "2026-2027"


def test_in_production_the_session_cookie_goes_over_https_only_unless_told_otherwise(production, monkeypatch):
    assert gateway_process.gateway_from_environment(Settings()).config.secure_cookies
    monkeypatch.setenv("HOCBA_WEB_SECURE_COOKIES", "false")
    assert not gateway_process.gateway_from_environment(Settings()).config.secure_cookies


@pytest.mark.parametrize(("given", "production", "secure"), [(None, False, False), ("true", False, True), ("", True, True)])
def test_in_development_the_session_cookie_goes_over_http_too_unless_told_otherwise(given, production, secure):
    assert gateway_process.secure_cookies(given, production) is secure


def test_a_secure_cookies_setting_that_is_not_true_or_false_is_refused():
    with pytest.raises(Misconfigured, match="say true or false"):
        gateway_process.secure_cookies("sometimes", True)
