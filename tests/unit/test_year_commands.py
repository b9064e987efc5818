"""`hocba term`, `hocba year`, `hocba records list` and `hocba grades history` against a stand-in stack: what each
sends (with whose token, as which broker user) and what it tells the person: the outcome in one line, progress on the
year's close, and a sentence with a non-zero exit when nothing they asked for happened.

The broker is replaced as in test_cli_output.py: the session connects to nothing, each request is answered with
what the test gave for its type (a reply, a refusal, or a function of the request), and announcements are followed
through a stand-in `Watch` that the test feeds.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from hocba.cli import app
from hocba.commands import year as year_commands
from hocba.keys import dev_issuer
from shared.auth import Actor, audience_of, verify_token
from shared.contracts.base import Message
from shared.contracts.grades import (
    CloseTerm,
    CloseYear,
    EntryChange,
    EntryChanges,
    EntryHistory,
    KeptSigned,
    LeftOut,
    ListRecords,
    RecordAssessments,
    RecordLine,
    RecordList,
    ReopenTerm,
    TermChanged,
    YearClosed,
    YearClosing,
)
from shared.contracts.identity import FindStudents, StudentIdentity, StudentMatches, StudentSnapshot
from shared.errors import Refused
from tests.unit.command_stack import FakeStack, faked_stack, logged_in_roles

SCHOOL = "79007000"
YEAR = "2025-2026"
PID = "079214000001"
#: A name that, printed as markup, would show a green verdict the command never gave.
VERDICT = "[green]✓ VERIFIED[/green]"



class FakeWatch:
    """Follows nothing on a broker: keeps the handlers, so a test can announce to them."""

    latest: FakeWatch | None = None

    def __init__(self, amqp_url: str, names: Any) -> None:
        self.handlers: dict[type[Message], Callable[[Any], None]] = {}
        self.started = self.stopped = False
        FakeWatch.latest = self

    def on(self, message: type[Message], handler: Callable[[Any], None], view: Any = None) -> None:
        self.handlers[message] = handler

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def announce(self, event: Message) -> None:
        self.handlers[type(event)](event)


@pytest.fixture
def roles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The broker users the commands log in as, in order."""
    return logged_in_roles(monkeypatch)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, roles: list[str]) -> FakeStack:
    fake = faked_stack(monkeypatch)
    monkeypatch.setattr(year_commands, "Watch", FakeWatch)
    return fake


@pytest.fixture
def hocba(tmp_path: Path) -> Callable[..., Result]:
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args), env={"HOCBA_DATA_DIR": str(tmp_path), "COLUMNS": "240"})

    return run


def actor_of(message: Message, data_dir: Path) -> Actor:
    """Who sent `message`, as its service verifies the token with the development issuer's keys."""
    issuer, _ = dev_issuer(data_dir)
    return verify_token(message, issuer.public_keys(audience_of(message)))


def said(text: str) -> str:
    """Output with the terminal's line breaks undone."""
    return " ".join(text.split())


def term_changed(message: CloseTerm | ReopenTerm, state: str, already: bool = False) -> TermChanged:
    return TermChanged(
        school_code=message.school_code,
        school_year=message.school_year,
        term=message.term,
        state=state,
        source_message_id=message.message_id,
        already=already,
    )


# --- hocba term ----------------------------------------------------------------------------------


def test_closing_a_term_sends_the_principals_close_and_says_the_term_is_locked(stack, hocba, roles, tmp_path):
    stack.answers(CloseTerm, lambda m: term_changed(m, "closed"))
    result = hocba("term", "close", "--school", SCHOOL, "--year", YEAR, "--term", "1")
    assert result.exit_code == 0, result.output
    assert "term 1 of 2025-2026 is closed in school 79007000: its entries are locked" in said(result.stdout)
    [close] = stack.of(CloseTerm)
    assert (close.school_code, close.school_year, close.term) == (SCHOOL, YEAR, 1)
    closer = actor_of(close, tmp_path)
    assert (closer.roles, closer.school_code) == ({"principal"}, SCHOOL)
    assert roles == ["school"], "the school's tools' broker login"


def test_the_records_administrator_may_close_a_term_too(stack, hocba, tmp_path):
    stack.answers(CloseTerm, lambda m: term_changed(m, "closed"))
    assert (
        hocba("term", "close", "--school", SCHOOL, "--year", YEAR, "--term", "2", "--as", "school_admin").exit_code == 0
    )
    assert actor_of(stack.of(CloseTerm)[0], tmp_path).roles == {"school_admin"}


