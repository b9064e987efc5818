"""`hocba keys rewrap`: a service's key ring wrapped under a new key-encryption key, its data untouched."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hocba.cli import app
from shared.crypto.kek import FileKek, KekError, generate_kek_file
from shared.crypto.vault import Vault, development_kek_path
from shared.settings import Settings


def test_a_ring_rewrapped_under_a_new_kek_opens_with_it_alone_and_its_data_with_it(tmp_path):
    settings = Settings(data_dir=tmp_path)
    vault = Vault.for_service(settings, "grades")
    key_id, sealed = vault.documents.seal("record", "rec-1:1", b"the record")
    new = generate_kek_file(tmp_path / "new.kek")

    done = CliRunner().invoke(
        app, ["keys", "rewrap", "--service", "grades", "--new-kek-file", str(tmp_path / "new.kek"), "--data-dir", str(tmp_path)]
    )
    assert done.exit_code == 0, done.output
    assert f"wrapped under {new.kek_id}" in " ".join(done.output.split())
    reopened = Vault.at(settings.key_ring_path("grades"), new, "grades")
    assert reopened.documents.open("record", "rec-1:1", key_id, sealed) == b"the record"
    with pytest.raises(KekError):
        Vault.at(settings.key_ring_path("grades"), FileKek.read(development_kek_path(settings, "grades")), "grades")


def test_rewrapping_a_ring_that_is_not_there_says_so(tmp_path):
    generate_kek_file(tmp_path / "new.kek")
    done = CliRunner().invoke(
        app, ["keys", "rewrap", "--service", "sync", "--new-kek-file", str(tmp_path / "new.kek"), "--data-dir", str(tmp_path)]
    )
    assert done.exit_code == 1
    assert "sync has no key ring" in " ".join(done.output.split())
