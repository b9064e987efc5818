"""The command line against a stand-in stack: what it sends (a token for each message, the reader's
purpose) and what it prints (every string that came from data, as written, never as markup).

The broker is replaced by `FakeStack`: the session connects to nothing, and each request is answered
with the reply the test gave for its type (or refused), while the stack keeps what was sent.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from hocba.cli import app
from hocba.keys import dev_issuer
from hocba.term_end import TermEnd
from shared.auth import audience_of, verify_token
from shared.contracts.access import (
    AccessEntry,
    AccessLog,
    ListArchiveAccesses,
    ListGradesAccesses,
    ListIdentityAccesses,
)
from shared.contracts.archive import AuditArchive, AuditReport, ExportRecord, ProofReply
from shared.contracts.base import Message
from shared.contracts.grades import (
    CloseTerm,
    CloseYear,
    ExplainRecord,
    ExplanationLine,
    RecordAssessments,
    RecordConduct,
    RecordExplanation,
)
from shared.contracts.identity import (
    FindStudents,
    RegisterStudents,
    RegistrationReport,
    RowRejection,
    StudentIdentity,
    StudentMatches,
    StudentSnapshot,
)
from shared.contracts.sync import GetSyncStatus, ParkedEntry, RetryOutcome, RetryParked, SyncStatus
from shared.errors import Refused
from shared.settings import Settings
from tests.unit.command_stack import FakeStack, faked_stack, logged_in_roles

#: A name that, printed as markup, shows a green verdict the command never gave.
VERDICT = "[green]✓ VERIFIED[/green]"
#: A name that, printed as markup, closes a style nobody opened: rich raises MarkupError.
CLOSING_TAG = "Lê [/] Châu"
PID = "079214000001"
SCHOOL = "79007000"


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> FakeStack:
    return faked_stack(monkeypatch)  # one line a student, whole table rows


@pytest.fixture
def hocba(tmp_path: Path):
    """Run `hocba …` with the data folder (its development issuer key) in `tmp_path`."""
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args), env={"HOCBA_DATA_DIR": str(tmp_path), "COLUMNS": "240"})

    return run


def student(name: str, pid: str = PID, ref: str = "ref-0001") -> StudentSnapshot:
    identity = StudentIdentity(personal_id=pid, full_name=name, date_of_birth=date(2014, 3, 2), sex="M")
    return StudentSnapshot(student_ref=ref, identity=identity)


def verified(message: Message, data_dir: Path):
    """The actor of `message` as its service verifies it with the development issuer's keys."""
    issuer, _ = dev_issuer(data_dir)
    return verify_token(message, issuer.public_keys(audience_of(message)))


# --- strings from data are printed as written ------------------------------------------------------


def test_attack_a_student_named_as_a_verdict_prints_the_name_literally(stack, hocba):
    """Reproduction (issue 9, item 6): a student registered as `[green]✓ VERIFIED[/green]` made
    `hocba identity lookup` print a green "✓ VERIFIED" the command never said."""
    stack.answers(FindStudents, StudentMatches(students=[student(VERDICT)]))
    result = hocba("identity", "lookup", PID)
    assert result.exit_code == 0, result.output
    assert VERDICT in result.stdout


def test_attack_a_name_with_a_closing_tag_does_not_crash_the_look_up(stack, hocba):
    """Reproduction (issue 9, item 6): a name containing `[/]` crashed `hocba identity lookup` (MarkupError)."""
    stack.answers(FindStudents, StudentMatches(students=[student(CLOSING_TAG)], missing=["[/]"]))
    result = hocba("identity", "lookup", PID, "[/]")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert CLOSING_TAG in result.stdout and "[/]: not found" in result.stdout


def test_attack_an_explained_record_prints_the_student_and_the_lines_as_written(stack, hocba):
    """Reproduction (issue 9, item 6): `hocba grades explain` printed the student's name and the
    record's words as markup: a fake verdict, or a crash on `[/]`."""
    stack.answers(
        ExplainRecord,
        RecordExplanation(
            record_id="r-1", version=1, student_name=VERDICT, school_code=SCHOOL, rule_set="tt22",
            lines=[ExplanationLine(
                about="subjects/Toán", result="Đ", text=f"comment: {CLOSING_TAG}", rule="r", clause="c", inputs={"x": "[/]"}
            )],
            unconfirmed=["[bold red]nothing[/]"],
        ),
    )
    result = hocba("grades", "explain", "r-1", "--inputs")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert VERDICT in text and f"comment: {CLOSING_TAG}" in text and "[bold red]nothing[/]" in text
    assert 'inputs {"x": "[/]"}' in text


