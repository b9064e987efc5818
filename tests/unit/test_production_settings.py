"""Production refuses what development allows: an http ministry, a service without its key-encryption key.
A service that cannot start says why in one line naming the setting, and exits 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.sync.app import ministry_client
from shared.settings import Misconfigured, Settings


def test_production_delivers_to_an_https_ministry_only():
    with pytest.raises(Misconfigured, match="HOCBA_MINISTRY_URL must be an https address"):
        ministry_client(Settings(environment="production", ministry_url="http://ministry.example"))
    assert ministry_client(Settings(environment="production", ministry_url="https://ministry.example"))
    assert ministry_client(Settings(ministry_url="http://127.0.0.1:9180")), "development may use the simulator"


@pytest.mark.parametrize("service", ["grades", "archive", "sync"])
def test_a_service_that_cannot_start_says_why_in_one_line_and_exits_2(service, tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOCBA_")},
        "HOCBA_ENVIRONMENT": "production",
        "HOCBA_DATA_DIR": str(tmp_path),
        "HOCBA_MINISTRY_URL": "https://ministry.example",
        "MONGO_URL": "mongodb://127.0.0.1:1/",
    }
    done = subprocess.run(
        [sys.executable, "-m", f"services.{service}"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    assert f"{service} cannot start" in said and "HOCBA_" in said
    assert "Traceback" not in said
    assert not (tmp_path / "secrets").exists(), "production generates no key-encryption key"
