"""`hocba grades`: import a class's gradebook and its homeroom teacher's entries, explain how a record's
results were computed."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Generic, TypeVar, get_args

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
    chunks,
    digits_problem,
    fail,
    finish_import,
    in_column_words,
    nothing_to_import,
    one_of,
    read_csv,
    run,
    school_year_problem,
    session,
    validation_message,
)
from hocba.commands.year import school_person
from hocba.console import console
from hocba.staff import Person, StaffRegister
from shared.contracts.grades import (
    AssessmentsRecorded,
    CommentLevel,
    ConductLevel,
    ConductRecorded,
    EntriesRecorded,
    ExplainRecord,
    QualityLevel,
    RecordAssessments,
    RecordConduct,
    RecordExplanation,
    StudentTermConduct,
    SubjectLevel,
    SubjectTermScores,
)
from shared.contracts.identity import Enrolment, FindStudents, StudentMatches
from shared.contracts.limits import PERSONAL_ID, SCHOOL_CODE, WORDS

app = typer.Typer(
    help=f"Grades: gradebook and homeroom imports, record explanations. {ISSUER_NOTE}", no_args_is_help=True
)
conduct_app = typer.Typer(
    help="The homeroom teacher's entries: conduct, absences, comments (and, in primary, qualities and competencies).",
    no_args_is_help=True,
)
app.add_typer(conduct_app, name="conduct")

#: The columns of a class gradebook (docs/formats.md).
GRADEBOOK = Columns(
    required=("school_code", "school_year", "class", "personal_id", "subject", "term"),
    optional=("regular", "midterm", "final", "level", "midterm_level", "comment"),
)
#: The columns of a class's homeroom entries (docs/formats.md).
CONDUCT = Columns(
    required=("school_code", "school_year", "class", "personal_id", "term", "absences"),
    optional=("conduct", "comment", "qualities", "competencies"),
)
#: Contract fields a message may name, as the columns they are read from: the `level` column carries a
#: secondary comment subject's Đạt / Chưa đạt as `comment_level`, a primary subject's level as `level`.
FIELD_COLUMNS = {"comment_level": "level", "student_ref": "personal_id"}
SECONDARY_COMMENT_LEVELS: tuple[str, ...] = get_args(CommentLevel)
PRIMARY_LEVELS: tuple[str, ...] = get_args(SubjectLevel)
CONDUCT_LEVELS: tuple[str, ...] = get_args(ConductLevel)
QUALITY_LEVELS: tuple[str, ...] = get_args(QualityLevel)

E = TypeVar("E", SubjectTermScores, StudentTermConduct)


def reason_text(value: str) -> str:
    """A change's reason as the commands carry it; a longer one is a usage error, not a traceback."""
    if len(value) > WORDS:
        raise typer.BadParameter(f"at most {WORDS} characters (this one has {len(value)})")
    return value.strip()


Reason = Annotated[
    str,
    typer.Option(callback=reason_text, help="Why stored entries change (required in a reopened term)."),
]


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
class ClassRow(Generic[E]):
    """A valid row of a class's file: where it belongs, whose it is, and the entry it makes."""

    number: int
    school_code: str
    school_year: str
    class_name: str
    personal_id: str
    entry: E  # with the personal ID in place of the student reference, until resolved

    def resolved(self, student_ref: str) -> ClassRow[E]:
        return ClassRow(
            self.number,
            self.school_code,
            self.school_year,
            self.class_name,
            self.personal_id,
            self.entry.model_copy(update={"student_ref": student_ref}),
        )


#: A valid gradebook row.
GradebookRow = ClassRow[SubjectTermScores]


def where_and_whose(row: Row) -> tuple[str, str, str, str]:
    """The school, year, class and personal ID of a class's row; ValueError saying what is wrong with them."""
    v = row.values
    for column in ("school_code", "school_year", "class", "personal_id", "term"):
        if not v[column]:
            raise ValueError(f"{column} is empty")
    for column, digits in (("school_code", SCHOOL_CODE), ("personal_id", PERSONAL_ID)):
        if problem := digits_problem(v[column], column, digits):
            raise ValueError(problem)
    if problem := school_year_problem(v["school_year"]):
        raise ValueError(f"school_year {problem}")
    if v["term"] not in ("1", "2"):
        raise ValueError(
            f"term '{v['term']}' must be 1 or 2 (1: term I, 2: term II or, in primary, the end of the year)"
        )
    return v["school_code"], v["school_year"], v["class"], v["personal_id"]


