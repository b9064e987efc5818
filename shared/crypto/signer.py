"""The signer interface signing code depends on: a key that makes ES256 signatures, and its certificate.

A `KeyBackend` signs bytes (a software key here, a PKCS#11 token in `pkcs11.py`); an `X509Signer`
pairs it with the certificate chain that names the holder; a `SignerDirectory` finds the signer
for a subject id. A licensed CA's token replaces the development keys by providing another
directory, without changes to the code that signs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from shared.crypto.certs import CertIdentity, identity, to_x5c
from shared.crypto.jws import es256


class KeyBackend(Protocol):
    """A P-256 private key wherever it lives."""

    def sign_raw(self, data: bytes) -> bytes:
        """ES256 over `data`: r‖s, 32 bytes each (RFC 7518 §3.4)."""
        ...


@dataclass(frozen=True)
class SoftwareKey:
    """A key held in this process (loaded from an encrypted PKCS#8 file)."""

    key: ec.EllipticCurvePrivateKey

    def sign_raw(self, data: bytes) -> bytes:
        return es256(self.key, data)


@dataclass(frozen=True)
class X509Signer:
    """A key with the certificate chain (signer first, without the root) that identifies its holder."""

    backend: KeyBackend
    chain: tuple[x509.Certificate, ...]

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    @cached_property
    def identity(self) -> CertIdentity:
        return identity(self.certificate)

    @property
    def key_id(self) -> str:
        """`kid`: the certificate's SHA-256 fingerprint, so a verifier can pick it from a store."""
        return self.identity.fingerprint

    @cached_property
    def x5c(self) -> list[str]:
        return to_x5c(self.chain)

    def sign_raw(self, data: bytes) -> bytes:
        return self.backend.sign_raw(data)


class UnknownSigner(LookupError):
    """No key or certificate for the subject."""


class SignerDirectory(Protocol):
    """Where the signing service finds each holder's signer."""

    def signer_for(self, subject_id: str) -> X509Signer:
        """The signer for a subject id; raises UnknownSigner when there is none."""
        ...


@dataclass
class CachingDirectory:
    """Loads a subject's signer on first use and keeps it (decrypting a key costs a key derivation)."""

    load: Callable[[str], X509Signer]
    cache: dict[str, X509Signer] = field(default_factory=dict)

    def signer_for(self, subject_id: str) -> X509Signer:
        if subject_id not in self.cache:
            self.cache[subject_id] = self.load(subject_id)
        return self.cache[subject_id]
