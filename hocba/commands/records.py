"""`hocba records list` and `hocba grades history`: find a school year's records and where each stands, and read
every change of a student's entries.

Both are reads of students' data: grades keeps each one in its access log with the reader and the
purpose given (`--purpose`; `hocba audit access` shows them). The reader is the school's records
administrator (or principal) as the staff register enrols them, or an operator of the department
(`--as operator`); a personal ID is resolved by identity for that reader (FindStudents), as the imports do.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC
from typing import Annotated, Any, Literal, cast, get_args

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from hocba.commands import ISSUER_NOTE, DataDir, Purpose, Session, Timeout, digits_problem, fail, run, session
from hocba.commands.year import School, Year, school_person, where
from hocba.console import console
from hocba.staff import Person
from shared.contracts.grades import (
    EntryChange,
    EntryChanges,
    EntryHistory,
    ListRecords,
    RecordList,
    RecordStatus,
)
from shared.contracts.identity import FindStudents, StudentMatches
from shared.contracts.limits import PERSONAL_ID
from shared.errors import Refused

app = typer.Typer(help=f"Records: a school year's records and where each stands. {ISSUER_NOTE}", no_args_is_help=True)

#: Who reads: the school's records administrator or principal, or an operator of the department.
Reader = Literal["school_admin", "principal", "operator"]
ReaderOption = Annotated[
    Reader, typer.Option("--as", help="Who reads: the school's administrator or principal, or an operator.")
]
PersonalIdOption = Annotated[str | None, typer.Option("--personal-id", help="The student's personal ID (12 digits).")]
#: A record's status in words.
STATUS_WORDS: dict[str, str] = {
    "assembled": "assembled",
    "incomplete": "incomplete (entries missing)",
    "signed-and-sealed": "signed and sealed",
    "archived": "archived",
    "delivered": "delivered to the ministry",
}
STATUSES: tuple[str, ...] = get_args(RecordStatus)
#: Fields of an entry a history leaves out: they name the entry, which the line says already.
ENTRY_KEYS = {"student_ref", "subject", "term"}


def reader_of(s: Session, school: str, reader: Reader) -> Person:
    return s.operator if reader == "operator" else school_person(s, school, reader)


def personal_id_checked(personal_id: str | None) -> None:
    if personal_id is not None and (problem := digits_problem(personal_id, "--personal-id", PERSONAL_ID)):
        fail(problem, 2)


async def student_ref_of(s: Session, person: Person, school: str, personal_id: str, purpose: str) -> str:
    """identity's reference for the student with `personal_id`, as `person` may see them (Refused when not)."""
    found = await s.ask(person.signs(FindStudents(personal_ids=[personal_id], purpose=purpose)), StudentMatches)
    if not found.students:
        raise Refused(
            f"no student with personal ID {personal_id} is registered that you may see: check the personal ID "
            f"(a student of school {school} is seen by its staff, any student by an operator)",
            reason="not-found",
        )
    return found.students[0].student_ref


def where_said(school: str, year: str, class_name: str | None, status: str | None, personal_id: str | None) -> str:
    """The records asked for, in words."""
    said = f"school {school} for {year}"
    if class_name:
        said = f"class {class_name} of {said}"
    if personal_id:
        said = f"{said}, student {personal_id}"
    return f"{said} {STATUS_WORDS[status]}" if status else said


@app.command("list")
def list_records(  # noqa: PLR0913 - each option of the command is a parameter
    school: School,
    year: Year,
    class_name: Annotated[str | None, typer.Option("--class", help="One class's records.")] = None,
    status: Annotated[str | None, typer.Option(help=f"Only the records of this status: {', '.join(STATUSES)}.")] = None,
    personal_id: PersonalIdOption = None,
    as_: ReaderOption = "school_admin",
    purpose: Purpose = "records list from the command line",
    data_dir: DataDir = None,
    timeout: Timeout = 60.0,
) -> None:
    """List a school year's records, one line each: class, student, record id, version, where it stands.

    A record stands assembled (or incomplete: entries missing), signed and sealed (homeroom teacher, principal,
    school seal), archived, or delivered to the ministry. The school's staff see the students' names (a teacher,
    in their classes); an operator sees the personal IDs' last four digits only. Exit status 0 when some record
    is listed, 1 when none is (saying why), 2 for a mistyped option.
    """
    where(school, year)
    personal_id_checked(personal_id)
    if status is not None and status not in STATUSES:
        fail(f"--status '{status}' is none of {', '.join(STATUSES)}", 2)

    async def conversation() -> RecordList:
        async with session(data_dir, timeout, "operator" if as_ == "operator" else "school") as s:
            reader = reader_of(s, school, as_)
            ref = await student_ref_of(s, reader, school, personal_id, purpose) if personal_id else None
            request = ListRecords(
                school_code=school,
                school_year=year,
                class_name=class_name,
                status=cast(RecordStatus | None, status),  # checked against STATUSES above
                student_ref=ref,
                purpose=purpose,
            )
            return await s.ask(reader.signs(request), RecordList)

    found = run(conversation())
    asked = where_said(school, year, class_name, status, personal_id)
    if not found.records:
        fail(
            f"no record of {asked}: records are assembled when the principal closes the year (`hocba year close`, "
            "after both terms are closed); check --school, --year and --class"
        )
    show_records(found, asked)