def parse_row(row: Row) -> GradebookRow:
    """A gradebook row; raises ValueError saying what is wrong with it."""
    v = row.values
    school_code, school_year, class_name, personal_id = where_and_whose(row)
    if not v["subject"]:
        raise ValueError("subject is empty")
    regular = tuple(score(part, f"regular {n + 1}") for n, part in enumerate(v["regular"].replace(";", " ").split()))
    level, comment_level = v["level"] or None, None
    if level in SECONDARY_COMMENT_LEVELS:
        level, comment_level = None, v["level"]
    elif level is not None and level not in PRIMARY_LEVELS:
        raise ValueError(
            f"level '{level}' must be {one_of(PRIMARY_LEVELS)} (primary) "
            f"or {one_of(SECONDARY_COMMENT_LEVELS)} (secondary comment subjects)"
        )
    if v["midterm_level"] and v["midterm_level"] not in PRIMARY_LEVELS:
        raise ValueError(f"midterm_level '{v['midterm_level']}' must be {one_of(PRIMARY_LEVELS)}")
    try:
        entry = SubjectTermScores.model_validate(
            {
                "student_ref": personal_id,
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
        raise ValueError(validation_message(exc, FIELD_COLUMNS)) from None
    return ClassRow(row.number, school_code, school_year, class_name, personal_id, entry)


def absences(text: str) -> int:
    """Sessions (buổi) missed in a term, excused or not, as written in the file."""
    if not text:
        raise ValueError("absences is empty: write the sessions (buổi) missed in the term, excused or not; 0 if none")
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"absences '{text}' is not a whole number of sessions (buổi), e.g. 0 or 3")
    return int(text)


def ratings(text: str, column: str) -> dict[str, str]:
    """Primary qualities or competencies as written: "Yêu nước: T; Nhân ái: Đ" (name, then its level)."""
    rated: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, separator, level = part.replace("=", ":").rpartition(":")
        name, level = name.strip(), level.strip()
        if not separator or not name:
            raise ValueError(
                f"{column} '{part}' is not a name and its level: write each as name: level "
                f"({one_of(QUALITY_LEVELS)}), separated by ;"
            )
        if level not in QUALITY_LEVELS:
            raise ValueError(f"{column} '{name}' is rated '{level}': a level is {one_of(QUALITY_LEVELS)}")
        if name in rated:
            raise ValueError(f"{column} '{name}' is rated twice")
        rated[name] = level
    return rated


def parse_conduct_row(row: Row) -> ClassRow[StudentTermConduct]:
    """A row of homeroom entries; raises ValueError saying what is wrong with it."""
    v = row.values
    school_code, school_year, class_name, personal_id = where_and_whose(row)
    if v["conduct"] and v["conduct"] not in CONDUCT_LEVELS:
        raise ValueError(f"conduct '{v['conduct']}' must be {one_of(CONDUCT_LEVELS)}")
    try:
        entry = StudentTermConduct.model_validate(
            {
                "student_ref": personal_id,
                "term": int(v["term"]),
                "conduct": v["conduct"] or None,
                "absences": absences(v["absences"]),
                "qualities": ratings(v["qualities"], "qualities"),
                "competencies": ratings(v["competencies"], "competencies"),
                "comment": v["comment"],
            }
        )
    except ValidationError as exc:
        raise ValueError(validation_message(exc, FIELD_COLUMNS)) from None
    return ClassRow(row.number, school_code, school_year, class_name, personal_id, entry)


@dataclass
class ImportSummary:
    rows: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    bad: dict[int, str] = field(default_factory=dict)
    #: What the reader should know about the file as a whole (columns ignored).
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"rows": self.rows, "stored": self.new, "changed": self.changed, "unchanged": self.unchanged}

    def add(self, outcome: EntriesRecorded, rows: list[ClassRow[E]]) -> None:
        """A service's answer for `rows`: its counts, and each rejected row's reason in the file's words."""
        self.new += outcome.new
        self.changed += outcome.changed
        self.unchanged += outcome.unchanged
        for rejection in outcome.rejected:
            self.bad[rows[rejection.index].number] = in_column_words(rejection.reason, FIELD_COLUMNS)