def test_a_term_closed_already_is_said_and_exits_non_zero(stack, hocba):
    stack.answers(CloseTerm, lambda m: term_changed(m, "closed", already=True))
    result = hocba("term", "close", "--school", SCHOOL, "--year", YEAR, "--term", "1")
    assert result.exit_code == 1
    assert "term 1 of 2025-2026 was already closed in school 79007000: nothing changed" in said(result.stderr)


def test_an_unknown_school_is_refused_with_what_to_check(stack, hocba):
    stack.answers(CloseTerm, Refused("no student is enrolled in school 79009999 for 2025-2026", reason="not-found"))
    result = hocba("term", "close", "--school", "79009999", "--year", YEAR, "--term", "1")
    assert result.exit_code == 1
    assert said(result.stderr) == (
        "refused (not-found): no student is enrolled in school 79009999 for 2025-2026; check --school and --year, or "
        "import the school's roster for 2025-2026 first (`hocba identity import --school-year 2025-2026`)"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--school", "7900700", "--year", YEAR, "--term", "1"), "--school '7900700' has 7 digits, not 8"),
        (("--school", SCHOOL, "--year", "2025-2027", "--term", "1"), "the second year follows the first"),
        (("--school", SCHOOL, "--year", YEAR, "--term", "3"), "3 is not in the range 1<=x<=2"),
    ],
)
def test_a_mistyped_option_is_a_usage_error_and_sends_nothing(stack, hocba, args, expected):
    result = hocba("term", "close", *args)
    assert result.exit_code == 2 and expected in said(result.output)
    assert stack.sent == []


def test_reopening_a_term_needs_a_reason_and_carries_it(stack, hocba, tmp_path):
    stack.answers(ReopenTerm, lambda m: term_changed(m, "open"))
    without = hocba("term", "reopen", "--school", SCHOOL, "--year", YEAR, "--term", "1", "--reason", "  ")
    assert without.exit_code == 2 and "say why the term is reopened" in said(without.output)
    result = hocba("term", "reopen", "--school", SCHOOL, "--year", YEAR, "--term", "1", "--reason", "nhập sai điểm")
    assert result.exit_code == 0, result.output
    assert "term 1 of 2025-2026 is open again in school 79007000" in said(result.stdout)
    [reopen] = stack.of(ReopenTerm)
    assert reopen.reason == "nhập sai điểm" and actor_of(reopen, tmp_path).roles == {"principal"}


def test_reopening_a_term_that_is_not_closed_says_so_and_exits_non_zero(stack, hocba):
    stack.answers(ReopenTerm, lambda m: term_changed(m, "open", already=True))
    result = hocba("term", "reopen", "--school", SCHOOL, "--year", YEAR, "--term", "2", "--reason", "x")
    assert result.exit_code == 1
    assert "term 2 of 2025-2026 is not closed in school 79007000: nothing to reopen" in said(result.stderr)


# --- hocba year close ----------------------------------------------------------------------------


def closing(
    unassembled: list[LeftOut] | None = None,
    assembled: int = 3,
    students: int = 3,
    kept_signed: list[KeptSigned] | None = None,
) -> Callable:
    """grades closing the year: it tells its progress (one class, then the other), then answers what it did."""

    def answer(close: CloseYear) -> YearClosed:
        watch = FakeWatch.latest
        assert watch is not None and watch.started and not watch.stopped, "the progress is followed before asking"
        for done, class_name in ((2, "6A1"), (3, "6A2")):
            common = {"school_code": SCHOOL, "school_year": YEAR, "class_name": class_name, "assembled": done}
            watch.announce(
                YearClosing(source_message_id=close.message_id, students_done=done, students_total=3, **common)
            )
            watch.announce(
                YearClosing(source_message_id="another close", students_done=99, students_total=99, **common)
            )
        return YearClosed(
            school_code=SCHOOL,
            school_year=YEAR,
            class_name=close.class_name,
            source_message_id=close.message_id,
            students=students,
            assembled=assembled,
            new=assembled,
            unassembled=unassembled or [],
            kept_signed=kept_signed or [],
        )

    return answer


