"""The imports act as the school's staff the staff register enrols (`hocba pki enrol`): a gradebook's subject with
the teacher enrolled for that subject and class, homeroom entries with the class's enrolled homeroom teacher, a
roster and the look-ups of personal IDs with the enrolled records administrator; each entry's history then names
them. Whoever the register does not name is acted for as the development issuer names them, as before.

The broker is replaced as in test_csv_imports.py: the session connects to nothing, and each request is answered
as identity and grades would, and kept.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from hocba import commands as cli_commands
from hocba.cli import app
from hocba.console import console
from hocba.keys import dev_issuer
from hocba.staff import StaffMember, StaffRegister
from shared.auth import Actor, audience_of, verify_token
from shared.contracts.base import Message, Reply
from shared.contracts.grades import AssessmentsRecorded, ConductRecorded, RecordAssessments, RecordConduct
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

SCHOOL = "79012000"
YEAR = "2025-2026"
AN = "079214000101"
ENROLLED = (
    StaffMember("qlhb-cvl", "Lê Thị Mai", "school_admin", SCHOOL),
    StaffMember("gvcn-6a1", "Phạm Thị Hoa", "homeroom_teacher", SCHOOL, ("6A1",)),
    StaffMember("gv-toan", "Đỗ Văn Nam", "subject_teacher", SCHOOL, ("6A1", "6A2"), ("Toán",)),
    StaffMember("gv-toan-6a3", "Vũ Văn Ba", "subject_teacher", SCHOOL, ("6A3",), ("Toán",)),
)


def answer(message: Any) -> Any:
    """What identity and grades answer: the student found, enrolled in 6A1; every entry and student stored."""
    if isinstance(message, FindStudents):
        identity = StudentIdentity(personal_id=AN, full_name="Nguyễn Văn An", date_of_birth=date(2014, 3, 2), sex="M")
        enrolment = Enrolment(school_code=SCHOOL, school_year=YEAR, grade=6, class_name="6A1")
        return StudentMatches(
            students=[StudentSnapshot(student_ref="ref-an", identity=identity)],
            enrolments=[RegisteredStudent(student_ref="ref-an", enrolment=enrolment)],
        )
    if isinstance(message, RegisterStudents):
        return RegistrationReport(source_message_id=message.message_id, new=len(message.students))
    kind = AssessmentsRecorded if isinstance(message, RecordAssessments) else ConductRecorded
    n = len(message.entries)
    return kind(school_code=SCHOOL, school_year=YEAR, entries=n, source_message_id=message.message_id, new=n)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Message]:
    kept: list[Message] = []

    async def connected(bus: Bus) -> None:
        return None

    async def request(bus: Bus, message: Message, reply: type[Reply], timeout: float = 30.0) -> Reply:
        parsed = type(message).model_validate_json(message.model_dump_json())
        kept.append(parsed)
        return reply.model_validate(answer(parsed).model_dump(mode="json"))

    monkeypatch.setattr(cli_commands, "connect", connected)
    monkeypatch.setattr(Bus, "request", request)
    monkeypatch.setattr(console, "width", 240)
    return kept


@pytest.fixture
def hocba(tmp_path: Path) -> Callable[..., Result]:
    runner = CliRunner()
    env = {"HOCBA_DATA_DIR": str(tmp_path), "HOCBA_PKI_DIR": str(tmp_path / "pki"), "COLUMNS": "240"}

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args), env=env)

    return run


@pytest.fixture
def enrolled(tmp_path: Path) -> None:
    """The school's staff register, as `hocba pki enrol staff.csv` keeps it."""
    register = StaffRegister.load(tmp_path / "pki")
    register.schools[SCHOOL] = "Trường THCS-THPT Chu Văn Lộc"
    register.staff.update({m.staff_id: m for m in ENROLLED})
    register.save()


