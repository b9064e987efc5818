"""Everything a local stack keeps on disk is its user's alone: folders 0700, files 0600.

Before, the embedded server's database files, the logs, the ministry simulator's receipts and the public
half of the development keys were written 0644 in 0755 folders: any account on the machine could copy
every student's record from `.hocba/`.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from pymongo import MongoClient

from hocba import infra
from hocba.demo import fresh_data_dir
from hocba.infra import EmbeddedMongo, open_private, private_data_folder, private_folder, private_tree, private_umask
from hocba.keys import dev_issuer
from hocba.ministry_simulator import ReceiptStore
from hocba.stack import Child
from tests.support import free_port


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def modes_under(folder: Path) -> dict[str, int]:
    """Every folder and file under `folder` (itself included), relative name -> permission bits."""
    found = {".": mode(folder)}
    for path in folder.rglob("*"):
        found[str(path.relative_to(folder))] = mode(path)
    return found


def not_private(folder: Path) -> dict[str, str]:
    """What under `folder` is readable by anyone but its owner: name -> its mode, in octal."""
    wrong = {}
    for name, bits in modes_under(folder).items():
        wanted = infra.PRIVATE_FOLDER if (folder / name).is_dir() else infra.PRIVATE_FILE
        if bits != wanted:
            wrong[name] = oct(bits)
    return wrong


@pytest.fixture
def open_umask():
    """The umask most users have (022): files 0644 unless the code says otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_the_embedded_servers_data_pid_and_logs_are_private(tmp_path: Path, open_umask):
    folder = tmp_path / "data" / "mongo"
    server = EmbeddedMongo(folder, free_port())
    server.start()
    try:
        with MongoClient(server.url, serverSelectionTimeoutMS=10_000) as client:
            client["grades"]["records"].insert_one({"_id": "r1", "personal_id": "079214000123"})
            client["identity"]["students"].insert_one({"_id": "s1"})
        running = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        wrong_while_running = not_private(folder)
    finally:
        server.stop()
    assert {"nx-27017.pid", "nx-27017.log", "stdout.log"} <= running
    assert any(name.startswith("data/") for name in running), "the databases were written under data/"
    assert wrong_while_running == {}
    assert not_private(folder) == {}
    assert mode(tmp_path / "data") == infra.PRIVATE_FOLDER, "a parent the server created is private too"


def test_an_embedded_server_folder_left_open_by_an_earlier_run_is_tightened(tmp_path: Path, open_umask):
    folder = tmp_path / "mongo"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "grades.sqlite").write_bytes(b"old records")
    (folder / "nx-27017.log").write_text("old log")
    assert mode(folder / "data" / "grades.sqlite") == 0o644
    server = EmbeddedMongo(folder, free_port())
    server.start()
    server.stop()
    assert not_private(folder) == {}


def test_a_stack_process_writes_its_log_and_its_files_privately(tmp_path: Path, open_umask):
    written = tmp_path / "data" / "written-by-the-child.txt"
    child = Child(
        "writer",
        [sys.executable, "-c", f"open({str(written)!r}, 'w').write('x'); print('done')"],
        dict(os.environ),
        0,
        tmp_path / "data" / "logs" / "writer.log",
    )
    child.start()
    assert child.process is not None and child.process.wait(30) == 0
    assert child.log_path.read_text().strip() == "done"
    assert not_private(tmp_path / "data") == {}


def test_the_stack_writes_with_a_private_umask_and_puts_the_users_back_after(tmp_path: Path, open_umask):
    with private_umask():
        (tmp_path / "pki").mkdir()
        (tmp_path / "pki" / "anchor.pem").write_text("certificate")
    (tmp_path / "shared.txt").write_text("the user's own file")
    assert mode(tmp_path / "pki") == 0o700 and mode(tmp_path / "pki" / "anchor.pem") == 0o600
    assert mode(tmp_path / "shared.txt") == 0o644, "outside the stack, the user's umask holds"


def test_the_development_keys_are_private(tmp_path: Path, open_umask):
    _, jwks = dev_issuer(tmp_path / ".hocba")
    assert jwks.parent == tmp_path / ".hocba" / "keys"
    assert not_private(tmp_path / ".hocba") == {}


def test_a_demo_runs_in_a_private_folder_under_a_private_data_folder(tmp_path: Path, open_umask):
    base = tmp_path / ".hocba"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)  # left open by an earlier version
    folder = fresh_data_dir(base)
    assert folder.parent.parent == base
    assert not_private(base) == {}


def test_the_ministry_simulators_receipts_are_private(tmp_path: Path, open_umask):
    data_file = tmp_path / "ministry" / "receipts.jsonl"
    store = ReceiptStore(data_file)
    store.accept("hb-1:1", {"record_id": "hb-1", "version": 1, "digest": "d" * 64, "personal_id": "079214000123"})
    assert not_private(tmp_path / "ministry") == {}


def test_a_file_left_open_is_made_private_when_it_is_written_again(tmp_path: Path, open_umask):
    log = tmp_path / "logs" / "grades.log"
    log.parent.mkdir()
    log.write_text("an earlier run\n")
    with open_private(log) as out:
        out.write(b"this run\n")
    assert mode(log) == infra.PRIVATE_FILE
    assert log.read_text() == "an earlier run\nthis run\n"


def test_folders_that_were_there_before_are_left_as_they_are(tmp_path: Path, open_umask):
    """The data folder's parents may be the user's home or a checkout; a shared folder like /tmp stays shared."""
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o755)
    private_folder(home / ".hocba" / "logs")
    assert mode(home) == 0o755
    assert mode(home / ".hocba") == mode(home / ".hocba" / "logs") == infra.PRIVATE_FOLDER
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    (shared / "someone-elses.txt").write_text("theirs")
    private_data_folder(shared)
    private_tree(shared)
    assert mode(shared) == 0o1777 and mode(shared / "someone-elses.txt") == 0o644

