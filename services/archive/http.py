"""The archive's public HTTP routes, beside /metrics and /health on its port: the log held to its word by anyone.

No sign-in, and nothing about a student: signed checkpoints, and RFC 9162 proofs (hashes) between them. A third
party that holds two checkpoints (the ministry, an auditor) asks for the consistency proof between them; one that
holds a record's leaf hash (from its bundle, or the ministry's payload) asks for its inclusion proof. Each answer is
checked by its asker against checkpoints whose signatures it verifies itself: the server is not trusted.

    GET /v1/log/checkpoint                              the latest signed checkpoint
    GET /v1/log/checkpoints/{tree_size}                 the signed checkpoint of that size
                                                        (each with `timestamps`: its RFC 3161 tokens, base64 DER,
                                                        the first then each renewal; shared.crypto.timestamps)
    GET /v1/log/consistency?first=M[&second=N]          the proof that the log of N entries extends that of M
    GET /v1/log/inclusion?index=I[&tree_size=N]         the proof that leaf I is in the log of N entries
    GET /verify                                         the verification page: drop a bundle or a PDF copy on it
    GET /v/{leaf_index}.{key}                           the page at a printed copy's QR address, which verifies it
    GET /v1/copies/{leaf_index}.{key}                   that copy's verification bundle (and its superseding one's)

`second` and `tree_size` default to the latest checkpoint's size, and may be no larger: proofs are given only about
the log as it was signed. Answers are JSON; a checkpoint is written as signed (`issued_at` to the millisecond). An
unreadable question is answered 400, a size or leaf the signed log does not have 404, each with a sentence in `error`.

The verification page (`verify_page/`) checks everything in the reader's browser (WebCrypto ES256, RFC 8785, RFC 9162,
certificate chains to the trust anchor the page ships and shows by its SHA-256 fingerprint): the server only hands it
the files. A printed copy's address names its leaf and `key`, the first 16 characters of the base64url leaf hash
(`shared.crypto.bundle.address_key`), printed on the paper: whoever holds the address holds the paper. A wrong key
and a leaf the log does not have get the same 404, so leaf indexes cannot be walked; the key is compared in constant
time and never logged.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from services.archive.domain import Entry
from services.archive.handlers import Deps, consistency_between, grown_to, verification_bundle
from shared.access import PUBLIC_READER
from shared.contracts.archive import Checkpoint
from shared.crypto.bundle import ADDRESS_KEY_LENGTH, address_key
from shared.errors import InvalidMessage, Unavailable

#: The verification page's files: the page, its script and its style sheet.
PAGE_FILES = Path(__file__).parent / "verify_page"
ASSETS = {"verify.js": "text/javascript; charset=utf-8", "verify.css": "text/css; charset=utf-8"}
_ADDRESS = re.compile(r"(\d{1,12})\.([A-Za-z0-9_-]{1,64})")
#: What the page may do: its own script and style, ask its own origin, nothing else; and it leaks no address onward.
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}
NO_SUCH_COPY = (
    "Không có bản sao ở địa chỉ này: hãy xem lại địa chỉ in dưới mã QR. / "
    "No copy at this address: check the address printed under the QR code."
)


class Unanswerable(Exception):
    """A question the routes answer with an error: its HTTP status and a sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def public_routes(deps: Deps) -> Router:
    """The public routes over the archive's log state and stored checkpoints (an ASGI app)."""

    def answering(name: str, answer: Any) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                body, status = await answer(request, deps), 200
            except Unanswerable as exc:
                body, status = {"error": str(exc)}, exc.status
            deps.metrics.public_reads.labels(name, str(status)).inc()
            return JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})

        return endpoint

    def serving(name: str, answer: Any) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                response = await answer(request, deps)
            except Unanswerable as exc:
                response = Response(str(exc), status_code=exc.status, media_type="text/plain; charset=utf-8")
                response.headers.update(PAGE_HEADERS)
            deps.metrics.public_reads.labels(name, str(response.status_code)).inc()
            return response

        return endpoint

    return Router(
        routes=[
            Route("/v1/log/checkpoint", answering("checkpoint", latest_checkpoint), methods=["GET"]),
            Route("/v1/log/checkpoints/{tree_size}", answering("checkpoint", checkpoint_of_size), methods=["GET"]),
            Route("/v1/log/consistency", answering("consistency", consistency), methods=["GET"]),
            Route("/v1/log/inclusion", answering("inclusion", inclusion), methods=["GET"]),
            Route("/v1/copies/{address}", answering("copy", copy_bundle), methods=["GET"]),
            Route("/verify", serving("verify-page", verify_page), methods=["GET"]),
            Route("/verify/{asset}", serving("verify-asset", page_asset), methods=["GET"]),
            Route("/v/{address}", serving("copy-page", copy_page), methods=["GET"]),
        ]
    )


