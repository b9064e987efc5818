"""The terminal the `hocba` command writes to: what it has to say on stdout, why it failed on stderr."""

from __future__ import annotations

from rich.console import Console

#: What a command reports: tables, progress, verdicts.
console = Console()
#: Why a command could not do what it was asked, one sentence each.
errors = Console(stderr=True)
