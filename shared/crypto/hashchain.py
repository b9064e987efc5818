"""A hash chain: each entry's hash covers the previous entry's hash and its own content."""

from __future__ import annotations

import hashlib

GENESIS = "0" * 64


def chain_hash(previous_hash: str, content_digest: str, seq: int) -> str:
    """SHA-256 over `seq ‖ previous hash ‖ content digest`, so no entry can be moved or altered."""
    data = f"{seq}:{previous_hash}:{content_digest}".encode()
    return hashlib.sha256(data).hexdigest()


def verify_chain(entries: list[tuple[int, str, str, str]]) -> int | None:
    """Check `(seq, previous_hash, content_digest, entry_hash)` rows in order.

    Returns the first seq that breaks the chain, or None when the chain holds.
    """
    previous = GENESIS
    for expected_seq, (seq, prev, content, entry) in enumerate(entries):
        if seq != expected_seq or prev != previous or chain_hash(prev, content, seq) != entry:
            return seq
        previous = entry
    return None
