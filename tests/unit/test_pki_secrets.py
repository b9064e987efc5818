"""The PKI's secrets and where its keys go: the passphrase and the token's PIN as files (production takes
nothing else), files only their owner reads, and each service's part of the PKI, from which it runs
without the root CA's key or anyone else's."""

from __future__ import annotations

import os
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from hocba.cli import app
from hocba.staff import certificate_holders, homeroom_subject, principal_subject
from services.archive.app import keys_from_pki
from services.grades.app import CERTIFICATE, pki_signer, seal_with
from services.signing.app import pki_signers
from services.signing.handlers import SignerRefused
from shared.crypto.jws import sign_detached, verify_detached
from shared.crypto.pki import (
    ARCHIVE_SUBJECT,
    DevPki,
    PkiRefused,
    keys_for,
    passphrase_from,
    pin_from,
    service_holders,
)
from shared.crypto.seal import record_claims, seal_problems
from shared.crypto.signer import UnknownSigner
from shared.settings import Settings
from tests import records

SCHOOL = "79000701"
CLASSES = ["6A1", "6A2"]
PASSPHRASE = b"a passphrase of the department's own"
HOLDERS = [*certificate_holders([(SCHOOL, "Trường A")], CLASSES), *service_holders()]
SIGNERS = {homeroom_subject(SCHOOL, c) for c in CLASSES} | {principal_subject(SCHOOL), f"seal-{SCHOOL}"}
#: Every variable through which a secret or the environment could reach these tests from outside.
ENVIRONMENT = (
    "HOCBA_ENVIRONMENT",
    "HOCBA_PKI_DIR",
    "HOCBA_PKI_PASSPHRASE",
    "HOCBA_PKI_PASSPHRASE_FILE",
    "HOCBA_PKCS11_PIN",
    "HOCBA_PKCS11_PIN_FILE",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def secret_file(folder: Path, content: bytes, name: str = "pki-passphrase") -> Path:
    """A secret as a deployment mounts it: a file of its own, outside the PKI."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    return path


def new_pki(folder: Path) -> DevPki:
    """The offline PKI: the root CA, one school's signers and the services' certificates."""
    pki = DevPki(folder / "offline", PASSPHRASE)
    pki.create(HOLDERS)
    return pki


@pytest.fixture(scope="module")
def offline(tmp_path_factory) -> DevPki:
    return new_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def passphrase_file(tmp_path) -> Path:
    return secret_file(tmp_path / "secrets", PASSPHRASE + b"\n")


def production(part: Path, passphrase_file: Path) -> Settings:
    """A service's settings in production: its part of the PKI and the passphrase as a mounted file."""
    return Settings(environment="production", pki_dir=part, pki_passphrase_file=passphrase_file)


def relative_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def modes(folder: Path) -> dict[str, int]:
    """Each folder's and file's permission bits under (and including) `folder`."""
    paths = [folder, *folder.rglob("*")]
    return {p.relative_to(folder.parent).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in paths}


def private(folder: Path) -> bool:
    return all(mode == (0o700 if (folder.parent / path).is_dir() else 0o600) for path, mode in modes(folder).items())


# --- the passphrase and the PIN ----------------------------------------------------------------


def test_the_passphrase_file_wins_and_loses_only_its_one_trailing_newline(tmp_path, monkeypatch):
    monkeypatch.setenv("HOCBA_PKI_PASSPHRASE", "from the environment")
    monkeypatch.setenv("HOCBA_PKI_PASSPHRASE_FILE", str(secret_file(tmp_path, b" spaced out \n\n")))
    assert passphrase_from(Settings(), tmp_path) == b" spaced out \n"
    (tmp_path / "pki-passphrase").write_bytes(b"written on Windows\r\n")
    assert passphrase_from(Settings(), tmp_path) == b"written on Windows"


@pytest.mark.parametrize("environment", ["development", "production"])
@pytest.mark.parametrize("content", [None, b"", b"\n"], ids=["missing", "empty", "only-a-newline"])
def test_a_passphrase_file_that_is_missing_or_empty_is_refused(tmp_path, environment, content):
    path = tmp_path / "pki-passphrase"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PkiRefused, match="HOCBA_PKI_PASSPHRASE_FILE"):
        passphrase_from(Settings(environment=environment, pki_passphrase_file=path), tmp_path)


