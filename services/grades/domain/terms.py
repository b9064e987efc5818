"""Terms and entries over time: locked terms, and whether an entry is new, unchanged or a change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.grades.domain.entries import Entry, EntryProblem

Change = Literal["new", "unchanged", "changed"]


@dataclass(frozen=True)
class TermStatus:
    """A term's lock: never closed, closed, or reopened by the principal (changes then need a reason)."""

    term: int
    closed: bool = False
    reopened: bool = False


@dataclass(frozen=True)
class Stored:
    """An entry as stored: its values, revision and the messages that set it."""

    values: Entry
    revision: int
    message_ids: frozenset[str]


def locked_problem(status: TermStatus) -> EntryProblem | None:
    """A closed term takes no entries."""
    if status.closed:
        return EntryProblem("term-closed", f"term {status.term} is closed: the principal must reopen it first")
    return None


def change_of(stored: Stored | None, values: Entry, message_id: str) -> Change:
    """New when nothing is stored; unchanged when equal or when this message already set it; else a change.

    A message that already set the entry never sets it again, so a late redelivery of an old
    message cannot undo a later correction.
    """
    if stored is None:
        return "new"
    if message_id in stored.message_ids or stored.values == values:
        return "unchanged"
    return "changed"


def reason_problem(status: TermStatus, change: Change, reason: str) -> EntryProblem | None:
    """After a term has been reopened, every change says why."""
    if change == "changed" and status.reopened and not reason.strip():
        return EntryProblem("reason-required", f"term {status.term} was reopened: a change must give its reason")
    return None
