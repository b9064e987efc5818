"""A service's key ring on disk, wrapped under its key-encryption key, and the ciphers over it.

Every service that keeps personal data keeps it under its own vault: identity field by field
(`fields`), grades, signing, archive and sync whole documents (`documents`). The ring file is
wrapped under the key-encryption key (`shared.crypto.kek`), which comes from a secret file or a
PKCS#11 token and is never beside the data: a copy of the data folder alone decrypts nothing.

Rotation adds a key and makes it current; other processes of the service (signing workers) see
the ring file change and reload it before they seal anything more.
"""

from __future__ import annotations

import logging
from pathlib import Path

from shared.crypto.fields import DocumentCipher, FieldCipher
from shared.crypto.kek import FileKek, KekError, KeyEncryptionKey, generate_kek_file, token_kek
from shared.crypto.keyring import KeyRing, load_key_ring, load_or_create_key_ring, save_key_ring
from shared.crypto.pki import PkiRefused, pin_from
from shared.settings import Settings

log = logging.getLogger("hocba.keys")


def development_kek_path(settings: Settings, service: str) -> Path:
    """Where development keeps a service's generated key-encryption key: apart from its key ring and data."""
    return settings.data_dir / "secrets" / f"{service}.kek"


def kek_for(settings: Settings, service: str) -> KeyEncryptionKey:
    """The configured key-encryption key: a PKCS#11 token's key, else HOCBA_KEK_FILE, else (development only)
    one generated for `service` under the data folder's `secrets`."""
    if settings.kek_pkcs11_label:
        if not (settings.kek_pkcs11_module and settings.kek_pkcs11_token):
            raise KekError("HOCBA_KEK_PKCS11_LABEL needs HOCBA_KEK_PKCS11_MODULE and HOCBA_KEK_PKCS11_TOKEN")
        try:
            pin = pin_from(settings)
        except PkiRefused as exc:
            raise KekError(str(exc)) from None
        if not pin:
            raise KekError("the key-encryption key is in a PKCS#11 token: give its PIN in HOCBA_PKCS11_PIN_FILE")
        return token_kek(settings.kek_pkcs11_module, settings.kek_pkcs11_token, settings.kek_pkcs11_label, pin)
    if settings.kek_file is not None:
        return FileKek.read(settings.kek_file)
    if settings.production:
        raise KekError(f"{service} has no key-encryption key: set HOCBA_KEK_FILE (or HOCBA_KEK_PKCS11_LABEL)")
    return generate_kek_file(development_kek_path(settings, service))


class Vault:
    """The key ring a service encrypts under: loaded (or made) at start, rotated in place, reloaded when changed."""

    def __init__(
        self, ring: KeyRing, path: Path | None = None, kek: KeyEncryptionKey | None = None, owner: str = ""
    ) -> None:
        self.path = path
        self.kek = kek
        self.owner = owner
        self._use(ring)

    @classmethod
    def at(cls, path: Path, kek: KeyEncryptionKey, owner: str) -> Vault:
        return cls(load_or_create_key_ring(path, kek, owner), path, kek, owner)

    @classmethod
    def for_service(cls, settings: Settings, service: str) -> Vault:
        """`service`'s vault as configured: its key ring (`Settings.key_ring_path`) under its KEK (`kek_for`)."""
        return cls.at(settings.key_ring_path(service), kek_for(settings, service), service)

    @classmethod
    def ephemeral(cls) -> Vault:
        """A ring in memory only (tests)."""
        return cls(KeyRing.generate())

    def _use(self, ring: KeyRing) -> None:
        self.cipher = FieldCipher(ring)
        self.documents = DocumentCipher(ring)
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_ino

    @property
    def ring(self) -> KeyRing:
        return self.cipher.ring

    @property
    def current(self) -> str:
        return self.ring.current

    @property
    def key_count(self) -> int:
        """Data keys in the ring: the current one and those documents may still be under."""
        return len(self.ring.keys)

    def knows(self, key_id: str) -> bool:
        """Whether `key_id` is in the ring; an unknown id (another process rotated) reloads the file first."""
        if key_id in self.ring.keys:
            return True
        self.reload()
        return key_id in self.ring.keys

    def refresh(self) -> None:
        """Reload the ring if its file changed since it was read (another process rotated): one `stat`."""
        if self.path is not None and self._file_stamp() != self._stamp:
            self.reload()

    def reload(self) -> None:
        if self.path is not None and self.kek is not None and self.path.exists():
            self._use(load_key_ring(self.path, self.kek, self.owner))

    def add_key(self, key_id: str) -> None:
        """Add `key_id` (unless present), make it current and persist the ring before using it."""
        self.reload()
        ring = self.ring.with_new_key(key_id)
        if self.path is not None and self.kek is not None:
            save_key_ring(self.path, ring, self.kek, self.owner)
        self._use(ring)
        log.info("%s data key %s is current (%d keys in the ring)", self.owner or "the", key_id, len(ring.keys))

    def rewrap(self, new_kek: KeyEncryptionKey) -> None:
        """Wrap the ring under `new_kek` instead (the old KEK is retired); the data keys stay the same."""
        if self.path is None:
            raise KekError("this key ring is not kept in a file")
        save_key_ring(self.path, self.ring, new_kek, self.owner)
        self.kek = new_kek
        self._stamp = self._file_stamp()