@pytest.mark.parametrize("value", ["a passphrase", ""], ids=["given", "empty"])
def test_production_refuses_a_passphrase_from_the_environment_even_beside_a_file(tmp_path, monkeypatch, value):
    monkeypatch.setenv("HOCBA_ENVIRONMENT", "production")
    monkeypatch.setenv("HOCBA_PKI_PASSPHRASE", value)
    monkeypatch.setenv("HOCBA_PKI_PASSPHRASE_FILE", str(secret_file(tmp_path, b"a passphrase")))
    with pytest.raises(PkiRefused, match="HOCBA_PKI_PASSPHRASE is refused in production.*HOCBA_PKI_PASSPHRASE_FILE"):
        DevPki.configured(Settings(), tmp_path / "pki")


def test_development_still_takes_the_passphrase_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HOCBA_PKI_PASSPHRASE", "from the environment")
    assert DevPki.configured(Settings(), tmp_path / "pki").passphrase == b"from the environment"


def test_production_never_uses_the_passphrase_generated_beside_the_keys(tmp_path):
    generated = DevPki(tmp_path / "pki")
    generated.create(HOLDERS[:1])
    beside = tmp_path / "pki" / "passphrase"
    assert beside.exists(), "development generated one"
    unset = DevPki.configured(Settings(environment="production"), generated.folder)
    with pytest.raises(PkiRefused, match="HOCBA_PKI_PASSPHRASE_FILE"):
        unset.signer(HOLDERS[0].subject_id)
    with pytest.raises(PkiRefused, match="HOCBA_PKI_PASSPHRASE_FILE"):
        unset.create(HOLDERS[1:2])
    with pytest.raises(PkiRefused, match="generated beside the keys"):
        DevPki.configured(Settings(environment="production", pki_passphrase_file=beside), generated.folder)


def test_the_pin_comes_from_its_file_and_production_refuses_it_from_the_environment(tmp_path, monkeypatch):
    pin_file = secret_file(tmp_path, b"246810\n", "pkcs11-pin")
    monkeypatch.setenv("HOCBA_PKCS11_PIN", "135790")
    assert pin_from(Settings()) == "135790", "development: the environment variable still works"
    monkeypatch.setenv("HOCBA_PKCS11_PIN_FILE", str(pin_file))
    assert pin_from(Settings()) == "246810", "the file wins"
    monkeypatch.setenv("HOCBA_ENVIRONMENT", "production")
    with pytest.raises(PkiRefused, match="HOCBA_PKCS11_PIN is refused in production.*HOCBA_PKCS11_PIN_FILE"):
        pin_from(Settings())
    monkeypatch.delenv("HOCBA_PKCS11_PIN")
    assert pin_from(Settings()) == "246810"


def test_a_token_without_a_pin_file_is_refused_in_production_whatever_the_environment_holds(tmp_path, monkeypatch):
    folder = tmp_path / "pki"
    folder.mkdir()
    (folder / "token.json").write_text('{"module": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "hocba"}')
    monkeypatch.setenv("HOCBA_PKCS11_PIN", "246810")
    assert DevPki(folder).token_config().pin == "246810", "development reads the environment"
    with pytest.raises(PkiRefused, match="HOCBA_PKCS11_PIN_FILE$"):
        DevPki(folder, production=True).token_config()
    pinned = DevPki(folder, token_pin="112233", production=True).token_config()
    assert (pinned.module, pinned.token_label, pinned.pin) == ("/usr/lib/softhsm/libsofthsm2.so", "hocba", "112233")


# --- the command line --------------------------------------------------------------------------


def hocba(*args: str, **env: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "240", **env})


def one_line(text: str) -> str:
    return " ".join(text.split())


def demo_school(folder: Path) -> str:
    """The school `hocba pki init` issued certificates for."""
    return next(h.school_code for h in DevPki(folder).holders() if h.role == "principal")


