"""`hocba archive export` and `hocba archive print` for a whole class, against a stand-in stack: the class's records
as `hocba records list` asks for them, one file per archived record named by the class and the student's position in
the class list (no personal data in a file name), a summary line, and a sentence with a non-zero exit when nothing
was written. The one-record forms go on as before.

The broker is replaced as in test_year_commands.py: the session connects to nothing, and each request is answered
with what the test gave for its type (a reply, a refusal, or a function of the request).
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from hocba.cli import app
from hocba.commands import archive as archive_commands
from hocba.keys import dev_issuer
from shared.auth import Actor, audience_of, verify_token
from shared.contracts.archive import ExportRecord, ProofReply
from shared.contracts.base import Message
from shared.contracts.grades import ListRecords, RecordLine, RecordList
from shared.contracts.signing import CopySeal, SealCopy
from shared.errors import Refused
from tests.unit.command_stack import FakeStack, faked_stack, logged_in_roles

SCHOOL = "79007000"
YEAR = "2025-2026"
CLASS = ("--school", SCHOOL, "--year", YEAR, "--class", "6A1")
#: The students of the class as the school's staff see them; none of it may appear in a file name.
NAMES = ("Lê Minh Châu", "Nguyễn Văn An", "Trần Thị Bình")



@pytest.fixture
def roles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The broker users the commands log in as, in order."""
    return logged_in_roles(monkeypatch)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, roles: list[str]) -> FakeStack:
    fake = faked_stack(monkeypatch)
    return fake


@pytest.fixture
def hocba(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args), env={"HOCBA_DATA_DIR": str(tmp_path), "COLUMNS": "240"})

    return run


class StandInSealing:
    """Seals as `hocba.pades.CopySealing` does, as far as the command sees it: one `SealCopy` asked a copy; the
    signature itself is tests/unit/archive/test_sealed_copy.py's."""

    async def seal(self, unsigned: bytes, chain: list, ask: Callable[[bytes], Any]) -> bytes:
        await ask(b"\x31\x00")
        return unsigned + b"%sealed\n"


@pytest.fixture
def printed(monkeypatch: pytest.MonkeyPatch, stack: FakeStack) -> list[tuple[dict[str, Any], str]]:
    """Each certified copy rendered (bundle, QR payload), then sealed by the stand-in: the PDF itself is
    test_certified_copy.py's and test_sealed_copy.py's."""
    copies: list[tuple[dict[str, Any], str]] = []

    def render(bundle: dict[str, Any], qr: str, issued_at: datetime) -> bytes:
        copies.append((bundle, qr))
        return b"%PDF-1.7\n"

    monkeypatch.setattr(archive_commands, "copy_pdf_bytes", render)
    monkeypatch.setattr(archive_commands, "copy_sealing", lambda s, client: StandInSealing())
    monkeypatch.setattr(archive_commands, "seal_chain", lambda bundle: [])
    stack.answers(SealCopy, CopySeal(signature="", chain=[]))
    return copies


def actor_of(message: Message, data_dir: Path) -> Actor:
    """Who sent `message`, as its service verifies the token with the development issuer's keys."""
    issuer, _ = dev_issuer(data_dir)
    return verify_token(message, issuer.public_keys(audience_of(message)))


def said(text: str) -> str:
    """Output with the terminal's line breaks undone."""
    return " ".join(text.split())


def line(n: int, status: str, version: int = 1, name: str = "") -> RecordLine:
    return RecordLine(
        record_id=f"rec-{n}",
        version=version,
        status=status,
        grade=6,
        class_name="6A1",
        student_ref=f"ref-{n}",
        student_name=name or NAMES[n - 1],
        masked_personal_id=f"********{n:04d}",
        complete=status != "incomplete",
    )


def bundle_of(message: ExportRecord) -> ProofReply:
    """The archive's answer: a bundle naming the version asked for (and a QR payload for a certified copy)."""
    version = message.version or 1  # the latest version in the archive
    record = {"record_id": message.record_id, "version": version, "school_code": SCHOOL}
    bundle = {"record": record, "log": {"leaf_index": 0}}
    return ProofReply(bundle=bundle, qr=f"qr-{message.record_id}" if message.certified_copy else None)


def the_class(*lines: RecordLine) -> RecordList:
    return RecordList(school_code=SCHOOL, school_year=YEAR, records=list(lines))


# --- a class's bundles ---------------------------------------------------------------------------


