"""`hocba dlq`: which dead-letter queues a namespace has, what a dead letter's headers say about it, which may
be moved back, and what the listing prints. The broker side runs in tests/integration/test_dlq_command.py."""

from __future__ import annotations

import base64
import json
import socket
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from hocba.broker import IDENTITIES
from hocba.cli import app
from hocba.commands.dlq import (
    DEATH_HEADER,
    REPLAYS_HEADER,
    DeadLetter,
    Delivered,
    QueueLook,
    UnknownQueue,
    age,
    dead_letter_queues,
    described,
    listing_lines,
    read_dead_letter,
    replay_verdict,
    replayed_headers,
    resolve,
)
from shared.contracts.archive import RecordsArchived
from shared.contracts.grades import CloseTerm, RecordsReady
from shared.contracts.identity import LookupStudents
from shared.messaging import (
    ACTOR_SUBJECT_HEADER,
    DELIVERY_COUNT_HEADER,
    ERROR_HEADER,
    QUEUE_HEADER,
    REASON_HEADER,
)
from shared.settings import SERVICES, Names

NAMES = Names("demo")
QUEUES = dead_letter_queues(NAMES)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
#: A personal ID and a name as a dead letter's body may hold them: never printed.
PID = "079214000001"
NAME = "Nguyễn Thị Lan"

ARCHIVED_DLQ = QUEUES[f"demo.sync.{RecordsArchived.ROUTING_KEY}.dlq"]
CLOSE_TERM_DLQ = QUEUES[f"demo.grades.{CloseTerm.ROUTING_KEY}.dlq"]
LOOKUP_DLQ = QUEUES[f"demo.identity.{LookupStudents.ROUTING_KEY}.dlq"]


def token(subject: str) -> str:
    """A compact JWT-shaped token naming `subject` (unsigned: only its shape and subject matter here)."""

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'ES256', 'typ': 'JWT'})}.{part({'sub': subject, 'name': NAME})}.c2lnbmF0dXJl"


def body(message_id: str = "m-1", actor: str | None = None, **fields) -> bytes:
    return json.dumps({"message_id": message_id, "actor": actor, **fields}).encode()


def serviced(queue, reason: str = "retries-exhausted", **extra) -> dict:
    """The headers a service gives what it dead-letters from `queue` (shared.messaging.Bus.dead_letter)."""
    return {
        REASON_HEADER: reason,
        ERROR_HEADER: "NotFound: the record is not known",
        QUEUE_HEADER: queue.source,
        **extra,
    }


def died(queue, reason: str, at: datetime) -> dict:
    """The headers the broker gives a message it dead-letters from `queue` itself."""
    return {DEATH_HEADER: [{"reason": reason, "queue": queue.source, "time": at, "count": 1, "exchange": ""}]}


def letter(queue, headers: dict, content: bytes | None = None, at: datetime | None = None) -> DeadLetter:
    delivered = Delivered(content if content is not None else body(), headers, None, at or NOW - timedelta(hours=3))
    return read_dead_letter(queue, 1, delivered)


# --- the namespace's dead-letter queues -----------------------------------------------------------


def test_every_queue_a_service_consumes_has_its_dead_letter_queue_of_that_contract():
    expected = {
        f"demo.{name}.{contract.ROUTING_KEY}.dlq": contract
        for name, identity in IDENTITIES.items()
        if name in SERVICES
        for contract in identity.consumes
    }
    assert {name: q.contract for name, q in QUEUES.items()} == expected
    assert ARCHIVED_DLQ.source == "demo.sync.archive.record.archived.v3"
    assert ARCHIVED_DLQ.kind == "RecordsArchived"


def test_the_command_lines_and_monitors_logins_have_no_queues():
    owners = {name.split(".")[1] for name in QUEUES}
    assert owners == set(SERVICES)


def test_a_queue_is_named_by_its_own_name_or_by_the_queue_it_serves():
    assert resolve("demo.sync.archive.record.archived.v3.dlq", QUEUES, NAMES) is ARCHIVED_DLQ
    assert resolve("demo.sync.archive.record.archived.v3", QUEUES, NAMES) is ARCHIVED_DLQ


