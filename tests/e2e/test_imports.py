"""The `hocba identity` and `hocba grades` commands against a running stack: imports, look-ups, rotation, explain."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import aio_pika
import pytest
from typer.testing import CliRunner

from hocba.cli import app
from hocba.commands import login_name
from hocba.keys import dev_issuer
from hocba.staff import Staff
from shared.at_rest import sealed_records
from shared.contracts.grades import CloseTerm, CloseYear, RecordAssessments, RecordConduct, TermChanged
from shared.contracts.identity import RegisterStudents
from shared.crypto.vault import Vault
from shared.messaging import Bus
from shared.mongo import make_client
from shared.settings import Settings
from tests.support import throwaway_stack

SCHOOL = "79007000"

ROSTER = """personal_id,full_name,date_of_birth,sex,place_of_birth,ethnicity,school_code,grade,class,guardian_name
079214000001,Nguyễn Văn An,2014-03-02,M,TP. Hồ Chí Minh,Kinh,79007000,6,6A1,Nguyễn Văn Ba
079314000002,Trần Thị Bình,2014-07-19,F,TP. Hồ Chí Minh,Kinh,79007000,6,6A1,Trần Văn Tư
001214000003,Lê Minh Châu,2014-11-30,M,Hà Nội,Kinh,79007000,6,6A1,Lê Thị Năm
079214000004,Phạm Quốc Dũng,2014-01-05,F,TP. Hồ Chí Minh,Kinh,79007000,6,6A1,Phạm Văn Sáu
079214000005,Võ Gia Huy,2014-13-01,M,TP. Hồ Chí Minh,Kinh,79007000,6,6A1,Võ Văn Bảy
079314000002,Trần Thị Bình,2014-07-19,F,TP. Hồ Chí Minh,Kinh,79007000,6,6A1,Trần Văn Tư
003214000006,Đỗ Thanh Lan,2014-02-02,F,Hà Nội,Kinh,79007000,6,6A1,Đỗ Văn Tám
"""

GRADEBOOK = """school_code,school_year,class,personal_id,subject,term,regular,midterm,final,level,midterm_level,comment
79007000,2025-2026,6A1,079214000001,Tin học,1,8 7.5,7,8,,,Tiến bộ
79007000,2025-2026,6A1,079314000002,Tin học,1,9 9,8.5,9,,,
79007000,2025-2026,6A1,001214000003,Tin học,1,6 7,7,6.5,,,
79007000,2025-2026,6A1,079214000001,Tin học,2,8 8,8,8,,,
79007000,2025-2026,6A1,079314000002,Tin học,2,11 9,8,9,,,
79007000,2025-2026,6A1,001214000003,Tin học,2,7,7,7,,,
79007000,2025-2026,6A1,079214000099,Tin học,2,7 7,7,7,,,
79007000,2025-2026,6A1,079214000001,Tin học,1,8 7.5,7,8,,,
79007000,2025-2026,6A1,079214000001,Nghệ thuật,1,,,,Đ,,
"""

CONDUCT = """school_code;school_year;class;personal_id;term;absences;conduct;comment
79007000;2025-2026;6A1;079214000001;1;2;Tốt;Chăm ngoan, tích cực
79007000;2025-2026;6A1;079314000002;1;0;Khá;
79007000;2025-2026;6A1;001214000003;1;1;Giỏi;
79007000;2025-2026;6A1;001214000003;2;1;;
79007000;2026-2027;6A1;079214000001;1;0;Tốt;
79007000;2025-2026;6A1;079214000001;2;0;Tốt;
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imports")
    ring = {"HOCBA_IDENTITY_KEY_RING": str(folder / "keys" / "identity-keyring.json")}
    with throwaway_stack(folder, "cli", extra_env=ring) as running:
        yield running


@pytest.fixture(scope="module")
def hocba(stack):
    runner = CliRunner()
    # A wide terminal: each bad row's reason on one line.
    env = {"AMQP_URL": stack.config.amqp_url, "HOCBA_NAMESPACE": stack.config.namespace, "COLUMNS": "200"}

    def run(*args: str):
        return runner.invoke(app, [*args, "--data-dir", str(stack.config.data_dir)], env=env, catch_exceptions=False)

    return run


def rows_reported(output: str) -> dict[int, str]:
    return {int(n): reason for n, reason in re.findall(r"row (\d+): (.*)", output)}


