"""ES256 signatures as compact JWS (RFC 7515) with a detached payload."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def es256(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ES256 signature over `data`: r‖s, 32 bytes each (RFC 7518 §3.4)."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass(frozen=True)
class EcSigner:
    """An ECDSA P-256 key that signs; `key_id` names it in the JWS header."""

    key: ec.EllipticCurvePrivateKey
    key_id: str

    @classmethod
    def generate(cls, key_id: str) -> EcSigner:
        return cls(ec.generate_private_key(ec.SECP256R1()), key_id)

    def public_jwk(self) -> dict[str, str]:
        numbers = self.key.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
            "kid": self.key_id,
        }

    def sign_raw(self, data: bytes) -> bytes:
        return es256(self.key, data)


class RawSigner(Protocol):
    """What signs a JWS: a key id and ES256 over bytes; an `x5c` chain when it has a certificate."""

    @property
    def key_id(self) -> str: ...

    def sign_raw(self, data: bytes) -> bytes: ...


def sign_detached(signer: RawSigner, payload: bytes, header: dict[str, Any]) -> str:
    """Compact JWS `header..signature` whose payload travels separately (RFC 7515 App. F).

    The protected header carries `alg`, `kid` and, for a certified signer, its `x5c` chain.
    """
    x5c = getattr(signer, "x5c", None)
    fields = {"alg": "ES256", "kid": signer.key_id, **({"x5c": x5c} if x5c else {}), **header}
    protected = b64url(json.dumps(fields, separators=(",", ":")).encode())
    signing_input = f"{protected}.{b64url(payload)}".encode()
    return f"{protected}..{b64url(signer.sign_raw(signing_input))}"


def jwk_public_key(jwk: dict[str, str]) -> ec.EllipticCurvePublicKey:
    x = int.from_bytes(b64url_decode(jwk["x"]), "big")
    y = int.from_bytes(b64url_decode(jwk["y"]), "big")
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()


def protected_header(jws: str) -> dict[str, Any]:
    """The protected header of a compact JWS, as it reads (not verified)."""
    return json.loads(b64url_decode(jws.split(".")[0]))


def verify_detached(
    public_key: ec.EllipticCurvePublicKey, jws: str, payload: bytes, *, encoded_payload: str | None = None
) -> bool:
    """True when `jws` is a detached compact ES256 JWS by `public_key` over `payload`.

    `encoded_payload` is `b64url(payload)` when the caller has it already: several signatures over one
    record's bytes then encode those bytes once.
    """
    parts = jws.split(".")
    if len(parts) != 3:
        return False
    protected, empty, signature = parts
    if empty:
        return False
    raw = b64url_decode(signature)
    if len(raw) != 64:
        return False
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        body = encoded_payload if encoded_payload is not None else b64url(payload)
        public_key.verify(der, f"{protected}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


def sign_compact(signer: RawSigner, payload: bytes, header: dict[str, Any]) -> str:
    """Compact JWS with the payload attached and only `kid` to name the key: small enough for a QR code."""
    protected = b64url(json.dumps({"alg": "ES256", "kid": signer.key_id, **header}, separators=(",", ":")).encode())
    body = b64url(payload)
    return f"{protected}.{body}.{b64url(signer.sign_raw(f'{protected}.{body}'.encode()))}"


def verify_compact(public_key: ec.EllipticCurvePublicKey, jws: str) -> bytes | None:
    """The payload of a compact ES256 JWS if `public_key` made it, else None."""
    parts = jws.split(".")
    if len(parts) != 3 or not parts[1]:
        return None
    try:
        payload = b64url_decode(parts[1])
    except ValueError:
        return None
    return payload if verify_detached(public_key, f"{parts[0]}..{parts[2]}", payload) else None