def test_another_namespaces_queue_is_refused_saying_which_namespace_it_is():
    with pytest.raises(UnknownQueue) as refused:
        resolve("bench.sync.archive.record.archived.v3.dlq", QUEUES, NAMES)
    assert "namespace 'bench'" in str(refused.value)
    assert "HOCBA_NAMESPACE=bench" in str(refused.value)
    with pytest.raises(UnknownQueue) as default:
        resolve("sync.archive.record.archived.v3.dlq", QUEUES, NAMES)
    assert "the default namespace" in str(default.value)
    assert "HOCBA_NAMESPACE unset" in str(default.value)


def test_a_queue_of_the_namespace_in_the_default_one_is_another_namespaces():
    with pytest.raises(UnknownQueue, match="namespace 'demo'.*HOCBA_NAMESPACE=demo"):
        resolve("demo.sync.archive.record.archived.v3.dlq", dead_letter_queues(Names("")), Names(""))


def test_an_unknown_queue_is_refused_with_the_nearest_names():
    with pytest.raises(UnknownQueue) as refused:
        resolve("demo.sync.archive.record.archived.v2.dlq", QUEUES, NAMES)
    said = str(refused.value)
    assert said.startswith(
        "demo.sync.archive.record.archived.v2.dlq is not a dead-letter queue of the namespace 'demo'"
    )
    assert "did you mean demo.sync.archive.record.archived.v3.dlq" in said
    assert "hocba dlq list --all" in said


# --- what a dead letter says ----------------------------------------------------------------------


def test_an_event_a_service_gave_up_on_can_be_moved_back_where_it_came_from():
    dead = letter(ARCHIVED_DLQ, serviced(ARCHIVED_DLQ), body("ev-1", records=[{"personal_id": PID}]))
    assert (dead.message_id, dead.kind, dead.reason, dead.by_broker) == (
        "ev-1",
        "RecordsArchived",
        "retries-exhausted",
        False,
    )
    assert dead.error == "NotFound: the record is not known"
    assert dead.source == ARCHIVED_DLQ.source
    assert dead.subject is None
    assert dead.dead_lettered_at == NOW - timedelta(hours=3)
    assert dead.replay.possible
    assert dead.replay.why == f"an event: it goes back to {ARCHIVED_DLQ.source}"


def test_a_command_lost_its_token_and_must_be_sent_again_by_its_sender():
    dead = letter(CLOSE_TERM_DLQ, serviced(CLOSE_TERM_DLQ, "invalid", **{ACTOR_SUBJECT_HEADER: "gv-79007000-001"}))
    assert dead.subject == "gv-79007000-001"
    assert not dead.replay.possible
    assert "a command or request (CloseTerm): it lost its sender's token" in dead.replay.why


def test_the_brokers_own_dead_letter_keeps_its_token_whose_subject_is_said_and_is_not_replayed():
    expired = NOW - timedelta(minutes=20)
    dead = letter(LOOKUP_DLQ, died(LOOKUP_DLQ, "expired", expired), body("rq-1", actor=token("svc-grades")))
    assert (dead.reason, dead.by_broker, dead.subject) == ("expired", True, "svc-grades")
    assert dead.dead_lettered_at == expired, "when the broker dead-lettered it, not when it was first published"
    assert dead.source == LOOKUP_DLQ.source
    assert not dead.replay.possible
    assert "expired unread" in dead.replay.why


def test_an_event_whose_consumer_died_holding_it_can_be_moved_back():
    at = datetime(2026, 2, 27, 12, 0)  # the broker's timestamps arrive without a zone: they are UTC
    dead = letter(ARCHIVED_DLQ, died(ARCHIVED_DLQ, "delivery_limit", at))
    assert (dead.reason, dead.by_broker, dead.dead_lettered_at) == ("delivery_limit", True, at.replace(tzinfo=UTC))
    assert dead.replay.possible


def test_a_message_that_carried_a_token_is_not_replayed_even_in_an_events_queue():
    dead = letter(ARCHIVED_DLQ, serviced(ARCHIVED_DLQ, **{ACTOR_SUBJECT_HEADER: "ht-79007000"}))
    assert not dead.replay.possible


@pytest.mark.parametrize("reason", ["invalid", "too-large", "forbidden", "unauthenticated"])
def test_an_event_refused_for_what_it_is_would_be_refused_again(reason: str):
    dead = letter(ARCHIVED_DLQ, serviced(ARCHIVED_DLQ, reason))
    assert not dead.replay.possible
    assert dead.replay.why.startswith(f"refused for what it is ({reason})")


