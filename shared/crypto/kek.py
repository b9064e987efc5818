"""Key-encryption keys: what wraps a service's key ring, so that a copy of its data folder alone opens nothing.

A data key is wrapped with AES-256-GCM under the key-encryption key (KEK), with associated data
naming the ring's owner (the service) and the key's id, so a wrapped key copied into another ring,
or under another id, does not unwrap. The KEK itself is either

* a file of 32 random bytes in base64 (a mounted secret, 0600; development generates one), or
* an AES-256 key inside a PKCS#11 token, found by label, that never leaves it (CKM_AES_GCM).

Each KEK has an id (a keyed fingerprint: it says which KEK wrapped a ring, and nothing of the key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.crypto.files import create_whole
from shared.crypto.pkcs11 import Pkcs11Token, TokenConfig
from shared.settings import Misconfigured

KEK_BYTES = 32
NONCE_BYTES = 12


class KekError(Misconfigured):
    """The key-encryption key is missing or unusable, or a wrapped key does not unwrap under it."""


def wrapping_context(owner: str, key_id: str) -> bytes:
    return f"hocba:keyring:{owner}:{key_id}".encode()


class KeyEncryptionKey(Protocol):
    @property
    def kek_id(self) -> str: ...

    def wrap(self, key: bytes, context: bytes) -> bytes:
        """nonce ‖ AES-256-GCM(key) under the KEK, bound to `context`."""

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """The key `wrap` wrapped with `context`; `KekError` when it does not unwrap."""


@dataclass(frozen=True)
class FileKek:
    """A KEK read from a secret file (32 bytes, base64)."""

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEK_BYTES:
            raise KekError(f"a key-encryption key is {KEK_BYTES} bytes, not {len(self.key)}")

    @classmethod
    def read(cls, path: Path) -> FileKek:
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise KekError(f"cannot read the key-encryption key file {path}: {exc.strerror}") from None
        try:
            key = base64.b64decode(text, validate=True)
        except ValueError:
            raise KekError(f"{path} does not hold a key-encryption key (32 random bytes in base64)") from None
        return cls(key)

    @property
    def kek_id(self) -> str:
        return "file:" + hmac.new(self.key, b"hocba:kek-id", hashlib.sha256).hexdigest()[:16]

    def wrap(self, key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(self.key).encrypt(nonce, key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            return AESGCM(self.key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], context)
        except (InvalidTag, ValueError):
            raise KekError("a wrapped key does not unwrap under this key-encryption key") from None


def generate_kek_file(path: Path) -> FileKek:
    """A new random KEK written to `path` (0600, its folder 0700); an existing file is kept and read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if path.exists():
        return FileKek.read(path)
    key = os.urandom(KEK_BYTES)
    if not create_whole(path, (base64.b64encode(key).decode() + "\n").encode()):
        return FileKek.read(path)  # another process made it first: use theirs
    return FileKek(key)


@dataclass(frozen=True)
class Pkcs11Kek:
    """A KEK inside a PKCS#11 token: an AES-256 secret key found by label; wrapping runs in the token."""

    token: Pkcs11Token
    label: str

    def _key(self) -> Any:
        from pkcs11 import KeyType, ObjectClass
        from pkcs11.exceptions import NoSuchKey

        try:
            return self.token.session.get_key(object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=self.label)
        except NoSuchKey:
            raise KekError(f"the token holds no AES key labelled '{self.label}'") from None

    @property
    def kek_id(self) -> str:
        return f"pkcs11:{self.token.config.token_label}/{self.label}"

    def wrap(self, key: bytes, context: bytes) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11.mechanisms import GCMParams

        nonce = os.urandom(NONCE_BYTES)
        sealed = self._key().encrypt(key, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, context))
        return nonce + bytes(sealed)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11.exceptions import PKCS11Error
        from pkcs11.mechanisms import GCMParams

        try:
            params = GCMParams(wrapped[:NONCE_BYTES], context)
            return bytes(self._key().decrypt(wrapped[NONCE_BYTES:], mechanism=Mechanism.AES_GCM, mechanism_param=params))
        except PKCS11Error:
            raise KekError("a wrapped key does not unwrap under the token's key-encryption key") from None


def create_token_kek(token: Pkcs11Token, label: str) -> Pkcs11Kek:
    """Generate an AES-256 KEK inside the token under `label` (sensitive, not extractable)."""
    from pkcs11 import Attribute, KeyType

    token.session.generate_key(
        KeyType.AES,
        256,
        label=label,
        store=True,
        template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.ENCRYPT: True, Attribute.DECRYPT: True},
    )
    return Pkcs11Kek(token, label)


def token_kek(module: str, token_label: str, key_label: str, pin: str) -> Pkcs11Kek:
    return Pkcs11Kek(Pkcs11Token.shared(TokenConfig(module, token_label, pin)), key_label)
