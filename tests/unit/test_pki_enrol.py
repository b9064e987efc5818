"""Enrolling a school's staff from its staff table (`hocba pki enrol staff.csv`): any school of the country, each
bad row told by its number and reason while the rest go on, the same table enrolled again changes nothing, and
the demo's staff enrolled by the same path."""

from __future__ import annotations

import csv
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from hocba.cli import app
from hocba.commands.pki import enrol, ensure_dev_pki
from hocba.enrolment import Certificates, enrol_rows, table_rows
from hocba.staff import Staff, StaffRegister, demo_staff_table, homeroom_subject, principal_subject
from services.signing.handlers import SignerRefused, Signers
from shared.auth import IssuerKey, audience_of, verify_token
from shared.contracts.signing import RequestSignBatch
from shared.crypto import pki as pki_module
from shared.crypto.certs import identity
from shared.crypto.pki import DevPki

PASSPHRASE = b"the department's passphrase"
HEADER = "school_code,staff_id,name,role,classes,school_name"
SCHOOL = "79012345"
GOOD = [
    f"{SCHOOL},GV001,Nguyễn Thị Lan,homeroom_teacher,6A1,Trường THCS Lê Lợi",
    f"{SCHOOL},GV002,Trần Văn Nam,homeroom_teacher,6A2,",
    f"{SCHOOL},HT001,Phạm Minh Châu,principal,,",
    f'{SCHOOL},GV003,Lê Văn An,subject_teacher,"6A1 6A2",',
    f"{SCHOOL},AD001,Võ Thị Hà,school_admin,,",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("HOCBA_PKI_DIR", "HOCBA_PKI_PASSPHRASE", "HOCBA_PKI_PASSPHRASE_FILE", "HOCBA_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def pki(tmp_path) -> DevPki:
    return DevPki(tmp_path / "pki", PASSPHRASE)


def table(folder: Path, *lines: str, header: str = HEADER) -> Path:
    path = folder / "staff.csv"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def rows(*lines: str, header: str = HEADER) -> list:
    """The rows of a staff table as the CSV reader gives them (the header is row 1)."""
    names = header.split(",")
    return table_rows(dict(zip(names, values, strict=True)) for values in csv.reader(lines))


def run(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(
        app,
        list(args),
        env={"HOCBA_DATA_DIR": str(tmp_path), "HOCBA_PKI_PASSPHRASE": PASSPHRASE.decode(), "COLUMNS": "240"},
    )


# --- a good staff table ------------------------------------------------------------------------------------------


def test_a_good_table_enrols_everyone_and_gives_the_signers_and_the_seal_a_certificate_in_their_name(pki):
    outcome = enrol_rows(pki, rows(*GOOD))

    assert (outcome.enrolled, outcome.updated, outcome.unchanged, outcome.bad) == (5, 0, 0, {})
    register = StaffRegister.load(pki.folder)
    assert register.schools == {SCHOOL: "Trường THCS Lê Lợi"}
    assert register.principal_of(SCHOOL).staff_id == "HT001"
    assert register.homeroom_teacher_of(SCHOOL, "6A2").staff_id == "GV002"
    assert register.staff["GV003"].classes == ("6A1", "6A2")
    signers = {h.subject_id: identity(pki.certificate(h.subject_id)) for h in pki.holders()}
    assert set(signers) == {"GV001", "GV002", "HT001", f"seal-{SCHOOL}", "svc-grades", "svc-web", "archive", "tsa"}, (
        "subject teachers and records administrators sign no record: no certificate"
    )
    assert (signers["GV001"].name, signers["GV001"].role, signers["GV001"].school_code) == (
        "Nguyễn Thị Lan",
        "homeroom_teacher",
        SCHOOL,
    )
    assert signers["HT001"].name == "Phạm Minh Châu"
    assert signers[f"seal-{SCHOOL}"].name == "Trường THCS Lê Lợi"
    assert outcome.certificates == 8


def test_keys_and_the_register_are_readable_by_their_owner_only(pki):
    enrol_rows(pki, rows(*GOOD))

    for path in [pki.folder, *pki.folder.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path
    assert (pki.folder / "staff.json").exists() and pki.key_path("HT001").exists()


def test_an_enrolled_signers_token_and_certificate_name_the_same_person_and_signing_accepts_them(pki):
    enrol_rows(pki, rows(*GOOD))
    register = StaffRegister.load(pki.folder)
    issuer = IssuerKey.generate("test")
    principal = Staff(issuer).enrolled(register.principal_of(SCHOOL))

    request = principal.signs(RequestSignBatch(school_code=SCHOOL, school_year="2025-2026"))
    actor = verify_token(request, issuer.public_keys(audience_of(request)))
    assert (actor.subject, actor.name, actor.roles, actor.school_code) == (
        "HT001",
        "Phạm Minh Châu",
        frozenset({"principal"}),
        SCHOOL,
    )
    teacher = Staff(issuer).enrolled(register.homeroom_teacher_of(SCHOOL, "6A1")).actor
    assert teacher.is_homeroom_teacher_of("6A1") and not teacher.is_homeroom_teacher_of("6A2")
    signers = Signers(pki.directory(), pki.trust_store)
    now = datetime.now(UTC)
    assert signers.valid_signer("HT001", "principal", SCHOOL, now).identity.subject_id == "HT001"
    assert signers.valid_signer(f"seal-{SCHOOL}", "school_seal", SCHOOL, now)
    with pytest.raises(SignerRefused, match="no-certificate|no certificate"):
        signers.valid_signer("GV003", "homeroom_teacher", SCHOOL, now)


@pytest.mark.parametrize(
    ("code", "province"),
    [("01000001", "Hà Nội"), ("48123456", "Đà Nẵng"), ("96000002", "Cà Mau"), ("79000701", "Hồ Chí Minh")],
)
def test_any_school_of_any_province_is_enrolled(pki, code, province):
    outcome = enrol_rows(pki, rows(f"{code},P-{code},Hiệu trưởng {province},principal,,Trường {province}"))

    assert outcome.bad == {} and outcome.enrolled == 1
    seal = identity(pki.certificate(f"seal-{code}"))
    assert (seal.name, seal.role, seal.school_code) == (f"Trường {province}", "school_seal", code)
    now = datetime.now(UTC)
    assert Signers(pki.directory(), pki.trust_store).valid_signer(f"P-{code}", "principal", code, now)


def test_a_school_without_a_name_is_named_by_its_code(pki):
    enrol_rows(pki, rows("48123456,P1,Lê Hoa,principal,,"))

    assert StaffRegister.load(pki.folder).schools == {"48123456": "Trường 48123456"}
    assert identity(pki.certificate("seal-48123456")).name == "Trường 48123456"


# --- bad rows ----------------------------------------------------------------------------------------------------

BAD = {
    "7901234,X1,Tên,principal,,": "school_code '7901234' is not a school code: expected the ministry's 8 digits",
    "99012345,X2,Tên,principal,,": "starts with 99, which is no province's code",
    f"{SCHOOL},,Tên,principal,,": "staff_id is empty",
    f"{SCHOOL},a/b,Tên,principal,,": "staff_id 'a/b' is not an id",
    f"{SCHOOL},seal-{SCHOOL},Tên,principal,,": "is one hocba gives itself",
    f"{SCHOOL},X3,,principal,,": "name is empty",
    f"{SCHOOL},X4,{'A' * 65},principal,,": "name has 65 characters: at most 64",
    f"{SCHOOL},X5,Tên,teacher,6A1,": "role 'teacher' is not one of homeroom_teacher, subject_teacher, principal, "
    "school_admin (for 'teacher', write subject_teacher)",
    f"{SCHOOL},X6,Tên,homeroom_teacher,,": "a homeroom teacher has exactly one class in classes (the column is empty)",
    f'{SCHOOL},X7,Tên,homeroom_teacher,"6A3 6A4",': "exactly one class in classes (found 2: 6A3 6A4)",
    f"{SCHOOL},X8,Tên,subject_teacher,,": "a subject teacher names the classes they teach",
    f"{SCHOOL},X9,Tên,school_admin,6A1,": "a school_admin has no classes: leave classes empty (found 6A1)",
    f"{SCHOOL},X10,Tên,homeroom_teacher,6A 1!,": "classes: '1!' is not a class name",
}


def test_each_bad_row_is_told_by_its_number_and_reason_and_the_good_rows_are_enrolled(pki):
    lines = [GOOD[0], *BAD, GOOD[2]]
    outcome = enrol_rows(pki, rows(*lines))

    assert sorted(outcome.bad) == list(range(3, 3 + len(BAD)))
    for number, reason in zip(range(3, 3 + len(BAD)), BAD.values(), strict=True):
        assert reason in outcome.bad[number], (number, outcome.bad[number])
    register = StaffRegister.load(pki.folder)
    assert set(register.staff) == {"GV001", "HT001"}
    assert not any(pki.cert_path(f"X{n}").exists() for n in range(1, 11))


def test_rows_that_contradict_each_other_keep_the_first(pki):
    outcome = enrol_rows(
        pki,
        rows(
            *GOOD,
            f"{SCHOOL},GV001,Nguyễn Thị Lan,homeroom_teacher,6A3,",
            f"{SCHOOL},HT002,Ngô Bảo,principal,,",
            f"{SCHOOL},GV009,Hồ Ngọc,homeroom_teacher,6A1,",
            f"{SCHOOL},GV010,Hồ Ngọc,homeroom_teacher,6A9,Trường khác",
        ),
    )

    assert outcome.bad == {
        7: "staff_id GV001 is in row 2 already: one row a person",
        8: f"the principal of school {SCHOOL} is HT001 in row 4 already",
        9: f"the homeroom teacher of 6A1 at {SCHOOL} is GV001 in row 2 already",
        10: f"school {SCHOOL} is enrolled as 'Trường THCS Lê Lợi' (its seal's certificate names it so), not "
        "'Trường khác': leave school_name empty or write it the same",
    }
    assert outcome.enrolled == 5


def test_a_staff_id_names_one_person_across_the_city(pki):
    enrol_rows(pki, rows(*GOOD))
    outcome = enrol_rows(pki, rows("48123456,GV001,Nguyễn Thị Lan,principal,,"))

    assert outcome.bad == {
        2: f"staff_id GV001 is enrolled at school {SCHOOL}: a staff id names one person across the city; "
        "give this person their own id"
    }


def test_a_missing_column_or_a_bad_row_sets_the_exit_status(tmp_path):
    good = run(tmp_path, "pki", "enrol", str(table(tmp_path, *GOOD)))
    assert good.exit_code == 0, good.output
    assert "certificates issued" in good.stdout

    bad = run(tmp_path, "pki", "enrol", str(table(tmp_path, *GOOD, "99999999,Z,Z,principal,,")))
    assert bad.exit_code == 1
    assert "row 7" in bad.stdout and "no province's code" in bad.stdout

    shapeless = run(tmp_path, "pki", "enrol", str(table(tmp_path, "79012345,Z", header="school_code,staff")))
    assert shapeless.exit_code == 2
    assert "staff_id" in shapeless.stderr and "role" in shapeless.stderr

    missing = run(tmp_path, "pki", "enrol", str(tmp_path / "nowhere.csv"))
    assert missing.exit_code == 2 and "no staff table at" in missing.stderr


# --- enrolling again ---------------------------------------------------------------------------------------------


def test_enrolling_the_same_table_again_changes_nothing_and_issues_nothing(pki):
    enrol_rows(pki, rows(*GOOD))
    certificates = {h.subject_id: pki.cert_path(h.subject_id).read_bytes() for h in pki.holders()}
    register = (pki.folder / "staff.json").read_bytes()

    again = enrol_rows(pki, rows(*GOOD))

    assert (again.enrolled, again.updated, again.unchanged, again.certificates, again.bad) == (0, 0, 5, 0, {})
    assert {h.subject_id: pki.cert_path(h.subject_id).read_bytes() for h in pki.holders()} == certificates
    assert (pki.folder / "staff.json").read_bytes() == register
    assert len(StaffRegister.load(pki.folder).staff) == 5


def test_a_teachers_new_classes_update_the_register_without_a_new_certificate(pki):
    enrol_rows(pki, rows(*GOOD))
    before = pki.cert_path("GV003").exists(), pki.cert_path("GV001").read_bytes()

    outcome = enrol_rows(pki, rows(f'{SCHOOL},GV003,Lê Văn An,subject_teacher,"6A1 6A2 6A3",'))

    assert (outcome.updated, outcome.certificates) == (1, 0)
    assert StaffRegister.load(pki.folder).staff["GV003"].classes == ("6A1", "6A2", "6A3")
    assert (pki.cert_path("GV003").exists(), pki.cert_path("GV001").read_bytes()) == before


def test_a_revoked_certificate_is_issued_again_on_the_next_enrolment(pki):
    enrol_rows(pki, rows(*GOOD))
    old = pki.certificate("HT001")
    pki.revoke("HT001", "key_compromise")

    outcome = enrol_rows(pki, rows(*GOOD))

    new = pki.certificate("HT001")
    assert outcome.renewed == ["HT001"] and outcome.certificates == 1
    assert new.serial_number != old.serial_number and new.public_key() != old.public_key()
    assert pki.trust_store().validate(pki.chain("HT001"), datetime.now(UTC)).ok


def test_a_signers_new_name_waits_for_their_certificate_to_be_revoked(pki):
    enrol_rows(pki, rows(*GOOD))
    renamed = f"{SCHOOL},HT001,Phạm Minh Châu Anh,principal,,"

    refused = enrol_rows(pki, rows(renamed))
    assert refused.bad == {
        2: "HT001 holds a certificate as 'Phạm Minh Châu', principal: revoke it first (`hocba pki revoke HT001 "
        "--reason superseded`), then enrol them as 'Phạm Minh Châu Anh', principal"
    }

    pki.revoke("HT001", "superseded")
    accepted = enrol_rows(pki, rows(renamed))
    assert (accepted.updated, accepted.renewed, accepted.bad) == (1, ["HT001"], {})
    assert identity(pki.certificate("HT001")).name == "Phạm Minh Châu Anh"


def test_a_new_principal_takes_the_post_once_the_former_ones_certificate_is_revoked(pki):
    enrol_rows(pki, rows(*GOOD))
    successor = f"{SCHOOL},HT002,Ngô Bảo,principal,,"

    assert enrol_rows(pki, rows(successor)).bad == {
        2: f"the principal of school {SCHOOL} is HT001 ('Phạm Minh Châu'), enrolled with a certificate that serves: "
        "list them in the same table with their new post, or, if they left, revoke their certificate (`hocba pki "
        "revoke HT001 --reason affiliation_changed`) first"
    }

    pki.revoke("HT001", "affiliation_changed")
    outcome = enrol_rows(pki, rows(successor))
    register = StaffRegister.load(pki.folder)
    assert outcome.bad == {} and register.principal_of(SCHOOL).staff_id == "HT002"
    assert "HT001" not in register.staff


# --- the demo enrols through the same path -----------------------------------------------------------------------


def test_the_demos_generated_staff_table_is_a_valid_staff_table(pki):
    schools = [("79007000", "Trường THCS số 1", ["6A1", "6A2"]), ("79007001", "Trường THCS số 2", ["6A1"])]
    outcome = enrol_rows(pki, table_rows(demo_staff_table(schools)))

    assert outcome.bad == {} and outcome.enrolled == 2 * 2 + 3
    register = StaffRegister.load(pki.folder)
    assert register.principal_of("79007000").staff_id == principal_subject("79007000")
    assert register.homeroom_teacher_of("79007001", "6A1").staff_id == homeroom_subject("79007001", "6A1")
    demo = Staff(IssuerKey.generate("demo")).principal("79007000").actor
    assert register.principal_of("79007000").actor() == demo, "the demo's tokens name the enrolled staff"


def test_the_demo_and_the_stack_enrol_their_staff_into_the_register(tmp_path, monkeypatch):
    monkeypatch.setenv("HOCBA_PKI_PASSPHRASE", PASSPHRASE.decode())
    pki = ensure_dev_pki(tmp_path / "pki", schools=1, classes=2)
    assert StaffRegister.load(pki.folder).principal_of("79007000") is not None

    issued = enrol(pki, [("79007000", "Trường THCS số 1", {"6A1", "6A2", "6A3"})])
    assert issued == 1, "only the new class's homeroom teacher"
    assert StaffRegister.load(pki.folder).homeroom_teacher_of("79007000", "6A3") is not None


def test_homeroom_teachers_swap_classes_in_one_table_without_new_certificates(pki):
    enrol_rows(pki, rows(*GOOD))

    outcome = enrol_rows(
        pki,
        rows(
            f"{SCHOOL},GV001,Nguyễn Thị Lan,homeroom_teacher,6A2,",
            f"{SCHOOL},GV002,Trần Văn Nam,homeroom_teacher,6A1,",
        ),
    )

    register = StaffRegister.load(pki.folder)
    assert (outcome.updated, outcome.certificates, outcome.bad) == (2, 0, {})
    assert register.homeroom_teacher_of(SCHOOL, "6A1").staff_id == "GV002"
    assert register.homeroom_teacher_of(SCHOOL, "6A2").staff_id == "GV001"


def test_a_class_still_held_by_an_enrolled_teacher_is_refused_and_the_other_rows_go_on(pki):
    enrol_rows(pki, rows(*GOOD))

    outcome = enrol_rows(
        pki,
        rows(
            f"{SCHOOL},GV007,Mai Anh,homeroom_teacher,6A1,",  # GV001 keeps 6A1
            f"{SCHOOL},GV008,Lý Tâm,homeroom_teacher,6A4,",
        ),
    )

    assert sorted(outcome.bad) == [2]
    assert outcome.bad[2].startswith(f"the homeroom teacher of 6A1 at {SCHOOL} is GV001 ('Nguyễn Thị Lan')")
    assert StaffRegister.load(pki.folder).homeroom_teacher_of(SCHOOL, "6A4").staff_id == "GV008"
    assert not pki.cert_path("GV007").exists() and pki.cert_path("GV008").exists()


def test_an_expired_development_certificate_is_issued_again(pki, monkeypatch):
    with monkeypatch.context() as short:
        short.setattr(pki_module, "HOLDER_LIFETIME", timedelta(seconds=-1))
        enrol_rows(pki, rows(GOOD[2]))
    assert not Certificates(pki).serves("HT001")

    outcome = enrol_rows(pki, rows(GOOD[2]))

    assert "HT001" in outcome.renewed
    assert pki.trust_store().validate(pki.chain("HT001"), datetime.now(UTC)).ok


def test_a_crl_past_its_next_update_is_no_reason_to_issue_every_certificate_again(pki, monkeypatch):
    enrol_rows(pki, rows(*GOOD))
    with monkeypatch.context() as stale:
        stale.setattr(pki_module, "CRL_LIFETIME", timedelta(seconds=-30))
        pki.renew_crl(due_within=timedelta(days=3650))
    assert not pki.trust_store().validate(pki.chain("HT001"), datetime.now(UTC)).ok, "the CRL is stale"

    outcome = enrol_rows(pki, rows(*GOOD))

    assert (outcome.certificates, outcome.renewed, outcome.unchanged) == (0, [], 5)
