"""`hocba identity`: import a roster, look a student up by personal ID, rotate the data key."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape

from hocba.commands import (
    ISSUER_NOTE,
    CsvShapeError,
    DataDir,
    Purpose,
    Row,
    Session,
    Timeout,
    chunks,
    fail,
    finish_import,
    keys,
    read_rows,
    run,
    session,
    validation_message,
)
from hocba.console import console
from shared.contracts.identity import (
    Enrolment,
    FindStudents,
    RegisterStudents,
    RegistrationReport,
    StudentIdentity,
    StudentMatches,
    StudentRegistration,
)
from shared.contracts.keys import DataKeyRotationProgress

app = typer.Typer(help=f"Student identities: roster import, look-ups, key rotation. {ISSUER_NOTE}", no_args_is_help=True)

COLUMNS = (
    "personal_id", "full_name", "date_of_birth", "sex", "place_of_birth",
    "ethnicity", "school_code", "grade", "class", "guardian_name",
)
DEFAULT_YEAR = "2025-2026"



def parse_row(row: Row, school_year: str) -> StudentRegistration:
    """A roster row as a registration; raises ValueError saying what is wrong with it."""
    v = row.values
    try:
        born = date.fromisoformat(v["date_of_birth"])
    except ValueError:
        raise ValueError(f"date_of_birth '{v['date_of_birth']}' is not an ISO 8601 date (YYYY-MM-DD)") from None
    if v["sex"] not in ("M", "F"):
        raise ValueError(f"sex '{v['sex']}' must be M or F")
    if not v["grade"].isdigit():
        raise ValueError(f"grade '{v['grade']}' is not a number")
    for column in ("personal_id", "full_name", "school_code", "class"):
        if not v[column]:
            raise ValueError(f"{column} is empty")
    try:
        return StudentRegistration(
            identity=StudentIdentity.model_validate(
                {
                    "personal_id": v["personal_id"],
                    "full_name": v["full_name"],
                    "date_of_birth": born,
                    "sex": v["sex"],
                    "place_of_birth": v["place_of_birth"],
                    "ethnicity": v["ethnicity"],
                    "guardian_name": v["guardian_name"],
                }
            ),
            enrolment=Enrolment(
                school_code=v["school_code"], school_year=school_year, grade=int(v["grade"]), class_name=v["class"]
            ),
        )
    except ValidationError as exc:
        raise ValueError(validation_message(exc)) from None


@dataclass
class ImportSummary:
    rows: int = 0
    new: int = 0
    unchanged: int = 0
    enrolled: int = 0
    bad: dict[int, str] = field(default_factory=dict)


def read_roster(path: Path, school_year: str) -> tuple[list[tuple[int, StudentRegistration]], ImportSummary]:
    """The valid rows (row number, registration) and a summary holding every bad row's reason."""
    summary = ImportSummary()
    good: list[tuple[int, StudentRegistration]] = []
    first: dict[str, int] = {}
    for row in read_rows(path, COLUMNS):
        summary.rows += 1
        try:
            registration = parse_row(row, school_year)
        except ValueError as exc:
            summary.bad[row.number] = str(exc)
            continue
        pid = registration.identity.personal_id
        if pid in first:
            summary.bad[row.number] = f"duplicate: the same personal ID as row {first[pid]}"
            continue
        first[pid] = row.number
        good.append((row.number, registration))
    return good, summary


async def send_roster(s: Session, good: list[tuple[int, StudentRegistration]], summary: ImportSummary, size: int) -> None:
    by_school: dict[str, list[tuple[int, StudentRegistration]]] = {}
    for number, registration in good:
        by_school.setdefault(registration.enrolment.school_code, []).append((number, registration))
    for school, rows in sorted(by_school.items()):
        for part in chunks(rows, size):
            command = s.staff.school_admin(school).signs(RegisterStudents(students=[r for _, r in part]))
            report = await s.ask(command, RegistrationReport)
            summary.new += report.new
            summary.unchanged += report.unchanged
            summary.enrolled += report.enrolled
            for rejection in report.rejected:
                summary.bad[part[rejection.index][0]] = rejection.reason


@app.command("import")
def import_roster(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The roster CSV (docs/formats.md).")],
    school_year: Annotated[str, typer.Option(help="The school year the roster enrols students in.")] = DEFAULT_YEAR,
    data_dir: DataDir = None,
    chunk: Annotated[int, typer.Option(min=1, max=1000, help="Rows per message.")] = 200,
    timeout: Timeout = 60.0,
) -> None:
    """Register a roster: every bad row reported with its row number; importing it again changes nothing.

    Columns: personal_id,full_name,date_of_birth,sex,place_of_birth,ethnicity,school_code,grade,class,guardian_name
    (UTF-8, dates YYYY-MM-DD, sex M/F). Each school's rows go with that school's administrator's token.
    Exit status 0 when every row was imported or already there, 1 when some were rejected, 2 when
    the file cannot be read.
    """
    try:
        good, summary = read_roster(file, school_year)
    except CsvShapeError as exc:
        fail(f"cannot import: {exc}", 2)

    async def conversation() -> None:
        async with session(data_dir, timeout, "school") as s:
            await send_roster(s, good, summary, chunk)

    run(conversation())
    finish_import(
        f"roster {file.name}",
        {"rows": summary.rows, "registered": summary.new, "unchanged": summary.unchanged, "enrolment added": summary.enrolled},
        summary.bad,
    )


@app.command()
def lookup(
    personal_ids: Annotated[list[str], typer.Argument(help="12-digit personal IDs.")],
    school: Annotated[str | None, typer.Option(help="Look up as this school's administrator (default: as an operator).")] = None,
    purpose: Purpose = "identity look-up from the command line",
    data_dir: DataDir = None,
    timeout: Timeout = 30.0,
) -> None:
    """Show the identity snapshot (and opaque student reference) of students by personal ID.

    Identity logs the look-up (who, why) in its access log: `hocba audit access` shows it.
    """

    async def conversation() -> StudentMatches:
        async with session(data_dir, timeout, "school" if school else "operator") as s:
            reader = s.staff.school_admin(school) if school else s.operator
            return await s.ask(reader.signs(FindStudents(personal_ids=personal_ids, purpose=purpose)), StudentMatches)

    found = run(conversation())
    show_matches(found)
    raise typer.Exit(1 if found.missing else 0)


def show_matches(found: StudentMatches) -> None:
    """One line a student found, one a personal ID not found; every value printed as written."""
    for snapshot in found.students:
        i = snapshot.identity
        console.print(
            f"{escape(i.personal_id)}  {escape(i.full_name)}  {i.date_of_birth}  {i.sex}  ref {escape(snapshot.student_ref)}"
        )
    for pid in found.missing:
        console.print(f"[yellow]{escape(pid)}: not found[/yellow]")


@app.command("rotate-key")
def rotate_key(
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait without progress before giving up.")] = 120.0,
) -> None:
    """Add a new data key, make it current and re-encrypt every student under it, with progress
    (`hocba keys rotate --service identity`).

    Look-ups keep working throughout: identity keeps the old keys until nothing uses them.
    """

    async def conversation() -> DataKeyRotationProgress:
        async with session(data_dir, timeout) as s:
            return await keys.rotate(s, "identity", timeout)

    final = run(conversation())
    console.print(f"key {escape(final.key_id)} is current; {final.done} student(s) re-encrypted")
