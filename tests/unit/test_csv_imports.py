"""The CSV imports as a person meets them: files as spreadsheets save them, and every message about a file or
a row saying what was found, what was expected and what to do.

The stack is stood in for: identity finds the students a test registers, grades and identity answer each
command with what the test says (by default: every entry stored), and what was sent is kept.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from hocba import commands as cli_commands
from hocba.cli import app
from hocba.commands import Columns, CsvShapeError, read_csv
from hocba.console import console, errors
from hocba.keys import dev_issuer
from shared.auth import audience_of, verify_token
from shared.contracts.base import Message, Reply
from shared.contracts.grades import (
    AssessmentsRecorded,
    ConductRecorded,
    EntryRejection,
    RecordAssessments,
    RecordConduct,
)
from shared.contracts.identity import (
    Enrolment,
    FindStudents,
    RegisteredStudent,
    RegisterStudents,
    RegistrationReport,
    StudentIdentity,
    StudentMatches,
    StudentSnapshot,
)
from shared.messaging import Bus

SCHOOL = "79007000"
YEAR = "2025-2026"
AN, BINH, CHAU = "079214000001", "079314000002", "079214000003"

ROSTER_HEADER = "personal_id,full_name,date_of_birth,sex,place_of_birth,ethnicity,school_code,grade,class,guardian_name"
ROSTER_AN = f"{AN},Nguyễn Văn An,2014-03-02,M,TP. Hồ Chí Minh,Kinh,{SCHOOL},6,6A1,Nguyễn Văn Ba"
ROSTER_BINH = f"{BINH},Trần Thị Bình,2014-07-19,F,TP. Hồ Chí Minh,Kinh,{SCHOOL},6,6A1,Trần Văn Tư"

GRADEBOOK_HEADER = (
    "school_code,school_year,class,personal_id,subject,term,regular,midterm,final,level,midterm_level,comment"
)
CONDUCT_HEADER = "school_code,school_year,class,personal_id,term,conduct,absences,comment"


# --- the stand-in stack ------------------------------------------------------------------------------


class FakeStack:
    """Answers each request as the test set it up, and keeps what was sent (as the services would parse it)."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        #: personal ID -> (student ref, enrolments identity holds)
        self.students: dict[str, tuple[str, list[Enrolment]]] = {}
        self.answers: dict[type[Message], Callable[[Any], Any]] = {
            FindStudents: self.find,
            RecordAssessments: lambda m: recorded(AssessmentsRecorded, m),
            RecordConduct: lambda m: recorded(ConductRecorded, m),
            RegisterStudents: lambda m: RegistrationReport(source_message_id=m.message_id, new=len(m.students)),
        }

    def register(self, pid: str, *enrolments: tuple[str, str], school: str = SCHOOL) -> None:
        """A student identity knows, enrolled in (school year, class) at `school`."""
        enrolled = [Enrolment(school_code=school, school_year=y, grade=6, class_name=c) for y, c in enrolments]
        self.students[pid] = (f"ref-{pid}", enrolled)

    def find(self, message: FindStudents) -> StudentMatches:
        known = [pid for pid in message.personal_ids if pid in self.students]
        identity = {
            pid: StudentIdentity(personal_id=pid, full_name="Học Sinh", date_of_birth=date(2014, 1, 1), sex="M")
            for pid in known
        }
        return StudentMatches(
            students=[StudentSnapshot(student_ref=self.students[pid][0], identity=identity[pid]) for pid in known],
            missing=[pid for pid in message.personal_ids if pid not in self.students],
            enrolments=[
                RegisteredStudent(student_ref=self.students[pid][0], enrolment=e)
                for pid in known
                for e in self.students[pid][1]
            ],
        )

    def of(self, kind: type[Message]) -> list[Any]:
        return [m for m in self.sent if isinstance(m, kind)]


def recorded(kind: type[AssessmentsRecorded] | type[ConductRecorded], command: Any) -> Any:
    """Every entry of the command stored new."""
    n = len(command.entries)
    return kind(
        school_code=command.school_code,
        school_year=command.school_year,
        entries=n,
        source_message_id=command.message_id,
        new=n,
    )


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> FakeStack:
    fake = FakeStack()

    async def connected(bus: Bus) -> None:
        return None

    async def request(bus: Bus, message: Message, answer: type[Reply], timeout: float = 30.0) -> Any:
        parsed = type(message).model_validate_json(message.model_dump_json())
        fake.sent.append(parsed)
        return answer.model_validate(fake.answers[type(message)](parsed).model_dump(mode="json"))

    monkeypatch.setattr(cli_commands, "connect", connected)
    monkeypatch.setattr(Bus, "request", request)
    monkeypatch.setattr(console, "width", 240)  # one line a bad row
    monkeypatch.setattr(errors, "width", 240)
    return fake


