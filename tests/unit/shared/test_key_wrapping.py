"""Key rings wrapped under a key-encryption key: the ring file alone opens nothing; documents sealed whole."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import stat
from typing import Any

import pytest

from shared.crypto.fields import DecryptionError, DocumentCipher
from shared.crypto.kek import FileKek, KekError, generate_kek_file
from shared.crypto.keyring import KeyRing, load_key_ring, load_or_create_key_ring, save_key_ring
from shared.crypto.vault import Vault, kek_for
from shared.settings import Settings

KEK = FileKek(bytes(range(32)))


def test_a_ring_file_holds_no_key_in_clear(tmp_path):
    path = tmp_path / "ring.json"
    ring = load_or_create_key_ring(path, KEK, "grades")
    text = path.read_text()
    for key in [*ring.keys.values(), ring.index_key]:
        assert base64.b64encode(key).decode() not in text and key.hex() not in text
    assert json.loads(text)["kek"] == KEK.kek_id


def test_a_ring_does_not_open_under_another_key_encryption_key(tmp_path):
    path = tmp_path / "ring.json"
    load_or_create_key_ring(path, KEK, "grades")
    with pytest.raises(KekError, match="wrapped under the key-encryption key"):
        load_key_ring(path, FileKek(os.urandom(32)), "grades")


def test_a_forged_kek_id_does_not_help_another_key_encryption_key(tmp_path):
    path, other = tmp_path / "ring.json", FileKek(os.urandom(32))
    load_or_create_key_ring(path, KEK, "grades")
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "kek": other.kek_id}))
    with pytest.raises(KekError, match="does not unwrap"):
        load_key_ring(path, other, "grades")


def test_another_services_ring_does_not_open_as_this_ones(tmp_path):
    path = tmp_path / "ring.json"
    load_or_create_key_ring(path, KEK, "grades")
    with pytest.raises(KekError, match="belongs to 'grades'"):
        load_key_ring(path, KEK, "archive")
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "owner": "archive"}))
    with pytest.raises(KekError, match="does not unwrap"):
        load_key_ring(path, KEK, "archive")


def test_a_wrapped_key_moved_under_another_id_does_not_unwrap(tmp_path):
    path = tmp_path / "ring.json"
    save_key_ring(path, KeyRing.generate("k1").with_new_key("k2"), KEK, "grades")
    data = json.loads(path.read_text())
    data["keys"][0]["wrapped"], data["keys"][1]["wrapped"] = data["keys"][1]["wrapped"], data["keys"][0]["wrapped"]
    path.write_text(json.dumps(data))
    with pytest.raises(KekError):
        load_key_ring(path, KEK, "grades")


def test_a_ring_kept_in_clear_by_an_older_release_is_wrapped_in_place(tmp_path):
    path, ring = tmp_path / "ring.json", KeyRing.generate("k1")
    path.write_text(json.dumps(ring.to_json()))
    assert load_key_ring(path, KEK, "identity") == ring
    assert json.loads(path.read_text())["format"] == "hocba-keyring/2"
    assert base64.b64encode(ring.keys["k1"]).decode() not in path.read_text()
    assert load_key_ring(path, KEK, "identity") == ring


def test_rewrapping_keeps_the_data_keys_and_retires_the_old_kek(tmp_path):
    path, new = tmp_path / "ring.json", FileKek(os.urandom(32))
    vault = Vault.at(path, KEK, "sync")
    key_id, sealed = vault.documents.seal("outbox", "r:1", b"payload")
    vault.rewrap(new)
    reopened = Vault.at(path, new, "sync")
    assert reopened.documents.open("outbox", "r:1", key_id, sealed) == b"payload"
    with pytest.raises(KekError):
        Vault.at(path, KEK, "sync")


def test_a_generated_kek_file_is_owner_only_and_kept(tmp_path):
    path = tmp_path / "secrets" / "grades.kek"
    kek = generate_kek_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert generate_kek_file(path) == kek == FileKek.read(path)


def test_a_kek_file_that_is_not_one_is_refused_with_its_name(tmp_path):
    path = tmp_path / "kek"
    path.write_text("not base64!")
    with pytest.raises(KekError, match="does not hold a key-encryption key"):
        FileKek.read(path)
    path.write_text(base64.b64encode(b"short").decode())
    with pytest.raises(KekError, match="32 bytes"):
        FileKek.read(path)


def test_development_generates_a_kek_apart_from_the_ring_and_production_refuses_without_one(tmp_path):
    development = Settings(data_dir=tmp_path)
    vault = Vault.for_service(development, "archive")
    assert (tmp_path / "secrets" / "archive.kek").exists() and vault.path == tmp_path / "keys" / "archive-keyring.json"
    with pytest.raises(KekError, match="HOCBA_KEK_FILE"):
        kek_for(Settings(data_dir=tmp_path, environment="production"), "archive")
    given = tmp_path / "given.kek"
    generate_kek_file(given)
    assert kek_for(Settings(data_dir=tmp_path, environment="production", kek_file=given), "archive") == FileKek.read(given)


def test_a_document_is_sealed_whole_and_bound_to_its_kind_and_owner():
    cipher = DocumentCipher(KeyRing.generate("k1"))
    key_id, sealed = cipher.seal("record", "rec-1:1", "Nguyễn Văn An".encode())
    assert key_id == "k1" and "Nguyễn".encode() not in sealed
    assert cipher.open("record", "rec-1:1", key_id, sealed).decode() == "Nguyễn Văn An"
    for kind, owner in [("record", "rec-1:2"), ("record", "rec-2:1"), ("outbox", "rec-1:1")]:
        with pytest.raises(DecryptionError):
            cipher.open(kind, owner, key_id, sealed)
    with pytest.raises(DecryptionError):
        cipher.open("record", "rec-1:1", key_id, sealed[:-1] + bytes([sealed[-1] ^ 1]))


def test_a_vault_sees_another_processes_rotation_before_it_seals_again(tmp_path):
    path = tmp_path / "ring.json"
    worker, rotating = Vault.at(path, KEK, "signing"), Vault.at(path, KEK, "signing")
    rotating.add_key("k-new")
    worker.refresh()
    assert worker.current == "k-new" and worker.key_count == 2


def _open_vault(data_dir: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        vault = Vault.for_service(Settings(data_dir=data_dir), "signing")
        results.put((vault.current, vault.kek.kek_id if vault.kek else None))
    except Exception as exc:  # noqa: BLE001 - what failed is the test's answer
        results.put(("failed", type(exc).__name__))


def test_workers_starting_together_make_one_kek_and_one_ring_and_none_reads_them_half_written(tmp_path):
    """Reproduction: two signing workers started at once; one read the ring file its twin had created but not yet
    written, and exited on an empty file."""
    context = multiprocessing.get_context("fork")
    for attempt in range(5):
        data_dir = tmp_path / f"run-{attempt}"
        workers = 8
        barrier, results = context.Barrier(workers), context.Queue()
        processes = [context.Process(target=_open_vault, args=(str(data_dir), barrier, results)) for _ in range(workers)]
        for process in processes:
            process.start()
        seen = {results.get(timeout=30) for _ in processes}
        for process in processes:
            process.join(30)
        assert len(seen) == 1 and "failed" not in next(iter(seen)), seen
        assert not [p for p in (data_dir / "keys").iterdir() if p.name.startswith(".")], "no temporary file is left"
