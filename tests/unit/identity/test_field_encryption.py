"""Field encryption of personal data: AES-256-GCM per field under a key ring, HMAC blind index, rotation."""

from __future__ import annotations

import json
import stat

import pytest

from shared.crypto.fields import DecryptionError, FieldCipher
from shared.crypto.kek import FileKek
from shared.crypto.keyring import KeyRing, load_or_create_key_ring, save_key_ring


def test_a_field_round_trips_and_names_its_key():
    cipher = FieldCipher(KeyRing.generate("k1"))
    sealed = cipher.encrypt("full_name", "ref-1", "Nguyễn Văn An")
    assert sealed["k"] == "k1" and "Nguyễn" not in json.dumps(sealed)
    assert cipher.decrypt("full_name", "ref-1", sealed) == "Nguyễn Văn An"


def test_the_same_value_encrypts_differently_each_time():
    cipher = FieldCipher(KeyRing.generate())
    assert cipher.encrypt("f", "r", "x")["c"] != cipher.encrypt("f", "r", "x")["c"]


@pytest.mark.parametrize(("field", "owner"), [("guardian_name", "ref-1"), ("full_name", "ref-2")])
def test_a_ciphertext_moved_to_another_field_or_student_does_not_decrypt(field, owner):
    cipher = FieldCipher(KeyRing.generate())
    sealed = cipher.encrypt("full_name", "ref-1", "Nguyễn Văn An")
    with pytest.raises(DecryptionError):
        cipher.decrypt(field, owner, sealed)


def test_a_tampered_ciphertext_does_not_decrypt():
    cipher = FieldCipher(KeyRing.generate())
    sealed = cipher.encrypt("f", "r", "secret")
    flipped = sealed["c"][:-4] + ("AAAA" if not sealed["c"].endswith("AAAA") else "BBBB")
    with pytest.raises(DecryptionError):
        cipher.decrypt("f", "r", {**sealed, "c": flipped})


def test_after_rotation_old_fields_still_decrypt_and_new_ones_use_the_new_key():
    ring = KeyRing.generate("k1")
    old = FieldCipher(ring).encrypt("f", "r", "value")
    rotated = FieldCipher(ring.with_new_key("k2"))
    assert rotated.decrypt("f", "r", old) == "value"
    assert rotated.encrypt("f", "r", "value")["k"] == "k2"
    assert rotated.needs_rotation({"f": old}) and not rotated.needs_rotation({"f": rotated.encrypt("f", "r", "v")})
    assert ring.with_new_key("k2").with_new_key("k2").order == ("k1", "k2"), "adding a known key changes nothing"


def test_the_blind_index_is_stable_keyed_and_survives_rotation():
    ring = KeyRing.generate()
    index = FieldCipher(ring).blind_index("079214000123")
    assert index == FieldCipher(ring.with_new_key("k2")).blind_index("079214000123")
    assert index != FieldCipher(KeyRing.generate()).blind_index("079214000123"), "another ring, another index"
    assert "079214000123" not in index and len(index) == 64


def test_the_key_ring_file_is_made_once_owner_only_and_reloads(tmp_path):
    path, kek = tmp_path / "keys" / "ring.json", FileKek(bytes(32))
    ring = load_or_create_key_ring(path, kek, "identity")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key_ring(path, kek, "identity") == ring
    save_key_ring(path, ring.with_new_key("k2"), kek, "identity")
    again = load_or_create_key_ring(path, kek, "identity")
    assert again.current == "k2" and set(again.keys) == {"k1", "k2"} and again.index_key == ring.index_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_ring_rejects_keys_of_the_wrong_size():
    with pytest.raises(ValueError, match="not 32"):
        KeyRing({"k1": b"short"}, "k1", bytes(32))
