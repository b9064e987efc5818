"""`hocba audit access`: who read a student's personal data or records, from every service's access log.

Identity, grades and the archive each log the reads they answer (look-ups, finds, explanations,
exports, printed copies): who (subject, roles, school), which student or record, why, when. This
command finds the student by personal ID, asks each service for its entries, and prints them as one
list, oldest first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hocba.commands import ISSUER_NOTE, DataDir, Purpose, Session, Timeout, fail, run, session
from hocba.console import console
from hocba.staff import Person
from shared.contracts.access import (
    AccessEntry,
    AccessLog,
    ListAccesses,
    ListArchiveAccesses,
    ListGradesAccesses,
    ListIdentityAccesses,
)
from shared.contracts.identity import FindStudents, StudentMatches
from shared.errors import Refused

app = typer.Typer(help=f"Audits of who read what. {ISSUER_NOTE}", no_args_is_help=True)

#: The services that answer reads of a student, and the request each answers with its access log.
ACCESS_LOGS: tuple[tuple[str, type[ListAccesses]], ...] = (
    ("identity", ListIdentityAccesses),
    ("grades", ListGradesAccesses),
    ("archive", ListArchiveAccesses),
)
#: The exit status when the student is not registered (or not one the reader may see).
NOT_FOUND = 1
#: The exit status when a service refuses, cannot answer, or cannot be asked.
NOT_ANSWERED = 2
#: Entries asked of each service at most.
LIMIT = 10_000
COLUMNS = ("when (UTC)", "service", "who", "roles", "school", "action", "record", "purpose")


@dataclass(frozen=True)
class StudentAccesses:
    """Every read of one student the services logged, oldest first."""

    student_ref: str
    entries: list[AccessEntry]

    def as_json(self) -> str:
        body = {"student_ref": self.student_ref, "entries": [e.model_dump(mode="json") for e in self.entries]}
        return json.dumps(body, ensure_ascii=False, indent=2)


async def accesses_of(s: Session, reader: Person, personal_id: str, purpose: str) -> StudentAccesses | None:
    """Find the student by personal ID, then ask each service who read them (up to `LIMIT` reads each);
    None when identity finds nobody.

    Raises `Refused` naming the service that refused, `NoAnswer` when one cannot be asked.
    """
    found = await s.ask(reader.signs(FindStudents(personal_ids=[personal_id], purpose=purpose)), StudentMatches)
    if not found.students:
        return None
    student_ref = found.students[0].student_ref
    logs = [
        await access_log(s, reader, service, request(student_ref=student_ref, limit=LIMIT))
        for service, request in ACCESS_LOGS
    ]
    entries = sorted(
        (e.model_copy(update={"at": utc(e.at)}) for log in logs for e in log.entries), key=lambda e: (e.at, e.service)
    )
    return StudentAccesses(student_ref, entries)


def utc(at: datetime) -> datetime:
    """A time as UTC (a time without a zone is taken as UTC, as MongoDB gives them back)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


async def access_log(s: Session, reader: Person, service: str, request: ListAccesses) -> AccessLog:
    """One service's access-log entries of the student; a refusal says which service refused."""
    try:
        return await s.ask(reader.signs(request), AccessLog)
    except Refused as exc:
        raise Refused(f"{service} does not show its access log: {exc}", reason=exc.reason) from None


@app.command("access")
def access(
    student: Annotated[str, typer.Option("--student", help="The student's personal ID (12 digits).")],
    school: Annotated[
        str | None, typer.Option(help="Ask as this school's administrator (default: as an operator).")
    ] = None,
    purpose: Purpose = "access audit from the command line",
    as_json: Annotated[bool, typer.Option("--json", help="Print the entries as JSON.")] = False,
    data_dir: DataDir = None,
    timeout: Timeout = 30.0,
) -> None:
    """List who read a student's personal data or records (identity, grades, archive), oldest first.

    Finding the student is itself a read: identity logs it with PURPOSE. Exit status 0 with the list,
    1 when no such student is registered (or not in --school), 2 when a service refuses or cannot be asked.
    """

    async def conversation() -> StudentAccesses | None:
        async with session(data_dir, timeout, "school" if school else "operator") as s:
            reader = s.staff.school_admin(school) if school else s.operator
            return await accesses_of(s, reader, student, purpose)

    found = run(conversation(), NOT_ANSWERED)
    if found is None:
        where = f" in school {school}" if school else ""
        fail(f"no student with personal ID {student} is registered{where}", NOT_FOUND)
    if as_json:
        print(found.as_json())
        return
    show_accesses(found)


def show_accesses(found: StudentAccesses) -> None:
    """The entries as one table, every value printed as written."""
    table = Table(title=f"who read student {escape(found.student_ref)}")
    for column in COLUMNS:
        table.add_column(column)
    for e in found.entries:
        cells = (
            f"{e.at:%Y-%m-%d %H:%M:%S}", e.service, e.subject, ", ".join(e.roles),
            e.school_code, e.action, e.record_id, e.purpose,
        )
        table.add_row(*map(escape, cells))
    console.print(table)
    console.print(f"{len(found.entries):,} read(s) logged by {', '.join(service for service, _ in ACCESS_LOGS)}")
