"""`hocba grades`: import a class's gradebook, explain how a record's results were computed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
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
    read_rows,
    run,
    session,
    validation_message,
)
from hocba.console import console
from shared.contracts.grades import (
    AssessmentsRecorded,
    ExplainRecord,
    RecordAssessments,
    RecordExplanation,
    SubjectTermScores,
)
from shared.contracts.identity import FindStudents, StudentMatches

app = typer.Typer(help=f"Grades: gradebook import, record explanations. {ISSUER_NOTE}", no_args_is_help=True)

COLUMNS = (
    "school_code", "school_year", "class", "personal_id", "subject", "term",
    "regular", "midterm", "final", "level", "midterm_level", "comment",
)
SECONDARY_COMMENT_LEVELS = ("Đ", "CĐ")
PRIMARY_LEVELS = ("T", "H", "C")



def score(text: str, label: str) -> Decimal | None:
    """A score as written in the file: empty, or a number 0-10 with at most one decimal."""
    if not text:
        return None
    try:
        value = Decimal(text.replace(",", "."))
    except InvalidOperation:
        raise ValueError(f"{label} '{text}' is not a number") from None
    if not value.is_finite() or not Decimal(0) <= value <= Decimal(10):
        raise ValueError(f"{label} {text} is outside 0-10")
    if value != value.quantize(Decimal("0.1")):
        raise ValueError(f"{label} {text} has more than one decimal")
    return value


@dataclass(frozen=True)
class GradebookRow:
    number: int
    school_code: str
    school_year: str
    class_name: str
    personal_id: str
    entry: SubjectTermScores  # with the personal ID in place of the student reference, until resolved


def parse_row(row: Row) -> GradebookRow:
    """A gradebook row; raises ValueError saying what is wrong with it."""
    v = row.values
    for column in ("school_code", "school_year", "class", "personal_id", "subject", "term"):
        if not v[column]:
            raise ValueError(f"{column} is empty")
    if v["term"] not in ("1", "2"):
        raise ValueError(f"term '{v['term']}' must be 1 or 2")
    regular = tuple(score(part, f"regular {n + 1}") for n, part in enumerate(v["regular"].replace(";", " ").split()))
    level, comment_level = v["level"] or None, None
    if level in SECONDARY_COMMENT_LEVELS:
        level, comment_level = None, v["level"]
    elif level is not None and level not in PRIMARY_LEVELS:
        raise ValueError(f"level '{level}' must be T, H or C (primary) or Đ or CĐ (secondary comment subjects)")
    if v["midterm_level"] and v["midterm_level"] not in PRIMARY_LEVELS:
        raise ValueError(f"midterm_level '{v['midterm_level']}' must be T, H or C")
    try:
        entry = SubjectTermScores.model_validate(
            {
                "student_ref": v["personal_id"],
                "subject": v["subject"],
                "term": int(v["term"]),
                "regular": regular,
                "midterm": score(v["midterm"], "midterm"),
                "final": score(v["final"], "final"),
                "comment_level": comment_level,
                "level": level,
                "midterm_level": v["midterm_level"] or None,
                "comment": v["comment"],
            }
        )
    except ValidationError as exc:
        raise ValueError(validation_message(exc)) from None
    return GradebookRow(row.number, v["school_code"], v["school_year"], v["class"], v["personal_id"], entry)


@dataclass
class ImportSummary:
    rows: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    bad: dict[int, str] = field(default_factory=dict)


def read_gradebook(path: Path) -> tuple[list[GradebookRow], ImportSummary]:
    """One class's valid rows and a summary holding every bad row's reason."""
    summary = ImportSummary()
    good: list[GradebookRow] = []
    first: dict[tuple[str, str, int], int] = {}
    the_class: tuple[str, str, str] | None = None
    for row in read_rows(path, COLUMNS):
        summary.rows += 1
        try:
            parsed = parse_row(row)
        except ValueError as exc:
            summary.bad[row.number] = str(exc)
            continue
        where = (parsed.school_code, parsed.school_year, parsed.class_name)
        the_class = the_class or where
        key = (parsed.personal_id, parsed.entry.subject, parsed.entry.term)
        if where != the_class:
            summary.bad[row.number] = f"another class: this file is the gradebook of {' '.join(the_class)}"
        elif key in first:
            summary.bad[row.number] = f"duplicate: the same student, subject and term as row {first[key]}"
        else:
            first[key] = row.number
            good.append(parsed)
    return good, summary


#: What the gradebook import tells identity when it resolves personal IDs (kept in identity's access log).
RESOLVE_PURPOSE = "gradebook import: personal IDs to student references"


async def resolve(s: Session, rows: list[GradebookRow], summary: ImportSummary) -> list[GradebookRow]:
    """Personal IDs to identity's opaque references (asked as the school's administrator)."""
    if not rows:
        return []
    school = rows[0].school_code
    admin = s.staff.school_admin(school)
    refs: dict[str, str] = {}
    for part in chunks(sorted({r.personal_id for r in rows}), 1000):
        found = await s.ask(admin.signs(FindStudents(personal_ids=part, purpose=RESOLVE_PURPOSE)), StudentMatches)
        refs.update({m.identity.personal_id: m.student_ref for m in found.students})
    resolved = []
    for row in rows:
        if row.personal_id in refs:
            entry = row.entry.model_copy(update={"student_ref": refs[row.personal_id]})
            resolved.append(GradebookRow(row.number, row.school_code, row.school_year, row.class_name, row.personal_id, entry))
        else:
            summary.bad[row.number] = f"no student with personal ID {row.personal_id} is registered in school {school}"
    return resolved


async def send_gradebook(s: Session, rows: list[GradebookRow], summary: ImportSummary, size: int, reason: str) -> None:
    """Each subject's entries with that subject's teacher's token for the class."""
    by_subject: dict[str, list[GradebookRow]] = {}
    for row in rows:
        by_subject.setdefault(row.entry.subject, []).append(row)
    for subject, subject_rows in sorted(by_subject.items()):
        first = subject_rows[0]
        actor = s.staff.subject_teacher(first.school_code, subject, [first.class_name])
        for part in chunks(subject_rows, size):
            command = actor.signs(
                RecordAssessments(
                    school_code=first.school_code, school_year=first.school_year,
                    entries=[r.entry for r in part], reason=reason,
                )
            )
            outcome = await s.ask(command, AssessmentsRecorded)
            summary.new += outcome.new
            summary.changed += outcome.changed
            summary.unchanged += outcome.unchanged
            for rejection in outcome.rejected:
                summary.bad[part[rejection.index].number] = rejection.reason


