"""The school of the school-year tests, and its staff at the command line.

A school that is not one of the demo's (79007000-002), enrolled from its own staff table, with a grade-6 class
(Circular 22/2021, lower secondary) and a grade-10 class (Circular 22/2021 with the 2018 programme: each student's
electives and learning topics). Its CSV files are written as its staff would save them: the staff table, the
roster, a gradebook per class (one student's term-I Tin học left out) and the homeroom teachers' conduct,
absences and comments, semicolon-separated as a Vietnamese spreadsheet writes them. `hocba` commands run as their
own processes in the school's folder, with a running stack's environment.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hocba.demo_data import ELECTIVES, SUBJECTS, UPPER_COMPULSORY, regular_assessments
from hocba.stack import Stack

#: Not one of the demo's schools (79007000-002): its staff are enrolled from the table below, nowhere else.
SCHOOL = "79012000"
SCHOOL_NAME = "Trường THCS-THPT Chu Văn Lộc"
YEAR = "2025-2026"
WHERE = ("--school", SCHOOL, "--year", YEAR)
HOCBA = str(Path(sys.executable).with_name("hocba"))

#: The school's staff table: staff id, name, role, classes, subjects.
STAFF = (
    ("ht-cvl", "Trần Văn Lộc", "principal", "", ""),
    ("qlhb-cvl", "Lê Thị Mai", "school_admin", "", ""),
    ("gvcn-6a1", "Phạm Thị Hoa", "homeroom_teacher", "6A1", ""),
    ("gvcn-10a1", "Võ Minh Tuấn", "homeroom_teacher", "10A1", ""),
    ("gv-toan", "Đỗ Văn Nam", "subject_teacher", "6A1 10A1", "Toán"),
    ("gv-tin", "Huỳnh Thị Lan", "subject_teacher", "6A1 10A1", "Tin học"),
)


@dataclass(frozen=True)
class Student:
    personal_id: str
    name: str
    born: str
    sex: str
    electives: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()


GRADE_6 = (
    Student("079214000101", "Nguyễn Văn An", "2014-03-02", "M"),
    Student("079314000102", "Trần Thị Bình", "2014-07-19", "F"),
    Student("079214000103", "Lê Minh Châu", "2014-11-30", "M"),
)
GRADE_10 = (
    Student(
        "079210000201", "Phạm Quốc Dũng", "2010-01-05", "M",
        ("Vật lí", "Hóa học", "Sinh học", "Tin học"), ("Toán", "Vật lí", "Hóa học"),
    ),
    Student(
        "079310000202", "Võ Thị Giang", "2010-05-21", "F",
        ("Địa lí", "Giáo dục kinh tế và pháp luật", "Công nghệ", "Âm nhạc"), ("Ngữ văn", "Lịch sử", "Âm nhạc"),
    ),
    Student(
        "079210000203", "Đặng Gia Huy", "2010-09-09", "M",
        ("Vật lí", "Hóa học", "Công nghệ", "Tin học"), ("Toán", "Vật lí", "Tin học"),
    ),
)  # fmt: skip
#: The entry the gradebook leaves out: Lê Minh Châu's Tin học in term I.
INCOMPLETE = GRADE_6[2]
MISSING = (INCOMPLETE.personal_id, "Tin học", 1)


# --- the school's files --------------------------------------------------------------------------


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def staff_table() -> str:
    header = ("school_code", "school_name", "staff_id", "name", "role", "classes", "subjects")
    return csv_text(header, ((SCHOOL, SCHOOL_NAME, *row) for row in STAFF))


def roster() -> str:
    header = ("personal_id", "full_name", "date_of_birth", "sex", "school_code", "grade", "class", "electives",
              "learning_topics")  # fmt: skip
    rows = [(s.personal_id, s.name, s.born, s.sex, SCHOOL, 6, "6A1", "", "") for s in GRADE_6]
    rows += [
        (s.personal_id, s.name, s.born, s.sex, SCHOOL, 10, "10A1", "; ".join(s.electives), "; ".join(s.topics))
        for s in GRADE_10
    ]
    return csv_text(header, rows)


GRADEBOOK = ("school_code", "school_year", "class", "personal_id", "subject", "term", "regular", "midterm", "final",
             "level", "midterm_level", "comment")  # fmt: skip


def subject_rows(class_name: str, student: Student) -> Iterator[tuple[object, ...]]:
    """A student's entries in every subject they take, both terms: scores 8, 7.5, 8 (one regular assessment more
    in a subject of a learning topic), or Đạt in a comment subject."""
    upper = {name: (name, periods, scored) for name, periods, scored in (*UPPER_COMPULSORY, *ELECTIVES)}
    subjects = [*UPPER_COMPULSORY, *(upper[e] for e in student.electives)] if student.electives else SUBJECTS
    for subject, periods, scored in subjects:
        for term in (1, 2):
            if (student.personal_id, subject, term) == MISSING:
                continue
            where = (SCHOOL, YEAR, class_name, student.personal_id, subject, term)
            if scored:
                regular = regular_assessments(periods) + (subject in student.topics)
                yield (*where, " ".join(["8"] * regular), "7.5", "8", "", "", "")
            else:
                yield (*where, "", "", "", "Đ", "", "")


def gradebook(class_name: str, students: Sequence[Student]) -> str:
    return csv_text(GRADEBOOK, (row for s in students for row in subject_rows(class_name, s)))


def homeroom_entries(class_name: str, students: Sequence[Student]) -> str:
    """Conduct, absences and a comment per student and term, semicolon-separated as a Vietnamese spreadsheet
    writes its CSV."""
    lines = ["school_code;school_year;class;personal_id;term;absences;conduct;comment"]
    lines += [f"{SCHOOL};{YEAR};{class_name};{s.personal_id};{t};1;Tốt;Chăm ngoan" for s in students for t in (1, 2)]
    return "\n".join(lines) + "\n"


def write_files(folder: Path) -> Path:
    """The CSV files of the school's year in `folder`, as its staff would save them."""
    written = {
        "staff.csv": staff_table(),
        "roster.csv": roster(),
        "gradebook-6A1.csv": gradebook("6A1", GRADE_6),
        "gradebook-10A1.csv": gradebook("10A1", GRADE_10),
        "hanh-kiem-6A1.csv": homeroom_entries("6A1", GRADE_6),
        "hanh-kiem-10A1.csv": homeroom_entries("10A1", GRADE_10),
    }
    for name, text in written.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