def counts(output: str) -> list[int]:
    """The numbers of the summary table's one data row."""
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if cells and all(c.isdigit() for c in cells):
            return [int(c) for c in cells]
    raise AssertionError(f"no summary row in:\n{output}")


def test_roster_import_reports_bad_rows_and_a_second_import_changes_nothing(stack, hocba, tmp_path: Path):
    roster = tmp_path / "roster.csv"
    roster.write_text(ROSTER, encoding="utf-8")
    first = hocba("identity", "import", str(roster))
    assert first.exit_code == 1, first.output
    bad = rows_reported(first.output)
    assert set(bad) == {5, 6, 7, 8}, first.output
    assert "digit 4 must encode the sex and the century of the date of birth" in bad[5]
    assert "date_of_birth '2014-13-01' is not a date in the calendar (there is no month 13)" in bad[6]
    assert "duplicate" in bad[7] and "row 3" in bad[7]
    assert "digits 1-3 must be a known province code" in bad[8]
    assert counts(first.output) == [7, 3, 0, 0, 4]  # rows, registered, unchanged, enrolment added, rejected

    again = hocba("identity", "import", str(roster))
    assert counts(again.output) == [7, 0, 3, 0, 4]
    assert set(rows_reported(again.output)) == {5, 6, 7, 8}

    found = hocba("identity", "lookup", "079314000002", "079214000099")
    assert "Trần Thị Bình" in found.output and "079214000099: not found" in found.output


def test_gradebook_import_reports_bad_rows_and_a_second_import_changes_nothing(stack, hocba, tmp_path: Path):
    gradebook = tmp_path / "6A1.csv"
    gradebook.write_text(GRADEBOOK, encoding="utf-8")
    first = hocba("grades", "import", str(gradebook))
    assert first.exit_code == 1, first.output
    bad = rows_reported(first.output)
    assert set(bad) == {6, 7, 8, 9}, first.output
    assert "regular 1 11 is outside 0-10" in bad[6]
    assert "needs 2 regular assessments per term, got 1" in bad[7]
    assert "no student with personal ID 079214000099" in bad[8]
    assert "duplicate" in bad[9] and "row 2" in bad[9]
    assert counts(first.output) == [9, 5, 0, 0, 4]  # rows, stored, changed, unchanged, rejected

    again = hocba("grades", "import", str(gradebook))
    assert counts(again.output) == [9, 0, 0, 5, 4]


def test_homeroom_entries_import_reports_bad_rows_and_a_second_import_changes_nothing(stack, hocba, tmp_path: Path):
    conduct = tmp_path / "6A1-hanh-kiem.csv"
    conduct.write_text(CONDUCT, encoding="utf-8")
    first = hocba("grades", "conduct", "import", str(conduct))
    assert first.exit_code == 1, first.output
    bad = rows_reported(first.output)
    assert set(bad) == {4, 5, 6}, first.output
    assert "conduct 'Giỏi' must be Tốt, Khá, Đạt or Chưa đạt" in bad[4]
    assert "conduct (Tốt, Khá, Đạt or Chưa đạt) is missing" in bad[5]
    assert (
        "another class: this file holds class 6A1 of school 79007000 in 2025-2026 (as most of its rows say)" in bad[6]
    )
    assert counts(first.output) == [6, 3, 0, 0, 3]  # rows, stored, changed, unchanged, rejected

    again = hocba("grades", "conduct", "import", str(conduct))
    assert counts(again.output) == [6, 0, 0, 3, 3]


def test_mistakes_in_imported_files_leave_no_dead_letters(stack, hocba):
    """Every bad row above was reported to whoever imported it; none went to a dead-letter queue."""

    async def dead_letters() -> dict[str, int]:
        names = Settings(namespace=stack.config.namespace).names()
        queues = [
            names.dead_letter_queue(names.queue(service, message.ROUTING_KEY))
            for service, message in (
                ("identity", RegisterStudents),
                ("grades", RecordAssessments),
                ("grades", RecordConduct),
            )
        ]
        connection = await aio_pika.connect(stack.config.amqp_url)
        async with connection:
            channel = await connection.channel()
            found = {}
            for queue in queues:
                declared = await channel.declare_queue(queue, passive=True)
                found[queue] = declared.declaration_result.message_count or 0
            return found

    waiting = asyncio.run(dead_letters())
    assert set(waiting.values()) == {0}, waiting


