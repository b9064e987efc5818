"""`hocba amend`: correct a signed record as its next version, which is then signed again.

The issuing school's principal (or its records administrator) gives the corrected entries in the files of the
imports (a gradebook's columns for subject entries, the homeroom file's for conduct, absences and comments:
docs/formats.md), the reason code and a note. The command finds the record as `hocba records list` does (by the
student's personal ID, or by its id), asks grades to amend it (`AmendRecord`: grades checks each correction by the
rules of every entry, keeps it in the entry's history and assembles the record again as the next version), then
hands the new version to signing (`RequestAmendment`, the same person's token), which holds it for its signatures:
the class's homeroom teacher reviews the class again and signs, then the principal signs and seals, and the archive
keeps the new version beside the one it supersedes.

The request carries an id made from what it asks (the record, the version it supersedes, the reason, the note, the
corrections, who asks): the same command run again, after a failure or a lost answer, is answered as the first
time, and goes on to signing; nothing is made twice.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape

from hocba.commands import (
    CsvShapeError,
    DataDir,
    Session,
    Timeout,
    digits_problem,
    fail,
    in_column_words,
    print_bad_rows,
    refusal,
    run,
    session,
)
from hocba.commands.grades import (
    FIELD_COLUMNS,
    ClassRow,
    GradebookRow,
    ImportSummary,
    read_conduct,
    read_gradebook,
    resolve,
)
from hocba.commands.year import School, SchoolRole, Year, school_person, where
from hocba.console import console
from hocba.staff import Person
from shared.contracts.base import derived_id
from shared.contracts.grades import (
    SIGNED,
    AmendRecord,
    ListRecords,
    RecordAmended,
    RecordLine,
    RecordList,
    StudentTermConduct,
)
from shared.contracts.limits import PERSONAL_ID, WORDS
from shared.contracts.record import AmendmentReason
from shared.contracts.signing import AmendmentReceived, RequestAmendment
from shared.errors import NoAnswer, Refused

#: Why the command reads a student's record list (grades keeps it in its access log).
PURPOSE = "amendment of a signed record"

#: What grades refuses an amendment for, and what the person can do about it (grades' codes).
HINTS = {
    "not-signed": "a version awaiting its signatures is signed first; then amend it if it still needs correcting",
    "not-latest": "amend the latest version (`hocba records list --personal-id ...` shows it)",
    "nothing-changed": "check the files: each row holds the corrected values of one entry, as the imports write it",
    "forbidden": "an amendment is asked by the issuing school's principal or records administrator (--as)",
}


def note_text(value: str) -> str:
    """The amendment's note as the requests carry it; a longer one is a usage error, not a traceback."""
    if len(value) > WORDS:
        raise typer.BadParameter(f"at most {WORDS} characters (this one has {len(value)})")
    return value.strip()


@dataclass
class Corrections:
    """The corrections of one student's record as read from the files: the rows that can be sent, and each file's
    name and summary holding its bad rows (None for a file not given)."""

    scores: list[GradebookRow] = field(default_factory=list)
    conduct: list[ClassRow[StudentTermConduct]] = field(default_factory=list)
    entries_file: tuple[str, ImportSummary] | None = None
    conduct_file: tuple[str, ImportSummary] | None = None

    @property
    def rows(self) -> list[ClassRow]:
        return [*self.scores, *self.conduct]

    def files(self) -> list[tuple[str, ImportSummary, list[ClassRow]]]:
        """Each file given: its name, its summary, the rows of it that can be sent."""
        given: list[tuple[tuple[str, ImportSummary] | None, list[ClassRow]]] = [
            (self.entries_file, list(self.scores)),
            (self.conduct_file, list(self.conduct)),
        ]
        return [(file[0], file[1], rows) for file, rows in given if file is not None]

    def bad_rows(self) -> int:
        return sum(len(summary.bad) for _, summary, _ in self.files())

    def without_bad_rows(self) -> None:
        if self.entries_file is not None:
            self.scores = [r for r in self.scores if r.number not in self.entries_file[1].bad]
        if self.conduct_file is not None:
            self.conduct = [r for r in self.conduct if r.number not in self.conduct_file[1].bad]


