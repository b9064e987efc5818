"""Paths of the deploy files, and the command-line tools that check them (installed by `make test`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support import needs

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def tool(*names: str) -> list[str]:
    """The first of `names` on PATH, as a command; skipped when none is (failed under `make test`).

    A name may carry arguments ("docker compose"). `make test` installs the tools first and sets
    HOCBA_REQUIRE_TOOLS=1, so there a missing tool is a failure, not a skip.
    """
    for name in names:
        command = name.split()
        if shutil.which(command[0]):
            return command
    needs(False, f"each of {names}")
    raise AssertionError("unreachable")