def show_records(found: RecordList, asked: str) -> None:
    table = Table(title=escape(f"records of {asked}"))
    for column in ("class", "student", "record id", "version", "status"):
        table.add_column(column)
    for line in found.records:
        student = line.student_name or line.masked_personal_id
        table.add_row(
            Text(line.class_name), Text(student), line.record_id, str(line.version), STATUS_WORDS[line.status]
        )
    console.print(table)
    counts: Counter[str] = Counter(line.status for line in found.records)
    by_status = ", ".join(f"{counts[s]} {STATUS_WORDS[s]}" for s in STATUSES if counts[s])
    console.print(f"{len(found.records):,} record(s): {by_status}")


# --- a student's entries, change by change -------------------------------------------------------


def history(  # noqa: PLR0913 - each option of the command is a parameter
    school: School,
    year: Year,
    personal_id: Annotated[str, typer.Option("--personal-id", help="The student's personal ID (12 digits).")],
    subject: Annotated[str | None, typer.Option(help="One subject's entries only, e.g. Toán.")] = None,
    as_: ReaderOption = "school_admin",
    purpose: Purpose = "entry history from the command line",
    data_dir: DataDir = None,
    timeout: Timeout = 30.0,
) -> None:
    """Every change of a student's entries in a school year: who, when, the old and new values, why, and the
    message that made it; entry by entry, each as first recorded and then each change.

    Exit status 0 when some entry is shown, 1 when the student has none (saying why), 2 for a mistyped option.
    """
    where(school, year)
    personal_id_checked(personal_id)

    async def conversation() -> EntryChanges:
        async with session(data_dir, timeout, "operator" if as_ == "operator" else "school") as s:
            reader = reader_of(s, school, as_)
            ref = await student_ref_of(s, reader, school, personal_id, purpose)
            request = EntryHistory(
                school_code=school, school_year=year, student_ref=ref, subject=subject, purpose=purpose
            )
            return await s.ask(reader.signs(request), EntryChanges)

    found = run(conversation())
    which = f"{subject} entries" if subject else "entries"
    if not found.changes:
        fail(
            f"no {which} of student {personal_id} in {year} at school {school}: nothing has been recorded for them "
            "(check --subject as the gradebook writes it)"
        )
    console.print(f"[bold]{escape(which.capitalize())} of student {escape(personal_id)}, {escape(year)}[/bold]")
    for change in found.changes:
        console.print(change_line(change), soft_wrap=True)


def change_line(change: EntryChange) -> Text:
    """One revision of an entry as a line, every value from data as written."""
    entry = f"{change.subject or 'homeroom'}, term {change.term}"
    at = change.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if change.at else "(time not kept)"
    if change.action == "recorded":
        what = f"recorded by {change.by}: {values_said(change.new) or '(no values)'}"
    else:
        what = f"changed by {change.by}: {differences(change.old or {}, change.new)}"
    why = f"; reason: {change.reason}" if change.reason else ""
    return Text(f"{at}  {entry}  {what}{why}  [message {change.message_id}, {change.message}]")


def shown(value: Any) -> str:
    """A value of an entry as a person reads it."""
    if value is None or value in ("", [], {}):
        return "—"
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def values_said(values: dict[str, Any]) -> str:
    """An entry's values that are set, in words: "regular 8.0 8.0; midterm 8.0"."""
    return "; ".join(
        f"{key} {shown(value)}"
        for key, value in values.items()
        if key not in ENTRY_KEYS and value not in (None, "", [], {})
    )


def differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What changed, field by field: "regular 8.0 8.0 → 9 7"."""
    changed = [
        f"{key} {shown(old.get(key))} → {shown(new.get(key))}"
        for key in dict.fromkeys([*old, *new])
        if key not in ENTRY_KEYS and old.get(key) != new.get(key)
    ]
    return "; ".join(changed) or "(the same values)"