def read_corrections(entries: Path | None, conduct: Path | None) -> Corrections:
    """The files' rows as the gradebook and homeroom imports read them (the same readers and columns); CsvShapeError
    when a file cannot be read as that CSV at all."""
    corrections = Corrections()
    if entries is not None:
        corrections.scores, summary = read_gradebook(entries)
        corrections.entries_file = (entries.name, summary)
    if conduct is not None:
        corrections.conduct, summary = read_conduct(conduct)
        corrections.conduct_file = (conduct.name, summary)
    return corrections


def only_the_records(corrections: Corrections, school: str, year: str, personal_id: str | None) -> None:
    """Each row of another school or year than the record's, or of another student (the one `personal_id` names,
    else the one most rows name), is a bad row, and is not sent."""
    named = Counter(row.personal_id for row in corrections.rows)
    student = personal_id or (max(named, key=named.__getitem__) if named else None)
    whose = "--personal-id" if personal_id else "most rows of the files"
    for _, summary, rows in corrections.files():
        for row in rows:
            if (row.school_code, row.school_year) != (school, year):
                summary.bad[row.number] = (
                    f"school {row.school_code}, {row.school_year}: the record amended is of school {school} for "
                    f"{year} (--school, --year)"
                )
            elif row.personal_id != student:
                summary.bad[row.number] = (
                    f"student {row.personal_id}: an amendment corrects one student's record, {student}'s ({whose})"
                )
    corrections.without_bad_rows()


