"""`hocba top`: what it reads of the services' /metrics (texts recorded from a real stack after a term end of 20
students, in tests/unit/top_metrics/), the broker's queue figures and a Prometheus server's answer, the rates it
works out from two reads, and the screen it prints. Against a running stack: tests/e2e/test_top.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from hocba.cli import app
from hocba.commands.top import (
    DEAD_LETTERED,
    HANDLED,
    SIGNED,
    WATCHED,
    Queues,
    Read,
    SchoolLine,
    Snapshot,
    Target,
    frame,
    parse_metrics,
    queue_lines,
    queue_names,
    rate,
    read_prometheus,
    targets_from_file,
    total,
)
from hocba.console import console
from shared.settings import Names
from tests.support import free_port

RECORDED = Path(__file__).parent / "top_metrics"
#: The namespace of the recorded stack.
NAMES = Names("top7c8a97d9.")
STUDENTS = 20
SERVICES = ("identity", "grades", "signing", "archive", "sync")


def recorded(name: str) -> str:
    return (RECORDED / f"{name}.txt").read_text()


def target(service: str) -> Target:
    return Target(service, service, f"http://127.0.0.1:{9100 + SERVICES.index(service) + 1}")


def snapshot(at: float, reads: list[Read], queues: Queues | None = None, schools=None) -> Snapshot:
    return Snapshot(at, datetime(2026, 6, 1, 9, 30, tzinfo=UTC), tuple(reads), queues or Queues(), schools)


def after_term_end() -> Snapshot:
    """The five services as read after the term end."""
    return snapshot(10.0, [Read(target(s), parse_metrics(recorded(f"{s}.end"))) for s in SERVICES])


def before_signing() -> Snapshot:
    """The same stack before anything happened, as far as signing goes (the others as at the end)."""
    reads = [
        Read(target(s), parse_metrics(recorded("signing.start" if s == "signing" else f"{s}.end"))) for s in SERVICES
    ]
    return snapshot(0.0, reads)


def test_only_the_watched_metrics_are_parsed():
    text = recorded("signing.end")
    samples = parse_metrics(text)
    assert {s.name for s in samples} <= WATCHED
    assert "hocba_signing_batch_duration_seconds_count" in text  # a family the screen does not read, skipped
    role_counts = {s.labels["role"]: s.value for s in samples if s.name == SIGNED}
    assert role_counts == {"homeroom_teacher": STUDENTS, "principal": STUDENTS, "school_seal": STUDENTS}


def test_the_stage_counts_are_the_term_ends():
    after = after_term_end()
    assert total(after, "hocba_students_registered_total") == STUDENTS
    assert total(after, "hocba_records_assembled_total") == STUDENTS
    assert total(after, SIGNED) == STUDENTS * 3
    assert total(after, SIGNED, {"role": "school_seal"}) == STUDENTS
    assert total(after, "hocba_records_archived_total") == STUDENTS
    assert total(after, "hocba_sync_deliveries_total", {"kind": "record", "outcome": "delivered"}) == STUDENTS
    assert total(after, DEAD_LETTERED) == 0


def test_a_rate_is_the_increase_between_two_reads_over_the_time_between():
    assert rate(before_signing(), after_term_end(), SIGNED, {"role": "principal"}) == STUDENTS / 10
    assert rate(None, after_term_end(), SIGNED) is None


def test_a_counter_that_went_down_was_restarted_and_counts_from_zero():
    worker = Target("signing", "signing", "http://127.0.0.1:9103")
    text = 'hocba_records_signed_total{role="principal"} %d\n'
    before = snapshot(0.0, [Read(worker, parse_metrics(text % 500))])
    after = snapshot(2.0, [Read(worker, parse_metrics(text % 40))])
    assert rate(before, after, SIGNED) == 20.0


def test_a_series_that_appears_between_two_reads_counts_whole():
    worker = Target("signing", "signing", "http://127.0.0.1:9103")
    before = snapshot(0.0, [Read(worker, ())])
    after = snapshot(
        4.0, [Read(worker, parse_metrics('hocba_messages_dead_lettered_total{queue="q",reason="invalid"} 1\n'))]
    )
    assert rate(before, after, DEAD_LETTERED) == 0.25


def test_queue_figures_are_those_of_the_namespaces_queues():
    work, work_dlq = (
        NAMES.queue("signing", "signing.work.v1"),
        NAMES.dead_letter_queue(NAMES.queue("signing", "signing.work.v1")),
    )
    assert work in queue_names(NAMES) and work_dlq in queue_names(NAMES)
    # RabbitMQ's Prometheus plugin's /metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count
    text = (
        "\n".join(
            [
                "# TYPE rabbitmq_detailed_queue_messages_ready gauge",
                f'rabbitmq_detailed_queue_messages_ready{{vhost="/",queue="{work}"}} 26',
                f'rabbitmq_detailed_queue_messages_ready{{vhost="/",queue="{work_dlq}"}} 1',
                'rabbitmq_detailed_queue_messages_ready{vhost="/",queue="other.signing.signing.work.v1"} 99',
                "# TYPE rabbitmq_detailed_queue_messages_unacked gauge",
                f'rabbitmq_detailed_queue_messages_unacked{{vhost="/",queue="{work}"}} 16',
                "# TYPE rabbitmq_detailed_queue_consumers gauge",
                f'rabbitmq_detailed_queue_consumers{{vhost="/",queue="{work}"}} 2',
            ]
        )
        + "\n"
    )
    lines = {q.name: q for q in queue_lines(parse_metrics(text), queue_names(NAMES))}
    assert set(lines) == {work, work_dlq}
    assert (lines[work].ready, lines[work].unacked, lines[work].consumers) == (26, 16, 2)
    assert lines[work_dlq].ready == 1


def test_the_targets_file_hocba_up_writes_names_each_process(tmp_path):
    path = tmp_path / "up.json"
    path.write_text(
        json.dumps(
            [
                {
                    "targets": ["127.0.0.1:9103"],
                    "labels": {
                        "job": "hocba",
                        "instance": "127.0.0.1:9103",
                        "service": "signing",
                        "process": "signing-1",
                    },
                },
                {"targets": ["127.0.0.1:9111"], "labels": {"job": "hocba", "service": "signing"}},
            ]
        )
    )
    assert targets_from_file(path) == [
        Target("signing-1", "signing", "http://127.0.0.1:9103"),
        Target("127.0.0.1:9111", "signing", "http://127.0.0.1:9111"),
    ]
    path.write_text("{not json")
    with pytest.raises(ValueError, match="is not JSON"):
        targets_from_file(path)


def rendered(renderable, width: int = 100) -> str:
    """As a terminal `width` columns wide shows it (100: the tables one under the other)."""
    screen = Console(record=True, width=width, color_system=None)
    screen.print(renderable)
    return screen.export_text()


def row(text: str, title: str) -> list[str]:
    """A table row's cells, by its first cell."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if cells and cells[0] == title:
            return cells
    raise AssertionError(f"no row {title!r} in:\n{text}")