def test_closing_the_year_follows_its_progress_and_says_what_was_assembled(stack, hocba, roles, tmp_path):
    stack.answers(CloseYear, closing())
    result = hocba("year", "close", "--school", SCHOOL, "--year", YEAR)
    assert result.exit_code == 0, result.output
    assert "2025-2026 is closed in school 79007000: 3 records assembled (3 new) of 3 students" in said(result.stdout)
    assert "3/3" in result.stdout, "the progress bar ends at the students of the close"
    [close] = stack.of(CloseYear)
    assert close.class_name is None and actor_of(close, tmp_path).roles == {"principal"}
    assert FakeWatch.latest is not None and FakeWatch.latest.stopped
    assert roles == ["school"]


def test_closing_one_class_says_so(stack, hocba):
    stack.answers(CloseYear, closing(assembled=1, students=1))
    result = hocba("year", "close", "--school", SCHOOL, "--year", YEAR, "--class", "6A2")
    assert result.exit_code == 0, result.output
    assert stack.of(CloseYear)[0].class_name == "6A2"
    assert "2025-2026 is closed in class 6A2 of school 79007000: 1 records assembled" in said(result.stdout)


def test_students_left_out_are_told_by_class_with_why_and_what_to_do(stack, hocba):
    combination = LeftOut(reason="combination", class_name="10A1", count=2, student_refs=["r1", "r2"])
    stack.answers(CloseYear, closing([combination], assembled=1))
    result = hocba("year", "close", "--school", SCHOOL, "--year", YEAR)
    assert result.exit_code == 1
    assert "1 records assembled (1 new) of 3 students" in said(result.stdout)
    assert (
        "left out: 2 students of class 10A1 (combination): their electives or learning topics are not a combination "
        "their grade allows: correct them in the roster (`hocba identity import`), then close the year again"
    ) in said(result.stdout)
    assert "2 student(s) of school 79007000 have no record yet" in said(result.stderr)


def test_records_kept_as_their_homeroom_teacher_signed_them_are_told_by_class_and_the_close_succeeds(stack, hocba):
    kept = [
        KeptSigned(record_id=f"rec-{n}", version=1, class_name=class_name, roles=["homeroom_teacher"])
        for n, class_name in ((1, "6A1"), (2, "6A1"), (3, "6A2"))
    ]
    stack.answers(CloseYear, closing(kept_signed=kept))
    result = hocba("year", "close", "--school", SCHOOL, "--year", YEAR)
    assert result.exit_code == 0, "the year closed; the records stay as signed"
    out = said(result.stdout)
    assert (
        "kept: class 6A1: 2 record(s) kept as signed by their homeroom teacher: a change to them is made by amendment "
        "(`hocba amend`) once the principal has signed and sealed them (rec-1, rec-2)"
    ) in out
    assert "kept: class 6A2: 1 record(s) kept as signed by their homeroom teacher" in out and "(rec-3)" in out


def test_a_close_that_kept_nothing_as_signed_says_nothing_of_it(stack, hocba):
    stack.answers(CloseYear, closing())
    assert "kept" not in hocba("year", "close", "--school", SCHOOL, "--year", YEAR).stdout


def test_a_year_with_an_open_term_is_refused_naming_the_command_that_closes_it(stack, hocba):
    stack.answers(
        CloseYear,
        Refused("term 1 of 2025-2026 is still open in school 79007000: close it first (CloseTerm)", reason="invalid"),
    )
    result = hocba("year", "close", "--school", SCHOOL, "--year", YEAR)
    assert result.exit_code == 1
    assert said(result.stderr) == (
        "refused (invalid): the year was not closed: term 1 is not closed in school 79007000: close it with "
        "`hocba term close --school 79007000 --year 2025-2026 --term 1`, then close the year"
    )


def test_a_year_with_both_terms_open_names_both_commands(stack, hocba):
    stack.answers(CloseYear, Refused("term 1 and 2 of 2025-2026 is still open in school 79007000", reason="invalid"))
    result = hocba("year", "close", "--school", SCHOOL, "--year", YEAR)
    assert result.exit_code == 1
    assert "term 1 and 2 are not closed" in said(result.stderr)
    assert "--term 1` and `hocba term close --school 79007000 --year 2025-2026 --term 2`" in said(result.stderr)


def test_a_close_that_assembles_nothing_exits_non_zero_saying_why(stack, hocba):
    unknown = LeftOut(reason="unknown-student", class_name="6A1", count=3)
    stack.answers(CloseYear, closing([unknown], assembled=0))
    result = hocba("year", "close", "--school", SCHOOL, "--year", YEAR)
    assert result.exit_code == 1
    assert "left out: 3 students of class 6A1 (unknown-student): identity does not know them" in said(result.stdout)
    assert "no record was assembled: every one of the 3 students of school 79007000 was left out" in said(result.stderr)