def request_id(record_id: str, supersedes: int, reason: str, note: str, corrections: Corrections, who: str) -> str:
    """The amendment's message id, made from what it asks: the same command again is the same request."""
    values = [row.entry.model_dump(mode="json") for row in corrections.rows]
    digest = hashlib.sha256(json.dumps(values, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return derived_id("hocba-amend", record_id, supersedes, reason, note, digest, who)


def superseded(line: RecordLine) -> int:
    """The version an amendment of the listed record supersedes: its latest, once signed; while an amendment's
    version awaits its signatures, the version that one supersedes (so that the same command run again is the same
    request, and grades answers it as the first time)."""
    if line.status in SIGNED or line.version == 1:
        return line.version
    return line.version - 1


@dataclass(frozen=True)
class Amended:
    """What came of the amendment: the record, grades' answer (the new version, or the corrections it refused), and
    signing's receipt of the new version (or why it did not take it)."""

    line: RecordLine
    amended: RecordAmended
    received: AmendmentReceived | None = None
    signing_problem: str = ""


async def record_of(
    s: Session, person: Person, school: str, year: str, student_ref: str, record_id: str | None
) -> RecordLine:
    """The student's record as `hocba records list` finds it (ListRecords; grades keeps the reading in its access
    log); `Refused` when there is none, or when it is not `record_id`."""
    request = ListRecords(school_code=school, school_year=year, student_ref=student_ref, purpose=PURPOSE)
    found = await s.ask(person.signs(request), RecordList)
    if not found.records:
        raise Refused(
            f"the student has no record of school {school} for {year}: records are assembled when the principal "
            "closes the year (`hocba year close`)",
            reason="not-found",
        )
    line = found.records[0]
    if record_id is not None and line.record_id != record_id:
        raise Refused(
            f"record {record_id} is not the record of the student the files name: theirs is {line.record_id} "
            "(check --record, or the files' personal_id)",
            reason="not-found",
        )
    return line


async def amendment(  # noqa: PLR0913 - what the command was given
    s: Session,
    role: SchoolRole,
    school: str,
    year: str,
    record_id: str | None,
    reason: AmendmentReason,
    note: str,
    corrections: Corrections,
) -> Amended | None:
    """Resolve the files' student (as the imports do), find the record, ask grades to amend it, and hand the new
    version to signing as the same person. None when a row cannot be taken (said in its file's summary): then
    nothing is sent to grades."""
    if corrections.entries_file is not None and corrections.scores:
        corrections.scores = await resolve(s, corrections.scores, corrections.entries_file[1])
    if corrections.conduct_file is not None and corrections.conduct:
        corrections.conduct = await resolve(s, corrections.conduct, corrections.conduct_file[1])
    if corrections.bad_rows() or not corrections.rows:
        return None
    person = school_person(s, school, role)
    line = await record_of(s, person, school, year, corrections.rows[0].entry.student_ref, record_id)
    supersedes = superseded(line)
    command = AmendRecord(
        message_id=request_id(line.record_id, supersedes, reason, note, corrections, person.subject),
        school_code=school,
        school_year=year,
        record_id=line.record_id,
        supersedes=supersedes,
        reason_code=reason,
        note=note,
        scores=[row.entry for row in corrections.scores],
        conduct=[row.entry for row in corrections.conduct],
    )
    try:
        amended = await s.ask(person.signs(command), RecordAmended)
    except Refused as exc:
        hint = HINTS.get(exc.reason)
        said = f"grades did not amend record {line.record_id}: {exc}" + (f"; {hint}" if hint else "")
        raise Refused(said, reason=exc.reason) from None
    if amended.record is None:
        return Amended(line, amended)
    handed = RequestAmendment(
        message_id=derived_id(command.message_id, "signing"),
        record=amended.record,
        supersedes=amended.supersedes,
        reason_code=reason,
        note=note,
    )
    try:
        received = await s.ask(person.signs(handed), AmendmentReceived)
    except Refused as exc:
        return Amended(line, amended, signing_problem=f"signing {refusal(exc)}")
    except NoAnswer as exc:
        return Amended(line, amended, signing_problem=str(exc))
    return Amended(line, amended, received)


# --- the command -----------------------------------------------------------------------------------


def amend(  # noqa: PLR0913 - each option of the command is a parameter
    school: School,
    year: Year,
    reason: Annotated[AmendmentReason, typer.Option("--reason", help="Why the record is amended (its reason code).")],
    personal_id: Annotated[
        str | None, typer.Option("--personal-id", help="The student's personal ID (12 digits).")
    ] = None,
    record_id: Annotated[str | None, typer.Option("--record", help="The record's id (`hocba records list`).")] = None,
    entries: Annotated[
        Path | None,
        typer.Option(
            "--entries",
            exists=True,
            dir_okay=False,
            help="Corrected subject entries, in a class gradebook's columns (docs/formats.md).",
        ),
    ] = None,
    conduct: Annotated[
        Path | None,
        typer.Option(
            "--conduct",
            exists=True,
            dir_okay=False,
            help="Corrected conduct, absences or comments, in the homeroom file's columns (docs/formats.md).",
        ),
    ] = None,
    note: Annotated[
        str, typer.Option(callback=note_text, help="What the correction rests on (a decision, a minute), in words.")
    ] = "",
    as_: Annotated[
        Literal["principal", "school_admin"],
        typer.Option("--as", help="Who asks: the school's principal or its records administrator."),
    ] = "principal",
    data_dir: DataDir = None,
    timeout: Timeout = 60.0,
) -> None:
    """Amend a signed record: correct its entries as a new version, which is then signed again.

    The corrections are rows of the student's entries as the imports write them: subject entries in a gradebook's
    columns (--entries), conduct, absences and comments in the homeroom file's (--conduct); each row replaces the
    entry of its subject and term with its values. grades checks them by the rules of every entry (not the term
    locks), keeps each change in the entry's history with the reason, and assembles the record again as the next
    version, which names the version it supersedes, the reason and the note; signing then holds it for its
    signatures, in order. Running the same command again (after a failure) asks the same and makes nothing twice.
    Exit status 0 when signing holds the new version, 1 when nothing was amended or signing did not take it
    (saying why), 2 for a mistyped option or a file that cannot be read.
    """
    where(school, year)
    if (personal_id is None) == (record_id is None):
        fail("name the record: --personal-id of its student, or --record with its id (one of them)", 2)
    if personal_id is not None and (problem := digits_problem(personal_id, "--personal-id", PERSONAL_ID)):
        fail(problem, 2)
    if entries is None and conduct is None:
        fail("give the corrections: --entries (subject entries) and/or --conduct (homeroom entries)", 2)
    try:
        corrections = read_corrections(entries, conduct)
    except CsvShapeError as exc:
        fail(f"cannot amend: {exc}", 2)
    if not corrections.rows and not corrections.bad_rows():
        fail("nothing to amend: the files have a header row but no data rows", 1)
    only_the_records(corrections, school, year, personal_id)

    async def conversation() -> Amended | None:
        async with session(data_dir, timeout, "school") as s:
            return await amendment(s, as_, school, year, record_id, reason, note, corrections)

    outcome = None if corrections.bad_rows() else run(conversation())
    if outcome is None:
        print_rows(corrections)
        fail(
            f"nothing was amended: {corrections.bad_rows()} row(s) cannot be taken, as listed above; correct them and "
            "run the command again"
        )
    if outcome.amended.rejected:
        rejected_rows(corrections, outcome.amended)
        print_rows(corrections)
        fail(
            f"nothing was amended: grades refused {len(outcome.amended.rejected)} correction(s), as listed above; "
            "correct them and run the command again"
        )
    told(outcome, school, year, personal_id)


def rejected_rows(corrections: Corrections, amended: RecordAmended) -> None:
    """grades' refused corrections as bad rows of their files, in the files' words."""
    for rejection in amended.rejected:
        file, rows = (
            (corrections.entries_file, corrections.scores)
            if rejection.part == "scores"
            else (corrections.conduct_file, corrections.conduct)
        )
        if file is not None and rejection.index < len(rows):
            file[1].bad[rows[rejection.index].number] = in_column_words(rejection.reason, FIELD_COLUMNS)


def print_rows(corrections: Corrections) -> None:
    """What to know about each file, and its bad rows with their numbers."""
    for name, summary, _ in corrections.files():
        for note in summary.notes:
            console.print(f"[yellow]note[/yellow]: {escape(note)}", soft_wrap=True)
        if summary.bad:
            console.print(f"{escape(name)}:", soft_wrap=True)
            print_bad_rows(summary.bad)


def told(outcome: Amended, school: str, year: str, personal_id: str | None) -> None:
    """What happened, and the steps that follow: the new version is reviewed and signed as every record is."""
    line, amended = outcome.line, outcome.amended
    record = amended.record
    assert record is not None  # refused corrections are told before
    student = line.student_name or line.masked_personal_id
    changed = ", ".join(amended.changed) or "nothing"
    console.print(
        f"[green]record {escape(record.record_id)} amended[/green]: version {record.version} supersedes version "
        f"{amended.supersedes} ({amended.reason_code}); student {escape(student)}, class {escape(line.class_name)}; "
        f"{amended.corrected} entr{'y' if amended.corrected == 1 else 'ies'} corrected; the record's "
        f"{escape(changed)} changed",
        soft_wrap=True,
    )
    if outcome.received is None:
        fail(
            f"grades made version {record.version}, but signing did not take it: {outcome.signing_problem}; run the "
            "same command again once signing runs: grades answers it as before and hands the same version on",
        )
    which = f"--personal-id {personal_id}" if personal_id else f"--class {line.class_name}"
    steps = [
        f"the class's homeroom teacher reviews class {line.class_name} again (the amended record changed it since "
        f"its review) and confirms: hocba review confirm --school {school} --year {year} --class {line.class_name}",
        f"the homeroom teacher signs: hocba sign --school {school} --year {year} --as homeroom_teacher --class "
        f"{line.class_name}",
        f"the principal signs and seals: hocba sign --school {school} --year {year}",
        f"the archive keeps version {record.version} beside version {amended.supersedes}, and the ministry receives "
        f"it: hocba records list --school {school} --year {year} {which}",
    ]
    console.print(
        f"signing holds version {record.version} for its signatures, in order. Next:", soft_wrap=True, markup=False
    )
    for number, step in enumerate(steps, start=1):
        console.print(f"  {number}. {step}", soft_wrap=True, markup=False, highlight=False)
