"""The terminal the `hocba` command writes to: what it has to say on stdout, why it failed on stderr."""

from __future__ import annotations

from rich.console import Console

#: What a command reports: tables, progress, verdicts.
console = Console()
#: Why a command could not do what it was asked, one sentence each.
errors = Console(stderr=True)


def duration(seconds: float | None) -> str:
    """A wait or an age as a person reads it: seconds, then minutes, then hours; "—" when there is none."""
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
