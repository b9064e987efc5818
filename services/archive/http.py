"""The archive's public HTTP routes, beside /metrics and /health on its port: the log held to its word by anyone.

No sign-in, and nothing about a student: signed checkpoints, and RFC 9162 proofs (hashes) between them. A third
party that holds two checkpoints (the ministry, an auditor) asks for the consistency proof between them; one that
holds a record's leaf hash (from its bundle, or the ministry's payload) asks for its inclusion proof. Each answer is
checked by its asker against checkpoints whose signatures it verifies itself: the server is not trusted.

    GET /v1/log/checkpoint                              the latest signed checkpoint
    GET /v1/log/checkpoints/{tree_size}                 the signed checkpoint of that size
    GET /v1/log/consistency?first=M[&second=N]          the proof that the log of N entries extends that of M
    GET /v1/log/inclusion?index=I[&tree_size=N]         the proof that leaf I is in the log of N entries

`second` and `tree_size` default to the latest checkpoint's size, and may be no larger: proofs are given only about
the log as it was signed. Answers are JSON; a checkpoint is written as signed (`issued_at` to the millisecond). An
unreadable question is answered 400, a size or leaf the signed log does not have 404, each with a sentence in `error`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, Router

from services.archive.handlers import Deps, consistency_between, grown_to
from shared.contracts.archive import Checkpoint
from shared.errors import InvalidMessage


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
            return JSONResponse(body, status_code=status)

        return endpoint

    return Router(
        routes=[
            Route("/v1/log/checkpoint", answering("checkpoint", latest_checkpoint), methods=["GET"]),
            Route("/v1/log/checkpoints/{tree_size}", answering("checkpoint", checkpoint_of_size), methods=["GET"]),
            Route("/v1/log/consistency", answering("consistency", consistency), methods=["GET"]),
            Route("/v1/log/inclusion", answering("inclusion", inclusion), methods=["GET"]),
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
    return {"checkpoint": as_written(latest)}


async def checkpoint_of_size(request: Request, deps: Deps) -> dict[str, Any]:
    size = number(request, "tree_size")
    found = await deps.repo.checkpoint(size)
    if found is None:
        raise Unanswerable(404, f"the archive signed no checkpoint of tree size {size}")
    return {"checkpoint": as_written(found)}


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
