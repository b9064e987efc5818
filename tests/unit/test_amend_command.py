"""`hocba amend` against a stand-in stack: what it reads (the imports' files and columns), what it sends (whose
token, to which service, in which order) and what it tells the person: the new version and the exact commands
that sign it, every row that cannot be taken with its number, and a sentence with a non-zero exit whenever nothing
was amended or signing did not take the new version.

The broker is replaced as in test_year_commands.py (whose stand-ins these tests use): each request is answered with
what the test gave for its type.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from shared.contracts.grades import (
    AmendRecord,
    ListRecords,
    RecordAmended,
    RecordLine,
    RecordList,
    RecordVersion,
    RejectedCorrection,
)
from shared.contracts.identity import Enrolment, FindStudents, RegisteredStudent, StudentIdentity, StudentMatches
from shared.contracts.identity import StudentSnapshot as Snapshot
from shared.contracts.record import content_of
from shared.contracts.signing import AmendmentReceived, RequestAmendment
from shared.errors import NoAnswer, Refused
from tests.unit import test_year_commands as stand_in
from tests.unit.test_year_commands import FakeStack, actor_of, said

#: The stand-in stack, the broker logins and the command-line runner of test_year_commands.py.
stack, roles, hocba = stand_in.stack, stand_in.roles, stand_in.hocba

SCHOOL = "79007000"
YEAR = "2025-2026"
PID = "079214000001"
OTHER = "079314000002"
RECORD = "rec-s1"

GRADEBOOK_HEADER = (
    "school_code,school_year,class,personal_id,subject,term,regular,midterm,final,level,midterm_level,comment"
)
TOAN_2 = f"{SCHOOL},{YEAR},6A1,{PID},Toán,2,8 8 8 8,8,9.5,,,Phúc khảo"
CONDUCT_HEADER = "school_code,school_year,class,personal_id,term,absences,conduct,comment"


@pytest.fixture
def files(tmp_path: Path):
    def write(name: str, *lines: str) -> str:
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return str(path)

    return write


def record_line(version: int = 1, status: str = "delivered") -> RecordLine:
    return RecordLine(
        record_id=RECORD,
        version=version,
        status=status,
        grade=6,
        class_name="6A1",
        student_ref="ref-1",
        student_name="Nguyễn Văn An",
        masked_personal_id="********0001",
    )


def new_version(command: AmendRecord) -> RecordAmended:
    record = RecordVersion(
        record_id=command.record_id,
        version=command.supersedes + 1,
        school_code=command.school_code,
        school_year=command.school_year,
        student_ref="ref-1",
        content=content_of({"record_id": command.record_id, "version": command.supersedes + 1}),
    )
    return RecordAmended(
        record=record, supersedes=command.supersedes, reason_code=command.reason_code, changed=["subjects"], corrected=1
    )


def received(command: RequestAmendment) -> AmendmentReceived:
    return AmendmentReceived(
        record_id=command.record.record_id,
        version=command.record.version,
        supersedes=command.supersedes,
        reason_code=command.reason_code,
    )


@pytest.fixture
def school(stack: FakeStack) -> FakeStack:
    """identity knows the student (enrolled in 6A1), grades lists their delivered record and amends it, signing
    takes the new version."""
    identity = StudentIdentity(personal_id=PID, full_name="Nguyễn Văn An", date_of_birth=date(2014, 3, 2), sex="M")
    enrolment = Enrolment(school_code=SCHOOL, school_year=YEAR, grade=6, class_name="6A1")
    stack.answers(
        FindStudents,
        StudentMatches(
            students=[Snapshot(student_ref="ref-1", identity=identity)],
            enrolments=[RegisteredStudent(student_ref="ref-1", enrolment=enrolment)],
        ),
    )
    stack.answers(ListRecords, RecordList(records=[record_line()]))
    stack.answers(AmendRecord, new_version)
    stack.answers(RequestAmendment, received)
    return stack


def amend(hocba, *args: str):
    return hocba("amend", "--school", SCHOOL, "--year", YEAR, *args)


def test_the_principal_amends_a_record_found_by_personal_id_and_is_told_the_commands_that_sign_it(
    school, hocba, roles, files, tmp_path
):
    entries = files("sua-diem.csv", GRADEBOOK_HEADER, TOAN_2)
    result = amend(
        hocba, "--personal-id", PID, "--reason", "appeal-decision", "--entries", entries, "--note", "QĐ số 12"
    )
    assert result.exit_code == 0, result.output
    [asked] = school.of(ListRecords)
    [amendment] = school.of(AmendRecord)
    [handed] = school.of(RequestAmendment)
    assert (asked.student_ref, asked.school_code, asked.school_year) == ("ref-1", SCHOOL, YEAR)
    assert (amendment.record_id, amendment.supersedes, amendment.reason_code, amendment.note) == (
        RECORD,
        1,
        "appeal-decision",
        "QĐ số 12",
    )
    [toan] = amendment.scores
    assert (toan.student_ref, toan.subject, toan.term, str(toan.final), toan.comment) == (
        "ref-1",
        "Toán",
        2,
        "9.5",
        "Phúc khảo",
    ), "read as the gradebook import reads its rows, the student resolved by identity"
    assert amendment.conduct == []
    assert (handed.record.version, handed.supersedes, handed.reason_code, handed.note) == (
        2,
        1,
        "appeal-decision",
        "QĐ số 12",
    )
    asker, hander = actor_of(amendment, tmp_path), actor_of(handed, tmp_path)
    assert asker == hander and asker.roles == {"principal"} and asker.school_code == SCHOOL, "the same person asks both"
    assert set(roles) == {"school"}, "as the schools' tools on the broker"
    out = said(result.stdout)
    assert (
        "record rec-s1 amended: version 2 supersedes version 1 (appeal-decision); student Nguyễn Văn An, class 6A1; "
        "1 entry corrected; the record's subjects changed"
    ) in out
    assert f"hocba review confirm --school {SCHOOL} --year {YEAR} --class 6A1" in out
    assert f"hocba sign --school {SCHOOL} --year {YEAR} --as homeroom_teacher --class 6A1" in out
    assert f"the principal signs and seals: hocba sign --school {SCHOOL} --year {YEAR} " in out
    assert f"hocba records list --school {SCHOOL} --year {YEAR} --personal-id {PID}" in out


def test_the_records_administrator_may_ask_and_conduct_is_corrected_from_the_homeroom_files_columns(
    school, hocba, files, tmp_path
):
    conduct = files("hanh-kiem.csv", CONDUCT_HEADER, f"{SCHOOL},{YEAR},6A1,{PID},2,3,Khá,Đã xác minh")
    result = amend(
        hocba, "--personal-id", PID, "--reason", "conduct-correction", "--conduct", conduct, "--as", "school_admin"
    )
    assert result.exit_code == 0, result.output
    [amendment] = school.of(AmendRecord)
    [row] = amendment.conduct
    assert (row.student_ref, row.term, row.absences, row.conduct, row.comment) == ("ref-1", 2, 3, "Khá", "Đã xác minh")
    assert amendment.scores == []
    assert actor_of(amendment, tmp_path).roles == {"school_admin"}
    assert actor_of(school.of(RequestAmendment)[0], tmp_path).roles == {"school_admin"}


def test_the_same_command_run_again_is_the_same_request_even_once_the_new_version_awaits_its_signatures(
    school, hocba, files
):
    entries = files("sua-diem.csv", GRADEBOOK_HEADER, TOAN_2)
    args = ("--personal-id", PID, "--reason", "grade-correction", "--entries", entries)
    assert amend(hocba, *args).exit_code == 0
    school.answers(ListRecords, RecordList(records=[record_line(version=2, status="assembled")]))
    assert amend(hocba, *args).exit_code == 0
    first, again = school.of(AmendRecord)
    assert (again.message_id, again.supersedes) == (first.message_id, 1), "grades answers it as the first time"
    one, two = school.of(RequestAmendment)
    assert one.message_id == two.message_id
    other = files("khac.csv", GRADEBOOK_HEADER, TOAN_2.replace("9.5", "9"))
    assert amend(hocba, "--personal-id", PID, "--reason", "grade-correction", "--entries", other).exit_code == 0
    assert school.of(AmendRecord)[-1].message_id != first.message_id, "another correction is another request"


def test_a_record_named_by_id_is_the_record_of_the_student_the_files_name(school, hocba, files):
    entries = files("sua-diem.csv", GRADEBOOK_HEADER, TOAN_2)
    found = amend(hocba, "--record", RECORD, "--reason", "clerical-error", "--entries", entries)
    assert found.exit_code == 0, found.output
    assert school.of(AmendRecord)[0].record_id == RECORD
    other = amend(hocba, "--record", "rec-s9", "--reason", "clerical-error", "--entries", entries)
    assert other.exit_code == 1
    assert "record rec-s9 is not the record of the student the files name: theirs is rec-s1" in said(other.stderr)
    assert len(school.of(AmendRecord)) == 1


def test_rows_that_cannot_be_taken_are_each_told_with_their_number_and_nothing_is_sent(school, hocba, files):
    entries = files(
        "sua-diem.csv",
        GRADEBOOK_HEADER,
        TOAN_2,
        f"{SCHOOL},{YEAR},6A1,{OTHER},Toán,2,8 8 8 8,8,9,,,",
        f"{SCHOOL},{YEAR},6A1,{PID},Tin học,1,8 8,8,11,,,",
    )
    result = amend(hocba, "--personal-id", PID, "--reason", "grade-correction", "--entries", entries)
    assert result.exit_code == 1
    out = said(result.stdout)
    assert "sua-diem.csv:" in out
    assert f"row 3: student {OTHER}: an amendment corrects one student's record, {PID}'s (--personal-id)" in out
    assert "row 4: final 11 is outside 0-10" in out
    assert "nothing was amended: 2 row(s) cannot be taken, as listed above" in said(result.stderr)
    assert school.of(AmendRecord) == [] and school.of(RequestAmendment) == []


def test_corrections_grades_refuses_are_told_by_row_in_the_files_words_and_nothing_goes_to_signing(
    school, hocba, files
):
    refused = RecordAmended(
        supersedes=1,
        reason_code="grade-correction",
        rejected=[
            RejectedCorrection(part="scores", index=1, code="regular-count", reason="Tin học needs 2 regular ..."),
            RejectedCorrection(part="conduct", index=0, code="missing-conduct", reason="comment_level is missing"),
        ],
    )
    school.answers(AmendRecord, refused)
    entries = files("diem.csv", GRADEBOOK_HEADER, TOAN_2, f"{SCHOOL},{YEAR},6A1,{PID},Tin học,1,8,8,8,,,")
    conduct = files("hk.csv", CONDUCT_HEADER, f"{SCHOOL},{YEAR},6A1,{PID},1,0,,")
    result = amend(
        hocba, "--personal-id", PID, "--reason", "grade-correction", "--entries", entries, "--conduct", conduct
    )
    assert result.exit_code == 1
    out = said(result.stdout)
    assert "diem.csv: row 3: Tin học needs 2 regular ..." in out
    assert "hk.csv: row 2: level is missing" in out, "the contract's field named as the file's column"
    assert "nothing was amended: grades refused 2 correction(s), as listed above" in said(result.stderr)
    assert school.of(RequestAmendment) == []


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        ("not-signed", "a version awaiting its signatures is signed first"),
        ("nothing-changed", "check the files: each row holds the corrected values of one entry"),
        ("forbidden", "the issuing school's principal or records administrator"),
    ],
)
def test_an_amendment_grades_refuses_is_said_with_what_to_do(school, hocba, files, code, hint):
    school.answers(AmendRecord, Refused("record rec-s1 v1 is not signed and sealed yet: ...", reason=code))
    entries = files("sua-diem.csv", GRADEBOOK_HEADER, TOAN_2)
    result = amend(hocba, "--personal-id", PID, "--reason", "grade-correction", "--entries", entries)
    assert result.exit_code == 1
    err = said(result.stderr)
    assert f"refused ({code}): grades did not amend record rec-s1: record rec-s1 v1 is not signed" in err
    assert hint in err
    assert school.of(RequestAmendment) == []
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("answer", "said_"),
    [
        (Refused("nobody may", reason="wrong-school"), "signing refused (wrong-school): nobody may"),
        (NoAnswer("nothing takes signing.amendment.requested.v2 here"), "nothing takes signing.amendment"),
    ],
)
def test_a_new_version_signing_does_not_take_is_said_with_how_to_hand_it_on_again(school, hocba, files, answer, said_):
    school.answers(RequestAmendment, answer)
    entries = files("sua-diem.csv", GRADEBOOK_HEADER, TOAN_2)
    result = amend(hocba, "--personal-id", PID, "--reason", "grade-correction", "--entries", entries)
    assert result.exit_code == 1
    assert "record rec-s1 amended: version 2 supersedes version 1" in said(result.stdout)
    err = said(result.stderr)
    assert f"grades made version 2, but signing did not take it: {said_}" in err
    assert "run the same command again once signing runs" in err
    assert "hocba sign" not in said(result.stdout), "no signing step is told while signing does not hold it"


def test_a_record_the_student_does_not_have_yet_is_said(school, hocba, files):
    school.answers(ListRecords, RecordList(records=[]))
    entries = files("sua-diem.csv", GRADEBOOK_HEADER, TOAN_2)
    result = amend(hocba, "--personal-id", PID, "--reason", "grade-correction", "--entries", entries)
    assert result.exit_code == 1
    assert "the student has no record of school 79007000 for 2025-2026" in said(result.stderr)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--reason", "grade-correction", "--entries", "{f}"), "name the record: --personal-id of its student, or"),
        (
            ("--personal-id", PID, "--record", RECORD, "--reason", "grade-correction", "--entries", "{f}"),
            "(one of them)",
        ),
        (("--personal-id", "79214000001", "--reason", "grade-correction", "--entries", "{f}"), "has 11 digits"),
        (("--personal-id", PID, "--reason", "grade-correction"), "give the corrections: --entries"),
        (("--personal-id", PID, "--reason", "typo", "--entries", "{f}"), "'typo' is not one of"),
    ],
)
def test_a_mistyped_command_is_a_usage_error_and_sends_nothing(school, hocba, files, args, expected):
    entries = files("sua-diem.csv", GRADEBOOK_HEADER, TOAN_2)
    result = amend(hocba, *(a.replace("{f}", entries) for a in args))
    assert result.exit_code == 2
    assert expected in said(result.output)
    assert school.sent == []


def test_a_file_without_the_imports_columns_cannot_be_read_and_says_what_it_found(school, hocba, files):
    entries = files("sai-cot.csv", "ma_truong;nam_hoc;lop", f"{SCHOOL};{YEAR};6A1")
    result = amend(hocba, "--personal-id", PID, "--reason", "grade-correction", "--entries", entries)
    assert result.exit_code == 2
    err = said(result.stderr)
    assert "cannot amend: sai-cot.csv: the header row lacks column(s) school_code" in err
    assert "found 3 column(s), read as semicolon-separated: ma_truong, nam_hoc, lop" in err
    assert school.sent == []
