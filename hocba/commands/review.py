"""`hocba review`: a school year's classes before they are signed, and the homeroom teacher's confirmation.

The review puts together what two services hold: signing (the record versions it will sign, those that are
incomplete and never signed as they are, how many the homeroom teacher has signed, where each class's review stands
and what changed since it was confirmed) and grades (the students of each class without a record, and the records
whose identity fields disagree with identity's register today, which grades looks up on its own behalf). `hocba review confirm` shows
the class's review, then confirms exactly what it showed: signing signs a class only as its homeroom teacher
confirmed it.

Who asks is found in the staff register (`hocba pki enrol`): the class's homeroom teacher with --class, the
school's principal for every class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer
from rich.markup import escape

from hocba.commands import DataDir, Purpose, Session, Timeout, fail, refusal, run, school_year_problem, session
from hocba.console import console
from hocba.staff import NotEnrolled, StaffMember, StaffRegister
from shared.contracts.grades import ClassIdentities, CompareIdentities, IdentityComparison, StudentFinding
from shared.contracts.signing import (
    BatchCompleted,
    ClassReview,
    ClassReviews,
    ConfirmReview,
    MissingEntry,
    RecordChange,
    ReviewClasses,
    ReviewConfirmed,
)
from shared.errors import NoAnswer, Refused

app = typer.Typer(
    help="Review a school year's classes before they are signed; the homeroom teacher confirms their class.",
    no_args_is_help=False,
    invoke_without_command=True,
)

School = Annotated[str | None, typer.Option("--school", help="School code, e.g. 79007000.")]
Year = Annotated[str | None, typer.Option("--year", help="School year, e.g. 2025-2026.")]
TERM_NAMES = {1: "term I", 2: "term II"}
STATUS_WORDS = {"not-reviewed": "not reviewed", "reviewed": "reviewed", "changed-since-review": "changed since review"}


@dataclass(frozen=True)
class Findings:
    """A school year's review: signing's part, and grades' (None when it could not be had, with why)."""

    signing: ClassReviews
    identities: IdentityComparison | None
    identities_problem: str = ""

    def classes(self) -> list[str]:
        named = {c.class_name for c in self.signing.classes}
        named |= {c.class_name for c in (self.identities.classes if self.identities else [])}
        return sorted(named)

    def signing_of(self, class_name: str) -> ClassReview | None:
        return next((c for c in self.signing.classes if c.class_name == class_name), None)

    def identities_of(self, class_name: str) -> ClassIdentities | None:
        classes = self.identities.classes if self.identities else []
        return next((c for c in classes if c.class_name == class_name), None)


async def findings(
    s: Session, member: StaffMember, school: str, year: str, class_name: str | None, purpose: str
) -> Findings:
    """Ask signing and grades for the review, as `member`; grades' part is told as a problem when it cannot be had."""
    person = s.staff.enrolled(member)
    reviews = await s.ask(
        person.signs(ReviewClasses(school_code=school, school_year=year, class_name=class_name)), ClassReviews
    )
    compare = CompareIdentities(school_code=school, school_year=year, class_name=class_name, purpose=purpose)
    try:
        identities = await s.ask(person.signs(compare), IdentityComparison)
    except Refused as exc:
        return Findings(reviews, None, f"grades {refusal(exc)}")
    except NoAnswer as exc:
        return Findings(reviews, None, f"grades gave no answer: {exc}")
    return Findings(reviews, identities)


def missing_words(entry: MissingEntry) -> str:
    """A missing entry in words: "Toán, term I", "homeroom entries (conduct, absences, comment), term II"."""
    what = entry.subject or (
        "homeroom entries (conduct, absences, comment)" if entry.entry == "homeroom" else entry.entry
    )
    return f"{what}, {TERM_NAMES.get(entry.term, f'term {entry.term}')}" if entry.term is not None else what


def change_words(change: RecordChange) -> str:
    if change.reviewed_version is None:
        return f"{change.record_id} v{change.version} added"
    if change.version is None:
        return f"{change.record_id} v{change.reviewed_version} no longer held"
    if change.version != change.reviewed_version:
        return f"{change.record_id} v{change.reviewed_version} → v{change.version}"
    return f"{change.record_id} v{change.version}: its content differs from the one reviewed"