def test_the_screen_shows_counts_rates_sync_queues_processes_and_schools():
    work = NAMES.queue("signing", "signing.work.v1")
    after = after_term_end()
    down = Read(Target("signing-2", "signing", "http://127.0.0.1:9111"), problem="unreachable (connection refused)")
    after = snapshot(
        10.0,
        [*after.reads, down],
        Queues(
            (*queue_lines(parse_metrics(f'rabbitmq_detailed_queue_consumers{{queue="{work}"}} 1\n'), [work]),),
            "RabbitMQ at test",
        ),
        (
            SchoolLine("79000001", STUDENTS, 0, STUDENTS, STUDENTS, STUDENTS - 2),
            SchoolLine("79000002", problem="no answer"),
        ),
    )
    text = rendered(frame(before_signing(), after, NAMES, "recorded texts", "2025-2026"))
    assert row(text, "signed: principal")[1:] == [str(STUDENTS), f"{STUDENTS / 10:.1f}/s"]
    assert row(text, "archived")[1:] == [str(STUDENTS), "0.0/s"]
    assert row(text, "delivered to the ministry")[1] == str(STUDENTS)
    assert row(text, "messages dead-lettered")[1] == "0"
    assert row(text, "backlog (waiting for the ministry)")[1] == "0"
    assert row(text, "ministry circuit")[1].startswith("closed")
    assert row(text, "signing.signing.work.v1")[1:] == ["0", "—", "1", "0"]
    assert row(text, "signing-2")[2] == "unreachable (connection refused)"
    handled = total(snapshot(0.0, [after.reads[SERVICES.index("signing")]]), HANDLED)
    assert handled and row(text, "signing")[3] == f"{handled:,.0f}"
    assert row(text, "79000001")[1:] == [str(STUDENTS), "0", str(STUDENTS), str(STUDENTS), str(STUDENTS - 2)]
    assert row(text, "79000002")[1] == "no answer"
    assert "1 of 6 processes unreachable" in text
    assert "signing workers: 1 of 2 answering, 1 consuming the work queue" in text


def test_a_wide_terminal_shows_the_tables_side_by_side():
    text = rendered(frame(before_signing(), after_term_end(), NAMES, "recorded texts", "2025-2026"), width=200)
    assert any("stage" in line and "figure" in line for line in text.splitlines())
    narrow = rendered(frame(before_signing(), after_term_end(), NAMES, "recorded texts", "2025-2026"), width=100)
    assert not any("stage" in line and "figure" in line for line in narrow.splitlines())