def as_written(checkpoint: Checkpoint) -> dict[str, Any]:
    """A checkpoint's fields as its signature covers them."""
    return checkpoint.model_dump(mode="json")


async def signed_size(deps: Deps) -> int:
    """The tree size of the latest signed checkpoint: what proofs may be asked about."""
    latest = await deps.repo.checkpoint()
    if latest is None:
        raise Unanswerable(404, "the archive has signed no checkpoint yet")
    return latest.tree_size


def number(request: Request, name: str, default: int | None = None) -> int:
    """A whole-number parameter of the question (path or query), or 400 saying which one is wrong."""
    raw = request.path_params.get(name, request.query_params.get(name))
    if raw is None:
        if default is None:
            raise Unanswerable(400, f"say which {name}: ?{name}=N")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Unanswerable(400, f"{name} must be a whole number, not {str(raw)[:40]!r}") from None
    if value < 0:
        raise Unanswerable(400, f"{name} must not be negative")
    return value


async def latest_checkpoint(request: Request, deps: Deps) -> dict[str, Any]:
    latest = await deps.repo.checkpoint()
    if latest is None:
        raise Unanswerable(404, "the archive has signed no checkpoint yet")
    return {"checkpoint": as_written(latest), "timestamps": await timestamps_of(deps, latest.tree_size)}


async def checkpoint_of_size(request: Request, deps: Deps) -> dict[str, Any]:
    size = number(request, "tree_size")
    found = await deps.repo.checkpoint(size)
    if found is None:
        raise Unanswerable(404, f"the archive signed no checkpoint of tree size {size}")
    return {"checkpoint": as_written(found), "timestamps": await timestamps_of(deps, size)}


async def timestamps_of(deps: Deps, tree_size: int) -> list[str]:
    """The checkpoint's RFC 3161 tokens, the first then each renewal, as base64 DER (empty while it waits for one)."""
    return [base64.b64encode(row.token).decode() for row in await deps.repo.timestamps(tree_size)]


async def consistency(request: Request, deps: Deps) -> dict[str, Any]:
    """The consistency proof from `first` to `second`, with both roots and the checkpoints signed at those sizes."""
    signed = await signed_size(deps)
    first = number(request, "first")
    second = number(request, "second", signed)
    if not 0 < first <= second <= signed:
        raise Unanswerable(
            404, f"no consistency proof from {first} to {second}: sizes from 1 up to {signed}, the latest checkpoint's"
        )
    try:
        proof = await consistency_between(first, second, deps)
    except InvalidMessage as exc:
        raise Unanswerable(404, str(exc)) from None
    return {
        "first": proof.first,
        "second": proof.second,
        "first_root": proof.first_root,
        "second_root": proof.second_root,
        "proof": proof.proof,
        "checkpoints": await checkpoints_at(deps, first, second),
    }


async def inclusion(request: Request, deps: Deps) -> dict[str, Any]:
    """The inclusion proof of leaf `index` in the log of `tree_size` entries, with its leaf hash and checkpoint."""
    signed = await signed_size(deps)
    index = number(request, "index")
    size = number(request, "tree_size", signed)
    if not index < size <= signed:
        raise Unanswerable(
            404, f"no leaf {index} in a signed log of {size} entries: sizes up to {signed}, the latest checkpoint's"
        )
    tree = (await grown_to(size, deps)).tree
    if size > tree.size:
        raise Unanswerable(404, f"the log holds {tree.size} entries, not {size}")
    return {
        "leaf_index": index,
        "tree_size": size,
        "leaf_hash": tree.leaf(index).hex(),
        "proof": [p.hex() for p in tree.inclusion_proof(index, size)],
        "checkpoint": (await checkpoints_at(deps, size))[0] if size else None,
    }


