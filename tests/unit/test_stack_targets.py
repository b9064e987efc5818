"""The stack lists exactly the processes it started for Prometheus (file-based service discovery), and unlists
them when it stops."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from typer.testing import CliRunner

from hocba import cli
from hocba.infra import InfraError
from hocba.stack import SCRAPE_JOB, SIMULATOR, TARGETS_FOLDER, TSA, WEB, Child, Stack, StackConfig, write_targets


def child(name: str, port: int, folder: Path) -> Child:
    return Child(name, [sys.executable, "-c", "pass"], {}, port, folder / f"{name}.log")


def started(folder: Path) -> list[Child]:
    """What `hocba up --signing-workers 2` starts: the simulator, the TSA, the five services, two signing workers, the
    web page."""
    names = [SIMULATOR, TSA, "identity", "grades", "signing-1", "signing-2", "archive", "sync", WEB]
    return [child(name, 9180 + n, folder) for n, name in enumerate(names)]


def test_every_process_that_serves_metrics_is_a_target_with_its_service_and_name(tmp_path):
    path = tmp_path / "prometheus" / "up.json"
    write_targets(path, started(tmp_path))
    groups = json.loads(path.read_text())
    listed = {group["labels"]["process"]: group for group in groups}
    assert set(listed) == {TSA, "identity", "grades", "signing-1", "signing-2", "archive", "sync", WEB}
    assert listed["signing-2"] == {
        "targets": ["127.0.0.1:9185"],
        "labels": {"job": SCRAPE_JOB, "instance": "127.0.0.1:9185", "service": "signing", "process": "signing-2"},
    }
    services = {group["labels"]["service"] for group in groups}
    assert services == {TSA, "identity", "grades", "signing", "archive", "sync", WEB}
    assert len({group["targets"][0] for group in groups}) == len(groups)


def test_the_file_is_replaced_whole_and_nothing_half_written_is_left(tmp_path):
    path = tmp_path / "prometheus" / "up.json"
    write_targets(path, started(tmp_path))
    write_targets(path, started(tmp_path)[:3])
    assert [g["labels"]["process"] for g in json.loads(path.read_text())] == [TSA, "identity"]
    assert [p.name for p in path.parent.iterdir()] == ["up.json"]


def test_a_stopping_stack_unlists_its_processes_first(tmp_path):
    path = tmp_path / "prometheus" / "up.json"
    write_targets(path, started(tmp_path))
    stack = Stack(StackConfig(data_dir=tmp_path, targets_file=path))
    stack.stop()
    assert not path.exists()


def test_a_stack_without_a_targets_file_writes_none(tmp_path):
    stack = Stack(StackConfig(data_dir=tmp_path))
    stack.stop()
    assert not (tmp_path / TARGETS_FOLDER).exists()


def test_up_lists_its_processes_in_the_data_folder_and_the_demo_beside_it(tmp_path, monkeypatch):
    """`hocba up` in <data-dir>/prometheus/up.json; `hocba demo` (its own folder under demo/) in the data folder's
    prometheus/demo.json, where the local scrape configuration looks."""
    configs: list[StackConfig] = []

    class Started(Stack):
        def start(self, ready_timeout: float = 60.0) -> None:
            configs.append(self.config)
            raise InfraError("not started here")

    demos: list[Path | None] = []

    def demo(*_: object, targets_file: Path | None = None) -> None:
        demos.append(targets_file)
        raise InfraError("not run here")

    monkeypatch.setattr(cli, "Stack", Started)
    monkeypatch.setattr(cli, "run_demo", demo)
    monkeypatch.setattr(cli, "data_root", lambda: tmp_path)
    monkeypatch.setattr(cli, "interrupt_on_signals", lambda: None)  # the test process keeps its own signals
    runner = CliRunner()
    runner.invoke(cli.app, ["up", "--data-dir", str(tmp_path / "elsewhere")])
    runner.invoke(cli.app, ["demo", "--students", "1"])
    assert [c.targets_file for c in configs] == [tmp_path / "elsewhere" / TARGETS_FOLDER / "up.json"]
    assert demos == [tmp_path / TARGETS_FOLDER / "demo.json"]