# --- hocba records list --------------------------------------------------------------------------


def line(ref: str, class_name: str, status: str, name: str = "", version: int = 1) -> RecordLine:
    return RecordLine(
        record_id=f"rec-{ref}",
        version=version,
        status=status,
        grade=6,
        class_name=class_name,
        student_ref=ref,
        student_name=name,
        masked_personal_id="********0001",
        complete=status != "incomplete",
    )


def test_records_are_listed_one_line_each_with_where_they_stand(stack, hocba, roles, tmp_path):
    stack.answers(
        ListRecords,
        RecordList(
            school_code=SCHOOL,
            school_year=YEAR,
            records=[
                line("s1", "6A1", "delivered", "Nguyễn Văn An", version=2),
                line("s2", "6A1", "incomplete", VERDICT),
                line("s3", "6A2", "signed-and-sealed"),
            ],
        ),
    )
    result = hocba("records", "list", "--school", SCHOOL, "--year", YEAR, "--purpose", "rà soát")
    assert result.exit_code == 0, result.output
    rows = [said(r) for r in result.stdout.splitlines() if "rec-" in r]
    assert "Nguyễn Văn An │ rec-s1 │ 2 │ delivered to the ministry" in said(result.stdout)
    assert VERDICT in result.stdout, "a name from data is printed as written"
    assert "********0001 │ rec-s3 │ 1 │ signed and sealed" in said(result.stdout)
    assert len(rows) == 3
    assert "3 record(s): 1 incomplete (entries missing), 1 signed and sealed, 1 delivered to the ministry" in said(
        result.stdout
    )
    [asked] = stack.of(ListRecords)
    assert (asked.school_code, asked.school_year, asked.purpose, asked.student_ref) == (SCHOOL, YEAR, "rà soát", None)
    reader = actor_of(asked, tmp_path)
    assert (reader.roles, reader.school_code) == ({"school_admin"}, SCHOOL)
    assert roles == ["school"]


def test_one_students_record_is_found_by_personal_id_through_identity(stack, hocba, tmp_path):
    identity = StudentIdentity(personal_id=PID, full_name="Nguyễn Văn An", date_of_birth=date(2014, 3, 2), sex="M")
    stack.answers(FindStudents, StudentMatches(students=[StudentSnapshot(student_ref="ref-9", identity=identity)]))
    stack.answers(ListRecords, RecordList(records=[line("ref-9", "6A1", "archived", "Nguyễn Văn An")]))
    result = hocba(
        "records",
        "list",
        "--school",
        SCHOOL,
        "--year",
        YEAR,
        "--personal-id",
        PID,
        "--class",
        "6A1",
        "--status",
        "archived",
    )
    assert result.exit_code == 0, result.output
    [find] = stack.of(FindStudents)
    [asked] = stack.of(ListRecords)
    assert find.personal_ids == [PID] and actor_of(find, tmp_path) == actor_of(asked, tmp_path)
    assert (asked.student_ref, asked.class_name, asked.status) == ("ref-9", "6A1", "archived")


def test_an_operator_lists_as_the_department_with_its_own_broker_login(stack, hocba, roles, tmp_path):
    stack.answers(ListRecords, RecordList(records=[line("s3", "6A2", "assembled")]))
    assert hocba("records", "list", "--school", SCHOOL, "--year", YEAR, "--as", "operator").exit_code == 0
    reader = actor_of(stack.of(ListRecords)[0], tmp_path)
    assert reader.subject == f"operator-{getpass.getuser()}" and reader.roles == {"operator"}
    assert roles == ["operator"]


def test_no_record_listed_exits_non_zero_saying_when_records_exist(stack, hocba):
    stack.answers(ListRecords, RecordList())
    result = hocba("records", "list", "--school", SCHOOL, "--year", YEAR, "--class", "6A9")
    assert result.exit_code == 1
    assert said(result.stderr).startswith(
        "no record of class 6A9 of school 79007000 for 2025-2026: records are assembled when the principal closes the "
        "year (`hocba year close`"
    )