def test_a_class_is_exported_one_bundle_per_archived_record_named_by_class_and_position(stack, hocba, roles, tmp_path):
    stack.answers(ListRecords, the_class(line(1, "incomplete"), line(2, "delivered", version=2), line(3, "archived")))
    stack.answers(ExportRecord, bundle_of)
    result = hocba("archive", "export", *CLASS, "--out", "out", "--purpose", "chuyển trường")
    assert result.exit_code == 0, result.output

    [listed] = stack.of(ListRecords)
    assert (listed.school_code, listed.school_year, listed.class_name, listed.status) == (SCHOOL, YEAR, "6A1", None)
    assert listed.purpose == "chuyển trường"
    exports = stack.of(ExportRecord)
    assert [(e.record_id, e.version, e.certified_copy) for e in exports] == [("rec-2", 2, False), ("rec-3", 1, False)]
    assert {e.purpose for e in exports} == {"chuyển trường"}
    reader = actor_of(listed, tmp_path)
    assert (reader.roles, reader.school_code) == ({"school_admin"}, SCHOOL)
    assert all(actor_of(e, tmp_path) == reader for e in exports), "the same reader lists and exports"
    assert roles == ["school"], "the school's tools' broker login, once"

    written = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in written] == ["6A1-02-v2.json", "6A1-03-v1.json"]
    assert json.loads(written[0].read_text())["record"] == {"record_id": "rec-2", "version": 2, "school_code": SCHOOL}
    text = said(result.stdout)
    assert (
        "exported 2 bundles of class 6A1 of school 79007000 for 2025-2026 into out (3 record(s) in the class)" in text
    )
    assert "not exported, not in the archive yet: incomplete (entries missing) at position 1 of the class list" in text
    assert "an incomplete record is never signed as it is (`hocba review` names the entries it lacks)" in text


def test_no_file_name_carries_personal_data(stack, hocba, tmp_path):
    stack.answers(ListRecords, the_class(*(line(n, "archived") for n in (1, 2, 3))))
    stack.answers(ExportRecord, bundle_of)
    assert hocba("archive", "export", *CLASS, "--out", "out").exit_code == 0
    names = " ".join(p.name for p in (tmp_path / "out").iterdir())
    assert not any(part in names for name in NAMES for part in name.split())
    assert "ref-" not in names and "0001" not in names


def test_without_out_a_class_goes_into_a_folder_named_by_school_year_and_class(stack, hocba, tmp_path):
    stack.answers(ListRecords, the_class(line(1, "archived")))
    stack.answers(ExportRecord, bundle_of)
    assert hocba("archive", "export", *CLASS).exit_code == 0
    assert [p.name for p in (tmp_path / "79007000-2025-2026-6A1").iterdir()] == ["6A1-01-v1.json"]


def test_a_class_of_more_than_99_records_numbers_them_with_as_many_digits(stack, hocba, tmp_path):
    stack.answers(ListRecords, the_class(*(line(n, "archived", name=f"Học sinh {n}") for n in range(1, 101))))
    stack.answers(ExportRecord, bundle_of)
    assert hocba("archive", "export", *CLASS, "--out", "out").exit_code == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert (len(names), names[0], names[-1]) == (100, "6A1-001-v1.json", "6A1-100-v1.json")


def test_an_operator_exports_a_class_with_the_departments_login(stack, hocba, roles, tmp_path):
    stack.answers(ListRecords, the_class(line(1, "archived")))
    stack.answers(ExportRecord, bundle_of)
    assert hocba("archive", "export", *CLASS, "--out", "out", "--as", "operator").exit_code == 0
    reader = actor_of(stack.of(ExportRecord)[0], tmp_path)
    assert reader.subject == f"operator-{getpass.getuser()}" and reader.roles == {"operator"}
    assert roles == ["operator"]


