"""A school's whole year by `hocba` commands only, from an empty stack: what a school does, as it does it.

The five services, the ministry simulator and the embedded database server run as separate processes on real
RabbitMQ; every step is a `hocba` command run as its own process with the stack's environment, reading CSV files
this test writes, as a school's staff would from the README and docs/operations.md. The school is not one of the
demo's: it is enrolled from its own staff table. It has a grade-6 class (Circular 22/2021, lower secondary) and
a grade-10 class (Circular 22/2021 with the 2018 programme: each student's electives and learning topics).
Its staff, students and files are in tests/e2e/school_year.py; test_web_school_year does the principal's part of
the same year on the web page.

One student's gradebook lacks a term-I subject: the review finds the record incomplete, and neither the homeroom
teacher nor the principal signs it; every other record is signed, sealed, archived and delivered to the ministry.
Then the school completes it (the term reopened, the entry made, the year closed again), its class is reviewed
again, and it is signed and delivered too; later one record is amended as version 2.
Each step's exit status and outcome line are what a person reads to know what happened.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.school_year import (
    GRADE_6,
    GRADE_10,
    GRADEBOOK,
    INCOMPLETE,
    SCHOOL,
    WHERE,
    YEAR,
    Ran,
    command_line,
    counts,
    csv_text,
    listed_until,
    record_ids,
    write_files,
)
from tests.support import throwaway_stack

#: A class list is in the students' order as `hocba records list` shows it to the school (by given name, as a
#: Vietnamese class list): An, Bình, Châu.
CLASS_LIST_6A1 = ("Nguyễn Văn An", "Trần Thị Bình", "Lê Minh Châu")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with throwaway_stack(tmp_path_factory.mktemp("stack"), "year") as running:
        yield running


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """The CSV files of the school's year, as its staff would save them."""
    return write_files(tmp_path_factory.mktemp("school"))


@pytest.fixture(scope="module")
def hocba(stack, files) -> Callable[..., Ran]:
    """Run `hocba ARGS` as its own process, in the school's folder, with the stack's environment."""
    return command_line(stack, files)


@dataclass
class Year:
    """What the steps learn as they go: each student's record id."""

    records: dict[str, str]


@pytest.fixture(scope="module")
def year() -> Year:
    return Year(records={})


# --- the year, step by step ----------------------------------------------------------------------


def test_the_schools_staff_are_enrolled_from_its_staff_table(hocba):
    enrolled = hocba("pki", "enrol", "staff.csv")
    assert enrolled.exit_code == 0, enrolled
    # rows enrolled, updated, unchanged; certificates: two homeroom teachers, the principal, the school's seal
    assert counts(enrolled.stdout) == [6, 0, 0, 4, 0], enrolled


def test_the_roster_registers_both_classes_with_the_grade_10_students_electives_and_topics(hocba):
    imported = hocba("identity", "import", "roster.csv", "--school-year", YEAR)
    assert imported.exit_code == 0, imported
    assert counts(imported.stdout) == [6, 6, 0, 0, 0], imported  # rows, registered, unchanged, enrolment added


@pytest.mark.parametrize(
    ("file", "rows"),
    [
        ("gradebook-6A1.csv", 3 * 12 * 2 - 1),  # 12 subjects, both terms; Lê Minh Châu's Tin học term I left out
        ("gradebook-10A1.csv", 3 * 12 * 2),  # 8 compulsory subjects and 4 electives each
    ],
)
def test_each_class_gradebook_is_stored_by_its_subject_teachers(hocba, file, rows):
    imported = hocba("grades", "import", file)
    assert imported.exit_code == 0, imported
    assert counts(imported.stdout) == [rows, rows, 0, 0, 0], imported  # rows, stored, changed, unchanged, rejected


@pytest.mark.parametrize("file", ["hanh-kiem-6A1.csv", "hanh-kiem-10A1.csv"])
def test_each_class_conduct_absences_and_comments_are_stored_by_its_homeroom_teacher(hocba, file):
    imported = hocba("grades", "conduct", "import", file)
    assert imported.exit_code == 0, imported
    assert counts(imported.stdout) == [6, 6, 0, 0, 0], imported


def test_the_principal_closes_both_terms_then_the_year_and_every_record_is_assembled(hocba):
    for term in ("1", "2"):
        closed = hocba("term", "close", *WHERE, "--term", term)
        assert closed.exit_code == 0, closed
        assert f"term {term} of {YEAR} is closed in school {SCHOOL}: its entries are locked" in closed.said
    closed = hocba("year", "close", *WHERE)
    assert closed.exit_code == 0, closed
    assert f"{YEAR} is closed in school {SCHOOL}: 6 records assembled (6 new) of 6 students" in closed.said


def test_the_records_list_shows_the_one_incomplete_record(hocba, year):
    listed = hocba("records", "list", *WHERE)
    assert listed.exit_code == 0, listed
    assert "6 record(s): 5 assembled, 1 incomplete (entries missing)" in listed.said
    year.records.update(record_ids(listed.stdout))
    assert set(year.records) == {s.name for s in (*GRADE_6, *GRADE_10)}, listed

    incomplete = hocba("records", "list", *WHERE, "--status", "incomplete")
    assert incomplete.exit_code == 0, incomplete
    assert set(record_ids(incomplete.stdout)) == {INCOMPLETE.name}
    assert "1 record(s): 1 incomplete (entries missing)" in incomplete.said


