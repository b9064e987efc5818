"""An amendment from a delivered record to its version 2 delivered, on the real broker and database: the five
services run as processes (as `hocba up` runs them, each with its own broker user), a school's term end brings
every record to the ministry, then the school's principal amends one record with `hocba amend` and the steps it
names (`hocba review confirm`, `hocba sign` by the homeroom teacher, then by the principal) bring version 2 to the
archive and the ministry, beside version 1; `hocba grades history` shows the correction with the amendment's reason.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from hocba.cli import app
from hocba.demo_data import SCHOOL_YEAR
from hocba.keys import dev_issuer
from hocba.term_end import TermEnd
from shared.mongo import make_client
from shared.settings import Names, Settings
from tests.support import throwaway_stack

STUDENTS = 12
NOTE = "Phúc khảo bài kiểm tra cuối kỳ II môn Toán, quyết định số 12/QĐ-THCS"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with throwaway_stack(tmp_path_factory.mktemp("amend-stack"), "amend") as running:
        yield running


@pytest.fixture(scope="module")
def delivered(stack) -> TermEnd:
    """A school's term end, every record signed, archived and delivered (version 1)."""
    settings = Settings(amqp_url=stack.url_for("school"), namespace=stack.config.namespace, chunk_size=50)
    issuer, _ = dev_issuer(stack.config.data_dir)
    run = TermEnd(settings, issuer, schools=1, students=STUDENTS, stage_timeout=180)
    counts = {r.name: r.count for r in asyncio.run(run.run())}
    assert counts["deliver"] == STUDENTS
    return run


@pytest.fixture(scope="module")
def hocba(stack) -> Callable[..., Result]:
    runner = CliRunner()
    env = {"AMQP_URL": stack.config.amqp_url, "HOCBA_NAMESPACE": stack.config.namespace, "COLUMNS": "250"}

    def run(*args: str) -> Result:
        return runner.invoke(app, [*args, "--data-dir", str(stack.config.data_dir)], env=env, catch_exceptions=False)

    return run


def said(result: Result) -> str:
    return " ".join(result.output.split())


def test_a_delivered_record_is_amended_signed_again_and_delivered_as_version_2(stack, delivered, hocba, tmp_path: Path):
    school, roster = delivered.rosters()[0]
    student = roster[0]
    pid, class_name = student.identity.personal_id, student.enrolment.class_name
    where = ("--school", school.code, "--year", SCHOOL_YEAR)
    corrected = tmp_path / "phuc-khao.csv"
    corrected.write_text(
        "school_code,school_year,class,personal_id,subject,term,regular,midterm,final\n"
        f"{school.code},{SCHOOL_YEAR},{class_name},{pid},Toán,2,10 10 10 10,10,10\n",
        encoding="utf-8",
    )

    amended = hocba(
        "amend",
        *where,
        "--personal-id",
        pid,
        "--reason",
        "appeal-decision",
        "--entries",
        str(corrected),
        "--note",
        NOTE,
    )
    assert amended.exit_code == 0, amended.output
    found = re.search(r"record (\w+) amended: version 2 supersedes version 1 \(appeal-decision\)", said(amended))
    assert found, amended.output
    rid = found.group(1)
    assert f"hocba review confirm --school {school.code} --year {SCHOOL_YEAR} --class {class_name}" in said(amended)

    again = hocba(
        "amend",
        *where,
        "--personal-id",
        pid,
        "--reason",
        "appeal-decision",
        "--entries",
        str(corrected),
        "--note",
        NOTE,
    )
    assert again.exit_code == 0, again.output
    assert f"record {rid} amended: version 2 supersedes version 1" in said(again), "the same request, answered again"

    # Before the class is reviewed again, the homeroom teacher's signing holds the amended record back.
    held = hocba("sign", *where, "--as", "homeroom_teacher", "--class", class_name)
    assert held.exit_code == 1, held.output
    assert "changed since" in said(held)

    confirmed = hocba("review", "confirm", *where, "--class", class_name)
    assert confirmed.exit_code == 0, confirmed.output
    homeroom = hocba("sign", *where, "--as", "homeroom_teacher", "--class", class_name)
    assert homeroom.exit_code == 0, homeroom.output
    assert "signed 1 of 1 records" in said(homeroom)
    principal = hocba("sign", *where)
    assert principal.exit_code == 0, principal.output
    assert "signed and sealed 1 of 1 records" in said(principal)

    deadline = time.monotonic() + 120
    while True:
        listed = hocba("records", "list", *where, "--personal-id", pid)
        assert listed.exit_code == 0, listed.output
        if f"{rid} │ 2 │ delivered to the ministry" in said(listed):
            break
        assert time.monotonic() < deadline, listed.output
        time.sleep(1)

    history = hocba("grades", "history", *where, "--personal-id", pid, "--subject", "Toán")
    assert history.exit_code == 0, history.output
    [change] = [line for line in history.output.splitlines() if "Toán, term 2  changed" in line]
    assert f"changed by ht-{school.code}" in change and "final" in change and "→ 10" in change
    assert f"reason: amendment of v1 (appeal-decision): {NOTE}" in change
    assert "grades.record.amend.v1" in change

    grades, archive = asyncio.run(versions_kept(stack, rid))
    assert sorted(grades) == [1, 2] and grades[1] is None, "grades keeps the version 2 it made beside version 1"
    assert grades[2], "version 2 names the amendment that made it"
    assert archive == [1, 2], "the archive keeps version 2 beside version 1"
    with httpx.Client(base_url=stack.simulator.base_url) as ministry:
        held_keys = {r["idempotency_key"] for r in ministry.get("/v1/receipts").json()["receipts"]}
    assert {f"{rid}:1", f"{rid}:2"} <= held_keys, "the ministry received both versions"


async def versions_kept(stack, rid: str) -> tuple[dict[int, str | None], list[int]]:
    """The versions of the record grades holds (each with the amendment that made it), and the archive's log."""
    client = make_client(stack.mongo_url)
    try:
        names = Names(stack.config.namespace)
        records = client[names.database("grades")]["records"].find({"record_id": rid})
        grades = {doc["version"]: doc.get("amended_by") async for doc in records}
        log = client[names.database("archive")]["log"].find({"record_id": rid})
        return grades, sorted([entry["version"] async for entry in log])
    finally:
        await client.close()
