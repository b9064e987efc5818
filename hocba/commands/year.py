"""`hocba term` and `hocba year`: the principal's steps at the end of a term and of the year.

`hocba term close` locks a term's entries (the principal, or the school's records administrator);
`hocba term reopen` unlocks it for corrections, with the reason (the principal); `hocba year close`
closes the school year and assembles every student's record from the locked entries (the principal),
with progress class by class. Each step is asked of grades with the person's actor token for that one
message, and grades' answer is told: what changed, or why nothing did (a non-zero exit).

Who acts is the school's principal (or records administrator) as the staff register enrols them
(`hocba pki enrol`), or, for a school not in the register, as the development issuer names them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hocba.commands import (
    ISSUER_NOTE,
    DataDir,
    Session,
    Timeout,
    digits_problem,
    fail,
    run,
    school_year_problem,
    session,
)
from hocba.console import console
from hocba.staff import Person, StaffRegister
from hocba.watch import Watch
from shared.contracts.grades import (
    CloseTerm,
    CloseYear,
    KeptSigned,
    LeftOut,
    ReopenTerm,
    TermChanged,
    YearClosed,
    YearClosing,
)
from shared.contracts.limits import SCHOOL_CODE, WORDS
from shared.errors import Refused

term_app = typer.Typer(
    help=f"Terms: close a term (its entries are locked), reopen it for corrections. {ISSUER_NOTE}",
    no_args_is_help=True,
)
year_app = typer.Typer(
    help=f"The school year: close it and assemble every student's record. {ISSUER_NOTE}", no_args_is_help=True
)

#: Who closes a term: the principal, or the school's records administrator.
Closer = Literal["principal", "school_admin"]
#: Who acts for a school in these steps.
SchoolRole = Literal["principal", "school_admin"]
#: Students done so far and in all, as a closing year tells them.
OnProgress = Callable[[int, int], None]

School = Annotated[str, typer.Option("--school", help="School code (8 digits), e.g. 79007000.")]
Year = Annotated[str, typer.Option("--year", help="School year, e.g. 2025-2026.")]
TermNumber = Annotated[int, typer.Option("--term", min=1, max=2, help="1: term I; 2: term II (in primary, the year).")]
#: What grades says of a year whose term is open: "term 1 and 2 of 2025-2026 is still open in school ...".
OPEN_TERMS = re.compile(r"term ([12](?: and [12])?) of \S+ is still open")

#: Why grades left students out of a year's close, and what to do about it.
LEFT_OUT = {
    "no-rule-set": "no rule set of this release covers their grade: their records cannot be computed",
    "combination": "their electives or learning topics are not a combination their grade allows: correct them in "
    "the roster (`hocba identity import`), then close the year again",
    "unknown-student": "identity does not know them: import their roster rows (`hocba identity import`), then close "
    "the year again",
}


def where(school: str, year: str) -> None:
    """End the command with a usage error (exit 2) when the school code or the year is not written as expected."""
    if problem := digits_problem(school, "--school", SCHOOL_CODE):
        fail(problem, 2)
    if problem := school_year_problem(year):
        fail(f"--year {problem}", 2)


def school_person(s: Session, school: str, role: SchoolRole) -> Person:
    """The school's principal or records administrator: as the staff register enrols them when it does, else as
    the development issuer names them (`hocba.staff.Staff`)."""
    register = StaffRegister.configured(s.data_dir)
    member = next((m for m in register.members(school) if m.role == role), None)
    if member is not None:
        return s.staff.enrolled(member)
    return s.staff.principal(school) if role == "principal" else s.staff.school_admin(school)


def with_hint(exc: Refused, school: str, year: str) -> Refused:
    """grades' refusal with what the person can do about it."""
    hint = {
        "not-found": f"check --school and --year, or import the school's roster for {year} first (`hocba identity "
        f"import --school-year {year}`)",
        "forbidden": f"the step needs the principal of school {school} (closing a term: or its records administrator)",
    }.get(exc.reason)
    return Refused(f"{exc}; {hint}" if hint else str(exc), reason=exc.reason)


