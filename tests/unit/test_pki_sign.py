"""`hocba sign` says why when it cannot sign: a school that is not enrolled (and how to enrol it), a malformed
school year, a batch with nothing to sign (exit 1, not "signed 0 of 0"); and it signs as the enrolled staff."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from hocba import commands as cli_commands
from hocba.cli import app
from hocba.commands import sign as sign_command
from hocba.keys import dev_issuer
from hocba.staff import StaffMember, StaffRegister
from shared.auth import audience_of, verify_token
from shared.contracts.signing import BatchCompleted, RequestSignBatch
from shared.errors import Refused
from shared.messaging import Bus

SCHOOL = "79012345"
YEAR = "2025-2026"


class Signing:
    """Stands in for the signing service: keeps each batch request, answers with the outcome the test gave."""

    def __init__(self) -> None:
        self.requests: list[RequestSignBatch] = []
        self.outcome: dict[str, int] = {"records_signed": 0, "records_total": 0}
        self.refusal: Refused | None = None

    async def sign_batch(self, s, request: RequestSignBatch, timeout: float, on_progress) -> BatchCompleted:
        self.requests.append(request)
        if self.refusal is not None:
            raise self.refusal
        return BatchCompleted(
            batch_id=request.batch_id, school_code=request.school_code, school_year=request.school_year, **self.outcome
        )


@pytest.fixture
def signing(monkeypatch) -> Signing:
    fake = Signing()

    async def connected(bus: Bus) -> None:
        return None

    monkeypatch.setattr(cli_commands, "connect", connected)
    monkeypatch.setattr(sign_command, "sign_batch", fake.sign_batch)
    monkeypatch.delenv("HOCBA_PKI_DIR", raising=False)
    return fake


@pytest.fixture
def enrolled(tmp_path) -> StaffRegister:
    """The school's staff register, as `hocba pki enrol` leaves it."""
    register = StaffRegister(tmp_path / "pki" / StaffRegister.FILE, {SCHOOL: "Trường THCS Lê Lợi"})
    for member in (
        StaffMember("HT001", "Phạm Minh Châu", "principal", SCHOOL),
        StaffMember("GV001", "Nguyễn Thị Lan", "homeroom_teacher", SCHOOL, ("6A1",)),
    ):
        register.staff[member.staff_id] = member
    register.save()
    return register


def sign(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["sign", *args], env={"HOCBA_DATA_DIR": str(tmp_path), "COLUMNS": "400"})


def said(result: Result) -> str:
    return " ".join(result.stderr.split())


def test_an_unknown_school_is_not_enrolled_and_the_message_says_how_to_enrol_it(signing, enrolled, tmp_path):
    result = sign(tmp_path, "--school", "99999999", "--year", YEAR)

    assert result.exit_code == 2
    assert said(result).startswith("school 99999999 is not enrolled: the staff register")
    assert "enrol the school's staff with `hocba pki enrol staff.csv`" in said(result)
    assert "no certificate" not in said(result)
    assert signing.requests == [], "nothing is sent for a school nobody is enrolled at"


def test_a_class_without_an_enrolled_homeroom_teacher_is_named(signing, enrolled, tmp_path):
    result = sign(tmp_path, "--school", SCHOOL, "--year", YEAR, "--as", "homeroom_teacher", "--class", "6A9")

    assert result.exit_code == 2
    assert said(result).startswith(f"class 6A9 of school {SCHOOL} has no homeroom teacher enrolled")
    assert signing.requests == []


@pytest.mark.parametrize(
    ("year", "reason"),
    [
        ("2025", "'2025' is not a school year: write its two years, e.g. 2025-2026"),
        ("2025-26", "'2025-26' is not a school year: write its two years, e.g. 2025-2026"),
        ("2025-2027", "'2025-2027' is not a school year: the second year follows the first, e.g. 2025-2026"),
        ("2025/2026", "'2025/2026' is not a school year"),
    ],
)
def test_a_malformed_school_year_is_refused_before_anything_is_sent(signing, enrolled, tmp_path, year, reason):
    result = sign(tmp_path, "--school", SCHOOL, "--year", year)

    assert result.exit_code == 2
    assert reason in said(result)
    assert signing.requests == []


