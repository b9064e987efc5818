"""What this machine does without hocba, measured beside hocba in the same run: the ceilings benchmarks report against."""

from __future__ import annotations

import time

from shared.crypto.canonical import canonical_json
from shared.crypto.jws import EcSigner


def raw_es256_rate(documents: list[dict]) -> float:
    """ES256 signatures per second over each document's canonical bytes, one process, no I/O."""
    signer = EcSigner.generate("bench")
    payloads = [canonical_json(d) for d in documents]
    began = time.perf_counter()
    for payload in payloads:
        signer.sign_raw(payload)
    return len(payloads) / (time.perf_counter() - began)