# --- the commands ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    """A command as a person sees it: its exit status and what it printed, line breaks of the terminal undone."""

    args: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def said(self) -> str:
        return " ".join(f"{self.stdout}\n{self.stderr}".split())

    def __repr__(self) -> str:
        return f"hocba {' '.join(self.args)} → exit {self.exit_code}\n{self.stdout}\n{self.stderr}"


def command_line(stack: Stack, folder: Path) -> Callable[..., Ran]:
    """`hocba ARGS` run as its own process, in the school's folder, with the stack's environment: the broker's
    bootstrap URL and namespace, the data folder (development issuer key, broker passwords) and the PKI the
    services read. No command's output holds a traceback."""
    services = next(c for c in stack.children if c.name == "grades")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOCBA_")},
        "AMQP_URL": stack.config.amqp_url,
        "HOCBA_NAMESPACE": stack.config.namespace,
        "HOCBA_DATA_DIR": str(stack.config.data_dir),
        "HOCBA_PKI_DIR": services.env["HOCBA_PKI_DIR"],
        "HOCBA_TSA_URL": stack.tsa_url,
        "COLUMNS": "200",
    }

    def run(*args: str, timeout: float = 120) -> Ran:
        done = subprocess.run(
            [HOCBA, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        ran = Ran(args, done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in ran.stdout + ran.stderr, ran
        return ran

    return run


def counts(output: str) -> list[int]:
    """The numbers of an import's summary table's one data row."""
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if cells and all(c.isdigit() for c in cells):
            return [int(c) for c in cells]
    raise AssertionError(f"no summary row in:\n{output}")


def record_ids(output: str) -> dict[str, str]:
    """Each student's record id, from a `hocba records list` table."""
    found = {}
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line) if c.strip()]
        if len(cells) == 5 and re.fullmatch(r"[0-9a-f]{32}", cells[2]):
            found[cells[1]] = cells[2]
    return found


def listed_until(hocba: Callable[..., Ran], text: str, what: str, *args: str) -> None:
    """Ask `hocba records list ARGS` every 2 s until it says `text`; fail saying `what` after 90 s."""
    deadline = time.monotonic() + 90
    while True:
        listed = hocba("records", "list", *args)
        assert listed.exit_code == 0, listed
        if text in listed.said:
            return
        assert time.monotonic() < deadline, f"{what}:\n{listed}"
        time.sleep(2)
