"""Keys held in a PKCS#11 token (SoftHSM2 for development, a CA-issued token in production).

Keys are generated inside the token and never leave it; they are found by label (the holder's
subject id). Signing hashes locally and asks the token for CKM_ECDSA over the digest, which every
token that holds P-256 keys supports.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

_LIBRARIES: dict[str, Any] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class TokenConfig:
    """Which PKCS#11 module, which token in it, and the user PIN (from the environment, never a file)."""

    module: str
    token_label: str
    pin: str
    #: Environment the module reads when it loads (SoftHSM2's SOFTHSM2_CONF, say).
    env: dict[str, str] = field(default_factory=dict)


def _library(module: str, env: dict[str, str]) -> Any:
    import pkcs11  # imported here: only deployments that configure a token need the module

    with _LOCK:
        if module not in _LIBRARIES:
            for name, value in env.items():
                os.environ.setdefault(name, value)
            _LIBRARIES[module] = pkcs11.lib(module)
        return _LIBRARIES[module]


class Pkcs11Token:
    """One logged-in session on the token, opened on first use and kept for the process.

    PKCS#11 logs a whole application in, not a session: use `Pkcs11Token.shared` so one process
    holds one session per token.
    """

    _shared: dict[tuple[str, str], Pkcs11Token] = {}

    def __init__(self, config: TokenConfig) -> None:
        self.config = config
        self._session: Any = None

    @classmethod
    def shared(cls, config: TokenConfig) -> Pkcs11Token:
        with _LOCK:
            key = (config.module, config.token_label)
            if key not in cls._shared:
                cls._shared[key] = cls(config)
            return cls._shared[key]

    @property
    def session(self) -> Any:
        if self._session is None:
            token = _library(self.config.module, self.config.env).get_token(token_label=self.config.token_label)
            self._session = token.open(rw=True, user_pin=self.config.pin)
        return self._session

    def generate(self, label: str) -> ec.EllipticCurvePublicKey:
        """A new P-256 key pair stored in the token under `label`; returns its public key."""
        from pkcs11 import Attribute, KeyType, ObjectClass
        from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

        if list(self.session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label})):
            raise ValueError(f"the token '{self.config.token_label}' already holds a key labelled '{label}'")
        params = self.session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
        )
        public, _ = params.generate_keypair(
            store=True,
            label=label,
            public_template={Attribute.VERIFY: True},
            private_template={Attribute.SIGN: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
        )
        key = serialization.load_der_public_key(encode_ec_public_key(public))
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key

    def key(self, label: str) -> Pkcs11Key:
        from pkcs11 import KeyType, ObjectClass
        from pkcs11.exceptions import NoSuchKey

        try:
            handle = self.session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=label)
        except NoSuchKey:
            raise LookupError(f"the token '{self.config.token_label}' holds no key labelled '{label}'") from None
        return Pkcs11Key(handle)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


@dataclass(frozen=True)
class Pkcs11Key:
    """A private key inside the token: a `KeyBackend`."""

    handle: Any

    def sign_raw(self, data: bytes) -> bytes:
        from pkcs11 import Mechanism

        # CKM_ECDSA returns r‖s, exactly the JWS ES256 form.
        return bytes(self.handle.sign(hashlib.sha256(data).digest(), mechanism=Mechanism.ECDSA))