def test_an_event_that_says_it_came_from_another_queue_is_not_moved_there():
    elsewhere = f"demo.signing.{RecordsReady.ROUTING_KEY}"
    dead = letter(ARCHIVED_DLQ, {**serviced(ARCHIVED_DLQ), QUEUE_HEADER: elsewhere})
    assert not dead.replay.possible
    assert (
        dead.replay.why
        == f"it says it came from {elsewhere}, not from {ARCHIVED_DLQ.source}, whose dead letters wait here"
    )
    unsaid = letter(ARCHIVED_DLQ, {REASON_HEADER: "not-found"})
    assert not unsaid.replay.possible
    assert unsaid.replay.why == "it does not say which queue it came from"


def test_the_verdict_follows_the_contract_a_command_queue_holds_even_without_a_token():
    assert not replay_verdict(CLOSE_TERM_DLQ, "retries-exhausted", CLOSE_TERM_DLQ.source, carried_token=False).possible
    assert replay_verdict(ARCHIVED_DLQ, "not-found", ARCHIVED_DLQ.source, carried_token=False).possible


def test_a_body_that_is_no_json_object_is_named_by_its_digest_and_described_by_its_size():
    dead = letter(ARCHIVED_DLQ, serviced(ARCHIVED_DLQ, "too-large"), f"{PID} {NAME}".encode())
    assert dead.message_id.startswith("sha256:") and len(dead.message_id) == len("sha256:") + 16
    assert not dead.is_object
    lines = "\n".join(described(dead, ARCHIVED_DLQ, NOW))
    assert "not a JSON object (" in lines
    assert PID not in lines and NAME not in lines


def test_showing_a_dead_letter_names_its_fields_never_their_values():
    content = json.dumps(
        {"message_id": "ev-2", "actor": None, "records": [{"personal_id": PID, "full_name": NAME}], NAME: PID}
    ).encode()
    dead = letter(ARCHIVED_DLQ, serviced(ARCHIVED_DLQ), content)
    lines = described(dead, ARCHIVED_DLQ, NOW)
    text = "\n".join(lines)
    assert PID not in text and NAME not in text
    assert lines[0] == "#1  ev-2  RecordsArchived  retries-exhausted (dead-lettered by its service)"
    assert "    fields: message_id, actor, records and 1 other key(s)" in lines
    assert "    age:    3 h" in lines
    assert f"    from:   {ARCHIVED_DLQ.source}" in lines
    assert "    whose:  — (an event: no token)" in lines
    assert lines[-1] == f"    replay: yes: an event: it goes back to {ARCHIVED_DLQ.source}"


def test_a_command_is_shown_with_whose_it_was_and_why_it_stays():
    dead = letter(CLOSE_TERM_DLQ, serviced(CLOSE_TERM_DLQ, "invalid", **{ACTOR_SUBJECT_HEADER: "gv-79007000-001"}))
    lines = described(dead, CLOSE_TERM_DLQ, NOW)
    assert "    whose:  gv-79007000-001" in lines
    assert lines[-1].startswith("    replay: no: a command or request (CloseTerm)")


def test_a_dead_letter_moved_back_before_says_how_often():
    dead = letter(ARCHIVED_DLQ, serviced(ARCHIVED_DLQ, **{REPLAYS_HEADER: 2}))
    assert dead.replays == 2
    assert "    moved back before: 2 time(s)" in described(dead, ARCHIVED_DLQ, NOW)


def test_a_moved_back_copy_goes_without_its_death_and_its_attempts_and_counts_the_replay():
    headers = {
        **serviced(ARCHIVED_DLQ, **{ACTOR_SUBJECT_HEADER: "x"}),
        DELIVERY_COUNT_HEADER: 4,
        DEATH_HEADER: [{"reason": "delivery_limit"}],
        "x-first-death-reason": "delivery_limit",
        "x-last-death-queue": ARCHIVED_DLQ.source,
        "traceparent": "00-abc-def-01",
    }
    assert replayed_headers(headers) == {"traceparent": "00-abc-def-01", REPLAYS_HEADER: 1}
    assert replayed_headers({REPLAYS_HEADER: 1})[REPLAYS_HEADER] == 2