def test_an_amendment_awaiting_its_signatures_is_exported_as_the_version_the_archive_holds(stack, hocba, tmp_path):
    stack.answers(ListRecords, the_class(line(1, "archived"), line(2, "assembled", version=2)))
    stack.answers(ExportRecord, bundle_of)
    result = hocba("archive", "export", *CLASS, "--out", "out")
    assert result.exit_code == 0, result.output
    assert [(e.record_id, e.version) for e in stack.of(ExportRecord)] == [("rec-1", 1), ("rec-2", None)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["6A1-01-v1.json", "6A1-02-v1.json"]
    assert (
        "position 2: version 2 is an amendment awaiting its signatures; exported version 1, the archive's latest"
        in said(result.stdout)
    )
    assert "exported 2 bundles" in said(result.stdout)


def test_a_class_with_nothing_archived_exits_non_zero_saying_why_and_writes_nothing(stack, hocba, tmp_path):
    stack.answers(ListRecords, the_class(line(1, "incomplete"), line(2, "assembled"), line(3, "assembled")))
    result = hocba("archive", "export", *CLASS, "--out", "out")
    assert result.exit_code == 1
    assert (
        "not exported, not in the archive yet: incomplete (entries missing) at position 1; assembled at positions 2, 3 "
        "of the class list; the archive keeps a record once it is signed and sealed (`hocba sign`)"
    ) in said(result.stdout)
    assert said(result.stderr) == (
        "nothing exported: none of the 3 record(s) of class 6A1 of school 79007000 for 2025-2026 is archived yet (above)"
    )
    assert stack.of(ExportRecord) == [] and not (tmp_path / "out").exists()


def test_a_class_without_records_exits_non_zero_saying_when_records_exist(stack, hocba):
    stack.answers(ListRecords, the_class())
    result = hocba("archive", "export", *CLASS)
    assert result.exit_code == 1
    assert said(result.stderr).startswith(
        "nothing exported: grades lists no record of class 6A1 of school 79007000 for 2025-2026. Records are "
        "assembled when the principal closes the year (`hocba year close`)"
    )


def test_a_record_the_archive_refuses_is_said_and_the_others_are_written(stack, hocba, tmp_path):
    stack.answers(ListRecords, the_class(line(1, "archived"), line(2, "archived")))

    def archive(message: ExportRecord) -> ProofReply:
        if message.record_id == "rec-1":
            raise Refused("rec-1 v1 is not archived", reason="not-found")
        return bundle_of(message)

    stack.answers(ExportRecord, archive)
    result = hocba("archive", "export", *CLASS, "--out", "out")
    assert result.exit_code == 1
    assert "position 1 (rec-1): not exported: refused (not-found): rec-1 v1 is not archived" in said(result.stdout)
    assert "exported 1 bundle of class 6A1" in said(result.stdout)
    assert said(result.stderr) == "1 record(s) of class 6A1 of school 79007000 for 2025-2026 were not exported (above)"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["6A1-02-v1.json"]


# --- a class's certified copies ------------------------------------------------------------------


def test_a_class_is_printed_one_certified_copy_per_archived_record(stack, hocba, printed, tmp_path):
    stack.answers(ListRecords, the_class(line(1, "archived"), line(2, "delivered", version=2)))
    stack.answers(ExportRecord, bundle_of)
    result = hocba("archive", "print", *CLASS, "--out", "copies")
    assert result.exit_code == 0, result.output
    assert [(e.record_id, e.version, e.certified_copy) for e in stack.of(ExportRecord)] == [
        ("rec-1", 1, True),
        ("rec-2", 2, True),
    ]
    assert [(b["record"]["record_id"], qr) for b, qr in printed] == [("rec-1", "qr-rec-1"), ("rec-2", "qr-rec-2")]
    written = sorted((tmp_path / "copies").iterdir())
    assert [p.name for p in written] == ["6A1-01-v1.pdf", "6A1-02-v2.pdf"]
    assert all(p.read_bytes().endswith(b"%sealed\n") for p in written), "only sealed copies are written"
    # The seal is asked once a copy, by the school's records administrator, for the version printed and its purpose.
    sealed = stack.of(SealCopy)
    assert [(m.school_code, m.record_id, m.version) for m in sealed] == [(SCHOOL, "rec-1", 1), (SCHOOL, "rec-2", 2)]
    assert {actor_of(m, tmp_path).subject for m in sealed} == {f"admin-{SCHOOL}"}
    assert "printed 2 certified copies of class 6A1 of school 79007000 for 2025-2026 into copies" in said(result.stdout)


def test_an_operators_class_print_has_the_seal_asked_by_the_schools_records_administrator(
    stack, hocba, printed, roles, tmp_path
):
    stack.answers(ListRecords, the_class(line(1, "archived")))
    stack.answers(ExportRecord, bundle_of)
    result = hocba("archive", "print", *CLASS, "--as", "operator", "--out", "copies")
    assert result.exit_code == 0, result.output
    [exported] = stack.of(ExportRecord)
    [sealed] = stack.of(SealCopy)
    assert actor_of(exported, tmp_path).roles == {"operator"}
    assert actor_of(sealed, tmp_path).subject == f"admin-{SCHOOL}", "only the school's staff may have it sealed"
    assert roles == ["operator", "school"], "the seal is asked over the schools' broker login"


def test_a_copy_the_signing_service_does_not_seal_is_not_written(stack, hocba, printed, tmp_path):
    stack.answers(ListRecords, the_class(line(1, "archived"), line(2, "archived")))
    stack.answers(ExportRecord, bundle_of)
    not_archived = Refused("rec-1 v1 is not archived: it lacks the signature of school_seal", reason="not-archived")
    stack.answers(SealCopy, not_archived)
    result = hocba("archive", "print", *CLASS, "--out", "copies")
    assert result.exit_code == 1
    assert "position 1 (rec-1): not printed: refused (not-archived): rec-1 v1 is not archived" in said(result.stdout)
    assert not any((tmp_path / "copies").iterdir()), "no unsealed copy is left behind"


def test_a_copy_that_cannot_be_rendered_is_said_without_a_traceback(stack, hocba, printed, monkeypatch, tmp_path):
    stack.answers(ListRecords, the_class(line(1, "archived")))
    stack.answers(ExportRecord, bundle_of)

    def no_fonts(bundle: dict[str, Any], qr: str, issued_at: datetime) -> bytes:
        raise FileNotFoundError(2, "DejaVu fonts are needed for Vietnamese text")

    monkeypatch.setattr(archive_commands, "copy_pdf_bytes", no_fonts)
    result = hocba("archive", "print", *CLASS, "--out", "copies")
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), "the command ended, saying why; nothing was raised past it"
    assert "position 1 (rec-1): not printed: cannot render the copy: DejaVu fonts are needed" in said(result.stdout)
    assert said(result.stderr) == (
        "nothing printed: none of the 1 record(s) of class 6A1 of school 79007000 for 2025-2026 could be (above)"
    )


