"""identity's key ring on disk and the field cipher over it; rotation swaps in a new current key."""

from __future__ import annotations

import logging
from pathlib import Path

from shared.crypto.fields import FieldCipher
from shared.crypto.keyring import KeyRing, load_or_create_key_ring, save_key_ring

log = logging.getLogger("hocba.identity")


class Vault:
    """The key ring identity encrypts personal data under: loaded (or made) at start, rotated in place.

    Only identity holds it. A key id unknown to this copy (another process rotated) reloads the file.
    """

    def __init__(self, ring: KeyRing, path: Path | None = None) -> None:
        self.path = path
        self.cipher = FieldCipher(ring)

    @classmethod
    def at(cls, path: Path) -> Vault:
        return cls(load_or_create_key_ring(path), path)

    @classmethod
    def ephemeral(cls) -> Vault:
        """A ring in memory only (tests)."""
        return cls(KeyRing.generate())

    @property
    def current(self) -> str:
        return self.cipher.ring.current

    @property
    def key_count(self) -> int:
        """Data keys in the ring: the current one and those documents may still be under."""
        return len(self.cipher.ring.keys)

    def knows(self, key_id: str) -> bool:
        if key_id in self.cipher.ring.keys:
            return True
        self.reload()
        return key_id in self.cipher.ring.keys

    def reload(self) -> None:
        if self.path is not None and self.path.exists():
            self.cipher = FieldCipher(load_or_create_key_ring(self.path))

    def add_key(self, key_id: str) -> None:
        """Add `key_id` (unless present), make it current and persist the ring before using it."""
        self.reload()
        ring = self.cipher.ring.with_new_key(key_id)
        if self.path is not None:
            save_key_ring(self.path, ring)
        self.cipher = FieldCipher(ring)
        log.info("identity data key %s is current (%d keys in the ring)", key_id, len(ring.keys))