def read_class_file(
    path: Path, columns: Columns, parse: Callable[[Row], ClassRow[E]], key: Callable[[ClassRow[E]], Hashable], what: str
) -> tuple[list[ClassRow[E]], ImportSummary]:
    """One class's valid rows, and a summary holding every bad row's reason. The file's class is the school, year
    and class most of its valid rows name (the first of them on a tie); a row of another, or with the same `key`
    as an earlier row (`what` in words), is bad."""
    file = read_csv(path, columns)
    summary = ImportSummary(rows=len(file.rows), notes=file.notes())
    parsed: list[ClassRow[E]] = []
    for row in file.rows:
        try:
            if row.problem:
                raise ValueError(row.problem)
            parsed.append(parse(row))
        except ValueError as exc:
            summary.bad[row.number] = str(exc)
    named = Counter((r.school_code, r.school_year, r.class_name) for r in parsed)
    the_class = max(named, key=named.__getitem__) if named else None  # the first of the most named
    good: list[ClassRow[E]] = []
    first: dict[Hashable, int] = {}
    for valid in parsed:
        where = (valid.school_code, valid.school_year, valid.class_name)
        if where != the_class:
            school, year, class_name = the_class or where
            summary.bad[valid.number] = (
                f"another class: this file holds class {class_name} of school {school} in {year} (as most of its "
                f"rows say), this row {' '.join(where)}; import each class from a file of its own"
            )
        elif key(valid) in first:
            summary.bad[valid.number] = f"duplicate: the same {what} as row {first[key(valid)]}"
        else:
            first[key(valid)] = valid.number
            good.append(valid)
    return good, summary


def read_gradebook(path: Path) -> tuple[list[GradebookRow], ImportSummary]:
    """One class's valid gradebook rows and a summary holding every bad row's reason."""

    def key(row: GradebookRow) -> Hashable:
        return (row.personal_id, row.entry.subject, row.entry.term)

    return read_class_file(path, GRADEBOOK, parse_row, key, "student, subject and term")


def read_conduct(path: Path) -> tuple[list[ClassRow[StudentTermConduct]], ImportSummary]:
    """One class's valid homeroom rows and a summary holding every bad row's reason."""

    def key(row: ClassRow[StudentTermConduct]) -> Hashable:
        return (row.personal_id, row.entry.term)

    return read_class_file(path, CONDUCT, parse_conduct_row, key, "student and term")


#: What a class's import tells identity when it resolves personal IDs (kept in identity's access log).
RESOLVE_PURPOSE = "gradebook or homeroom import: personal IDs to student references and enrolments"


async def resolve(s: Session, rows: list[ClassRow[E]], summary: ImportSummary) -> list[ClassRow[E]]:
    """Personal IDs to identity's opaque references (asked as the school's administrator), each row's
    student found enrolled in the row's school, year and class; the others are bad rows, not sent."""
    if not rows:
        return []
    school = rows[0].school_code
    admin = school_person(s, school, "school_admin")
    refs: dict[str, str] = {}
    enrolments: dict[str, list[Enrolment]] = defaultdict(list)
    for part in chunks(sorted({r.personal_id for r in rows}), 1000):
        found = await s.ask(admin.signs(FindStudents(personal_ids=part, purpose=RESOLVE_PURPOSE)), StudentMatches)
        refs.update({m.identity.personal_id: m.student_ref for m in found.students})
        for enrolled in found.enrolments:
            enrolments[enrolled.student_ref].append(enrolled.enrolment)
    resolved = []
    for row in rows:
        if row.personal_id not in refs:
            summary.bad[row.number] = (
                f"no student with personal ID {row.personal_id} is registered in school {school}: "
                "check the personal ID, or import the student's roster row first (hocba identity import)"
            )
        elif problem := enrolment_problem(row, enrolments[refs[row.personal_id]]):
            summary.bad[row.number] = problem
        else:
            resolved.append(row.resolved(refs[row.personal_id]))
    return resolved


def enrolment_problem(row: ClassRow[E], enrolments: list[Enrolment]) -> str | None:
    """Why a row's student cannot take entries in the row's school year and class, as identity enrolled them."""
    at_school = [e for e in enrolments if e.school_code == row.school_code]
    this_year = [e for e in at_school if e.school_year == row.school_year]
    if not this_year:
        years = ", ".join(sorted({e.school_year for e in at_school})) or "no year"
        return (
            f"student {row.personal_id} is not enrolled in school {row.school_code} for {row.school_year} "
            f"(enrolled there in {years}): check school_year, or import the roster of {row.school_year} first "
            f"(hocba identity import --school-year {row.school_year})"
        )
    classes = sorted({e.class_name for e in this_year})
    if row.class_name not in classes:
        return (
            f"student {row.personal_id} is in class {', '.join(classes)} in {row.school_year}, not {row.class_name}: "
            "import the row with that class's file, or correct the class in the roster"
        )
    return None


def subject_teacher(s: Session, school: str, class_name: str, subject: str) -> Person:
    """Who enters a subject's grades in a class: the teacher the staff register enrols for that subject and class,
    else the subject's teacher as the development issuer names them (`hocba.staff.Staff`)."""
    member = next(
        (
            m
            for m in StaffRegister.configured(s.data_dir).members(school)
            if m.role == "subject_teacher" and class_name in m.classes and subject in m.subjects
        ),
        None,
    )
    return s.staff.enrolled(member) if member else s.staff.subject_teacher(school, subject, [class_name])


