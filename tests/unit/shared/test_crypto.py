"""Canonical JSON, detached ES256 JWS and the hash chain."""

from __future__ import annotations

import json

from shared.crypto.canonical import canonical_json, digest
from shared.crypto.hashchain import GENESIS, chain_hash, verify_chain
from shared.crypto.jws import EcSigner, b64url_decode, jwk_public_key, protected_header, sign_detached, verify_detached


def test_canonical_json_sorts_keys_and_drops_whitespace():
    assert canonical_json({"b": 1, "a": [1.5, "x"], "c": {"z": None, "y": True}}) == (
        b'{"a":[1.5,"x"],"b":1,"c":{"y":true,"z":null}}'
    )
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})


def test_canonical_json_rfc8785_numbers_and_strings():
    # RFC 8785 §3.2.2.3: numbers in ECMAScript form; strings keep non-ASCII as UTF-8.
    assert canonical_json([1e21, 0.000001, -0.0, 100]) == b"[1e+21,0.000001,0,100]"
    assert canonical_json({"tên": "Nguyễn"}) == '{"tên":"Nguyễn"}'.encode()


def test_detached_jws_verifies_only_for_its_payload():
    signer = EcSigner.generate("k1")
    payload = canonical_json({"record_id": "r1", "version": 1})
    jws = sign_detached(signer, payload, {"role": "principal"})
    header_b64, empty, signature = jws.split(".")
    assert empty == "", "the payload is detached"
    assert len(b64url_decode(signature)) == 64
    assert protected_header(jws) == {"alg": "ES256", "kid": "k1", "role": "principal"}
    key = jwk_public_key(signer.public_jwk())
    assert verify_detached(key, jws, payload)
    assert not verify_detached(key, jws, payload.replace(b"1}", b"2}"))
    assert not verify_detached(EcSigner.generate("other").key.public_key(), jws, payload)
    assert json.loads(b64url_decode(header_b64))["alg"] == "ES256"


def test_hash_chain_detects_altered_moved_and_removed_entries():
    rows, previous = [], GENESIS
    for seq, content in enumerate(["a" * 64, "b" * 64, "c" * 64]):
        entry = chain_hash(previous, content, seq)
        rows.append((seq, previous, content, entry))
        previous = entry
    assert verify_chain(rows) is None
    altered = [*rows[:1], (1, rows[1][1], "d" * 64, rows[1][3]), *rows[2:]]
    assert verify_chain(altered) == 1
    assert verify_chain([rows[0], rows[2]]) == 2
    assert verify_chain([rows[1], rows[0], rows[2]]) == 1
