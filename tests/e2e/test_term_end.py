"""A whole term end with the five services as separate processes on real RabbitMQ and MongoDB-wire.

Each service logs in to the broker as its own user, and the driver as the school tools (hocba.broker):
the permissions change nothing of the outcome, every record is delivered exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlparse

import aio_pika
import httpx
import pytest

from hocba.broker import rabbitmqctl_command, user_name
from hocba.demo_data import SCHOOL_YEAR
from hocba.keys import dev_issuer
from hocba.stack import SIMULATOR, TSA
from hocba.staff import Staff
from hocba.term_end import TermEnd
from services.sync.repository import outbox_key
from shared.at_rest import record_owner
from shared.contracts.grades import CloseYear
from shared.contracts.identity import RegisterStudents
from shared.crypto.kek import KekError
from shared.crypto.vault import Vault
from shared.messaging import Bus
from shared.mongo import make_client
from shared.settings import Names, Settings
from tests.support import amqp_url, throwaway_stack

STUDENTS = 200

#: Which collections each service owns (DESIGN.md §1); nothing else may appear in its database. Those that
#: answer reads of a student keep their access log (signing's: the seal put on certified copies).
OWNED = {
    "identity": {"students", "access_log"},
    "grades": {"enrolments", "assessments", "terms", "records", "access_log", "record_statuses"},
    "signing": {"records", "signatures", "batches", "reviews", "access_log"},
    "archive": {"log", "records", "checkpoints", "checkpoint_timestamps", "access_log"},
    "sync": {"outbox", "receipts", "counts"},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with throwaway_stack(tmp_path_factory.mktemp("stack"), "e2e") as running:
        yield running


@pytest.fixture(scope="module")
def settings(stack) -> Settings:
    """The driver's: the school tools' broker login, as the school management application has it."""
    return Settings(amqp_url=stack.url_for("school"), namespace=stack.config.namespace, chunk_size=50)


def connected_users(rabbitmqctl: str) -> set[str]:
    """Who is logged in to the local broker now."""
    listed = subprocess.run(
        [rabbitmqctl, "list_connections", "user", "--quiet", "--no-table-headers"],
        capture_output=True, text=True, timeout=30, check=False,
    ).stdout
    return {line.strip() for line in listed.splitlines() if line.strip()}


def test_each_service_process_logs_in_as_its_own_broker_user(stack):
    namespace = stack.config.namespace
    for child in stack.children:
        given = urlparse(child.env.get("AMQP_URL", "")).username
        # The ministry's simulator and the development TSA are not hocba's services: they do not use the broker.
        assert given == (None if child.name in {SIMULATOR, TSA} else user_name(namespace, child.name)), child.name
    tool = rabbitmqctl_command()
    if tool and urlparse(stack.config.amqp_url).hostname in {"127.0.0.1", "localhost"}:
        assert {user_name(namespace, s) for s in OWNED} <= connected_users(tool)


@dataclass(frozen=True)
class Finished:
    """The term end this module's tests look at: what ran, and each stage's count."""

    run: TermEnd
    counts: dict[str, int]


@pytest.fixture(scope="module")
def term_end(stack, settings) -> Finished:
    issuer, _ = dev_issuer(stack.config.data_dir)
    run = TermEnd(settings, issuer, schools=1, students=STUDENTS, stage_timeout=180)
    return Finished(run, {r.name: r.count for r in asyncio.run(run.run())})


async def test_every_record_is_signed_archived_and_delivered_once(stack, settings, term_end):
    results = term_end.counts
    assert results == {
        "register": STUDENTS,
        "assess": STUDENTS * 12 * 2,
        "assemble": STUDENTS,
        "sign": STUDENTS,
        "archive": STUDENTS,
        "deliver": STUDENTS,
    }
    assert not stack.dead_children(), "a service process died during the run"

    names = settings.names()
    client = make_client(stack.mongo_url)
    try:
        signing = client[names.database("signing")]
        # Three signatures a record: homeroom teacher, principal, school seal.
        assert await signing["signatures"].count_documents({}) == STUDENTS * 3
        keys = {(s["record_id"], s["version"], s["role"]) async for s in signing["signatures"].find()}
        assert len(keys) == STUDENTS * 3, "a record was signed twice for the same role"

        archive = client[names.database("archive")]
        assert await archive["log"].count_documents({}) == STUDENTS
        archived = {(e["record_id"], e["version"]) async for e in archive["log"].find()}
        assert len(archived) == STUDENTS, "a record version was archived twice"

        sync = client[names.database("sync")]
        assert await sync["receipts"].count_documents({"kind": "record"}) == STUDENTS
        parked = [doc["last_error"] async for doc in sync["outbox"].find({"kind": "checkpoint", "status": "parked"})]
        assert parked == [], "the ministry, as a witness, refused a checkpoint of the archive's log"

        prefix = names.database("")
        databases = {d for d in await client.list_database_names() if d.startswith(prefix)}
        assert databases == {names.database(s) for s in OWNED}
        for service, owned in OWNED.items():
            collections = set(await client[names.database(service)].list_collection_names())
            assert collections <= owned, f"{service}'s database holds {collections - owned}"
    finally:
        await client.close()

    with httpx.Client(base_url=stack.simulator.base_url) as ministry:
        stats = ministry.get("/v1/stats").json()
        held = {r["idempotency_key"] for r in ministry.get("/v1/receipts").json()["receipts"]}
    assert stats["accepted"] == STUDENTS
    assert held == {f"{record_id}:{version}" for record_id, version in archived}


def test_the_ministry_holds_the_archives_latest_checkpoint_as_it_signed_it(stack, term_end):
    """The checkpoint the archive serves without sign-in reaches the ministry, which takes it only signed by the archive
    and proven consistent with the one it held before: the ministry holds it with the same signature and time."""
    archive, ministry = stack.child("archive").base_url, stack.simulator.base_url
    deadline = time.monotonic() + 60
    while True:
        latest = httpx.get(f"{archive}/v1/log/checkpoint", timeout=10).json()["checkpoint"]
        key = f"checkpoint:{latest['origin']}:{latest['tree_size']}"
        held = {c["idempotency_key"]: c for c in httpx.get(f"{ministry}/v1/checkpoints", timeout=10).json()["checkpoints"]}
        if key in held or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert key in held, f"the ministry does not hold the archive's latest checkpoint ({key})"
    assert {name: held[key][name] for name in latest} == latest
    assert latest["tree_size"] == STUDENTS


# --- personal data at rest ---------------------------------------------------------------------


def spellings(text: str) -> list[bytes]:
    """The ways a server or a file may hold `text`: UTF-8 (composed and decomposed), JSON's ASCII escapes, UTF-16."""
    return sorted({
        unicodedata.normalize("NFC", text).encode(),
        unicodedata.normalize("NFD", text).encode(),
        json.dumps(text)[1:-1].encode(),
        text.encode("utf-16-le"),
    })


