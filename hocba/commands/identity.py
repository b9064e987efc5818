"""`hocba identity`: import a roster, look a student up by personal ID, rotate the data key."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape

from hocba.commands import (
    ISSUER_NOTE,
    Columns,
    CsvShapeError,
    DataDir,
    Purpose,
    Row,
    Session,
    Timeout,
    calendar_date,
    chunks,
    digits_problem,
    fail,
    finish_import,
    keys,
    nothing_to_import,
    read_csv,
    run,
    school_year_problem,
    session,
    validation_message,
)
from hocba.commands.year import school_person
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
from shared.contracts.limits import PERSONAL_ID, SCHOOL_CODE

app = typer.Typer(
    help=f"Student identities: roster import, look-ups, key rotation. {ISSUER_NOTE}", no_args_is_help=True
)

#: The columns of a roster (docs/formats.md).
ROSTER = Columns(
    required=("personal_id", "full_name", "date_of_birth", "sex", "school_code", "grade", "class"),
    optional=("place_of_birth", "ethnicity", "guardian_name", "electives", "learning_topics"),
)
#: Contract fields a message may name, as the columns (or the option) they are read from.
FIELD_COLUMNS = {"class_name": "class", "school_year": "--school-year"}
DEFAULT_YEAR = "2025-2026"
SEXES = ("M", "F")


def stated_school_year(value: str) -> str:
    """The school year a roster enrols its students in; one not written like 2025-2026 is a usage error."""
    if problem := school_year_problem(value):
        raise typer.BadParameter(problem)
    return value


def subject_list(text: str) -> tuple[str, ...]:
    """Subjects as a cell lists them: "Vật lí; Hóa học; Sinh học; Tin học" (or separated by commas)."""
    return tuple(name for name in (part.strip() for part in re.split(r"[;,]", text)) if name)


def parse_row(row: Row, school_year: str) -> StudentRegistration:
    """A roster row as a registration; raises ValueError saying what is wrong with it."""
    v = row.values
    for column in ROSTER.required:
        if not v[column]:
            raise ValueError(f"{column} is empty")
    if problem := digits_problem(v["personal_id"], "personal_id", PERSONAL_ID) or digits_problem(
        v["school_code"], "school_code", SCHOOL_CODE
    ):
        raise ValueError(problem)
    born = calendar_date(v["date_of_birth"], "date_of_birth")
    if v["sex"] not in SEXES:
        raise ValueError(f"sex '{v['sex']}' must be M or F")
    if not v["grade"].isdigit():
        raise ValueError(f"grade '{v['grade']}' is not a number from 1 to 12")
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
            enrolment=Enrolment.model_validate(
                {
                    "school_code": v["school_code"],
                    "school_year": school_year,
                    "grade": int(v["grade"]),
                    "class_name": v["class"],
                    "electives": subject_list(v["electives"]),
                    "learning_topics": subject_list(v["learning_topics"]),
                }
            ),
        )
    except ValidationError as exc:
        raise ValueError(validation_message(exc, FIELD_COLUMNS)) from None


@dataclass
class ImportSummary:
    rows: int = 0
    new: int = 0
    unchanged: int = 0
    enrolled: int = 0
    bad: dict[int, str] = field(default_factory=dict)
    #: What the reader should know about the file as a whole (columns ignored).
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "registered": self.new,
            "unchanged": self.unchanged,
            "enrolment added": self.enrolled,
        }


def read_roster(path: Path, school_year: str) -> tuple[list[tuple[int, StudentRegistration]], ImportSummary]:
    """The valid rows (row number, registration) and a summary holding every bad row's reason."""
    file = read_csv(path, ROSTER)
    summary = ImportSummary(notes=file.notes())
    good: list[tuple[int, StudentRegistration]] = []
    first: dict[str, int] = {}
    for row in file.rows:
        summary.rows += 1
        try:
            if row.problem:
                raise ValueError(row.problem)
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


async def send_roster(
    s: Session, good: list[tuple[int, StudentRegistration]], summary: ImportSummary, size: int
) -> None:
    by_school: dict[str, list[tuple[int, StudentRegistration]]] = {}
    for number, registration in good:
        by_school.setdefault(registration.enrolment.school_code, []).append((number, registration))
    for school, rows in sorted(by_school.items()):
        for part in chunks(rows, size):
            command = school_person(s, school, "school_admin").signs(RegisterStudents(students=[r for _, r in part]))
            report = await s.ask(command, RegistrationReport)
            summary.new += report.new
            summary.unchanged += report.unchanged
            summary.enrolled += report.enrolled
            for rejection in report.rejected:
                summary.bad[part[rejection.index][0]] = rejection.reason


@app.command("import")
def import_roster(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The roster CSV (docs/formats.md).")],
    school_year: Annotated[
        str, typer.Option(callback=stated_school_year, help="The school year the roster enrols students in.")
    ] = DEFAULT_YEAR,
    data_dir: DataDir = None,
    chunk: Annotated[int, typer.Option(min=1, max=1000, help="Rows per message.")] = 200,
    timeout: Timeout = 60.0,
) -> None:
    """Register a roster: every bad row reported with its row number; importing it again changes nothing.

    Columns: personal_id,full_name,date_of_birth,sex,school_code,grade,class and, if known,
    place_of_birth,ethnicity,guardian_name and, in grades 10-12, electives,learning_topics (subjects
    separated by ;) (comma-, semicolon- or tab-separated UTF-8, dates YYYY-MM-DD, sex M/F). Each school's rows go with that school's administrator's token. Exit status 0 when every
    row was imported or already there, 1 when some were rejected, 2 when the file cannot be read.
    """
    try:
        good, summary = read_roster(file, school_year)
    except CsvShapeError as exc:
        fail(f"cannot import: {exc}", 2)
    if not summary.rows:
        nothing_to_import(file.name)

    async def conversation() -> None:
        async with session(data_dir, timeout, "school") as s:
            await send_roster(s, good, summary, chunk)

    if good:
        run(conversation())
    finish_import(f"roster {file.name}", summary.counts(), summary.bad, summary.notes)


@app.command()
def lookup(
    personal_ids: Annotated[list[str], typer.Argument(help="12-digit personal IDs.")],
    school: Annotated[
        str | None, typer.Option(help="Look up as this school's administrator (default: as an operator).")
    ] = None,
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