def test_the_review_finds_the_incomplete_record_and_what_it_lacks(hocba, year):
    reviewed = hocba("review", *WHERE)
    assert reviewed.exit_code == 0, reviewed
    said = reviewed.said
    assert "class 6A1: 3 record(s), 3 students enrolled; review: not reviewed" in said
    assert "class 10A1: 3 record(s), 3 students enrolled; review: not reviewed" in said
    rid = year.records[INCOMPLETE.name]
    assert f"incomplete, never signed as it is: {INCOMPLETE.name} ({rid}): Tin học, term I" in said
    assert "2 class(es) wait for their homeroom teacher's confirmation before they are signed" in said


def test_a_class_is_not_signed_before_its_homeroom_teacher_confirms_its_review(hocba):
    refused = hocba("sign", *WHERE, "--as", "homeroom_teacher", "--class", "6A1")
    assert refused.exit_code == 1, refused
    assert "refused (not-reviewed): class 6A1 has not been reviewed" in refused.said


def test_each_homeroom_teacher_confirms_and_signs_their_class_but_not_the_incomplete_record(hocba, year):
    rid = year.records[INCOMPLETE.name]
    confirmed = hocba("review", "confirm", *WHERE, "--class", "6A1")
    assert confirmed.exit_code == 0, confirmed
    assert "confirmed the review of class 6A1: 3 record(s); 1 of them incomplete and never signed" in confirmed.said
    signed = hocba("sign", *WHERE, "--as", "homeroom_teacher", "--class", "6A1")
    assert signed.exit_code == 0, signed
    assert f"not signed, incomplete: {rid} v1 of class 6A1: Tin học, term I" in signed.said
    assert "signed 2 of 2 records" in signed.said

    confirmed = hocba("review", "confirm", *WHERE, "--class", "10A1")
    assert confirmed.exit_code == 0, confirmed
    assert "confirmed the review of class 10A1: 3 record(s)." in confirmed.said
    signed = hocba("sign", *WHERE, "--as", "homeroom_teacher", "--class", "10A1")
    assert signed.exit_code == 0, signed
    assert "signed 3 of 3 records" in signed.said


def test_the_principals_one_click_signs_and_seals_every_complete_record(hocba, year):
    signed = hocba("sign", *WHERE)
    assert signed.exit_code == 0, signed
    assert f"not signed, incomplete: {year.records[INCOMPLETE.name]} v1 of class 6A1: Tin học, term I" in signed.said
    assert "signed and sealed 5 of 5 records" in signed.said
    assert "5 now carry every signature and go to the archive" in signed.said


def test_every_signed_record_is_archived_and_delivered_to_the_ministry(hocba):
    delivered = "6 record(s): 1 incomplete (entries missing), 5 delivered to the ministry"
    listed_until(hocba, delivered, "not every signed record reached the ministry", *WHERE)

    status = hocba("sync", "status")
    assert status.exit_code == 0, status
    assert "backlog 0" in status.said and "parked 0" in status.said


def test_the_incomplete_record_is_completed_after_the_years_close_and_signed_once_its_class_is_reviewed_again(
    hocba, files, year
):
    """Never signed, it is not a record yet: the principal reopens the term, the teacher enters what was missing,
    the year is closed again, and the completed version takes its place (still version 1)."""
    rid = year.records[INCOMPLETE.name]
    reopened = hocba("term", "reopen", *WHERE, "--term", "1", "--reason", "Bổ sung điểm Tin học còn thiếu")
    assert reopened.exit_code == 0, reopened
    (files / "bo-sung-tin-hoc.csv").write_text(
        csv_text(
            GRADEBOOK, [(SCHOOL, YEAR, "6A1", INCOMPLETE.personal_id, "Tin học", 1, "8 8", "7.5", "8", "", "", "")]
        ),
        encoding="utf-8",
    )
    imported = hocba("grades", "import", "bo-sung-tin-hoc.csv", "--reason", "Bổ sung điểm còn thiếu")
    assert imported.exit_code == 0, imported
    assert counts(imported.stdout) == [1, 1, 0, 0, 0], imported
    for command in (("term", "close", *WHERE, "--term", "1"), ("year", "close", *WHERE)):
        closed = hocba(*command)
        assert closed.exit_code == 0, closed

    listed = hocba("records", "list", *WHERE, "--status", "incomplete")
    assert listed.exit_code != 0 or INCOMPLETE.name not in listed.said, listed
    confirmed = hocba("review", "confirm", *WHERE, "--class", "6A1")
    assert confirmed.exit_code == 0, confirmed
    assert rid in confirmed.said, confirmed
    signed = hocba("sign", *WHERE, "--as", "homeroom_teacher", "--class", "6A1")
    assert signed.exit_code == 0, signed
    assert "signed 1 of 1 records" in signed.said
    signed = hocba("sign", *WHERE)
    assert signed.exit_code == 0, signed
    assert "signed and sealed 1 of 1 records" in signed.said

    delivered = "6 record(s): 6 delivered to the ministry"
    listed_until(hocba, delivered, "the completed record did not reach the ministry", *WHERE)


