"""Certified copies sealed PAdES B-LT in the test process: the development TSA answering in process, and the seal's
signature made by signing's own handler (`seal_copy`) or, where no signing service is in the test, by the seal's key."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asn1crypto import tsp
from pyhanko.sign.timestamps import TimeStamper

from hocba.pades import AskSeal, CopySealing, seal_chain
from hocba.pdf import copy_pdf_bytes
from hocba.tsa import TimeStampAuthority, from_pki
from shared.contracts.signing import CopySeal, seal_subject
from shared.crypto.certs import load_crls, to_x5c
from shared.crypto.pki import DevPki


class InProcessTimeStamper(TimeStamper):
    """The development TSA (hocba.tsa) answering pyHanko's requests in this process, and counting them."""

    def __init__(self, authority: TimeStampAuthority) -> None:
        super().__init__()
        self.authority = authority
        self.requests = 0

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        self.requests += 1
        return tsp.TimeStampResp.load(self.authority.answer(req.dump()))


def sealing(pki: DevPki, timestamper: TimeStamper | None = None) -> CopySealing:
    """Sealing against the PKI's trust anchors and CRLs, timestamped by its TSA in process (by default)."""
    return CopySealing.of(timestamper or InProcessTimeStamper(from_pki(pki)), pki.anchors(), load_crls(pki.crl_path))


def key_ask(pki: DevPki, school_code: str) -> AskSeal:
    """The seal's signature made with the seal's key here, as signing's handler makes it (for tests without it)."""
    signer = pki.signer(seal_subject(school_code))

    async def ask(attributes: bytes) -> CopySeal:
        signature = base64.b64encode(signer.sign_raw(attributes)).decode()
        return CopySeal(signature=signature, chain=to_x5c(signer.chain), signed_at=datetime.now(UTC))

    return ask


async def sealed_copy(pki: DevPki, bundle: dict[str, Any], qr: str, ask: AskSeal | None = None) -> bytes:
    """The copy of `bundle` as `hocba archive print` writes it: the unsigned PDF/A-3 sealed PAdES B-LT."""
    unsigned = copy_pdf_bytes(bundle, qr, datetime.now(UTC))
    school = bundle["record"]["school_code"]
    return await sealing(pki).seal(unsigned, seal_chain(bundle), ask or key_ask(pki, school))


async def sealed_file(pki: DevPki, exported: Any, path: Path) -> Path:
    """`exported`'s copy (an archive's `ProofReply` for a certified copy) written to `path` as `hocba archive print`
    writes it: sealed."""
    path.write_bytes(await sealed_copy(pki, exported.bundle, exported.qr))
    return path