def test_attack_a_roster_row_and_a_rejection_reason_are_reported_as_written(stack, hocba, tmp_path):
    """Reproduction (issue 9, item 6): a roster value, or a service's rejection reason, holding `[/]`
    crashed `hocba identity import` while it reported the bad rows."""
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "personal_id,full_name,date_of_birth,sex,place_of_birth,ethnicity,school_code,grade,class,guardian_name\n"
        f"{PID},Nguyễn Văn An,2014-03-02,M,,,{SCHOOL},6,6A1,\n"
        "079214000002,Trần Bình,2014-03-02,[/],,,79007000,6,6A1,\n",
        encoding="utf-8",
    )
    stack.answers(
        RegisterStudents,
        RegistrationReport(source_message_id="x", rejected=[RowRejection(index=0, code="conflict", reason=VERDICT)]),
    )
    result = hocba("identity", "import", str(roster))
    assert result.exit_code == 1 and result.exception is not None and isinstance(result.exception, SystemExit)
    assert f"row 2: {VERDICT}" in result.stdout
    assert "row 3: sex '[/]' must be M or F" in result.stdout


def test_attack_an_archive_audit_finding_is_printed_as_written(stack, hocba):
    """Reproduction (issue 9, item 6): `hocba archive audit` printed the archive's words as markup, so a
    finding could pass itself off as a check that held."""
    stack.answers(AuditArchive, AuditReport(entries=1, checkpoints=1, ok=True, passed=[CLOSING_TAG]))
    result = hocba("archive", "audit")
    assert result.exit_code == 0, result.output
    assert CLOSING_TAG in result.stdout


def test_attack_a_parked_entry_error_is_printed_as_written(stack, hocba):
    """Reproduction (issue 9, item 6): `hocba sync status` printed the ministry's error text as markup."""
    parked = ParkedEntry(key="r-1:1", kind="record", attempts=5, last_error=f"HTTP 422 {CLOSING_TAG}", created_at=datetime.now(UTC))
    stack.answers(GetSyncStatus, SyncStatus(counts=[], backlog=0, parked=1, parked_entries=[parked]))
    result = hocba("sync", "status")
    assert result.exit_code == 0, result.output
    assert f"HTTP 422 {CLOSING_TAG}" in result.stdout


def test_a_refusal_is_told_in_one_sentence_as_the_service_said_it(stack, hocba):
    stack.answers(FindStudents, Refused(f"the token is not good for {VERDICT}", reason="unauthenticated"))
    result = hocba("identity", "lookup", PID)
    assert result.exit_code == 1
    assert f"refused (unauthenticated): the token is not good for {VERDICT}" in " ".join(result.stderr.split())


# --- each message carries its sender's token for it, and a reader says why -----------------------


def test_each_request_carries_a_token_for_that_one_message_living_minutes(stack, hocba, tmp_path):
    stack.answers(FindStudents, StudentMatches(students=[student("Nguyễn Văn An")]))
    stack.answers(ExplainRecord, RecordExplanation(record_id="r-1"))
    stack.answers(RetryParked, RetryOutcome())
    assert hocba("identity", "lookup", PID).exit_code == 0
    assert hocba("identity", "lookup", PID, "--school", SCHOOL).exit_code == 0
    assert hocba("grades", "explain", "r-1").exit_code == 0
    assert hocba("sync", "retry").exit_code == 0

    operator_lookup, admin_lookup, explain, retry = stack.sent
    assert verified(operator_lookup, tmp_path).subject == f"operator-{getpass.getuser()}"
    admin = verified(admin_lookup, tmp_path)
    assert admin.roles == {"school_admin"} and admin.school_code == SCHOOL
    assert verified(explain, tmp_path).has("operator") and verified(retry, tmp_path).has("operator")
    for message in stack.sent:
        expires_at = verified(message, tmp_path).expires_at
        assert expires_at is not None and expires_at <= datetime.now(UTC) + timedelta(minutes=10, seconds=5)
    assert len({m.actor for m in stack.sent}) == 4, "one token a message"


