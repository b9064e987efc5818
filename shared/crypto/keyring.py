"""A key ring for field encryption: key id -> 256-bit key, the current id, and a blind-index key.

Generated at run time into an ignored folder (never committed), written atomically with
owner-only permissions. Rotation adds a key and makes it current; old keys stay so that
documents not yet re-encrypted can still be read.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

KEY_BYTES = 32  # AES-256


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
        return {
            "current": self.current,
            "keys": [{"id": kid, "key": b64(self.keys[kid])} for kid in self.order or self.keys],
            "index_key": b64(self.index_key),
        }

    @classmethod
    def from_json(cls, data: dict) -> KeyRing:
        keys = {entry["id"]: unb64(entry["key"]) for entry in data["keys"]}
        return cls(keys, data["current"], unb64(data["index_key"]), tuple(keys))


def save_key_ring(path: Path, ring: KeyRing) -> None:
    """Write the ring atomically (temporary file, fsync, rename), readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(ring.to_json(), out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_or_create_key_ring(path: Path) -> KeyRing:
    """The ring at `path`, generated there on first use (safe when two processes race)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        ring = KeyRing.generate()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            with os.fdopen(fd, "w") as out:
                json.dump(ring.to_json(), out, indent=2)
            return ring
    return KeyRing.from_json(json.loads(path.read_text()))