# --- usage ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("rec-1", *CLASS), "give a record id, or --school, --year and --class for a class's records, not both"),
        (("--school", SCHOOL, "--class", "6A1"), "a class's records need --school, --year and --class: add --year"),
        (("--school", SCHOOL, "--year", "2025-2027", "--class", "6A1"), "--year '2025-2027' is not a school year"),
        (("--school", "7900700", "--year", YEAR, "--class", "6A1"), "--school '7900700' has 7 digits, not 8"),
        ((), "name the record (its id, as `hocba records list` shows it), or a class: --school, --year and --class"),
        (("rec-1", "--as", "principal"), "--as chooses who reads a class's records"),
    ],
)
@pytest.mark.parametrize("command", ["export", "print"])
def test_a_mistyped_request_is_a_usage_error_and_sends_nothing(stack, hocba, command, args, expected):
    result = hocba("archive", command, *args)
    assert result.exit_code == 2, result.output
    assert expected in said(result.stderr)
    assert stack.sent == []


def test_out_naming_a_file_is_a_usage_error_for_a_class(stack, hocba, tmp_path):
    (tmp_path / "out").write_text("")
    result = hocba("archive", "export", *CLASS, "--out", "out")
    assert result.exit_code == 2
    assert "--out out is a file: with --class, --out names the folder the class's files go into" in said(result.stderr)
    assert stack.sent == []


# --- one record, as before -----------------------------------------------------------------------


def test_one_records_bundle_is_exported_by_the_operator_as_before(stack, hocba, roles, tmp_path):
    stack.answers(ExportRecord, ProofReply(bundle={"record": {"version": 3}, "log": {"leaf_index": 4, "tree_size": 9}}))
    result = hocba("archive", "export", "rec-7")
    assert result.exit_code == 0, result.output
    assert "wrote rec-7-v3.json: entry 4 of 9" in said(result.stdout)
    [asked] = stack.of(ExportRecord)
    assert (asked.record_id, asked.version, asked.certified_copy) == ("rec-7", None, False)
    assert actor_of(asked, tmp_path).roles == {"operator"} and roles == ["operator"]


def test_one_records_certified_copy_is_printed_sealed(stack, hocba, printed, roles, tmp_path):
    stack.answers(ExportRecord, bundle_of)
    result = hocba("archive", "print", "rec-7", "--version", "2")
    assert result.exit_code == 0, result.output
    [(bundle, qr)] = printed
    assert (bundle["record"]["version"], qr) == (2, "qr-rec-7")
    assert (tmp_path / "copy.pdf").read_bytes().endswith(b"%sealed\n")
    [asked] = stack.of(SealCopy)
    assert (asked.record_id, asked.version, actor_of(asked, tmp_path).subject) == ("rec-7", 2, f"admin-{SCHOOL}")
    # The operator exports the version; the school's records administrator asks for the seal, over the school's login.
    assert roles == ["operator", "school"]
    assert "wrote copy.pdf, sealed; check it with `hocba verify copy.pdf`" in said(result.stdout)
