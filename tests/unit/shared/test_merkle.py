"""RFC 9162 Merkle tree: the published transparency-dev proof vectors, and proofs our tree produces."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.crypto.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[3].parent / "shared" / "testdata" / "rfc9162"


def cases(kind: str) -> list[tuple[str, dict]]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    return [(str(f.relative_to(VECTORS)), json.loads(f.read_text())) for f in files]


def b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def test_the_published_vectors_are_there():
    assert len(cases("inclusion")) > 50 and len(cases("consistency")) > 50, f"no vectors under {VECTORS}"


@pytest.mark.parametrize(("name", "case"), cases("inclusion"), ids=lambda v: v if isinstance(v, str) else "")
def test_inclusion_vector(name, case):
    ok = verify_inclusion(
        case["leafIdx"], case["treeSize"], b64(case["leafHash"]), [b64(p) for p in case["proof"] or []], b64(case["root"])
    )
    assert ok is not case["wantErr"], f"{name}: {case['desc']}"


@pytest.mark.parametrize(("name", "case"), cases("consistency"), ids=lambda v: v if isinstance(v, str) else "")
def test_consistency_vector(name, case):
    ok = verify_consistency(
        case["size1"], case["size2"], b64(case["root1"]), b64(case["root2"]), [b64(p) for p in case["proof"] or []]
    )
    assert ok is not case["wantErr"], f"{name}: {case['desc']}"


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 9162 §2.1.1."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def leaves(n: int) -> list[bytes]:
    return [leaf_hash(f"entry {i}".encode()) for i in range(n)]


def test_hashing_is_rfc9162s_with_domain_separation():
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    assert MerkleTree().root() == hashlib.sha256(b"").digest()


def test_the_tree_reproduces_the_published_root_of_eight_leaves():
    # The leaves behind the vectors: RFC 6962's test data (transparency-dev/merkle testonly).
    data = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
    tree = MerkleTree(leaf_hash(bytes.fromhex(d)) for d in data)
    assert base64.b64encode(tree.root()).decode() == "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg="
    happy = json.loads((VECTORS / "inclusion" / "1" / "happy-path.json").read_text())
    assert [base64.b64encode(p).decode() for p in tree.inclusion_proof(happy["leafIdx"], happy["treeSize"])] == happy["proof"]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.data())
def test_roots_and_proofs_for_every_earlier_size_verify(n, data):
    all_leaves = leaves(n)
    tree = MerkleTree(all_leaves)
    size = data.draw(st.integers(min_value=1, max_value=n))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    first = data.draw(st.integers(min_value=1, max_value=size))
    root = tree.root(size)
    assert root == reference_root(all_leaves[:size])
    proof = tree.inclusion_proof(index, size)
    assert verify_inclusion(index, size, all_leaves[index], proof, root)
    assert not verify_inclusion(index, size, leaf_hash(b"forged"), proof, root)
    consistency = tree.consistency_proof(first, size)
    assert verify_consistency(first, size, tree.root(first), root, consistency)
    if first < size:
        assert not verify_consistency(first, size, leaf_hash(b"other history"), root, consistency)


def test_a_corrupted_proof_fails():
    tree = MerkleTree(leaves(13))
    proof = tree.inclusion_proof(5)
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
        assert not verify_inclusion(5, 13, tree.leaf(5), bad, tree.root())
    assert not verify_inclusion(5, 13, tree.leaf(5), proof[:-1], tree.root())
    assert not verify_inclusion(5, 13, tree.leaf(5), [*proof, proof[0]], tree.root())