async def term_step(
    data_dir: Path | None, timeout: float, school: str, year: str, role: SchoolRole, command: CloseTerm | ReopenTerm
) -> TermChanged:
    async with session(data_dir, timeout, "school") as s:
        try:
            return await s.ask(school_person(s, school, role).signs(command), TermChanged)
        except Refused as exc:
            raise with_hint(exc, school, year) from None


@term_app.command("close")
def close_term(
    school: School,
    year: Year,
    term: TermNumber,
    as_: Annotated[Closer, typer.Option("--as", help="Who closes it.")] = "principal",
    data_dir: DataDir = None,
    timeout: Timeout = 30.0,
) -> None:
    """Close a term: its entries are locked, and a correction needs the principal to reopen it.

    Exit status 0 when the term was closed now, 1 when it was closed already or grades refused (saying why),
    2 for a mistyped option.
    """
    where(school, year)
    command = CloseTerm(school_code=school, school_year=year, term=term)
    changed = run(term_step(data_dir, timeout, school, year, as_, command))
    if changed.already:
        fail(f"term {term} of {year} was already closed in school {school}: nothing changed")
    console.print(
        f"[green]term {term} of {escape(year)} is closed in school {escape(school)}[/green]: its entries are locked; "
        f"a correction now needs the principal to reopen it (`hocba term reopen`)"
    )


def reason_text(value: str) -> str:
    """Why a term is reopened: required, and at most what the command carries."""
    value = value.strip()
    if not value:
        raise typer.BadParameter("say why the term is reopened (it is kept in the term's log)")
    if len(value) > WORDS:
        raise typer.BadParameter(f"at most {WORDS} characters (this one has {len(value)})")
    return value


@term_app.command("reopen")
def reopen_term(
    school: School,
    year: Year,
    term: TermNumber,
    reason: Annotated[
        str, typer.Option(callback=reason_text, help="Why the term is reopened; kept in the term's log.")
    ],
    data_dir: DataDir = None,
    timeout: Timeout = 30.0,
) -> None:
    """Reopen a closed term for corrections (the principal): each change then needs its own reason.

    After the year's close it reopens the year too, to complete records nobody has signed yet (an incomplete
    record found at review); a record already signed (by its homeroom teacher, or signed and sealed) is kept as
    it is and corrected with `hocba amend` once signed and sealed.

    Exit status 0 when the term was reopened now, 1 when it was not closed or grades refused (saying why), 2 for
    a mistyped option.
    """
    where(school, year)
    command = ReopenTerm(school_code=school, school_year=year, term=term, reason=reason)
    changed = run(term_step(data_dir, timeout, school, year, "principal", command))
    if changed.already:
        fail(f"term {term} of {year} is not closed in school {school}: nothing to reopen")
    console.print(
        f"[green]term {term} of {escape(year)} is open again in school {escape(school)}[/green]: changes to its "
        f"entries need a reason (`--reason` of the imports); close it again with `hocba term close` when done, "
        "then `hocba year close` if the year had been closed (records nobody has signed yet are "
        "assembled again; their classes are reviewed again before they are signed)"
    )


# --- the year ------------------------------------------------------------------------------------


def year_refusal(exc: Refused, school: str, year: str) -> Refused:
    """grades' refusal of a year's close, with what to do: an open term names the command that closes it."""
    if found := OPEN_TERMS.search(str(exc)):
        terms = found.group(1).split(" and ")
        closes = " and ".join(f"`hocba term close --school {school} --year {year} --term {t}`" for t in terms)
        state = "is not closed" if len(terms) == 1 else "are not closed"
        return Refused(
            f"the year was not closed: term {found.group(1)} {state} in school {school}: close it with {closes}, "
            "then close the year",
            reason=exc.reason,
        )
    return with_hint(exc, school, year)


async def follow_close(s: Session, command: CloseYear, on_progress: OnProgress) -> YearClosed:
    """Ask grades to close the year and follow its progress until it answers what it did (within the session's
    timeout: `NoAnswer` otherwise)."""
    watch = Watch(s.settings.amqp_url, s.settings.names())

    def progress(event: YearClosing) -> None:
        if event.source_message_id == command.message_id:
            on_progress(event.students_done, event.students_total)

    watch.on(YearClosing, progress)
    await watch.start()
    try:
        return await s.ask(command, YearClosed)
    finally:
        await watch.stop()