def test_the_pki_commands_refuse_a_secret_in_the_environment_in_one_sentence(tmp_path):
    result = hocba(
        "pki", "init", "--dir", str(tmp_path / "pki"), "--schools", "1", "--classes", "1",
        HOCBA_ENVIRONMENT="production", HOCBA_PKI_PASSPHRASE="correct horse",
    )
    assert result.exit_code == 2
    assert "HOCBA_PKI_PASSPHRASE is refused in production" in one_line(result.stderr)
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert not (tmp_path / "pki").exists(), "nothing was made"


def test_in_production_pki_init_takes_the_passphrase_file_and_generates_none(tmp_path, passphrase_file):
    result = hocba(
        "pki", "init", "--dir", str(tmp_path / "pki"), "--schools", "1", "--classes", "1",
        HOCBA_ENVIRONMENT="production", HOCBA_PKI_PASSPHRASE_FILE=str(passphrase_file),
    )
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "pki" / "passphrase").exists()
    assert DevPki(tmp_path / "pki", PASSPHRASE).signer(principal_subject(demo_school(tmp_path / "pki")))


def test_everything_pki_init_writes_is_readable_by_its_owner_only_whatever_the_umask(tmp_path):
    before = os.umask(0o022)
    try:
        result = hocba("pki", "init", "--dir", str(tmp_path / "pki"), "--schools", "1", "--classes", "2")
        assert result.exit_code == 0, result.output
        DevPki(tmp_path / "pki").revoke(homeroom_subject(demo_school(tmp_path / "pki"), "6A1"))
    finally:
        os.umask(before)
    written = modes(tmp_path / "pki")
    assert {"pki/.lock", "pki/ca", "pki/certs", "pki/keys", "pki/passphrase", "pki/holders.json"} <= set(written)
    assert {"pki/ca/crl.pem", "pki/ca/revoked.json", "pki/ca/root.key.pem"} <= set(written)
    assert private(tmp_path / "pki"), written