def student_words(finding: StudentFinding | None, record_id: str) -> str:
    """Who a record is of, as the register names them ("Nguyễn Văn An (rec-…)"), or the record id alone."""
    return f"{finding.full_name} ({record_id})" if finding and finding.full_name else record_id


def review_lines(class_name: str, review: ClassReview | None, identities: ClassIdentities | None) -> list[str]:
    """One class's review as lines for the terminal (plain text: escaped when printed)."""
    by_record = {f.record_id: f for f in (identities.findings if identities else []) if f.record_id}
    records = review.records if review else 0
    enrolled = f", {identities.students} students enrolled" if identities else ""
    if review is None:
        standing = "signing holds no record of it (is the year closed for it?)"
    elif review.status == "not-reviewed":
        standing = "not reviewed"
    else:
        when = f"{review.reviewed_at:%Y-%m-%d %H:%M} UTC" if review.reviewed_at else "?"
        standing = f"{STATUS_WORDS[review.status]} (confirmed by {review.reviewed_by} at {when})"
    lines = [f"class {class_name}: {records} record(s){enrolled}; review: {standing}"]
    if review is not None:
        lines.append(f"  signed by the homeroom teacher: {review.homeroom_signed} of {review.records}")
    for incomplete in review.incomplete if review else []:
        entries = "; ".join(missing_words(m) for m in incomplete.missing) or "entries not named"
        lines.append(
            f"  incomplete, never signed as it is: {student_words(by_record.get(incomplete.record_id), incomplete.record_id)}: {entries}"
        )
    for finding in identities.findings if identities else []:
        if finding.record_id is None:
            lines.append(f"  without a record: {finding.full_name or finding.student_ref}")
        elif not finding.in_register:
            lines.append(f"  not in the identity register any more: {student_words(finding, finding.record_id)}")
        for difference in finding.differences:
            lines.append(
                f"  identity differs from the register: {student_words(finding, finding.record_id or '')}: "
                f"{difference.field} is '{difference.in_record}' in the record, '{difference.in_register}' in the register"
            )
    if review and review.changes:
        lines.append(f"  changed since the last review: {'; '.join(change_words(c) for c in review.changes)}")
    return lines


def print_held_back(outcome: BatchCompleted) -> bool:
    """What a signing batch did not sign, and why: classes waiting for their review, incomplete records; whether
    there was any."""
    for waiting in outcome.classes_waiting:
        console.print(
            f"[yellow]class {escape(waiting.class_name)} waits[/yellow] ({waiting.records} record(s)): {escape(waiting.reason)}",
            soft_wrap=True,
        )
    for refused in outcome.refused:
        entries = "; ".join(missing_words(m) for m in refused.missing) or "entries not named"
        console.print(
            f"[yellow]not signed, incomplete[/yellow]: {escape(refused.record_id)} v{refused.version} of class "
            f"{escape(refused.class_name or '?')}: {escape(entries)}",
            soft_wrap=True,
        )
    if outcome.classes_waiting:
        console.print(
            "a waiting class's homeroom teacher reviews it and confirms: "
            "`hocba review confirm --school S --year Y --class C`",
            soft_wrap=True,
            markup=False,
        )
    if outcome.refused:
        console.print(
            "an incomplete record is never signed as it is: it waits for a complete version (an amendment with the "
            "missing entries), which its class reviews and confirms",
            soft_wrap=True,
            markup=False,
        )
    return bool(outcome.classes_waiting or outcome.refused)


def print_findings(found: Findings) -> None:
    for class_name in found.classes():
        for line in review_lines(class_name, found.signing_of(class_name), found.identities_of(class_name)):
            console.print(escape(line), soft_wrap=True)
    if found.identities_problem:
        console.print(
            f"[yellow]the records could not be set against the identity register[/yellow]: {escape(found.identities_problem)}",
            soft_wrap=True,
        )


def required(school: str | None, year: str | None) -> tuple[str, str]:
    if not school or not year:
        fail("name the school and the school year: --school CODE --year 2025-2026", 2)
    if problem := school_year_problem(year):
        fail(f"--year {problem}", 2)
    return school, year