def left_out_line(group: LeftOut) -> str:
    students = "student" if group.count == 1 else "students"
    why = LEFT_OUT.get(group.reason, "")
    return f"{group.count} {students} of class {group.class_name} ({group.reason})" + (f": {why}" if why else "")


#: Record ids named per class when a close kept records as signed; the others are counted.
KEPT_NAMED = 10


def kept_signed_lines(kept: list[KeptSigned]) -> list[str]:
    """Per class, the records a close kept as their homeroom teacher signed them (with their ids), and what to do."""
    by_class: dict[str, list[str]] = defaultdict(list)
    for record in kept:
        by_class[record.class_name].append(record.record_id)
    lines = []
    for class_name, ids in sorted(by_class.items()):
        named = ", ".join(ids[:KEPT_NAMED]) + (f" and {len(ids) - KEPT_NAMED} more" if len(ids) > KEPT_NAMED else "")
        lines.append(
            f"class {class_name}: {len(ids)} record(s) kept as signed by their homeroom teacher: a change to them is "
            f"made by amendment (`hocba amend`) once the principal has signed and sealed them ({named})"
        )
    return lines


@year_app.command("close")
def close_year(
    school: School,
    year: Year,
    class_name: Annotated[
        str | None,
        typer.Option("--class", help="Assemble this class's records only (the year still closes for the school)."),
    ] = None,
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the close to finish.")] = 1800.0,
) -> None:
    """Close the school year (the principal) and assemble every student's record, class by class.

    Both terms must be closed first (`hocba term close`). The year closes for the whole school: no entry
    changes after it (a correction is then an amendment). With --class only that class's records are
    assembled now; closing again assembles the others, and nothing is stored twice. Closed again after a
    term was reopened, a record its homeroom teacher already signed is kept as signed (said per class): it
    is corrected by amendment once signed and sealed. Exit status 0 when every student's record was
    assembled (records kept as signed included), 1 when some students were left out (each group said,
    with why) or grades refused, 2 for a mistyped option.
    """
    where(school, year)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bars:
        scope = f"class {class_name} of school {school}" if class_name else f"school {school}"
        task = bars.add_task(escape(f"closing {year} in {scope}"), total=None)

        def on_progress(done: int, total: int) -> None:
            bars.update(task, completed=done, total=total)

        async def conversation() -> YearClosed:
            async with session(data_dir, timeout, "school") as s:
                command = school_person(s, school, "principal").signs(
                    CloseYear(school_code=school, school_year=year, class_name=class_name)
                )
                try:
                    return await follow_close(s, command, on_progress)
                except Refused as exc:
                    raise year_refusal(exc, school, year) from None

        closed = run(conversation())
        bars.update(task, completed=closed.students, total=closed.students or 1)
    show_closed(closed, scope)


def show_closed(closed: YearClosed, scope: str) -> None:
    """The close's outcome, with the records kept as signed by class; exits 1 when students were left out, saying who
    and why."""
    if closed.already:
        console.print(
            f"{escape(closed.school_year)} was already closed in school {escape(closed.school_code)}: its records were "
            "assembled again from the same locked entries, and nothing was stored twice"
        )
    left_out = sum(group.count for group in closed.unassembled)
    if not closed.assembled:
        for group in closed.unassembled:
            console.print(f"  left out: {escape(left_out_line(group))}", soft_wrap=True)
        fail(f"no record was assembled: every one of the {closed.students} students of {scope} was left out (above)")
    console.print(
        f"[green]{escape(closed.school_year)} is closed in {escape(scope)}[/green]: {closed.assembled:,} records "
        f"assembled ({closed.new:,} new) of {closed.students:,} students; they now await their signatures "
        "(`hocba sign`)"
    )
    for line in kept_signed_lines(closed.kept_signed):
        console.print(f"  kept: {escape(line)}", soft_wrap=True)
    if left_out:
        for group in closed.unassembled:
            console.print(f"  left out: {escape(left_out_line(group))}", soft_wrap=True)
        fail(f"{left_out} student(s) of {scope} have no record yet (above)")