def test_the_principal_signs_as_enrolled(signing, enrolled, tmp_path):
    signing.outcome = {"records_signed": 80, "records_total": 80, "records_completed": 80}

    result = sign(tmp_path, "--school", SCHOOL, "--year", YEAR)

    assert result.exit_code == 0, result.output
    assert "signed and sealed 80 of 80 records" in result.stdout
    (request,) = signing.requests
    issuer, _ = dev_issuer(tmp_path)
    actor = verify_token(request, issuer.public_keys(audience_of(request)))
    assert (actor.subject, actor.name, actor.roles) == ("HT001", "Phạm Minh Châu", frozenset({"principal"}))


def test_a_homeroom_teacher_signs_their_class_as_enrolled(signing, enrolled, tmp_path):
    signing.outcome = {"records_signed": 40, "records_total": 40}

    result = sign(tmp_path, "--school", SCHOOL, "--year", YEAR, "--as", "homeroom_teacher", "--class", "6A1")

    assert result.exit_code == 0, result.output
    (request,) = signing.requests
    actor = verify_token(request, dev_issuer(tmp_path)[0].public_keys(audience_of(request)))
    assert (actor.subject, actor.homeroom_class, request.class_name) == ("GV001", "6A1", "6A1")


def test_nothing_to_sign_is_a_failure_that_says_the_year_may_not_be_closed(signing, enrolled, tmp_path):
    result = sign(tmp_path, "--school", SCHOOL, "--year", YEAR)

    assert result.exit_code == 1
    assert "signed 0 of 0" not in result.stdout
    assert said(result).startswith(
        f"nothing signed: signing holds no record of school {SCHOOL} for {YEAR} that awaits the principal's signature"
    )
    assert "the year is not closed yet" in said(result) and "every record is signed already" in said(result)


def test_nothing_to_sign_in_a_class_names_the_class(signing, enrolled, tmp_path):
    result = sign(tmp_path, "--school", SCHOOL, "--year", YEAR, "--as", "homeroom_teacher", "--class", "6A1")

    assert result.exit_code == 1
    assert f"no record of class 6A1 of school {SCHOOL} for {YEAR} that awaits the homeroom teacher's signature" in said(
        result
    )


def test_records_waiting_for_their_homeroom_teachers_are_why_nothing_was_signed(signing, enrolled, tmp_path):
    signing.outcome = {"records_signed": 0, "records_total": 0, "records_waiting": 120}

    result = sign(tmp_path, "--school", SCHOOL, "--year", YEAR)

    assert result.exit_code == 1
    assert said(result).startswith(
        f"nothing signed: the 120 records of school {SCHOOL} for {YEAR} wait for their homeroom teachers' signatures"
    )


def test_a_refusal_for_a_missing_certificate_says_how_to_get_one(signing, enrolled, tmp_path):
    signing.refusal = Refused("no certificate for 'HT001' in the PKI at /run/pki", reason="no-certificate")

    result = sign(tmp_path, "--school", SCHOOL, "--year", YEAR)

    assert result.exit_code == 1
    assert said(result) == (
        "refused (no-certificate): no certificate for 'HT001' in the PKI at /run/pki; enrol the signer (`hocba pki "
        "enrol staff.csv`) or import their certificate (`hocba pki import-cert`), then export signing's part of the "
        "PKI again"
    )


def test_a_class_not_reviewed_is_told_the_exact_command_that_confirms_its_review(signing, enrolled, tmp_path):
    signing.refusal = Refused("class 6A1 has not been reviewed", reason="not-reviewed")

    result = sign(tmp_path, "--school", SCHOOL, "--year", YEAR, "--as", "homeroom_teacher", "--class", "6A1")

    assert result.exit_code == 1
    assert f"`hocba review confirm --school {SCHOOL} --year {YEAR} --class 6A1`, then signs again" in said(result)