@app.command("import")
def import_gradebook(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The class gradebook CSV (docs/formats.md).")],
    reason: Annotated[str, typer.Option(help="Why stored entries change (required in a reopened term).")] = "",
    data_dir: DataDir = None,
    chunk: Annotated[int, typer.Option(min=1, max=1000, help="Entries per message.")] = 200,
    timeout: Timeout = 60.0,
) -> None:
    """Load a class's gradebook: every bad row reported with its row number; importing it again changes nothing.

    Columns: school_code,school_year,class,personal_id,subject,term,regular,midterm,final,level,midterm_level,comment.
    Each subject's rows go with that subject's teacher's token for the class; grades applies the
    rule set of the students' grade, the teachers' assignments and the term locks. Exit status 0
    when every row was stored or already there, 1 when some were rejected, 2 when the file
    cannot be read.
    """
    try:
        good, summary = read_gradebook(file)
    except CsvShapeError as exc:
        fail(f"cannot import: {exc}", 2)

    async def conversation() -> None:
        async with session(data_dir, timeout, "school") as s:
            await send_gradebook(s, await resolve(s, good, summary), summary, chunk, reason)

    run(conversation())
    finish_import(
        f"gradebook {file.name}",
        {"rows": summary.rows, "stored": summary.new, "changed": summary.changed, "unchanged": summary.unchanged},
        summary.bad,
    )


@app.command()
def explain(
    record_id: Annotated[str, typer.Argument(help="The record's id (as in grades.record.ready).")],
    version: Annotated[int | None, typer.Option(help="The record version (default: the latest).")] = None,
    inputs: Annotated[bool, typer.Option(help="Also print each result's inputs, for recomputing it.")] = False,
    purpose: Purpose = "record explanation from the command line",
    data_dir: DataDir = None,
    timeout: Timeout = 30.0,
) -> None:
    """Say how each result of a record was computed: the rule, the clause of the circular, the inputs.

    Grades logs the reading (who, why) in its access log: `hocba audit access` shows it.
    """

    async def conversation() -> RecordExplanation:
        async with session(data_dir, timeout) as s:
            request = ExplainRecord(record_id=record_id, version=version, purpose=purpose)
            return await s.ask(s.operator.signs(request), RecordExplanation)

    show_explanation(run(conversation()), inputs)


def show_explanation(found: RecordExplanation, inputs: bool) -> None:
    """The record's results as grades explains them; every value from the record printed as written."""
    console.print(
        f"[bold]Record {escape(found.record_id)}[/bold] version {found.version}: {escape(found.student_name)}, "
        f"grade {found.grade} class {escape(found.class_name)}, {escape(found.school_year)}, "
        f"school {escape(found.school_code)}"
    )
    console.print(f"Computed by rule set {escape(found.rule_set)}.")
    section = None
    for line in found.lines:
        heading = line.about.split("/")[0]
        if heading != section:
            section = heading
            console.print(f"\n[bold]{escape(heading.capitalize())}[/bold]")
        console.print(f"  • {escape(line.text)}")
        if inputs:
            details = f"{line.rule} · {line.clause} · inputs {json.dumps(line.inputs, ensure_ascii=False)}"
            console.print(f"    [dim]{escape(details)}[/dim]")
    if found.unconfirmed:
        console.print("\n[bold]Points of this rule set not yet confirmed against the official text[/bold]")
        for note in found.unconfirmed:
            console.print(f"  • {escape(note)}")