# --- the listing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "said"),
    [
        (timedelta(seconds=40), "40 s"),
        (timedelta(minutes=12, seconds=5), "12 min"),
        (timedelta(hours=3), "3 h"),
        (timedelta(hours=3, minutes=20), "3 h 20 min"),
        (timedelta(days=4, hours=2, minutes=9), "4 d 2 h"),
        (timedelta(days=29), "29 d"),
        (None, "—"),
    ],
)
def test_an_age_is_said_in_its_two_largest_units(elapsed, said):
    assert age(elapsed) == said


def look(queue, depth: int | None, *letters: DeadLetter) -> QueueLook:
    return QueueLook(queue, depth, tuple(letters))


def test_the_listing_shows_queues_that_hold_dead_letters_with_their_reasons_replayable_count_and_oldest():
    events = [
        letter(ARCHIVED_DLQ, serviced(ARCHIVED_DLQ), at=NOW - timedelta(days=2, hours=4)),
        letter(ARCHIVED_DLQ, serviced(ARCHIVED_DLQ, "not-found"), at=NOW - timedelta(hours=1)),
        letter(ARCHIVED_DLQ, serviced(ARCHIVED_DLQ, "invalid"), at=NOW - timedelta(minutes=5)),
    ]
    looks = [look(ARCHIVED_DLQ, 3, *events), look(CLOSE_TERM_DLQ, 0), look(LOOKUP_DLQ, None)]
    assert listing_lines(looks, NOW) == [
        f"{ARCHIVED_DLQ.name}  3 waiting (invalid 1, not-found 1, retries-exhausted 1); 2 replayable; oldest 2 d 4 h",
    ]


def test_the_listing_of_everything_shows_empty_and_undeclared_queues_too():
    looks = [look(CLOSE_TERM_DLQ, 0), look(LOOKUP_DLQ, None)]
    assert listing_lines(looks, NOW, everything=True) == [
        f"{CLOSE_TERM_DLQ.name}  empty",
        f"{LOOKUP_DLQ.name}  not declared: its service has not run here",
    ]


def test_the_listing_says_when_its_reasons_cover_only_the_first_dead_letters():
    first = letter(ARCHIVED_DLQ, serviced(ARCHIVED_DLQ))
    [line] = listing_lines([look(ARCHIVED_DLQ, 12_000, first)], NOW)
    assert "12000 waiting (retries-exhausted 1; counted in the first 1); 1 replayable" in line


# --- the command, before it reaches a broker ------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unknown_queue_ends_the_command_with_a_sentence_and_no_traceback():
    result = CliRunner().invoke(
        app, ["dlq", "show", "demo.sync.archive.record.archivd.v3.dlq"], env={"HOCBA_NAMESPACE": "demo"}
    )
    assert result.exit_code == 2
    assert "did you mean demo.sync.archive.record.archived.v3.dlq" in result.output
    assert "Traceback" not in result.output


def test_replay_and_purge_ask_which_dead_letters():
    for command in ("replay", "purge"):
        result = CliRunner().invoke(app, ["dlq", command, ARCHIVED_DLQ.name], env={"HOCBA_NAMESPACE": "demo"})
        assert result.exit_code == 2, command
        assert "--message-id ID" in result.output and "--all" in result.output


def test_without_a_broker_the_command_says_where_it_looked():
    port = closed_port()
    env = {"AMQP_URL": f"amqp://guest:guest@127.0.0.1:{port}/", "HOCBA_NAMESPACE": "demo"}
    result = CliRunner().invoke(app, ["dlq", "list"], env=env)
    assert result.exit_code == 1
    assert f"cannot reach RabbitMQ at 127.0.0.1:{port}" in result.output
    assert "is the broker running, and is AMQP_URL right?" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_headers_control_characters_are_not_printed_as_they_are():
    headers = {**serviced(ARCHIVED_DLQ), ERROR_HEADER: "NotFound: \x1b[2J\x1b]0;owned\x07 gone"}
    dead = letter(ARCHIVED_DLQ, headers)
    assert "\x1b" not in dead.error and "\x07" not in dead.error
    assert dead.error == "NotFound: ?[2J?]0;owned? gone"