def personal_data(finished: Finished) -> dict[str, list[bytes]]:
    """Every student's personal ID, full name and date of birth, each as every spelling to look for."""
    found: dict[str, list[bytes]] = {}
    for _, roster in finished.run.rosters():
        for row in roster:
            i = row.identity
            born = i.date_of_birth
            found[f"personal ID of {i.personal_id[-4:]}"] = spellings(i.personal_id)
            found[f"name of {i.personal_id[-4:]}"] = spellings(i.full_name)
            found[f"birth date of {i.personal_id[-4:]}"] = [born.isoformat().encode(), born.strftime("%d/%m/%Y").encode()]
    return found


def disclosed(data: bytes, needles: dict[str, list[bytes]]) -> list[str]:
    return [what for what, spelt in needles.items() if any(s in data for s in spelt)]


def namespace_queues(namespace: str) -> list[str]:
    tool = rabbitmqctl_command()
    assert tool, "rabbitmqctl is needed to list the broker's queues (`make test` installs RabbitMQ)"
    listed = subprocess.run(
        [tool, "list_queues", "name", "--quiet", "--no-table-headers"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return sorted(line.strip() for line in listed.splitlines() if line.strip().startswith(namespace))


async def messages_left(url: str, queues: list[str]) -> dict[str, list[bytes]]:
    """Every message waiting in `queues` (body and headers), read without taking it: all are returned on closing."""
    left: dict[str, list[bytes]] = {}
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for name in queues:
            queue = await channel.declare_queue(name, passive=True)
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                left.setdefault(name, []).append(message.body + repr(message.headers).encode())
        await channel.close()
    finally:
        await connection.close()
    return left


async def test_after_the_term_end_no_file_and_no_queue_holds_a_students_personal_data(stack, settings, term_end):
    assert term_end.counts["deliver"] == STUDENTS
    needles = personal_data(term_end)
    assert len(needles) == STUDENTS * 3
    school, roster = term_end.run.rosters()[0]
    first = roster[0].identity.personal_id[-4:]
    registration = RegisterStudents(students=roster[:1]).model_dump_json().encode()
    assert {f"personal ID of {first}", f"name of {first}", f"birth date of {first}"} <= set(
        disclosed(registration, needles)
    ), "the search finds a student's data where it is in clear"

    # A command that is refused lies in a dead-letter queue: it may not keep its sender's token either.
    outsider = Staff(dev_issuer(stack.config.data_dir)[0]).school_admin("79999999")
    refused = outsider.signs(CloseYear(school_code=school.code, school_year=SCHOOL_YEAR))
    bus = Bus(settings, "probe")
    await bus.broker.connect()
    try:
        await bus.publish(refused)
    finally:
        await bus.broker.stop()
    queues = namespace_queues(settings.namespace)
    left: dict[str, list[bytes]] = {}
    deadline = time.monotonic() + 30
    while not any(name.endswith(".dlq") for name in left) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        left = await messages_left(amqp_url(), queues)
    assert [name for name in left if name.endswith(".dlq")], "the refused command was dead-lettered"
    for name, messages in left.items():
        for message in messages:
            assert not disclosed(message, needles), f"a message in {name} holds personal data"
            assert refused.actor is not None and refused.actor.encode() not in message, f"{name} keeps an actor token"

    files = [path for path in stack.config.data_dir.rglob("*") if path.is_file()]
    assert any(path.suffix == ".db" for path in files) or os.environ.get("MONGO_URL"), "the database files are read"
    for path in files:
        found = disclosed(path.read_bytes(), needles)
        assert not found, f"{path.relative_to(stack.config.data_dir)} holds {len(found)} item(s), e.g. {found[0]}"


#: Where each service keeps a sealed document: collection, field, the kind it is sealed as, and whose it is.
SEALED = {
    "grades": ("records", "document", "record", record_owner),
    "signing": ("records", "document", "record", record_owner),
    "archive": ("log", "document", "record", record_owner),
    "sync": ("outbox", "payload", "ministry-payload", outbox_key),
}


async def test_a_copy_of_the_data_folder_and_a_database_dump_without_the_key_encryption_keys_open_nothing(
    stack, term_end, tmp_path
):
    assert term_end.counts["deliver"] == STUDENTS
    original = stack.config.data_dir
    copy = tmp_path / "copy"
    shutil.copytree(original, copy, ignore=shutil.ignore_patterns("secrets"))
    names = Names(stack.config.namespace)
    client = make_client(stack.mongo_url)
    try:
        dumped = {s: await client[names.database(s)][c].find_one({"key_id": {"$exists": True}}) for s, (c, *_) in SEALED.items()}
        student = await client[names.database("identity")]["students"].find_one()
    finally:
        await client.close()

    for service in [*SEALED, "identity"]:
        with pytest.raises(KekError):  # development makes itself a new KEK, which does not open the ring
            Vault.for_service(Settings(data_dir=copy), service)
        with pytest.raises(KekError, match="HOCBA_KEK_FILE"):
            Vault.for_service(Settings(data_dir=copy, environment="production"), service)

    # The key-encryption key is all that the copy lacks: given it, the copy's rings open the dump.
    def with_kek(service: str) -> Vault:
        return Vault.for_service(Settings(data_dir=copy, kek_file=original / "secrets" / f"{service}.kek"), service)

    for service, (_, field, kind, owner) in SEALED.items():
        doc = dumped[service]
        assert doc is not None and isinstance(doc[field], bytes), f"{service} keeps its documents sealed"
        assert json.loads(with_kek(service).documents.open(kind, owner(doc), doc["key_id"], doc[field]))
    assert with_kek("identity").cipher.decrypt_fields(student["_id"], student["pii"])["personal_id"]
