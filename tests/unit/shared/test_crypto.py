"""Canonical JSON (fast path against the RFC 8785 reference), detached ES256 JWS, and the archive log's leaves."""

from __future__ import annotations

import json

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.crypto.archive_log import Leaf, fields_of
from shared.crypto.canonical import canonical_json, digest
from shared.crypto.jws import (
    EcSigner,
    b64url_decode,
    jwk_public_key,
    protected_header,
    sign_compact,
    sign_detached,
    verify_compact,
    verify_detached,
)


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


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**60), max_value=2**60) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_the_fast_path_gives_exactly_the_rfc8785_reference_bytes(value):
    try:
        expected = rfc8785.dumps(value)
    except (rfc8785.IntegerDomainError, UnicodeEncodeError, ValueError):
        return
    assert canonical_json(value) == expected


def test_compact_jws_carries_its_payload_and_verifies():
    signer = EcSigner.generate("k2")
    token = sign_compact(signer, b'{"r":"x"}', {"typ": "t"})
    assert verify_compact(signer.key.public_key(), token) == b'{"r":"x"}'
    assert verify_compact(EcSigner.generate("other").key.public_key(), token) is None


def leaf(**changes) -> Leaf:
    fields = dict(
        seq=3, record_id="rec-1", version=1, school_code="79000701", school_year="2025-2026", student_ref="s1",
        content=canonical_json({"conduct": "Tốt"}), signatures=["a..b", "c..d"], archived_at="2026-05-20T08:00:00.000Z",
    )
    return Leaf(**{**fields, **changes})


def test_a_log_leaf_is_the_rfc8785_json_of_the_entry_with_grades_seal_when_it_has_one():
    """The document sits in the leaf as its canonical bytes: the leaf is the RFC 8785 JSON of the entry with the
    document as an object."""
    unsealed, sealed = leaf(), leaf(seal="h..s")
    as_json = {**fields_of(unsealed), "signatures": list(unsealed.signatures), "document": {"conduct": "Tốt"}}
    del as_json["seal"], as_json["content"]
    assert unsealed.data() == rfc8785.dumps(as_json), "an entry without a seal hashes as entries always did"
    assert sealed.data() == rfc8785.dumps({**as_json, "seal": "h..s"})
    assert sealed.hash() != unsealed.hash() != leaf(seal="x..y").hash(), "the seal cannot be taken off or swapped"
    assert sealed.record()["seal"] == "h..s" and "seal" not in unsealed.record()
