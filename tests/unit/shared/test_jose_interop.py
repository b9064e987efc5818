"""Record signatures are standard JWS: two independent JOSE libraries verify them with the detached payload."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from joserfc import jws as joserfc_jws
from joserfc.jwk import ECKey
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws
from jwcrypto.common import JWException

from shared.crypto.canonical import canonical_json
from tests.unit.signing.trust import make_trust, signed_record


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    return signed_record(make_trust(tmp_path_factory.mktemp("interop")), 4)


def certificate_of(jws: str) -> x509.Certificate:
    token = jwcrypto_jws.JWS()
    token.deserialize(jws)
    [leaf] = token.jose_header["x5c"]
    return x509.load_der_x509_certificate(base64.b64decode(leaf))


def test_jwcrypto_verifies_every_signature_of_a_record_with_the_key_from_its_x5c(signed):
    payload = canonical_json(signed.record.document)
    for signature in signed.signatures:
        key = jwcrypto_jwk.JWK.from_pyca(certificate_of(signature.jws).public_key())
        token = jwcrypto_jws.JWS()
        token.deserialize(signature.jws)
        token.verify(key, alg="ES256", detached_payload=payload)
        header = token.jose_header
        assert (header["alg"], header["record_id"], header["version"], header["role"]) == (
            "ES256", "rec-0004", 1, signature.role,
        )
        assert {"signed_at", "digest", "prev", "kid", "x5c"} <= set(header)


def test_jwcrypto_refuses_the_signature_over_altered_content(signed):
    signature = signed.signatures[1]
    key = jwcrypto_jwk.JWK.from_pyca(certificate_of(signature.jws).public_key())
    token = jwcrypto_jws.JWS()
    token.deserialize(signature.jws)
    altered = canonical_json({**signed.record.document, "class_name": "6A9"})
    with pytest.raises(JWException):
        token.verify(key, alg="ES256", detached_payload=altered)


def test_joserfc_verifies_the_detached_compact_form_too(signed):
    signature = signed.signatures[2]
    pem = certificate_of(signature.jws).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # joserfc caps headers at 512 bytes by default (ours carry a certificate) and refuses private
    # header names unless told; both are its own policy, not the standard's.
    registry = joserfc_jws.JWSRegistry(algorithms=["ES256"], strict_check_header=False)
    registry.max_header_length = 8192
    result = joserfc_jws.deserialize_compact(
        signature.jws, ECKey.import_key(pem), registry=registry, payload=canonical_json(signed.record.document)
    )
    assert result.protected["role"] == "school_seal"
