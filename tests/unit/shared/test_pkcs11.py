"""Keys in a PKCS#11 token (SoftHSM2): generated inside it, found by label, signing record signatures."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.crypto.jws import sign_detached, verify_detached
from shared.crypto.pkcs11 import TokenConfig
from shared.crypto.pki import DevPki, Holder
from tests.support import needs

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "246810"


@pytest.fixture(autouse=True)
def softhsm() -> None:
    needs(Path(MODULE).exists() and shutil.which("softhsm2-util") is not None, "SoftHSM2 (Debian's softhsm2)")


def test_signing_keys_live_in_the_token_and_sign_verifiable_signatures(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    config = tmp_path / "softhsm2.conf"
    config.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {"SOFTHSM2_CONF": str(config)}
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "hocba-test", "--pin", PIN, "--so-pin", PIN],
        check=True, capture_output=True, env={**os.environ, **env},
    )
    os.environ.update(env)  # SoftHSM2 reads it when the module loads, once per process
    pki = DevPki(tmp_path / "pki", b"pass", token_pin=PIN)
    principal = Holder("ht-79000701", "Hiệu trưởng", "principal", "79000701", "Trường A")
    pki.create([principal], token=TokenConfig(MODULE, "hocba-test", PIN, env))

    assert not pki.key_path("ht-79000701").exists(), "no key file: the key never left the token"
    signer = pki.directory().signer_for("ht-79000701")
    jws = sign_detached(signer, b"the record", {"role": "principal"})
    assert verify_detached(signer.certificate.public_key(), jws, b"the record")
    assert not verify_detached(signer.certificate.public_key(), jws, b"another record")
    assert pki.trust_store().validate(signer.chain, datetime.now(UTC)).ok