def test_the_broker_login_follows_whose_token_the_command_carries(stack, hocba, monkeypatch, tmp_path):
    roles = logged_in_roles(monkeypatch)
    stack.answers(FindStudents, StudentMatches(students=[student("Nguyễn Văn An")]))
    hocba("identity", "lookup", PID)
    hocba("identity", "lookup", PID, "--school", SCHOOL)
    stack.answers(RegisterStudents, RegistrationReport(source_message_id="x", new=1))
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "personal_id,full_name,date_of_birth,sex,school_code,grade,class\n"
        f"{PID},Nguyễn Văn An,2014-03-02,M,{SCHOOL},6,6A1\n",
        encoding="utf-8",
    )
    hocba("identity", "import", str(roster))
    assert roles == ["operator", "school", "school"]


def test_a_read_of_personal_data_says_why(stack, hocba):
    stack.answers(FindStudents, StudentMatches(students=[student("Nguyễn Văn An")]))
    stack.answers(ExplainRecord, RecordExplanation(record_id="r-1"))
    stack.answers(ExportRecord, ProofReply(bundle={"record": {"version": 1}, "log": {"leaf_index": 0, "tree_size": 1}}))
    hocba("identity", "lookup", PID, "--purpose", "guardian's request for a transcript")
    hocba("grades", "explain", "r-1", "--purpose", "appeal of a result")
    hocba("archive", "export", "r-1", "-o", "/dev/null", "--purpose", "transfer to another school")
    hocba("identity", "lookup", PID)
    purposes = [m.purpose for m in stack.sent]
    assert purposes[:3] == ["guardian's request for a transcript", "appeal of a result", "transfer to another school"]
    assert purposes[3] == "identity look-up from the command line", "without --purpose the command says what it is"


def test_a_purpose_longer_than_the_requests_carry_is_a_usage_error(stack, hocba):
    result = hocba("identity", "lookup", PID, "--purpose", "x" * 201)
    assert result.exit_code == 2 and "at most 200 characters" in " ".join(result.output.split())
    assert stack.sent == []


def test_the_demo_driver_sends_each_command_with_its_senders_token_for_it(tmp_path, monkeypatch):
    issuer, _ = dev_issuer(tmp_path)
    driver = TermEnd(Settings(chunk_size=4), issuer, schools=1, students=10)
    published: list[Message] = []

    async def publish(message: Message) -> None:
        published.append(type(message).model_validate_json(message.model_dump_json()))

    monkeypatch.setattr(driver.bus, "publish", publish)
    school = driver.schools[0]
    asyncio.run(driver._register())
    driver.counts.students[school.code] = {"ref-1": "6A1", "ref-2": "6A2"}  # as identity would announce them
    asyncio.run(driver._enter_assessments(school))
    asyncio.run(driver._enter_conduct(school))
    asyncio.run(driver._close_terms())
    asyncio.run(driver._close_year())

    sent_by: dict[type[Message], list[Any]] = {}
    for message in published:
        sent_by.setdefault(type(message), []).append(message)
        assert verified(message, tmp_path).school_code == school.code
    assert [len(m.students) for m in sent_by[RegisterStudents]] == [4, 4, 2]
    assert all(verified(m, tmp_path).roles == {"school_admin"} for m in sent_by[RegisterStudents])
    for command in sent_by[RecordAssessments]:
        teacher = verified(command, tmp_path)
        classes = {driver.counts.students[school.code][e.student_ref] for e in command.entries}
        assert teacher.roles == {"subject_teacher"} and teacher.classes == classes and len(classes) == 1
        assert teacher.subjects == {e.subject for e in command.entries}
    assert {verified(m, tmp_path).homeroom_class for m in sent_by[RecordConduct]} == {"6A1", "6A2"}
    assert len(sent_by[CloseTerm]) == 2 and len(sent_by[CloseYear]) == 1
    assert all(verified(m, tmp_path).roles == {"principal"} for m in sent_by[CloseTerm] + sent_by[CloseYear])
    assert len({m.actor for m in published}) == len(published), "one token a message"


# --- hocba audit access ----------------------------------------------------------------------------