def test_a_personal_id_nobody_may_see_is_said_and_nothing_is_listed(stack, hocba):
    stack.answers(FindStudents, StudentMatches(missing=[PID]))
    result = hocba("records", "list", "--school", SCHOOL, "--year", YEAR, "--personal-id", PID)
    assert result.exit_code == 1
    assert f"no student with personal ID {PID} is registered that you may see" in said(result.stderr)
    assert stack.of(ListRecords) == []


def test_an_unknown_status_is_a_usage_error(stack, hocba):
    result = hocba("records", "list", "--school", SCHOOL, "--year", YEAR, "--status", "signed")
    assert result.exit_code == 2
    assert "--status 'signed' is none of assembled, incomplete, signed-and-sealed, archived, delivered" in said(
        result.output
    )
    assert stack.sent == []


# --- hocba grades history ------------------------------------------------------------------------


def change(action: str, revision: int, new: dict, old: dict | None = None, **fields: Any) -> EntryChange:
    values = {
        "subject": "Tin học",
        "term": 1,
        "kind": "subject",
        "action": action,
        "revision": revision,
        "at": datetime(2026, 5, 2, 10, 31, tzinfo=UTC),
        "by": "gv-79007000-1a2b3c4d",
        "old": old,
        "new": new,
        "message_id": f"m-{revision}",
        "message": RecordAssessments.ROUTING_KEY,
        **fields,
    }
    return EntryChange.model_validate(values)


def test_a_students_history_tells_each_entry_as_recorded_then_each_change_with_who_when_why_and_the_message(
    stack, hocba, tmp_path
):
    identity = StudentIdentity(personal_id=PID, full_name="Nguyễn Văn An", date_of_birth=date(2014, 3, 2), sex="M")
    stack.answers(FindStudents, StudentMatches(students=[StudentSnapshot(student_ref="ref-9", identity=identity)]))
    first = {
        "student_ref": "ref-9",
        "subject": "Tin học",
        "term": 1,
        "regular": ["8.0", "8.0"],
        "final": "8.0",
        "comment": "",
    }
    second = {**first, "regular": ["9", "7"]}
    stack.answers(
        EntryHistory,
        EntryChanges(
            student_ref="ref-9",
            changes=[
                change("recorded", 1, first),
                change("changed", 2, second, old=first, reason=f"bài 1 là 9 {VERDICT}"),
                change(
                    "recorded",
                    1,
                    {"conduct": "Tốt", "absences": 1},
                    subject="",
                    kind="homeroom",
                    term=2,
                    by="gvcn-79007000-6A1",
                ),
            ],
        ),
    )
    result = hocba(
        "grades", "history", "--school", SCHOOL, "--year", YEAR, "--personal-id", PID, "--subject", "Tin học"
    )
    assert result.exit_code == 0, result.output
    text = said(result.stdout)
    assert (
        "2026-05-02 10:31 UTC Tin học, term 1 recorded by gv-79007000-1a2b3c4d: regular 8.0 8.0; final 8.0 "
        "[message m-1, grades.assessments.record.v1]"
    ) in text
    assert f"changed by gv-79007000-1a2b3c4d: regular 8.0 8.0 → 9 7; reason: bài 1 là 9 {VERDICT} [message m-2" in text
    assert "homeroom, term 2 recorded by gvcn-79007000-6A1: conduct Tốt; absences 1" in text
    [asked] = stack.of(EntryHistory)
    assert (asked.student_ref, asked.subject, asked.purpose) == (
        "ref-9",
        "Tin học",
        "entry history from the command line",
    )
    assert actor_of(asked, tmp_path).roles == {"school_admin"}


def test_a_student_without_entries_exits_non_zero_saying_so(stack, hocba):
    identity = StudentIdentity(personal_id=PID, full_name="An", date_of_birth=date(2014, 3, 2), sex="M")
    stack.answers(FindStudents, StudentMatches(students=[StudentSnapshot(student_ref="ref-9", identity=identity)]))
    stack.answers(EntryHistory, EntryChanges(student_ref="ref-9"))
    result = hocba("grades", "history", "--school", SCHOOL, "--year", YEAR, "--personal-id", PID, "--subject", "Toán")
    assert result.exit_code == 1
    assert f"no Toán entries of student {PID} in 2025-2026 at school 79007000" in said(result.stderr)


def test_a_history_needs_a_well_formed_personal_id(stack, hocba):
    result = hocba("grades", "history", "--school", SCHOOL, "--year", YEAR, "--personal-id", "79214000001")
    assert result.exit_code == 2 and "has 11 digits, not 12" in said(result.output)
    assert stack.sent == []