def actor_of(message: Message, data_dir: Path) -> Actor:
    issuer, _ = dev_issuer(data_dir)
    return verify_token(message, issuer.public_keys(audience_of(message)))


def csv_file(folder: Path, name: str, *lines: str) -> str:
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def of(sent: list[Message], kind: type[Message]) -> list[Any]:
    return [m for m in sent if isinstance(m, kind)]


GRADEBOOK = (
    "school_code,school_year,class,personal_id,subject,term,regular,midterm,final,level",
    f"{SCHOOL},{YEAR},6A1,{AN},Toán,1,8 8 8 8,7.5,8,",
    f"{SCHOOL},{YEAR},6A1,{AN},Tin học,1,8 8,7.5,8,",
)


def test_a_gradebooks_subject_goes_with_the_teacher_enrolled_for_it_in_that_class(enrolled, sent, hocba, tmp_path):
    result = hocba("grades", "import", csv_file(tmp_path, "6A1.csv", *GRADEBOOK))
    assert result.exit_code == 0, result.output
    by_subject = {m.entries[0].subject: actor_of(m, tmp_path) for m in of(sent, RecordAssessments)}
    toan = by_subject["Toán"]
    assert (toan.subject, toan.name, toan.subjects, toan.classes) == (
        "gv-toan",
        "Đỗ Văn Nam",
        {"Toán"},
        {"6A1", "6A2"},
    ), "the Toán teacher of 6A1, not the one of 6A3"
    # Nobody is enrolled for Tin học in 6A1: its teacher as the development issuer names them.
    tin = by_subject["Tin học"]
    assert tin.subject.startswith(f"gv-{SCHOOL}-") and tin.subjects == {"Tin học"} and tin.classes == {"6A1"}
    [find] = of(sent, FindStudents)
    assert actor_of(find, tmp_path).subject == "qlhb-cvl", "personal IDs resolved by the enrolled administrator"


def test_homeroom_entries_go_with_the_classs_enrolled_homeroom_teacher(enrolled, sent, hocba, tmp_path):
    conduct = csv_file(
        tmp_path, "hanh-kiem-6A1.csv", "school_code,school_year,class,personal_id,term,absences,conduct",
        f"{SCHOOL},{YEAR},6A1,{AN},1,0,Tốt",
    )  # fmt: skip
    result = hocba("grades", "conduct", "import", conduct)
    assert result.exit_code == 0, result.output
    [recorded] = of(sent, RecordConduct)
    teacher = actor_of(recorded, tmp_path)
    assert (teacher.subject, teacher.roles, teacher.homeroom_class) == ("gvcn-6a1", {"homeroom_teacher"}, "6A1")


def test_a_roster_goes_with_the_schools_enrolled_records_administrator(enrolled, sent, hocba, tmp_path):
    roster = csv_file(
        tmp_path, "roster.csv", "personal_id,full_name,date_of_birth,sex,school_code,grade,class",
        f"{AN},Nguyễn Văn An,2014-03-02,M,{SCHOOL},6,6A1",
    )  # fmt: skip
    result = hocba("identity", "import", roster)
    assert result.exit_code == 0, result.output
    [registered] = of(sent, RegisterStudents)
    admin = actor_of(registered, tmp_path)
    assert (admin.subject, admin.roles, admin.school_code) == ("qlhb-cvl", {"school_admin"}, SCHOOL)


def test_a_school_nobody_enrolled_is_acted_for_as_the_development_issuer_names_its_staff(sent, hocba, tmp_path):
    result = hocba("grades", "import", csv_file(tmp_path, "6A1.csv", *GRADEBOOK))
    assert result.exit_code == 0, result.output
    teachers = [actor_of(m, tmp_path).subject for m in of(sent, RecordAssessments)]
    assert len(teachers) == 2 and all(t.startswith(f"gv-{SCHOOL}-") for t in teachers), teachers
    assert actor_of(of(sent, FindStudents)[0], tmp_path).subject == f"admin-{SCHOOL}"
