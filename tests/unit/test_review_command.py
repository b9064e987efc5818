"""`hocba review` shows per class what a reviewer must look at, from signing and grades; `hocba review confirm`
confirms, as the class's homeroom teacher, exactly the review it showed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from hocba import commands as cli_commands
from hocba.cli import app
from hocba.commands import sign as sign_command
from hocba.keys import dev_issuer
from hocba.staff import StaffMember, StaffRegister
from shared.auth import audience_of, verify_token
from shared.contracts.base import Message
from shared.contracts.grades import (
    ClassIdentities,
    CompareIdentities,
    IdentityComparison,
    IdentityDifference,
    StudentFinding,
)
from shared.contracts.signing import (
    BatchCompleted,
    ClassReview,
    ClassReviews,
    ClassWaiting,
    ConfirmReview,
    MissingEntry,
    RecordChange,
    RecordRefused,
    RequestSignBatch,
    ReviewClasses,
    ReviewConfirmed,
)
from shared.errors import Refused
from shared.messaging import Bus

SCHOOL = "79012345"
YEAR = "2025-2026"
AT = datetime(2026, 5, 25, 7, 30, tzinfo=UTC)
FINGERPRINT = "f" * 64


def signing_part() -> ClassReviews:
    """6A1: one incomplete record, not reviewed, none signed; 6A2: changed since its review (a record added), two of
    its three records signed by its homeroom teacher."""
    incomplete = RecordRefused(
        record_id="rec-a",
        version=1,
        class_name="6A1",
        missing=[MissingEntry(subject="Toán", term=1), MissingEntry(entry="homeroom", term=2)],
    )
    return ClassReviews(
        school_code=SCHOOL,
        school_year=YEAR,
        classes=[
            ClassReview(
                class_name="6A1", records=2, incomplete=[incomplete], status="not-reviewed", fingerprint=FINGERPRINT
            ),
            ClassReview(
                class_name="6A2",
                records=3,
                status="changed-since-review",
                reviewed_by="GV002",
                reviewed_at=AT,
                homeroom_signed=2,
                changes=[RecordChange(record_id="rec-z", version=1, digest="d" * 64)],
                fingerprint="e" * 64,
            ),
        ],
    )


def grades_part() -> IdentityComparison:
    renamed = IdentityDifference(field="full_name", in_record="Lê Văn Bình", in_register="Lê Văn Bính")
    return IdentityComparison(
        school_code=SCHOOL,
        school_year=YEAR,
        classes=[
            ClassIdentities(
                class_name="6A1",
                students=3,
                records=2,
                findings=[
                    StudentFinding(student_ref="s-a", record_id="rec-a", full_name="Nguyễn Văn An", complete=False),
                    StudentFinding(
                        student_ref="s-b",
                        record_id="rec-b",
                        full_name="Lê Văn Bính",
                        complete=True,
                        differences=[renamed],
                    ),
                    StudentFinding(student_ref="s-c", full_name="Trần Thị Cúc"),
                ],
            )
        ],
    )


class Stack:
    """Stands in for signing and grades: answers each request with what the test gave, keeps what it was asked."""

    def __init__(self) -> None:
        self.asked: list[Message] = []
        self.reviews = signing_part()
        self.identities: IdentityComparison | Refused = grades_part()

    async def ask(self, session, message: Message, answer):
        self.asked.append(message)
        if isinstance(message, ReviewClasses):
            return self.reviews
        if isinstance(message, CompareIdentities):
            if isinstance(self.identities, Refused):
                raise self.identities
            return self.identities
        if isinstance(message, ConfirmReview):
            return ReviewConfirmed(
                class_name=message.class_name,
                records=2,
                incomplete=1,
                fingerprint=message.reviewed,
                confirmed_by="GV001",
                confirmed_at=AT,
            )
        raise AssertionError(f"unexpected {type(message).__name__}")

    def sent(self, kind: type[Message]) -> list[Message]:
        return [m for m in self.asked if isinstance(m, kind)]


@pytest.fixture
def stack(monkeypatch, tmp_path) -> Stack:
    fake = Stack()

    async def connected(bus: Bus) -> None:
        return None

    monkeypatch.setattr(cli_commands, "connect", connected)
    monkeypatch.setattr(
        cli_commands.Session, "ask", lambda session, message, answer: fake.ask(session, message, answer)
    )
    monkeypatch.delenv("HOCBA_PKI_DIR", raising=False)
    register = StaffRegister(tmp_path / "pki" / StaffRegister.FILE, {SCHOOL: "Trường THCS Lê Lợi"})
    for member in (
        StaffMember("HT001", "Phạm Minh Châu", "principal", SCHOOL),
        StaffMember("GV001", "Nguyễn Thị Lan", "homeroom_teacher", SCHOOL, ("6A1",)),
    ):
        register.staff[member.staff_id] = member
    register.save()
    return fake


def review(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["review", *args], env={"HOCBA_DATA_DIR": str(tmp_path), "COLUMNS": "400"})


def said(text: str) -> str:
    return " ".join(text.split())


def sender(tmp_path: Path, message: Message) -> str:
    issuer, _ = dev_issuer(tmp_path)
    return verify_token(message, issuer.public_keys(audience_of(message))).subject


def test_the_principal_sees_each_class_with_what_to_look_at(stack, tmp_path):
    result = review(tmp_path, "--school", SCHOOL, "--year", YEAR)
    assert result.exit_code == 0, result.output
    out = said(result.stdout)
    assert "class 6A1: 2 record(s), 3 students enrolled; review: not reviewed" in out
    assert "incomplete, never signed as it is: Nguyễn Văn An (rec-a): Toán, term I; homeroom entries" in out
    assert (
        "identity differs from the register: Lê Văn Bính (rec-b): full_name is 'Lê Văn Bình' in the record, "
        "'Lê Văn Bính' in the register" in out
    )
    assert "without a record: Trần Thị Cúc" in out
    assert "class 6A2: 3 record(s); review: changed since review (confirmed by GV002 at 2026-05-25 07:30 UTC)" in out
    assert "changed since the last review: rec-z v1 added" in out
    signed = [line.strip() for line in result.stdout.splitlines() if "signed by the homeroom teacher" in line]
    assert signed == ["signed by the homeroom teacher: 0 of 2", "signed by the homeroom teacher: 2 of 3"], "per class"
    assert "2 class(es) wait for their homeroom teacher's confirmation before they are signed: 6A1, 6A2" in out
    [asked] = stack.sent(ReviewClasses)
    [compared] = stack.sent(CompareIdentities)
    assert (asked.class_name, compared.purpose) == (None, "review before signing")
    assert sender(tmp_path, asked) == sender(tmp_path, compared) == "HT001"
    assert stack.sent(ConfirmReview) == []


def test_the_homeroom_teacher_confirms_what_the_review_showed(stack, tmp_path):
    stack.reviews = stack.reviews.model_copy(update={"classes": stack.reviews.classes[:1]})
    result = review(tmp_path, "confirm", "--school", SCHOOL, "--year", YEAR, "--class", "6A1")
    assert result.exit_code == 0, result.output
    [confirmation] = stack.sent(ConfirmReview)
    assert (confirmation.class_name, confirmation.reviewed) == ("6A1", FINGERPRINT)
    assert sender(tmp_path, confirmation) == "GV001"
    out = said(result.stdout)
    assert "class 6A1: 2 record(s)" in out
    assert "confirmed the review of class 6A1: 2 record(s); 1 of them incomplete and never signed as they are" in out
    assert f"hocba sign --school {SCHOOL} --year {YEAR} --as homeroom_teacher --class 6A1" in out


def test_a_review_without_the_identity_register_is_not_confirmed(stack, tmp_path):
    stack.identities = Refused("identity did not answer", reason="unavailable")
    result = review(tmp_path, "confirm", "--school", SCHOOL, "--year", YEAR, "--class", "6A1")
    assert result.exit_code == 1
    assert stack.sent(ConfirmReview) == []
    assert "the records could not be set against the identity register" in said(result.stdout)
    assert said(result.stderr).startswith("not confirmed: the review is not complete without the identity register")
    shown = review(tmp_path, "--school", SCHOOL, "--year", YEAR)
    assert shown.exit_code == 1, "a review without grades' part is not the review asked for"


def test_nothing_held_says_the_year_may_not_be_closed(stack, tmp_path):
    stack.reviews = ClassReviews(school_code=SCHOOL, school_year=YEAR)
    result = review(tmp_path, "--school", SCHOOL, "--year", YEAR, "--class", "6A1")
    assert result.exit_code == 1
    assert said(result.stderr).startswith(f"nothing to review: signing holds no record of class 6A1 of school {SCHOOL}")


def test_who_reviews_must_be_enrolled(stack, tmp_path):
    result = review(tmp_path, "--school", "79099999", "--year", YEAR)
    assert result.exit_code == 2 and "school 79099999 is not enrolled" in said(result.stderr)
    result = review(tmp_path, "confirm", "--school", SCHOOL, "--year", YEAR, "--class", "6A9")
    assert result.exit_code == 2 and "class 6A9 of school 79012345 has no homeroom teacher enrolled" in said(
        result.stderr
    )
    assert stack.asked == []


def test_the_principals_click_says_which_classes_wait_and_which_records_are_not_signed(stack, tmp_path, monkeypatch):
    """`hocba sign` as the principal: the batch's outcome names the classes held back and the incomplete records."""
    waiting = ClassWaiting(
        class_name="6A2", records=3, code="not-reviewed", reason="class 6A2 has not been reviewed: its homeroom teacher"
    )
    incomplete = RecordRefused(
        record_id="rec-a", version=1, class_name="6A1", missing=[MissingEntry(subject="Toán", term=1)]
    )

    async def signed(s, request: RequestSignBatch, timeout: float, on_progress) -> BatchCompleted:
        return BatchCompleted(
            batch_id=request.batch_id,
            school_code=SCHOOL,
            school_year=YEAR,
            records_signed=1,
            records_total=1,
            records_completed=1,
            classes_waiting=[waiting],
            refused=[incomplete],
        )

    monkeypatch.setattr(sign_command, "sign_batch", signed)
    result = CliRunner().invoke(
        app, ["sign", "--school", SCHOOL, "--year", YEAR], env={"HOCBA_DATA_DIR": str(tmp_path), "COLUMNS": "400"}
    )
    assert result.exit_code == 0, result.output
    out = said(result.stdout)
    assert "class 6A2 waits (3 record(s)): class 6A2 has not been reviewed" in out
    assert "not signed, incomplete: rec-a v1 of class 6A1: Toán, term I" in out
    assert "hocba review confirm --school S --year Y --class C" in out


def test_a_click_that_signs_nothing_because_everything_is_held_back_says_so(stack, tmp_path, monkeypatch):
    waiting = ClassWaiting(class_name="6A1", records=2, code="changed-since-review", reason="class 6A1 changed")

    async def nothing(s, request: RequestSignBatch, timeout: float, on_progress) -> BatchCompleted:
        return BatchCompleted(
            batch_id=request.batch_id,
            school_code=SCHOOL,
            school_year=YEAR,
            records_signed=0,
            records_total=0,
            classes_waiting=[waiting],
        )

    monkeypatch.setattr(sign_command, "sign_batch", nothing)
    result = CliRunner().invoke(
        app,
        ["sign", "--school", SCHOOL, "--year", YEAR, "--as", "homeroom_teacher", "--class", "6A1"],
        env={"HOCBA_DATA_DIR": str(tmp_path), "COLUMNS": "400"},
    )
    assert result.exit_code == 1
    assert "class 6A1 waits (2 record(s)): class 6A1 changed" in said(result.stdout)
    assert said(result.stderr) == "nothing signed: what awaits this signature is held back, as listed above"