def test_an_open_circuit_and_parked_entries_are_said():
    text = "hocba_sync_ministry_circuit_open 1\nhocba_sync_parked_entries 3\nhocba_sync_backlog_entries 40\n"
    after = snapshot(1.0, [Read(target("sync"), parse_metrics(text))])
    screen = rendered(frame(None, after, NAMES, "a test", "2025-2026"))
    assert row(screen, "ministry circuit")[1].startswith("OPEN")
    assert row(screen, "parked (waiting for `hocba sync retry`)")[1] == "3"
    assert row(screen, "backlog (waiting for the ministry)")[1] == "40"
    assert row(screen, "registered")[1] == "—"  # identity not read: no figure rather than 0


async def test_the_same_figures_come_from_a_prometheus_servers_answer():
    """The shape of Prometheus's /api/v1/query answer (a vector): the series carry job, instance and the file_sd labels."""
    work = NAMES.queue("signing", "signing.work.v1")

    def series(name: str, value: float, **labels: str) -> dict:
        return {"metric": {"__name__": name, **labels}, "value": [1780000000.0, str(value)]}

    signing = {"job": "hocba", "instance": "127.0.0.1:9103", "service": "signing", "process": "signing"}
    worker = {"job": "hocba", "instance": "127.0.0.1:9111", "service": "signing", "process": "signing-2"}
    answer = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                series(SIGNED, 60, role="principal", **signing),
                series("up", 1, **signing),
                series("up", 0, **worker),
                series("rabbitmq_detailed_queue_messages_ready", 5, queue=work, vhost="/", job="rabbitmq-queues"),
            ],
        },
    }
    asked = []

    def prometheus(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["query"])
        return httpx.Response(200, json=answer)

    async with httpx.AsyncClient(transport=httpx.MockTransport(prometheus)) as client:
        reads, queues = await read_prometheus(client, "http://prometheus:9090", queue_names(NAMES))
    assert SIGNED in asked[0] and 'up{job="hocba"}' in asked[0]
    by_name = {r.target.name: r for r in reads}
    assert by_name["signing"].reachable and by_name["signing-2"].problem.startswith("down")
    assert total(snapshot(0.0, list(reads)), SIGNED) == 60
    assert [(q.name, q.ready) for q in queues.lines] == [(work, 5)]


def test_once_with_nothing_running_shows_each_process_unreachable_and_exits_1(tmp_path, monkeypatch):
    port = free_port()
    targets = tmp_path / "up.json"
    targets.write_text(
        json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"service": "signing", "process": "signing"}}])
    )
    monkeypatch.setenv("AMQP_URL", f"amqp://guest:guest@127.0.0.1:{port}/")
    monkeypatch.setattr(console, "width", 100)
    result = CliRunner().invoke(
        app,
        [
            "top",
            "--once",
            "--interval",
            "0.2",
            "--targets",
            str(targets),
            "--rabbitmq-metrics",
            f"http://127.0.0.1:{port}/metrics/detailed",
        ],
    )
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "unreachable (connection refused)" in result.output
    assert "1 of 1 processes unreachable" in result.output
    assert f"cannot reach RabbitMQ at 127.0.0.1:{port} (connection refused)" in result.output
    assert "Traceback" not in result.output


def test_a_targets_file_that_is_not_json_is_said_in_a_sentence(tmp_path):
    targets = tmp_path / "up.json"
    targets.write_text("[{")
    result = CliRunner().invoke(app, ["top", "--once", "--targets", str(targets)])
    assert result.exit_code == 2
    assert "is not JSON" in result.output


def test_a_prometheus_server_that_does_not_answer_is_said_and_exits_1(monkeypatch):
    port = free_port()
    monkeypatch.setattr(console, "width", 100)
    result = CliRunner().invoke(app, ["top", "--once", "--interval", "0.2", "--prometheus", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 1, result.output
    assert f"cannot ask Prometheus at http://127.0.0.1:{port}: unreachable (connection refused)" in result.output
    assert "Traceback" not in result.output


def test_a_school_year_that_is_not_one_is_a_usage_error():
    result = CliRunner().invoke(app, ["top", "--once", "--school", "79000001", "--year", "2025-2027"])
    assert result.exit_code == 2
    assert "--year '2025-2027' is not a school year" in result.output


def test_processes_of_another_namespace_are_said_with_the_setting_that_reads_them():
    after = after_term_end()
    assert "set HOCBA_NAMESPACE=top7c8a97d9. for its queues" in rendered(
        frame(None, after, Names(), "a test", "2025-2026")
    )
    assert "another namespace" not in rendered(frame(None, after, NAMES, "a test", "2025-2026"))