def nothing_held(school: str, year: str, class_name: str | None) -> str:
    scope = f"class {class_name} of school {school}" if class_name else f"school {school}"
    return (
        f"nothing to review: signing holds no record of {scope} for {year}. The year may not be closed yet (grades "
        f"assembles the records when the principal closes the year, after both terms), or {scope} has no students "
        f"enrolled for {year} (check the codes)"
    )


def enrolled_reviewer(data_dir, school: str, class_name: str | None) -> StaffMember:
    try:
        return StaffRegister.configured(data_dir).lead(school, class_name)
    except NotEnrolled as exc:
        fail(str(exc), 2)


@app.callback()
def review(  # noqa: PLR0913 - each option of the command is a parameter
    ctx: typer.Context,
    school: School = None,
    year: Year = None,
    class_name: Annotated[
        str | None, typer.Option("--class", help="One class (its homeroom teacher reviews it).")
    ] = None,
    purpose: Purpose = "review before signing",
    timeout: Timeout = 60.0,
    data_dir: DataDir = None,
) -> None:
    """Show each class's incomplete records, students without a record, identity disagreements, changes.

    Per class: how many of its records the homeroom teacher has signed, the records that are incomplete and the
    entries they lack, students without a record, identity fields that disagree with the identity register, and
    what changed since the class's last review.
    """
    if ctx.invoked_subcommand is not None:
        return
    school, year = required(school, year)
    member = enrolled_reviewer(data_dir, school, class_name)

    async def conversation() -> Findings:
        async with session(data_dir, timeout, "school") as s:
            return await findings(s, member, school, year, class_name, purpose)

    found = run(conversation())
    if not found.signing.classes:
        fail(nothing_held(school, year, class_name))
    print_findings(found)
    waiting = [c.class_name for c in found.signing.classes if c.status != "reviewed"]
    if waiting:
        console.print(
            f"{len(waiting)} class(es) wait for their homeroom teacher's confirmation before they are signed: "
            f"{', '.join(waiting)} (`hocba review confirm --school {school} --year {year} --class C`)",
            soft_wrap=True,
            markup=False,
        )
    if found.identities_problem:
        raise typer.Exit(1)


@app.command("confirm")
def confirm(
    school: Annotated[str, typer.Option("--school", help="School code, e.g. 79007000.")],
    year: Annotated[str, typer.Option("--year", help="School year, e.g. 2025-2026.")],
    class_name: Annotated[str, typer.Option("--class", help="Your class.")],
    purpose: Purpose = "review before signing",
    timeout: Timeout = 60.0,
    data_dir: DataDir = None,
) -> None:
    """As the class's homeroom teacher: show the class's review, then confirm what it showed.

    The class can then be signed. A class that changes afterwards is reviewed and confirmed again.
    """
    school, year = required(school, year)
    member = enrolled_reviewer(data_dir, school, class_name)

    async def conversation() -> tuple[Findings, ReviewConfirmed | None]:
        async with session(data_dir, timeout, "school") as s:
            found = await findings(s, member, school, year, class_name, purpose)
            shown = found.signing_of(class_name)
            if shown is None or found.identities_problem:
                return found, None
            asked = ConfirmReview(
                school_code=school, school_year=year, class_name=class_name, reviewed=shown.fingerprint
            )
            return found, await s.ask(s.staff.enrolled(member).signs(asked), ReviewConfirmed)

    found, confirmed = run(conversation())
    if found.signing_of(class_name) is None:
        fail(nothing_held(school, year, class_name))
    print_findings(found)
    if confirmed is None:
        fail(
            "not confirmed: the review is not complete without the identity register; confirm again once grades "
            "and identity answer"
        )
    incomplete = (
        f"; {confirmed.incomplete} of them incomplete and never signed as they are, until a complete version is "
        "reviewed"
        if confirmed.incomplete
        else ""
    )
    console.print(
        f"[green]confirmed the review of class {escape(class_name)}[/green]: {confirmed.records} record(s){incomplete}. "
        f"The class can be signed: `hocba sign --school {school} --year {year} --as homeroom_teacher --class "
        f"{escape(class_name)}`",
        soft_wrap=True,
    )