def test_a_class_is_printed_one_certified_copy_per_record(hocba, files):
    printed = hocba("archive", "print", *WHERE, "--class", "10A1", "--out", "copies-10A1")
    assert printed.exit_code == 0, printed
    assert f"printed 3 certified copies of class 10A1 of school {SCHOOL} for {YEAR} into copies-10A1" in printed.said
    written = sorted(p.name for p in (files / "copies-10A1").iterdir())
    assert written == ["10A1-01-v1.pdf", "10A1-02-v1.pdf", "10A1-03-v1.pdf"]
    verified = hocba("verify", "copies-10A1/10A1-03-v1.pdf")
    assert verified.exit_code == 0, verified
    assert "VERIFIED: every check" in verified.said, verified
    assert "the page, the attached bundle and every other signed byte are as the seal signed them" in verified.said
    assert "nothing but validation information was added to the file after it was signed" in verified.said


def test_a_signed_record_is_amended_as_version_2_signed_again_and_delivered(hocba, files, year):
    student, rid = GRADE_6[0], year.records[GRADE_6[0].name]
    (files / "phuc-khao.csv").write_text(
        csv_text(GRADEBOOK, [(SCHOOL, YEAR, "6A1", student.personal_id, "Toán", 2, "8 8 8 8", "7.5", "9", "", "", "")]),
        encoding="utf-8",
    )
    amended = hocba(
        "amend", *WHERE, "--personal-id", student.personal_id, "--entries", "phuc-khao.csv",
        "--reason", "appeal-decision", "--note", "Phúc khảo bài kiểm tra cuối kì II môn Toán",
    )  # fmt: skip
    assert amended.exit_code == 0, amended
    assert f"record {rid} amended: version 2 supersedes version 1 (appeal-decision)" in amended.said
    assert "1 entry corrected" in amended.said

    # The class changed since its review: its homeroom teacher reviews it again before signing the new version.
    refused = hocba("sign", *WHERE, "--as", "homeroom_teacher", "--class", "6A1")
    assert refused.exit_code == 1 and "refused (changed-since-review)" in refused.said, refused
    confirmed = hocba("review", "confirm", *WHERE, "--class", "6A1")
    assert confirmed.exit_code == 0, confirmed
    assert f"changed since the last review: {rid} v1 → v2" in confirmed.said
    signed = hocba("sign", *WHERE, "--as", "homeroom_teacher", "--class", "6A1")
    assert signed.exit_code == 0, signed
    assert "signed 1 of 1 records" in signed.said
    signed = hocba("sign", *WHERE)
    assert signed.exit_code == 0, signed
    assert "signed and sealed 1 of 1 records" in signed.said

    delivered = f"{student.name} │ {rid} │ 2 │ delivered to the ministry"
    listed_until(hocba, delivered, "version 2 did not reach the ministry", *WHERE, "--personal-id", student.personal_id)


def test_the_entrys_history_shows_who_recorded_it_and_the_amendments_change(hocba):
    history = hocba("grades", "history", *WHERE, "--personal-id", GRADE_6[0].personal_id, "--subject", "Toán")
    assert history.exit_code == 0, history
    lines = [line for line in history.stdout.splitlines() if "Toán, term" in line]
    assert len(lines) == 3, history
    # As recorded from the gradebook, by the teacher the staff table enrols for Toán in 6A1.
    assert all("recorded by gv-toan: regular 8 8 8 8; midterm 7.5; final 8" in line for line in lines[:2]), history
    assert "Toán, term 2 changed by ht-cvl: final 8 → 9; reason: amendment of v1 (appeal-decision)" in history.said


def test_a_class_is_exported_one_verifiable_bundle_per_archived_record_named_without_personal_data(hocba, files):
    exported = hocba("archive", "export", *WHERE, "--class", "6A1", "--out", "export-6A1")
    assert exported.exit_code == 0, exported
    assert f"exported 3 bundles of class 6A1 of school {SCHOOL} for {YEAR} into export-6A1" in exported.said
    written = sorted(p.name for p in (files / "export-6A1").iterdir())
    assert written == ["6A1-01-v2.json", "6A1-02-v1.json", "6A1-03-v1.json"], "the latest version of each record"
    bundle = (files / "export-6A1" / "6A1-01-v2.json").read_text(encoding="utf-8")
    assert CLASS_LIST_6A1[0] in bundle, "position 1 of the class list is Nguyễn Văn An's record"
    assert json.loads(bundle)["status"] == {"versions": [1, 2], "superseded_by": None, "supersedes": 1}
    verified = hocba("verify", "export-6A1/6A1-01-v2.json")
    assert verified.exit_code == 0, verified
    assert "VERIFIED: every check passed" in verified.said