def test_pki_init_makes_what_an_older_version_left_readable_private(tmp_path):
    pki = DevPki(tmp_path / "pki", PASSPHRASE)
    pki.create(HOLDERS[:1])
    for path in [pki.folder, *pki.folder.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    pki.create(HOLDERS[:1])
    assert private(pki.folder), modes(pki.folder)


# --- each service's part -----------------------------------------------------------------------


def test_signing_holds_every_signers_key_the_archive_and_grades_their_own_identity_and_sync_none():
    assert {h.subject_id for h in keys_for("signing", HOLDERS)} == SIGNERS
    assert [h.subject_id for h in keys_for("archive", HOLDERS)] == [ARCHIVE_SUBJECT]
    assert [h.subject_id for h in keys_for("grades", HOLDERS)] == [CERTIFICATE]
    assert keys_for("identity", HOLDERS) == keys_for("sync", HOLDERS) == []
    with pytest.raises(PkiRefused, match="no service 'ministry'"):
        keys_for("ministry", HOLDERS)


EXPECTED_KEYS = {
    "signing": SIGNERS,
    "archive": {ARCHIVE_SUBJECT},
    "grades": {CERTIFICATE},
    "identity": set(),
    "sync": set(),
}


@pytest.mark.parametrize("service", EXPECTED_KEYS)
def test_a_service_part_holds_the_public_part_and_its_own_keys_and_nothing_else(offline, tmp_path, service):
    part = offline.export(service, tmp_path / service)
    certificates = {f"certs/{p.name}" for p in (offline.folder / "certs").iterdir()}
    keys = {f"keys/{subject}.key.pem" for subject in EXPECTED_KEYS[service]}
    assert relative_files(part.folder) == {"ca/root.crt.pem", "ca/crl.pem", *certificates, *keys}
    assert (part.certificates, part.keys, part.token, part.removed) == (len(HOLDERS), len(keys), False, 0)
    assert private(part.folder), modes(part.folder)
    for name in keys:
        assert (part.folder / name).read_bytes() == (offline.folder / name).read_bytes(), "copied encrypted, as is"


def test_a_part_carries_the_token_config_instead_of_keys_when_the_keys_are_in_a_token(tmp_path):
    pki = new_pki(tmp_path)
    config = b'{"module": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "hocba", "env": {}}'
    (pki.folder / "token.json").write_bytes(config)
    part = pki.export("archive", tmp_path / "archive")
    assert relative_files(part.folder) == {"ca/root.crt.pem", "ca/crl.pem", "token.json"} | {
        f"certs/{p.name}" for p in (pki.folder / "certs").iterdir()
    }
    assert part.token and part.keys == 0
    assert (part.folder / "token.json").read_bytes() == config, "no PIN in it: the PIN is a secret file of its own"


def test_signing_signs_and_verifies_from_its_part_alone(offline, tmp_path, passphrase_file):
    part = offline.export("signing", tmp_path / "signing")
    signers = pki_signers(production(part.folder, passphrase_file))
    now = datetime.now(UTC)
    principal = signers.valid_signer(principal_subject(SCHOOL), "principal", SCHOOL, now)
    jws = sign_detached(principal, b"the record", {"role": "principal"})
    assert verify_detached(principal.certificate.public_key(), jws, b"the record")
    assert signers.valid_signer(f"seal-{SCHOOL}", "school_seal", SCHOOL, now)
    assert not (part.folder / "ca" / "root.key.pem").exists(), "the root CA's key was never needed"
    with pytest.raises(UnknownSigner, match="no key for 'archive'"):
        signers.directory.signer_for(ARCHIVE_SUBJECT)


def test_the_archive_signs_its_checkpoints_from_its_part_alone(offline, tmp_path, passphrase_file):
    part = offline.export("archive", tmp_path / "archive")
    settings = production(part.folder, passphrase_file)
    keys = keys_from_pki(settings)
    signer = keys.signer()
    jws = sign_detached(signer, b"a checkpoint", {"typ": "checkpoint"})
    assert verify_detached(signer.certificate.public_key(), jws, b"a checkpoint")
    assert keys.trust is not None and keys.trust().validate(signer.chain, datetime.now(UTC), purpose="checkpoint").ok
    assert keys.crl_pem() == offline.crl_path.read_text()
    assert not (part.folder / "ca" / "root.key.pem").exists()
    with pytest.raises(UnknownSigner, match="no key"):
        DevPki.from_settings(settings).signer(principal_subject(SCHOOL))


def test_grades_seals_from_its_part_alone(offline, tmp_path, passphrase_file):
    part = offline.export("grades", tmp_path / "grades")
    settings = production(part.folder, passphrase_file)
    record = records.record_version("rec-0001", 1, SCHOOL, "2025-2026", "ref-0001")
    sealed = seal_with(pki_signer(settings))(record)  # the sealer grades' build_app makes
    trust = DevPki.from_settings(settings).trust_store()
    assert seal_problems(sealed, record_claims(record), trust, CERTIFICATE, datetime.now(UTC)) == []
    assert not (part.folder / "ca" / "root.key.pem").exists()
    with pytest.raises(UnknownSigner, match="no key"):
        DevPki.from_settings(settings).signer(ARCHIVE_SUBJECT)


def test_attack_a_service_given_the_whole_pki_refuses_to_start_in_production(offline, passphrase_file):
    """The whole folder mounted into a service hands whoever reads that service's disk the root CA's key: they
    could issue themselves a principal's certificate. In production the service refuses to start with it."""
    settings = production(offline.folder, passphrase_file)
    for start in (pki_signers, keys_from_pki, pki_signer):
        with pytest.raises(PkiRefused, match="holds the root CA's key.*hocba pki export --service"):
            start(settings)


def test_attack_a_part_with_the_generated_passphrase_beside_its_keys_is_refused_in_production(
    tmp_path, passphrase_file
):
    """A development PKI's passphrase lies beside the keys it encrypts: one copy of the folder opens them all."""
    generated = DevPki(tmp_path / "dev")
    generated.create(HOLDERS)
    generated.root_key_path.unlink()
    with pytest.raises(PkiRefused, match="development passphrase beside its keys"):
        pki_signers(production(generated.folder, passphrase_file))


def test_in_production_a_service_refuses_at_start_keys_whose_secret_is_not_given(offline, tmp_path):
    part = offline.export("archive", tmp_path / "archive")
    with pytest.raises(PkiRefused, match="mount the passphrase as a file and name it with HOCBA_PKI_PASSPHRASE_FILE"):
        keys_from_pki(Settings(environment="production", pki_dir=part.folder))
    verifies_only = offline.export("sync", tmp_path / "sync")
    DevPki.from_settings(Settings(environment="production", pki_dir=verifies_only.folder)).trust_store()


def test_export_refuses_a_folder_in_use_unless_forced_and_never_overwrites_what_no_export_wrote(offline, tmp_path):
    target = tmp_path / "part"
    offline.export("archive", target)
    with pytest.raises(PkiRefused, match="not empty: pass --force"):
        offline.export("archive", target)
    assert offline.export("archive", target, replace=True).removed == 0
    (target / "notes.txt").write_text("the operator's")
    with pytest.raises(PkiRefused, match="holds notes.txt, which no export writes"):
        offline.export("archive", target, replace=True)
    copy = shutil.copytree(offline.folder, tmp_path / "a copy of the PKI")
    with pytest.raises(PkiRefused, match="which no export writes"):
        offline.export("archive", copy, replace=True)
    assert (copy / "ca" / "root.key.pem").exists()


def test_export_refuses_the_pki_itself_and_the_folders_around_it(offline):
    for target in (offline.folder, offline.folder / "parts" / "signing", offline.folder.parent):
        with pytest.raises(PkiRefused, match="overlaps the PKI"):
            offline.export("signing", target, replace=True)
    assert offline.root_key_path.exists()


def test_exporting_another_service_over_a_part_removes_the_keys_it_no_longer_holds(offline, tmp_path):
    target = tmp_path / "part"
    offline.export("signing", target)
    part = offline.export("archive", target, replace=True)
    assert part.removed == len(SIGNERS)
    assert {p.name for p in (target / "keys").iterdir()} == {f"{ARCHIVE_SUBJECT}.key.pem"}
    verifies_only = offline.export("identity", target, replace=True)
    assert verifies_only.removed == 1 and not (target / "keys").exists()


def test_a_new_crl_reaches_a_running_service_when_its_part_is_exported_again(tmp_path, passphrase_file):
    pki = new_pki(tmp_path)
    target = tmp_path / "signing"
    pki.export("signing", target)
    signers = pki_signers(production(target, passphrase_file))
    signers.trust.check_every = 0  # type: ignore[attr-defined]  # the service looks every 2 s
    principal = principal_subject(SCHOOL)
    assert signers.valid_signer(principal, "principal", SCHOOL, datetime.now(UTC))
    pki.revoke(principal, "affiliation_changed")
    pki.export("signing", target, replace=True)
    with pytest.raises(SignerRefused, match="affiliation_changed"):
        signers.valid_signer(principal, "principal", SCHOOL, datetime.now(UTC))


def test_hocba_pki_export_prints_counts_and_never_key_material(offline, tmp_path):
    export = ("pki", "export", "--service", "signing", "--to", str(tmp_path / "signing"), "--dir", str(offline.folder))
    result = hocba(*export)
    assert result.exit_code == 0, result.output
    assert f"{len(SIGNERS)} private keys" in result.output and f"{len(HOLDERS)} certificates" in result.output
    assert "PRIVATE KEY" not in result.output and PASSPHRASE.decode() not in result.output
    again = hocba(*export)
    assert again.exit_code == 2 and "pass --force" in one_line(again.stderr)
    unknown = hocba("pki", "export", "--service", "ministry", "--to", str(tmp_path / "x"), "--dir", str(offline.folder))
    assert unknown.exit_code == 2 and not (tmp_path / "x").exists()


def test_the_crl_is_issued_on_the_offline_pki_only(offline, tmp_path, passphrase_file):
    env = {"HOCBA_PKI_PASSPHRASE_FILE": str(passphrase_file)}
    renewed = hocba("pki", "crl", "--dir", str(offline.folder), **env)
    assert renewed.exit_code == 0, renewed.output
    assert "--force" in one_line(renewed.output), "it says how the new CRL reaches the services"
    part = offline.export("signing", tmp_path / "signing")
    exported = relative_files(part.folder)
    refused = hocba("pki", "crl", "--dir", str(part.folder), **env)
    assert refused.exit_code == 2 and "no root CA key" in one_line(refused.stderr)
    assert "Traceback" not in refused.output
    assert relative_files(part.folder) == exported, "the part is left as it was"
    assert offline.export("signing", part.folder, replace=True).removed == 0