async def checkpoints_at(deps: Deps, *sizes: int) -> list[dict[str, Any] | None]:
    """The signed checkpoint of each size, as written, or None where none was signed at that size."""
    found = [await deps.repo.checkpoint(size) for size in sizes]
    return [as_written(c) if c is not None else None for c in found]


# --- the verification page and the copies it verifies -------------------------------------------------------------


async def addressed_entry(request: Request, deps: Deps) -> tuple[Entry, Checkpoint]:
    """The log entry a copy's address names, and the latest checkpoint, which covers it; the same 404 for an address
    that cannot be read, a leaf the signed log does not have and a wrong key, so no answer tells which."""
    found = _ADDRESS.fullmatch(request.path_params["address"])
    checkpoint = await deps.repo.checkpoint()
    try:
        entry = await deps.repo.entry_at(int(found.group(1))) if found and checkpoint is not None else None
    except Unavailable:  # its stored document does not decrypt: the operator's audit names it, not this answer
        raise Unanswerable(503, "the archive cannot read this copy now; try again later") from None
    expected = address_key(entry.leaf_hash) if entry is not None else "-" * ADDRESS_KEY_LENGTH
    given = found.group(2) if found else ""
    # Compared in constant time whatever was found, so no answer tells a wrong key from a leaf the log does not have
    # but by its status, which is the same (the log's size, which leaves exist, is public in its signed checkpoints).
    right = hmac.compare_digest(given.encode(), expected.encode())
    if entry is None or checkpoint is None or not right or entry.seq >= checkpoint.tree_size:
        raise Unanswerable(404, NO_SUCH_COPY)
    return entry, checkpoint


PUBLIC_PURPOSE = "a printed copy's address opened on the public verification page"


async def copy_bundle(request: Request, deps: Deps) -> dict[str, Any]:
    """The verification bundle of the copy at the address, up to the latest checkpoint; and, when a later version
    supersedes it, that version's bundle too, so the page can check the superseding version's signed amendment."""
    entry, checkpoint = await addressed_entry(request, deps)
    await grown_to(checkpoint.tree_size, deps)
    bundle = await verification_bundle(entry, checkpoint, deps)
    # The bundle is the student's signed record: its read is logged like any other, by the anonymous reader.
    read = deps.access.entries(PUBLIC_READER, "verify", [entry.student_ref], PUBLIC_PURPOSE, entry.record_id)
    await deps.access_log.add(read)
    superseding = None
    later = bundle["status"].get("superseded_by")
    if later is not None:
        newer = await deps.repo.entry(entry.record_id, later)
        if newer is not None and newer.seq < checkpoint.tree_size:
            superseding = await verification_bundle(newer, checkpoint, deps)
    return {"bundle": bundle, "superseded_by": superseding}


def anchors_of(deps: Deps) -> list[bytes]:
    """The DER of each trust anchor the archive checks signatures against: the department's root, and the roots of
    the licensed CAs it trusts (none when it checks none)."""
    if deps.keys.trust is None:
        return []
    try:
        anchors = deps.keys.trust().anchors
    except FileNotFoundError:
        return []
    return [anchor.public_bytes(Encoding.DER) for anchor in anchors]


def page(deps: Deps) -> Response:
    """The verification page, shipping the trust anchors (DER, base64) and their SHA-256 fingerprints."""
    anchors = anchors_of(deps)
    html = page_file("index.html").decode("utf-8")
    html = html.replace("{{anchor}}", " ".join(base64.b64encode(a).decode() for a in anchors))
    html = html.replace("{{anchor_sha256}}", " ".join(hashlib.sha256(a).hexdigest() for a in anchors))
    return Response(html, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


async def verify_page(request: Request, deps: Deps) -> Response:
    return page(deps)


async def copy_page(request: Request, deps: Deps) -> Response:
    """The page at a copy's QR address, once the address names a copy (404 otherwise)."""
    await addressed_entry(request, deps)
    return page(deps)


async def page_asset(request: Request, deps: Deps) -> Response:
    name = request.path_params["asset"]
    if name not in ASSETS:
        raise Unanswerable(404, "no such file")
    return Response(page_file(name), media_type=ASSETS[name], headers=PAGE_HEADERS)


@functools.cache
def page_file(name: str) -> bytes:
    """One of the page's files, read once: they ship with the service and do not change while it runs."""
    return (PAGE_FILES / name).read_bytes()