def entry(service: str, minute: int, **fields: Any) -> AccessEntry:
    values = {
        "at": datetime(2026, 5, 20, 8, minute, tzinfo=UTC),
        "service": service,
        "subject": f"operator-{service}-reader",
        "roles": ["operator"],
        "action": "lookup",
        "student_ref": "ref-0001",
        **fields,
    }
    return AccessEntry.model_validate(values)


@pytest.fixture
def logs(stack: FakeStack) -> FakeStack:
    """The student is registered; each service has logged reads of them, out of order between services."""
    stack.answers(FindStudents, StudentMatches(students=[student("Nguyễn Văn An")]))
    stack.answers(ListIdentityAccesses, AccessLog(entries=[entry("identity", 1), entry("identity", 30, action="find")]))
    stack.answers(
        ListGradesAccesses,
        AccessLog(entries=[entry("grades", 12, action="explain", record_id="r-1", school_code=SCHOOL,
                                 roles=["principal"], subject="ht-79007000", purpose=f"appeal {CLOSING_TAG}")]),
    )
    stack.answers(ListArchiveAccesses, AccessLog(entries=[entry("archive", 20, action="print", record_id="r-1")]))
    return stack


def test_audit_access_lists_every_services_reads_of_the_student_oldest_first(logs, hocba, tmp_path):
    result = hocba("audit", "access", "--student", PID)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "2026-05-20" in line]
    assert [row.split("│")[2].strip() for row in rows] == ["identity", "grades", "archive", "identity"]
    grades = next(row for row in rows if "grades" in row)
    for shown in ("08:12:00", "ht-79007000", "principal", SCHOOL, "explain", "r-1", f"appeal {CLOSING_TAG}"):
        assert shown in grades

    find, *lists = logs.sent
    assert isinstance(find, FindStudents) and find.personal_ids == [PID] and find.purpose
    assert {type(m) for m in lists} == {ListIdentityAccesses, ListGradesAccesses, ListArchiveAccesses}
    assert {m.student_ref for m in lists} == {"ref-0001"}
    for message in logs.sent:
        assert verified(message, tmp_path).subject == f"operator-{getpass.getuser()}"


def test_audit_access_as_json(logs, hocba):
    result = hocba("audit", "access", "--student", PID, "--json", "--purpose", "complaint by the guardian")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["student_ref"] == "ref-0001"
    assert [(e["service"], e["action"]) for e in shown["entries"]] == [
        ("identity", "lookup"), ("grades", "explain"), ("archive", "print"), ("identity", "find"),
    ]
    assert logs.sent[0].purpose == "complaint by the guardian"


def test_audit_access_as_a_schools_administrator(logs, hocba, tmp_path):
    assert hocba("audit", "access", "--student", PID, "--school", SCHOOL).exit_code == 0
    for message in logs.sent:
        actor = verified(message, tmp_path)
        assert actor.roles == {"school_admin"} and actor.school_code == SCHOOL


def test_audit_access_of_an_unknown_student_says_so(stack, hocba):
    stack.answers(FindStudents, StudentMatches(missing=[PID]))
    result = hocba("audit", "access", "--student", PID, "--school", SCHOOL)
    assert result.exit_code == 1
    assert f"no student with personal ID {PID} is registered in school {SCHOOL}" in " ".join(result.stderr.split())
    assert [type(m) for m in stack.sent] == [FindStudents], "no access log is asked for nobody"


def test_audit_access_says_which_service_refused(logs, hocba):
    logs.answers(ListGradesAccesses, Refused("only the student's school or an operator", reason="forbidden"))
    result = hocba("audit", "access", "--student", PID)
    assert result.exit_code == 2
    assert "refused (forbidden): grades does not show its access log: only the student's school or an operator" in (
        " ".join(result.stderr.split())
    )


# --- the development PKI ---------------------------------------------------------------------------


def test_pki_init_issues_the_services_certificates(hocba, tmp_path):
    folder = tmp_path / "pki"
    assert hocba("pki", "init", "--dir", str(folder), "--schools", "1", "--classes", "1").exit_code == 0
    shown = hocba("pki", "show", "--dir", str(folder))
    assert shown.exit_code == 0, shown.output
    rows = {line.split("│")[1].strip(): line for line in shown.stdout.splitlines() if line.count("│") > 3}
    assert "svc-grades" in rows and "archive" in rows
    assert "service" in rows["svc-grades"] and "valid" in rows["svc-grades"]
