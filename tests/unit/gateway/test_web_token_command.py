"""`hocba web token --as STAFF_ID`: a development sign-in token for the web page's token form, naming the person as
enrolled, issued with the development issuer key (never in production)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner, Result

from hocba.cli import app
from hocba.keys import dev_issuer
from hocba.staff import StaffMember, StaffRegister
from shared.auth import verify_sign_in_token

SCHOOL = "79000701"


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A stack's data folder with its development issuer key and a school's principal and homeroom teacher."""
    monkeypatch.delenv("HOCBA_PKI_DIR", raising=False)
    monkeypatch.delenv("HOCBA_ENVIRONMENT", raising=False)
    dev_issuer(tmp_path)
    register = StaffRegister(tmp_path / "pki" / StaffRegister.FILE, {SCHOOL: "Trường THCS thử nghiệm"})
    for member in (
        StaffMember(f"ht-{SCHOOL}", "Nguyễn Thị Hoa", "principal", SCHOOL),
        StaffMember(f"gvcn-{SCHOOL}-6A1", "Cô giáo lớp 6A1", "homeroom_teacher", SCHOOL, ("6A1",)),
    ):
        register.staff[member.staff_id] = member
    register.save()
    return tmp_path


def web_token(data_dir, *args: str, **env: str) -> Result:
    return CliRunner().invoke(app, ["web", "token", "--data-dir", str(data_dir), *args], env=env or None)


def test_a_development_sign_in_token_names_the_staff_member_as_enrolled(data_dir):
    done = web_token(data_dir, "--as", f"gvcn-{SCHOOL}-6A1")
    assert done.exit_code == 0, done.output
    issuer, _ = dev_issuer(data_dir)
    person = verify_sign_in_token(done.stdout.strip(), issuer.public_keys().for_sign_in())
    assert (person.subject, person.name, person.school_code) == (f"gvcn-{SCHOOL}-6A1", "Cô giáo lớp 6A1", SCHOOL)
    assert person.is_homeroom_teacher_of("6A1")


def test_the_operator_gets_one_too_and_a_shorter_sign_in_when_asked(data_dir):
    done = web_token(data_dir, "--as", "operator", "--hours", "1")
    issuer, _ = dev_issuer(data_dir)
    person = verify_sign_in_token(done.stdout.strip(), issuer.public_keys().for_sign_in())
    assert person.has("operator") and person.expires_at is not None


def test_someone_not_enrolled_gets_no_token_and_is_told_how_to_enrol(data_dir):
    done = web_token(data_dir, "--as", "ht-99999999")
    assert done.exit_code == 1
    said = " ".join(done.output.split())
    assert "'ht-99999999' is not in the staff register" in said and "hocba pki enrol" in said
    assert "Traceback" not in done.output


def test_a_sign_in_longer_than_a_working_day_is_refused(data_dir):
    assert web_token(data_dir, "--as", f"ht-{SCHOOL}", "--hours", "9").exit_code == 2


def test_no_development_token_without_the_development_key_or_in_production(tmp_path, data_dir):
    without = web_token(tmp_path / "elsewhere", "--as", f"ht-{SCHOOL}")
    assert without.exit_code == 2 and "no development issuer key" in " ".join(without.output.split())
    production = web_token(data_dir, "--as", f"ht-{SCHOOL}", HOCBA_ENVIRONMENT="production")
    assert production.exit_code == 2 and "in production" in " ".join(production.output.split())