@pytest.fixture
def hocba(tmp_path: Path) -> Callable[..., Result]:
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args), env={"HOCBA_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "240"})

    return run


def csv_file(tmp_path: Path, *lines: str, name: str = "file.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def said(result: Result) -> str:
    """Everything the command printed, on one line."""
    return " ".join(result.output.split())


def bad_row(result: Result, number: int) -> str:
    """The reason printed for row `number`."""
    for line in result.output.splitlines():
        if line.strip().startswith(f"row {number}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"row {number} not reported in:\n{result.output}")


# --- files as spreadsheets save them -------------------------------------------------------------------


def test_a_semicolon_separated_roster_is_read_as_such(stack, hocba, tmp_path):
    roster = csv_file(tmp_path, ROSTER_HEADER.replace(",", ";"), ROSTER_AN.replace(",", ";"), name="roster.csv")
    result = hocba("identity", "import", str(roster))
    assert result.exit_code == 0, result.output
    [sent] = stack.of(RegisterStudents)
    assert sent.students[0].identity.full_name == "Nguyễn Văn An"
    assert sent.students[0].enrolment.class_name == "6A1"


def test_a_tab_separated_gradebook_is_read_as_such(stack, hocba, tmp_path):
    stack.register(AN, (YEAR, "6A1"))
    row = f"{SCHOOL}\t{YEAR}\t6A1\t{AN}\tTin học\t1\t8 7,5\t7\t8\t\t\tTiến bộ, chăm chỉ"
    result = hocba("grades", "import", str(csv_file(tmp_path, GRADEBOOK_HEADER.replace(",", "\t"), row)))
    assert result.exit_code == 0, result.output
    [entry] = stack.of(RecordAssessments)[0].entries
    assert [str(r) for r in entry.regular] == ["8", "7.5"] and entry.comment == "Tiến bộ, chăm chỉ"


def test_a_utf8_byte_order_mark_is_accepted(stack, hocba, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_bytes(("\ufeff" + ROSTER_HEADER + "\n" + ROSTER_AN + "\n").encode("utf-8"))
    result = hocba("identity", "import", str(roster))
    assert result.exit_code == 0, result.output
    assert stack.of(RegisterStudents)[0].students[0].identity.personal_id == AN


def test_text_in_decomposed_unicode_is_read_as_composed(stack, hocba, tmp_path):
    """A file saved on macOS may write "Tốt" as o, circumflex, acute: it is the same word."""
    stack.register(AN, (YEAR, "6A1"))
    row = unicodedata.normalize("NFD", f"{SCHOOL},{YEAR},6A1,{AN},1,Tốt,0,Chăm ngoan")
    result = hocba("grades", "conduct", "import", str(csv_file(tmp_path, CONDUCT_HEADER, row)))
    assert result.exit_code == 0, result.output
    [entry] = stack.of(RecordConduct)[0].entries
    assert entry.conduct == "Tốt" and entry.comment == "Chăm ngoan"


def test_a_windows_1258_file_is_refused_saying_how_to_save_it_as_csv_utf8(stack, hocba, tmp_path):
    roster = csv_file(
        tmp_path, ROSTER_HEADER, "079214000001,Nguy\u00ean V\u0103n An", name="roster.csv", encoding="cp1258"
    )
    result = hocba("identity", "import", str(roster))
    assert result.exit_code == 2 and not stack.sent
    text = said(result)
    assert "roster.csv is not UTF-8 text: byte 0xEA on line 2 is not UTF-8" in text
    assert "Windows-1258" in text
    assert 'save it again as "CSV UTF-8"' in text and 'File > Save As > "CSV UTF-8 (Comma delimited) (*.csv)"' in text


def test_a_utf16_file_from_excel_is_refused_saying_how_to_save_it_as_csv_utf8(stack, hocba, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_bytes((ROSTER_HEADER + "\n" + ROSTER_AN + "\n").encode("utf-16"))
    result = hocba("identity", "import", str(roster))
    assert result.exit_code == 2
    assert 'roster.csv is UTF-16 text (what Excel saves as "Unicode Text"), not UTF-8' in said(result)
    assert 'save it again as "CSV UTF-8"' in said(result)


def test_a_workbook_is_refused_saying_how_to_save_it_as_csv(stack, hocba, tmp_path):
    book = tmp_path / "6A1.xlsx"
    book.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    result = hocba("grades", "import", str(book))
    assert result.exit_code == 2
    assert "6A1.xlsx is a spreadsheet workbook (.xlsx or .ods), not CSV text" in said(result)
    assert 'save it again as "CSV UTF-8"' in said(result)


# --- the header row ---------------------------------------------------------------------------------


def test_wrong_columns_are_told_with_those_found_missing_unknown_and_expected(stack, hocba, tmp_path):
    header = "school_code,nam_hoc,class,personalid,subject,term,regular,midterm,final"
    result = hocba(
        "grades",
        "import",
        str(csv_file(tmp_path, header, f"{SCHOOL},{YEAR},6A1,{AN},Toán,1,8 8 8 8,7,8", name="6A1.csv")),
    )
    assert result.exit_code == 2 and not stack.sent
    text = said(result)
    assert "6A1.csv: the header row lacks column(s) school_year, personal_id" in text
    assert (
        "found 9 column(s), read as comma-separated: "
        "school_code, nam_hoc, class, personalid, subject, term, regular, midterm, final" in text
    )
    assert "not known: nam_hoc, personalid (did you mean 'personalid' for personal_id?)" in text
    assert (
        "expected school_code, school_year, class, personal_id, subject, term "
        "(and optionally regular, midterm, final, level, midterm_level, comment)" in text
    )


def test_a_semicolon_file_with_a_wrong_column_says_how_it_was_read(stack, hocba, tmp_path):
    header = "personal_id;ho_ten;date_of_birth;sex;school_code;grade;class"
    result = hocba("identity", "import", str(csv_file(tmp_path, header, f"{AN};An;2014-03-02;M;{SCHOOL};6;6A1")))
    assert result.exit_code == 2
    text = said(result)
    assert "lacks column(s) full_name" in text
    assert "read as semicolon-separated: personal_id, ho_ten, date_of_birth, sex, school_code, grade, class" in text
    assert "not known: ho_ten" in text


def test_optional_columns_may_be_left_out(stack, hocba, tmp_path):
    roster = csv_file(
        tmp_path,
        "personal_id,full_name,date_of_birth,sex,school_code,grade,class",
        f"{AN},Nguyễn Văn An,2014-03-02,M,{SCHOOL},6,6A1",
    )
    assert hocba("identity", "import", str(roster)).exit_code == 0
    stack.register(AN, (YEAR, "6A1"))
    gradebook = csv_file(
        tmp_path,
        "school_code,school_year,class,personal_id,subject,term,level",
        f"{SCHOOL},{YEAR},6A1,{AN},Nghệ thuật,1,Đ",
        name="6A1.csv",
    )
    result = hocba("grades", "import", str(gradebook))
    assert result.exit_code == 0, result.output
    [entry] = stack.of(RecordAssessments)[0].entries
    assert entry.comment_level == "Đ" and entry.regular == () and entry.comment == ""


def test_columns_not_expected_are_ignored_and_said_so(stack, hocba, tmp_path):
    roster = csv_file(tmp_path, "STT," + ROSTER_HEADER + ",ghi chú", "1," + ROSTER_AN + ",chuyển đến", name="r.csv")
    result = hocba("identity", "import", str(roster))
    assert result.exit_code == 0, result.output
    assert "note: column(s) STT, ghi chú of r.csv are not used and were ignored" in said(result)


def test_a_column_named_twice_is_refused(stack, hocba, tmp_path):
    result = hocba("identity", "import", str(csv_file(tmp_path, ROSTER_HEADER + ",sex", ROSTER_AN + ",M")))
    assert result.exit_code == 2
    assert "the header row names column(s) sex more than once: keep one of each" in said(result)


def test_an_empty_file_says_what_its_header_row_should_name(stack, hocba, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    result = hocba("identity", "import", str(empty))
    assert result.exit_code == 2
    assert "empty.csv is empty: expected a header row naming the columns personal_id, full_name" in said(result)


def test_a_header_without_rows_is_nothing_to_import(stack, hocba, tmp_path):
    result = hocba("grades", "conduct", "import", str(csv_file(tmp_path, CONDUCT_HEADER, "", name="6A1.csv")))
    assert result.exit_code == 1 and not stack.sent
    assert "nothing to import: 6A1.csv has a header row but no data rows" in said(result)


def test_columns_are_recognised_whatever_their_case_and_spacing(tmp_path):
    read = read_csv(
        csv_file(tmp_path, "Personal ID,Full-Name", "079214000001,An"), Columns(("personal_id", "full_name"))
    )
    assert read.columns == ("personal_id", "full_name") and read.rows[0].values["full_name"] == "An"


def test_read_rows_keeps_taking_the_required_columns_alone(tmp_path):
    rows = list(cli_commands.read_rows(csv_file(tmp_path, "a;b", "1;2"), ("a", "b")))
    assert [(r.number, r.values) for r in rows] == [(2, {"a": "1", "b": "2"})]
    with pytest.raises(CsvShapeError, match="lacks column\\(s\\) c"):
        list(cli_commands.read_rows(csv_file(tmp_path, "a,b", "1,2"), ("a", "c")))


# --- rows -------------------------------------------------------------------------------------------


def test_every_bad_row_is_reported_with_its_number_and_reason_and_the_rest_goes_on(stack, hocba, tmp_path):
    roster = csv_file(
        tmp_path,
        ROSTER_HEADER,
        ROSTER_AN,
        f"{BINH},Trần Thị Bình,2014-02-30,F,,,{SCHOOL},6,6A1,",
        f"{CHAU},Lê Minh Châu,30/11/2014,M,,,{SCHOOL},6,6A1,",
        ROSTER_AN,
    )
    result = hocba("identity", "import", str(roster))
    assert result.exit_code == 1
    [sent] = stack.of(RegisterStudents)
    assert [s.identity.personal_id for s in sent.students] == [AN]
    assert bad_row(result, 3) == "date_of_birth '2014-02-30' is not a date in the calendar (February 2014 has 28 days)"
    assert bad_row(result, 4).startswith("date_of_birth '30/11/2014' is not written YYYY-MM-DD")
    assert bad_row(result, 5) == "duplicate: the same personal ID as row 2"
    assert "ISO 8601" not in result.output


def test_an_impossible_date_is_not_in_the_calendar_a_wrong_form_says_the_form(stack, hocba, tmp_path):
    roster = csv_file(
        tmp_path,
        ROSTER_HEADER,
        f"{AN},An,2014-13-01,M,,,{SCHOOL},6,6A1,",
        f"{BINH},Bình,02/03/2014,F,,,{SCHOOL},6,6A1,",
        f"{CHAU},Châu,2014-3-2,M,,,{SCHOOL},6,6A1,",
    )
    result = hocba("identity", "import", str(roster))
    assert bad_row(result, 2) == "date_of_birth '2014-13-01' is not a date in the calendar (there is no month 13)"
    assert bad_row(result, 3) == (
        "date_of_birth '02/03/2014' is not written YYYY-MM-DD (year-month-day, e.g. 2014-03-02); "
        "if it means day 2 of month 3, write 2014-03-02"
    )
    assert bad_row(result, 4) == "date_of_birth '2014-3-2' is not written YYYY-MM-DD (year-month-day, e.g. 2014-03-02)"
    assert "nothing was recorded: every row of the file was rejected (3)" in said(result)


def test_a_personal_id_that_lost_its_leading_zero_says_how_to_keep_it(stack, hocba, tmp_path):
    result = hocba("identity", "import", str(csv_file(tmp_path, ROSTER_HEADER, ROSTER_AN[1:])))
    assert bad_row(result, 2) == (
        "personal_id '79214000001' has 11 digits, not 12: a spreadsheet drops the leading zeros of a number; "
        "format the column as Text and write all 12 digits"
    )


def test_a_value_with_an_unquoted_separator_is_reported_not_cut(stack, hocba, tmp_path):
    stack.register(AN, (YEAR, "6A1"))
    row = f"{SCHOOL},{YEAR},6A1,{AN},1,Tốt,0,Ngoan, chăm chỉ"
    result = hocba("grades", "conduct", "import", str(csv_file(tmp_path, CONDUCT_HEADER, row)))
    assert bad_row(result, 2) == (
        "9 values but the header row names 8 columns: a value holding a comma (a comment, a list of scores) "
        "must be written in double quotes"
    )
    assert not stack.of(RecordConduct)


def test_a_roster_school_year_not_written_as_two_years_is_a_usage_error(stack, hocba, tmp_path):
    result = hocba("identity", "import", str(csv_file(tmp_path, ROSTER_HEADER, ROSTER_AN)), "--school-year", "2025")
    assert result.exit_code == 2 and not stack.sent
    assert "'2025' is not a school year: write its two years, e.g. 2025-2026" in said(result)


def test_a_gradebook_level_is_named_as_its_column_never_as_the_contracts_field(stack, hocba, tmp_path):
    stack.register(AN, (YEAR, "6A1"))
    stack.answers[RecordAssessments] = lambda m: AssessmentsRecorded(
        school_code=SCHOOL,
        school_year=YEAR,
        entries=0,
        source_message_id=m.message_id,
        rejected=[EntryRejection(index=0, code="missing-level", reason="Nghệ thuật needs comment_level")],
    )
    rows = [f"{SCHOOL},{YEAR},6A1,{AN},Nghệ thuật,1,,,,,,", f"{SCHOOL},{YEAR},6A1,{AN},Âm nhạc,1,,,,Dat,,"]
    result = hocba("grades", "import", str(csv_file(tmp_path, GRADEBOOK_HEADER, *rows)))
    assert bad_row(result, 2) == "Nghệ thuật needs level"
    assert bad_row(result, 3) == "level 'Dat' must be T, H or C (primary) or Đ or CĐ (secondary comment subjects)"
    assert "comment_level" not in result.output


def test_a_gradebook_school_year_and_term_say_what_they_must_be(stack, hocba, tmp_path):
    rows = [f"{SCHOOL},2025/2026,6A1,{AN},Toán,1,8 8 8 8,7,8,,,", f"{SCHOOL},{YEAR},6A1,{AN},Toán,I,8 8 8 8,7,8,,,"]
    result = hocba("grades", "import", str(csv_file(tmp_path, GRADEBOOK_HEADER, *rows)))
    assert bad_row(result, 2) == "school_year '2025/2026' is not a school year: write its two years, e.g. 2025-2026"
    assert bad_row(result, 3) == "term 'I' must be 1 or 2 (1: term I, 2: term II or, in primary, the end of the year)"
    assert not stack.sent, "nothing valid: the stack is not asked"


# --- rows checked against identity's enrolments: not sent to be refused by grades -------------------------


def test_a_row_of_a_student_not_enrolled_that_year_is_reported_and_not_sent(stack, hocba, tmp_path):
    stack.register(AN, ("2024-2025", "5A1"))
    stack.register(BINH, (YEAR, "6A1"))
    rows = [f"{SCHOOL},{YEAR},6A1,{AN},Tin học,1,8 7,7,8,,,", f"{SCHOOL},{YEAR},6A1,{BINH},Tin học,1,8 7,7,8,,,"]
    result = hocba("grades", "import", str(csv_file(tmp_path, GRADEBOOK_HEADER, *rows)))
    assert result.exit_code == 1
    assert bad_row(result, 2) == (
        f"student {AN} is not enrolled in school {SCHOOL} for {YEAR} (enrolled there in 2024-2025): check "
        f"school_year, or import the roster of {YEAR} first (hocba identity import --school-year {YEAR})"
    )
    [sent] = stack.of(RecordAssessments)
    assert [e.student_ref for e in sent.entries] == [f"ref-{BINH}"]


def test_a_row_of_a_student_of_another_class_is_reported_and_not_sent(stack, hocba, tmp_path):
    stack.register(AN, (YEAR, "6A2"))
    row = f"{SCHOOL},{YEAR},6A1,{AN},1,Tốt,0,"
    result = hocba("grades", "conduct", "import", str(csv_file(tmp_path, CONDUCT_HEADER, row)))
    assert result.exit_code == 1 and not stack.of(RecordConduct)
    assert bad_row(result, 2) == (
        f"student {AN} is in class 6A2 in {YEAR}, not 6A1: import the row with that class's file, "
        "or correct the class in the roster"
    )
    assert "nothing was recorded: every row of the file was rejected (1)" in said(result)


def test_a_row_of_a_student_identity_does_not_know_is_reported(stack, hocba, tmp_path):
    result = hocba(
        "grades", "conduct", "import", str(csv_file(tmp_path, CONDUCT_HEADER, f"{SCHOOL},{YEAR},6A1,{AN},1,Tốt,0,"))
    )
    assert bad_row(result, 2).startswith(f"no student with personal ID {AN} is registered in school {SCHOOL}")


# --- the homeroom teacher's entries ------------------------------------------------------------------------


def test_conduct_absences_and_comments_go_with_the_homeroom_teachers_token(stack, hocba, tmp_path):
    stack.register(AN, (YEAR, "6A1"))
    stack.register(BINH, (YEAR, "6A1"))
    rows = [f"{SCHOOL},{YEAR},6A1,{AN},1,Tốt,2,Chăm ngoan", f"{SCHOOL},{YEAR},6A1,{BINH},2,Khá,0,"]
    result = hocba("grades", "conduct", "import", str(csv_file(tmp_path, CONDUCT_HEADER, *rows, name="6A1.csv")))
    assert result.exit_code == 0, result.output
    [sent] = stack.of(RecordConduct)
    assert (sent.school_code, sent.school_year) == (SCHOOL, YEAR)
    assert [(e.student_ref, e.term, e.conduct, e.absences, e.comment) for e in sent.entries] == [
        (f"ref-{AN}", 1, "Tốt", 2, "Chăm ngoan"),
        (f"ref-{BINH}", 2, "Khá", 0, ""),
    ]
    issuer, _ = dev_issuer(tmp_path / "data")
    actor = verify_token(sent, issuer.public_keys(audience_of(sent)))
    assert actor.is_homeroom_teacher_of("6A1") and actor.school_code == SCHOOL
    assert "homeroom entries 6A1.csv" in said(result)


def test_primary_qualities_and_competencies_are_read_as_name_and_level(stack, hocba, tmp_path):
    stack.register(AN, (YEAR, "1A1"))
    header = "school_code,school_year,class,personal_id,term,absences,qualities,competencies"
    row = f'{SCHOOL},{YEAR},1A1,{AN},1,0,"Yêu nước: T; Nhân ái: Đ",Tự chủ và tự học: C'
    result = hocba("grades", "conduct", "import", str(csv_file(tmp_path, header, row)))
    assert result.exit_code == 0, result.output
    [entry] = stack.of(RecordConduct)[0].entries
    assert entry.qualities == {"Yêu nước": "T", "Nhân ái": "Đ"} and entry.competencies == {"Tự chủ và tự học": "C"}
    assert entry.conduct is None


def test_homeroom_values_say_what_they_must_be(stack, hocba, tmp_path):
    header = "school_code,school_year,class,personal_id,term,conduct,absences,qualities"
    rows = [
        f"{SCHOOL},{YEAR},6A1,{AN},1,Giỏi,0,",
        f"{SCHOOL},{YEAR},6A1,{AN},2,Tốt,,",
        f"{SCHOOL},{YEAR},6A1,{BINH},1,Tốt,2.5,",
        f"{SCHOOL},{YEAR},6A1,{BINH},2,,0,Yêu nước T",
        f"{SCHOOL},{YEAR},6A1,{CHAU},1,,0,Yêu nước: A",
    ]
    result = hocba("grades", "conduct", "import", str(csv_file(tmp_path, header, *rows)))
    assert bad_row(result, 2) == "conduct 'Giỏi' must be Tốt, Khá, Đạt or Chưa đạt"
    assert bad_row(result, 3) == (
        "absences is empty: write the sessions (buổi) missed in the term, excused or not; 0 if none"
    )
    assert bad_row(result, 4) == "absences '2.5' is not a whole number of sessions (buổi), e.g. 0 or 3"
    assert bad_row(result, 5) == (
        "qualities 'Yêu nước T' is not a name and its level: write each as name: level (T, Đ or C), separated by ;"
    )
    assert bad_row(result, 6) == "qualities 'Yêu nước' is rated 'A': a level is T, Đ or C"


def test_a_homeroom_file_holds_one_class_each_student_and_term_once(stack, hocba, tmp_path):
    stack.register(AN, (YEAR, "6A1"))
    rows = [
        f"{SCHOOL},{YEAR},6A1,{AN},1,Tốt,0,",
        f"{SCHOOL},{YEAR},6A2,{BINH},1,Tốt,0,",
        f"{SCHOOL},{YEAR},6A1,{AN},1,Khá,1,",
    ]
    result = hocba("grades", "conduct", "import", str(csv_file(tmp_path, CONDUCT_HEADER, *rows)))
    assert result.exit_code == 1
    assert bad_row(result, 3).startswith(f"another class: this file holds class 6A1 of school {SCHOOL} in {YEAR}")
    assert bad_row(result, 4) == "duplicate: the same student and term as row 2"
    assert len(stack.of(RecordConduct)[0].entries) == 1


def test_rows_grades_refuses_are_reported_by_row_number_and_nothing_recorded_says_why(stack, hocba, tmp_path):
    stack.register(AN, (YEAR, "6A1"))
    stack.answers[RecordConduct] = lambda m: ConductRecorded(
        school_code=SCHOOL,
        school_year=YEAR,
        entries=0,
        source_message_id=m.message_id,
        rejected=[EntryRejection(index=0, code="term-closed", reason="term 1 of 2025-2026 is closed")],
    )
    result = hocba(
        "grades", "conduct", "import", str(csv_file(tmp_path, CONDUCT_HEADER, f"{SCHOOL},{YEAR},6A1,{AN},1,Tốt,0,"))
    )
    assert result.exit_code == 1
    assert bad_row(result, 2) == "term 1 of 2025-2026 is closed"
    assert "nothing was recorded: every row of the file was rejected (1)" in said(result)


def test_importing_the_same_homeroom_file_again_is_not_a_failure(stack, hocba, tmp_path):
    stack.register(AN, (YEAR, "6A1"))
    stack.answers[RecordConduct] = lambda m: ConductRecorded(
        school_code=SCHOOL,
        school_year=YEAR,
        entries=1,
        source_message_id=m.message_id,
        unchanged=1,
    )
    result = hocba(
        "grades", "conduct", "import", str(csv_file(tmp_path, CONDUCT_HEADER, f"{SCHOOL},{YEAR},6A1,{AN},1,Tốt,0,"))
    )
    assert result.exit_code == 0, result.output


def test_a_reason_longer_than_the_commands_carry_is_a_usage_error(stack, hocba, tmp_path):
    file = csv_file(tmp_path, CONDUCT_HEADER, f"{SCHOOL},{YEAR},6A1,{AN},1,Tốt,0,")
    result = hocba("grades", "conduct", "import", str(file), "--reason", "x" * 501)
    assert result.exit_code == 2 and "at most 500 characters (this one has 501)" in said(result)


def test_an_upper_secondary_roster_row_carries_the_students_electives_and_learning_topics(stack, hocba, tmp_path):
    header = "personal_id,full_name,date_of_birth,sex,school_code,grade,class,electives,learning_topics"
    row = f'{AN},Nguyễn Văn An,2010-03-02,M,{SCHOOL},10,10A1,"Vật lí; Hóa học, Sinh học;Tin học",Toán; Vật lí; Hóa học'
    result = hocba("identity", "import", str(csv_file(tmp_path, header, row)))
    assert result.exit_code == 0, result.output
    [sent] = stack.of(RegisterStudents)
    enrolment = sent.students[0].enrolment
    assert enrolment.electives == ("Vật lí", "Hóa học", "Sinh học", "Tin học")
    assert enrolment.learning_topics == ("Toán", "Vật lí", "Hóa học")


def test_a_mistyped_class_in_the_first_row_is_the_one_reported_not_the_rest(stack, hocba, tmp_path):
    stack.register(AN, (YEAR, "6A1"))
    stack.register(BINH, (YEAR, "6A1"))
    rows = [
        f"{SCHOOL},{YEAR},6A7,{AN},1,Tốt,0,",
        f"{SCHOOL},{YEAR},6A1,{AN},2,Tốt,0,",
        f"{SCHOOL},{YEAR},6A1,{BINH},1,Khá,0,",
    ]
    result = hocba("grades", "conduct", "import", str(csv_file(tmp_path, CONDUCT_HEADER, *rows)))
    assert bad_row(result, 2) == (
        f"another class: this file holds class 6A1 of school {SCHOOL} in {YEAR} (as most of its rows say), "
        f"this row {SCHOOL} {YEAR} 6A7; import each class from a file of its own"
    )
    assert len(stack.of(RecordConduct)[0].entries) == 2
