"""A key ring for encryption at rest: key id -> 256-bit key, the current id, and a blind-index key.

Generated at run time into an ignored folder (never committed), written atomically with
owner-only permissions, every key wrapped under the service's key-encryption key
(`shared.crypto.kek`): the ring file alone opens nothing. Rotation adds a key and makes it
current; old keys stay so that documents not yet re-encrypted can still be read.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

from shared.crypto.files import create_whole, replace_whole
from shared.crypto.kek import KekError, KeyEncryptionKey, wrapping_context

KEY_BYTES = 32  # AES-256
WRAPPED_FORMAT = "hocba-keyring/2"
#: The id the blind-index key is wrapped under.
INDEX_KEY_ID = "index"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


@dataclass(frozen=True)
class KeyRing:
    """Data keys by id (the newest is `current`) and the key of the HMAC blind index."""

    keys: dict[str, bytes]
    current: str
    index_key: bytes
    #: Ids in the order they were added, oldest first.
    order: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ValueError(f"current key '{self.current}' is not in the ring")
        for kid, key in {**self.keys, "index": self.index_key}.items():
            if len(key) != KEY_BYTES:
                raise ValueError(f"key '{kid}' is {len(key)} bytes, not {KEY_BYTES}")

    @classmethod
    def generate(cls, kid: str = "k1") -> KeyRing:
        return cls({kid: secrets.token_bytes(KEY_BYTES)}, kid, secrets.token_bytes(KEY_BYTES), (kid,))

    def key(self, kid: str) -> bytes:
        try:
            return self.keys[kid]
        except KeyError:
            raise KeyError(f"key '{kid}' is not in the key ring") from None

    def with_new_key(self, kid: str) -> KeyRing:
        """This ring plus a fresh key `kid`, made current (unchanged when `kid` is already there)."""
        if kid in self.keys:
            return replace(self, current=kid)
        return KeyRing(
            {**self.keys, kid: secrets.token_bytes(KEY_BYTES)}, kid, self.index_key, (*self.order, kid)
        )

    def to_json(self) -> dict:
        """The ring in clear: only ever inside a wrapped file (`wrapped_json`), or read from an older one."""
        return {
            "current": self.current,
            "keys": [{"id": kid, "key": b64(self.keys[kid])} for kid in self.order or self.keys],
            "index_key": b64(self.index_key),
        }

    @classmethod
    def from_json(cls, data: dict) -> KeyRing:
        keys = {entry["id"]: unb64(entry["key"]) for entry in data["keys"]}
        return cls(keys, data["current"], unb64(data["index_key"]), tuple(keys))

    def wrapped_json(self, kek: KeyEncryptionKey, owner: str) -> dict:
        """The ring as stored: every key wrapped under `kek`, bound to `owner` and the key's id."""
        return {
            "format": WRAPPED_FORMAT,
            "owner": owner,
            "kek": kek.kek_id,
            "current": self.current,
            "keys": [
                {"id": kid, "wrapped": b64(kek.wrap(self.keys[kid], wrapping_context(owner, kid)))}
                for kid in self.order or self.keys
            ],
            "index_key": b64(kek.wrap(self.index_key, wrapping_context(owner, INDEX_KEY_ID))),
        }

    @classmethod
    def from_wrapped_json(cls, data: dict, kek: KeyEncryptionKey, owner: str) -> KeyRing:
        """The ring `wrapped_json` stored; `KekError` when it is another's ring or under another KEK."""
        if data.get("owner") != owner:
            raise KekError(f"this key ring belongs to '{data.get('owner')}', not '{owner}'")
        if data.get("kek") != kek.kek_id:
            raise KekError(f"this key ring is wrapped under the key-encryption key '{data.get('kek')}', not '{kek.kek_id}'")
        keys = {e["id"]: kek.unwrap(unb64(e["wrapped"]), wrapping_context(owner, e["id"])) for e in data["keys"]}
        index_key = kek.unwrap(unb64(data["index_key"]), wrapping_context(owner, INDEX_KEY_ID))
        return cls(keys, data["current"], index_key, tuple(keys))


def is_wrapped(data: dict) -> bool:
    return data.get("format") == WRAPPED_FORMAT


def _ring_bytes(ring: KeyRing, kek: KeyEncryptionKey, owner: str) -> bytes:
    return json.dumps(ring.wrapped_json(kek, owner), indent=2).encode()


def save_key_ring(path: Path, ring: KeyRing, kek: KeyEncryptionKey, owner: str) -> None:
    """Write the ring wrapped under `kek` in one step (a whole file renamed in), readable by the owner only."""
    replace_whole(path, _ring_bytes(ring, kek, owner))


def load_key_ring(path: Path, kek: KeyEncryptionKey, owner: str) -> KeyRing:
    """The ring at `path`, unwrapped with `kek`. A ring of an older release, kept in clear, is wrapped in place."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise KekError(f"cannot read the key ring {path}: {exc.strerror}") from None
    if is_wrapped(data):
        return KeyRing.from_wrapped_json(data, kek, owner)
    ring = KeyRing.from_json(data)
    save_key_ring(path, ring, kek, owner)
    return ring


def load_or_create_key_ring(path: Path, kek: KeyEncryptionKey, owner: str) -> KeyRing:
    """The ring at `path`, generated there (wrapped under `kek`) on first use (safe when two processes race)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        ring = KeyRing.generate()
        if create_whole(path, _ring_bytes(ring, kek, owner)):
            return ring
    return load_key_ring(path, kek, owner)