def test_rotation_keeps_lookups_working_and_explain_prints_the_computation(stack, hocba):
    rotated = hocba("identity", "rotate-key")
    assert rotated.exit_code == 0, rotated.output
    assert "3 student(s) re-encrypted" in rotated.output
    assert "Trần Thị Bình" in hocba("identity", "lookup", "079314000002").output

    async def close_year() -> None:
        settings = Settings(amqp_url=stack.config.amqp_url, namespace=stack.config.namespace)
        staff = Staff(dev_issuer(stack.config.data_dir)[0])
        bus = Bus(settings, "test")
        await bus.broker.connect()
        try:
            principal = staff.principal(SCHOOL)
            for term in (1, 2):
                close = principal.signs(CloseTerm(school_code=SCHOOL, school_year="2025-2026", term=term))
                changed = await bus.request(close, TermChanged)
                assert changed.state == "closed"
            await bus.publish(principal.signs(CloseYear(school_code=SCHOOL, school_year="2025-2026")))
        finally:
            await bus.broker.stop()

    asyncio.run(close_year())

    async def record_of_an() -> str:
        client = make_client(stack.mongo_url)
        grades = client[Settings(namespace=stack.config.namespace).names().database("grades")]
        # A test's look into grades' database: the records are sealed under grades' development key ring.
        records = sealed_records(grades["records"], Vault.for_service(Settings(data_dir=stack.config.data_dir), "grades"))
        try:
            for _ in range(100):
                async for doc in grades["records"].find({}):
                    if records.opened(doc)["student"]["identity"]["full_name"] == "Nguyễn Văn An":
                        return doc["record_id"]
                await asyncio.sleep(0.1)
        finally:
            await client.close()
        raise AssertionError("no record assembled")

    record_id = asyncio.run(record_of_an())
    explained = hocba("grades", "explain", record_id, "--inputs")
    assert explained.exit_code == 0, explained.output
    text = " ".join(explained.output.split())
    assert "Nguyễn Văn An" in text
    assert "Tin học term I average 7.6 = (8 + 7.5 + 2×7 + 3×8) / (2 + 5)" in text
    assert "Circular 22/2021 Art. 9.1.b" in text
    assert "not yet confirmed" in text

    rotated = hocba("keys", "rotate", "--service", "grades")
    assert rotated.exit_code == 0, rotated.output
    assert re.search(r"grades: key k-\w+ is current; [1-9]\d* document\(s\) re-encrypted", rotated.output), rotated.output
    again = hocba("grades", "explain", record_id)
    assert again.exit_code == 0 and "Nguyễn Văn An" in " ".join(again.output.split()), "the record reads under its new key"


@pytest.mark.parametrize("service", ["signing", "archive", "sync"])
def test_every_service_rotates_its_data_key_on_an_operators_command(stack, hocba, service):
    rotated = hocba("keys", "rotate", "--service", service)
    assert rotated.exit_code == 0, rotated.output
    assert re.search(rf"{service}: key k-\w+ is current; \d+ document\(s\) re-encrypted", rotated.output), rotated.output


def test_an_unknown_service_has_no_key_to_rotate(hocba):
    refused = hocba("keys", "rotate", "--service", "ministry")
    assert refused.exit_code == 2 and "unknown service 'ministry'" in refused.output


def test_audit_access_lists_who_read_a_student_and_why(stack, hocba):
    """Every read through the command line is in the answering service's access log, with its reader and purpose."""
    looked_up = hocba("identity", "lookup", "079214000001", "--purpose", "guardian asked for a transcript")
    assert looked_up.exit_code == 0, looked_up.output
    shown = hocba("audit", "access", "--student", "079214000001", "--json")
    assert shown.exit_code == 0, shown.output
    entries = json.loads(shown.stdout)["entries"]
    reads = {(e["service"], e["action"], e["purpose"]) for e in entries}
    assert ("identity", "find", "guardian asked for a transcript") in reads
    assert ("grades", "explain", "record explanation from the command line") in reads  # `grades explain` above
    mine = [e for e in entries if e["purpose"] == "guardian asked for a transcript"]
    assert mine[0]["subject"] == f"operator-{login_name()}" and mine[0]["roles"] == ["operator"]
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries), "oldest first"

    elsewhere = hocba("audit", "access", "--student", "079214000001", "--school", "79009999")
    assert elsewhere.exit_code == 1
    assert "no student with personal ID 079214000001 is registered in school 79009999" in elsewhere.stderr
