"""Encryption at rest (AES-256-GCM): personal data field by field with its HMAC-SHA256 blind index, and whole documents.

Each encrypted field is stored as `{"k": key id, "n": nonce, "c": ciphertext}` (base64), with
associated data binding the field name and the owner's reference, so a ciphertext copied to
another field or another student does not decrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.crypto.keyring import KeyRing, b64, unb64

NONCE_BYTES = 12


class DecryptionError(ValueError):
    """A field does not decrypt: wrong key, wrong owner or field, or tampered."""


def associated_data(field: str, owner: str) -> bytes:
    return f"hocba:field:{field}:{owner}".encode()


class FieldCipher:
    """Encrypts and decrypts single fields under a key ring; computes the blind index."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    def encrypt(self, field: str, owner: str, value: str) -> dict[str, str]:
        nonce = os.urandom(NONCE_BYTES)
        key_id = self.ring.current
        ciphertext = AESGCM(self.ring.key(key_id)).encrypt(nonce, value.encode(), associated_data(field, owner))
        return {"k": key_id, "n": b64(nonce), "c": b64(ciphertext)}

    def decrypt(self, field: str, owner: str, sealed: dict[str, Any]) -> str:
        try:
            key = self.ring.key(sealed["k"])
            plain = AESGCM(key).decrypt(unb64(sealed["n"]), unb64(sealed["c"]), associated_data(field, owner))
        except (KeyError, InvalidTag, ValueError, TypeError) as exc:
            raise DecryptionError(f"field '{field}' of '{owner}' does not decrypt ({type(exc).__name__})") from exc
        return plain.decode()

    def encrypt_fields(self, owner: str, values: dict[str, str]) -> dict[str, dict[str, str]]:
        return {name: self.encrypt(name, owner, value) for name, value in values.items()}

    def decrypt_fields(self, owner: str, sealed: dict[str, dict[str, Any]]) -> dict[str, str]:
        return {name: self.decrypt(name, owner, value) for name, value in sealed.items()}

    def needs_rotation(self, sealed: dict[str, dict[str, Any]]) -> bool:
        return any(value.get("k") != self.ring.current for value in sealed.values())

    def blind_index(self, value: str, purpose: str = "personal_id") -> str:
        """HMAC-SHA256 of `value` under the ring's index key: equal values, equal index; nothing else."""
        return hmac.new(self.ring.index_key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def document_associated_data(kind: str, owner: str) -> bytes:
    return f"hocba:{kind}:{owner}".encode()


class DocumentCipher:
    """Encrypts whole documents (bytes) under a key ring: what a service keeps of a record, sealed in one piece.

    The stored form is the key id beside `nonce ‖ ciphertext ‖ tag`; the associated data names the kind
    of document and its owner (a record id and version), so a ciphertext moved to another record, or
    from a record to an outbox entry, does not decrypt.
    """

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    def seal(self, kind: str, owner: str, plain: bytes) -> tuple[str, bytes]:
        """(key id, nonce ‖ ciphertext) under the current key."""
        nonce = os.urandom(NONCE_BYTES)
        key_id = self.ring.current
        return key_id, nonce + AESGCM(self.ring.key(key_id)).encrypt(nonce, plain, document_associated_data(kind, owner))

    def open(self, kind: str, owner: str, key_id: str, sealed: bytes) -> bytes:
        try:
            key = AESGCM(self.ring.key(key_id))
            return key.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], document_associated_data(kind, owner))
        except (KeyError, InvalidTag, ValueError, TypeError) as exc:
            raise DecryptionError(f"{kind} '{owner}' does not decrypt ({type(exc).__name__})") from exc