def homeroom_teacher(s: Session, school: str, class_name: str) -> Person:
    """The class's homeroom teacher as the staff register enrols them, else as the development issuer names them."""
    member = StaffRegister.configured(s.data_dir).homeroom_teacher_of(school, class_name)
    return s.staff.enrolled(member) if member else s.staff.homeroom_teacher(school, class_name)


async def send_gradebook(s: Session, rows: list[GradebookRow], summary: ImportSummary, size: int, reason: str) -> None:
    """Each subject's entries with that subject's teacher's token for the class."""
    by_subject: dict[str, list[GradebookRow]] = {}
    for row in rows:
        by_subject.setdefault(row.entry.subject, []).append(row)
    for subject, subject_rows in sorted(by_subject.items()):
        first = subject_rows[0]
        actor = subject_teacher(s, first.school_code, first.class_name, subject)
        for part in chunks(subject_rows, size):
            command = actor.signs(
                RecordAssessments(
                    school_code=first.school_code,
                    school_year=first.school_year,
                    entries=[r.entry for r in part],
                    reason=reason,
                )
            )
            summary.add(await s.ask(command, AssessmentsRecorded), part)


async def send_conduct(
    s: Session, rows: list[ClassRow[StudentTermConduct]], summary: ImportSummary, size: int, reason: str
) -> None:
    """The class's homeroom entries with its homeroom teacher's token."""
    if not rows:
        return
    first = rows[0]
    actor = homeroom_teacher(s, first.school_code, first.class_name)
    for part in chunks(rows, size):
        command = actor.signs(
            RecordConduct(
                school_code=first.school_code,
                school_year=first.school_year,
                entries=[r.entry for r in part],
                reason=reason,
            )
        )
        summary.add(await s.ask(command, ConductRecorded), part)


@app.command("import")
def import_gradebook(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="The class gradebook CSV (docs/formats.md).")
    ],
    reason: Reason = "",
    data_dir: DataDir = None,
    chunk: Annotated[int, typer.Option(min=1, max=1000, help="Entries per message.")] = 200,
    timeout: Timeout = 60.0,
) -> None:
    """Load a class's gradebook: every bad row reported with its row number; importing it again changes nothing.

    Columns: school_code,school_year,class,personal_id,subject,term and, as the subjects need them,
    regular,midterm,final,level,midterm_level,comment (comma-, semicolon- or tab-separated UTF-8).
    Each subject's rows go with that subject's teacher's token for the class; grades applies the
    rule set of the students' grade, the teachers' assignments and the term locks. Exit status 0
    when every row was stored or already there, 1 when some were rejected, 2 when the file
    cannot be read.
    """
    import_file(file, f"gradebook {file.name}", read_gradebook, send_gradebook, chunk, reason, data_dir, timeout)


@conduct_app.command("import")
def import_conduct(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="The class's homeroom CSV (docs/formats.md).")
    ],
    reason: Reason = "",
    data_dir: DataDir = None,
    chunk: Annotated[int, typer.Option(min=1, max=1000, help="Entries per message.")] = 200,
    timeout: Timeout = 60.0,
) -> None:
    """Load a class's conduct, absences and homeroom comments per term: every bad row reported with its row
    number; importing it again changes nothing.

    Columns: school_code,school_year,class,personal_id,term,absences and conduct (secondary), comment,
    qualities and competencies (primary: "Yêu nước: T; Nhân ái: Đ"). The rows go with the class's
    homeroom teacher's token; grades checks them by the students' grade and the term locks. Exit
    status 0 when every row was stored or already there, 1 when some were rejected (saying so when
    nothing was recorded), 2 when the file cannot be read.
    """
    import_file(file, f"homeroom entries {file.name}", read_conduct, send_conduct, chunk, reason, data_dir, timeout)


def import_file(  # noqa: PLR0913 - the options every class import shares
    file: Path,
    what: str,
    read: Callable[[Path], tuple[list[ClassRow[E]], ImportSummary]],
    send: Callable[[Session, list[ClassRow[E]], ImportSummary, int, str], Awaitable[None]],
    chunk: int,
    reason: str,
    data_dir: Path | None,
    timeout: float,
) -> None:
    """Read a class's CSV file, send its good rows (the stack is not asked when none is good), report every row."""
    try:
        good, summary = read(file)
    except CsvShapeError as exc:
        fail(f"cannot import: {exc}", 2)
    if not summary.rows:
        nothing_to_import(file.name)

    async def conversation() -> None:
        async with session(data_dir, timeout, "school") as s:
            await send(s, await resolve(s, good, summary), summary, chunk, reason)

    if good:
        run(conversation())
    finish_import(what, summary.counts(), summary.bad, summary.notes)


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
