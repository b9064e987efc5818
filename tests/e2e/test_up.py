"""`hocba up` starts every process, each logged in to the broker as its own user, and Ctrl-C stops all of them."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import httpx
import pytest
from aiormq.exceptions import ProbableAuthenticationError

from hocba.broker import IDENTITIES, CredentialStore, role_url, user_name
from shared.messaging import delete_exchanges
from shared.settings import Names, Settings
from tests.support import amqp_url

PROCESSES = {"ministry-simulator", "tsa", "identity", "grades", "signing", "archive", "sync", "web"}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_up_runs_every_process_and_ctrl_c_stops_them_all(tmp_path: Path):
    namespace = f"up{uuid.uuid4().hex[:8]}."
    env = {**os.environ, "HOCBA_NAMESPACE": namespace, "HOCBA_EPHEMERAL": "1", "COLUMNS": "120"}
    env.pop("MONGO_URL", None)  # the embedded server is part of what `up` starts
    up = subprocess.Popen(
        [str(Path(sys.executable).with_name("hocba")), "up", "--any-ports", "--data-dir", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As a shell's background job has it: SIGINT ignored. Ctrl-C must still stop everything.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert up.stdout is not None
    output = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = up.stdout.readline()
        output.append(line)
        if "press Ctrl-C" in line or (not line and up.poll() is not None):
            break
    text = "".join(output)
    assert "press Ctrl-C" in text, text
    pids = {name: int(pid) for name, pid in re.findall(r"│ ([a-z-]+)\s+│ (\d+)\s+│", text)}
    assert set(pids) == PROCESSES, text
    mongo_pid = int((tmp_path / "mongo" / "nx-27017.pid").read_text().strip())
    assert all(alive(pid) for pid in [*pids.values(), mongo_pid])

    # Prometheus's targets (file-based service discovery): exactly the processes that serve /metrics.
    urls = dict(re.findall(r"│ ([a-z-]+)\s+│ \d+\s+│ (http://[0-9.:]+)\s+│", text))
    with httpx.Client(timeout=5) as client:
        serving = {name for name, url in urls.items() if client.get(f"{url}/metrics").status_code == 200}
    targets = tmp_path / "prometheus" / "up.json"
    listed = {g["labels"]["process"]: g["targets"] for g in json.loads(targets.read_text())}
    assert serving and set(listed) == serving, (listed, urls)
    assert all(listed[name] == [urls[name].removeprefix("http://")] for name in serving)

    # The broker users of the namespace: passwords in a private file, the command line's login picked by role.
    store = CredentialStore(tmp_path)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600 and stat.S_IMODE(store.folder.stat().st_mode) == 0o700
    assert set(store.passwords(namespace)) == set(IDENTITIES)
    operator = role_url("operator", Settings(amqp_url=amqp_url(), namespace=namespace, data_dir=tmp_path))
    assert f"{user_name(namespace, 'operator')}:" in operator
    await (await aio_pika.connect(operator)).close()

    up.send_signal(signal.SIGINT)
    rest, _ = up.communicate(timeout=60)
    assert "nothing left running" in rest
    assert not targets.exists(), "a stopped stack's targets are still listed"
    assert up.returncode == 0
    still = [name for name, pid in pids.items() if alive(pid)] + (["nx-27017"] if alive(mongo_pid) else [])
    assert still == []
    # A throw-away stack's users went with it.
    assert store.passwords(namespace) == {}
    with pytest.raises(ProbableAuthenticationError):
        await aio_pika.connect(operator)
    await delete_exchanges(amqp_url(), Names(namespace))
