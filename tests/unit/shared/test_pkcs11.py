"""Keys in a PKCS#11 token (SoftHSM2): generated inside it, found by label, signing record signatures."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.crypto.jws import sign_detached, verify_detached
from shared.crypto.kek import FileKek, KekError, create_token_kek
from shared.crypto.pkcs11 import Pkcs11Token, TokenConfig
from shared.crypto.pki import DevPki, Holder
from shared.crypto.vault import Vault, kek_for
from shared.settings import Settings
from tests.support import needs

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "246810"


@pytest.fixture(autouse=True)
def softhsm() -> None:
    needs(Path(MODULE).exists() and shutil.which("softhsm2-util") is not None, "SoftHSM2 (Debian's softhsm2)")


@pytest.fixture(scope="module")
def token(tmp_path_factory) -> TokenConfig:
    """One SoftHSM2 token for this module: SoftHSM2 reads its configuration once per process, when the module loads."""
    folder = tmp_path_factory.mktemp("softhsm")
    tokens = folder / "tokens"
    tokens.mkdir()
    config = folder / "softhsm2.conf"
    config.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {"SOFTHSM2_CONF": str(config)}
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "hocba-test", "--pin", PIN, "--so-pin", PIN],
        check=True, capture_output=True, env={**os.environ, **env},
    )
    os.environ.update(env)
    return TokenConfig(MODULE, "hocba-test", PIN, env)


def test_signing_keys_live_in_the_token_and_sign_verifiable_signatures(tmp_path, token):
    pki = DevPki(tmp_path / "pki", b"pass", token_pin=PIN)
    principal = Holder("ht-79000701", "Hiệu trưởng", "principal", "79000701", "Trường A")
    pki.create([principal], token=token)

    assert not pki.key_path("ht-79000701").exists(), "no key file: the key never left the token"
    signer = pki.directory().signer_for("ht-79000701")
    jws = sign_detached(signer, b"the record", {"role": "principal"})
    assert verify_detached(signer.certificate.public_key(), jws, b"the record")
    assert not verify_detached(signer.certificate.public_key(), jws, b"another record")
    assert pki.trust_store().validate(signer.chain, datetime.now(UTC)).ok


def test_a_key_ring_wrapped_by_a_kek_inside_the_token_opens_only_with_the_token(tmp_path, token):
    kek = create_token_kek(Pkcs11Token.shared(token), "kek-grades")
    ring_path = tmp_path / "grades-keyring.json"
    vault = Vault.at(ring_path, kek, "grades")
    key_id, sealed = vault.documents.seal("record", "rec-1:1", "Nguyễn Văn An".encode())

    settings = Settings(
        data_dir=tmp_path, environment="production", key_ring=ring_path, kek_pkcs11_module=MODULE,
        kek_pkcs11_token="hocba-test", kek_pkcs11_label="kek-grades", pkcs11_pin_file=pin_file(tmp_path),
    )
    reopened = Vault.for_service(settings, "grades")
    assert reopened.documents.open("record", "rec-1:1", key_id, sealed).decode() == "Nguyễn Văn An"
    assert kek.kek_id == "pkcs11:hocba-test/kek-grades"
    with pytest.raises(KekError):  # the ring file and a key-encryption key of one's own open nothing
        Vault.at(ring_path, FileKek(bytes(32)), "grades")
    with pytest.raises(KekError, match="HOCBA_PKCS11_PIN"):
        kek_for(settings.model_copy(update={"pkcs11_pin_file": None, "pkcs11_pin": PIN}), "grades")


def pin_file(folder: Path) -> Path:
    path = folder / "pin"
    path.write_text(PIN + "\n")
    return path
