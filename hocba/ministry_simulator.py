"""A simulator standing in for the Ministry of Education and Training's record endpoint (development and tests).

It is not the ministry's API and makes no claim to match it beyond what hocba relies on
(docs/ministry-api.md): idempotent writes keyed by the `Idempotency-Key` header, answered with a
receipt, and listings of what was acknowledged, for reconciliation.

    python -m hocba.ministry_simulator --host 127.0.0.1 --port 9180 [--data-file PATH]

Endpoints:

* `POST /v1/records` (header `Idempotency-Key`, JSON body with at least `record_id`, `version`,
  `digest` and a 12-digit `personal_id`): the first request with a key is stored and answered 201
  with a receipt `{"receipt_id", "received_at", "idempotency_key", "record_id", "version", "digest"}`;
  the same key again is answered 200 with the same receipt and counted as a duplicate. 400 without
  the header, 422 for a body without the required fields, 409 when a known key arrives with a
  different digest (one key must always mean the same record version).
* `POST /v1/checkpoints`: the same for an archive checkpoint (`origin`, `tree_size`, `root_hash`, `issued_at`,
  `signature`, and `consistency` once a checkpoint of its origin is held); the receipt repeats the checkpoint whole
  (`origin`, `tree_size`, `root_hash`, `issued_at`, `signature`). The simulator is a witness of the archive's log: a
  new checkpoint is taken only when its signature, over its fields as written, is an archive certificate's that
  chains to the department's trust anchor, and its `consistency` proof (RFC 9162 §2.1.4) links it with the latest
  checkpoint of its origin held here (from that one to it, or from it to that one when it is the older). Refused:
  422 `unsigned` (no signature), `bad-signature` (it does not verify, or its certificate is not the archive's or
  does not chain to the anchor), `no-anchor` (started without one), `bad-proof` (a proof that cannot be read) or
  `inconsistent` (the proof does not hold: the log was rewritten); 412 `not-linked`, with `latest_tree_size`, when
  the proof does not link it with the latest checkpoint held (another arrived meanwhile: ask for a new proof).
* `POST /v1/batch`, body `{"items": [{"kind": "record"|"checkpoint", "idempotency_key": KEY, "body": {...}}]}`
  with 1 to 100 items: each item is taken as its own write and answered on its own, 200 with
  `{"results": [{"idempotency_key", "status", "receipt"} or {"idempotency_key", "status", "error"}]}` in
  the items' order (`status` is what the single endpoint would have answered). 422 for a body
  without an items list, 413 for more than 100 items.
* `GET /v1/records/{key}`: that key's receipt, or 404.
* `GET /v1/receipts[?after=KEY&limit=N]`: `{"receipts": [...], "next": KEY|null}`, the record
  acknowledgements in key order (all of them without `limit`); `GET /v1/checkpoints` likewise.
* `GET /v1/stats`: `{"accepted", "duplicates", "requests", "checkpoints", "acknowledgements", "batches"}` —
  `accepted` counts the record keys held (loaded ones included), `acknowledgements` every receipt
  issued for records (more than `accepted` after duplicate acknowledgements); `duplicates` and
  `requests` count record writes since the process started (one per record, alone or in a batch),
  `batches` the batch requests.
* `POST /v1/faults`, to rehearse trouble (every field optional; `GET` shows the current ones):
  `{"latency_seconds": s}` every request waits s seconds first;
  `{"fail_next": n, "fail_status": 503}` the next n writes answer that status without storing;
  `{"timeout_next": n, "hang_seconds": s}` the next n writes hang s seconds, store nothing, then 504;
  `{"lose_next": n, "hang_seconds": s}` the next n writes are stored, then the answer is lost: the
  request hangs s seconds (past the caller's timeout) and ends in 504;
  `{"duplicate_next": n}` the next n new keys are acknowledged twice (two receipts, listed both);
  `{"fail_items_next": n}` the next n items of batches are answered `fail_status` each, not stored,
  while the rest of their batch is.
  A batch counts as as many writes as it has items: a fault for the next n writes hits the whole
  batch (as a broken connection would) and uses up as many of the n as the batch has items.
  `{"reset": true}` clears every fault.
* `GET /health/live`.

With `--data-file`, every new receipt is appended as one JSON line to the file, which is read at
start and then kept open (0600) for appending, so a restarted simulator still knows every key it
has acknowledged, and every checkpoint it holds.

The trust anchor is `--anchor` (with the CRL `--crl`), else the PKI's at `HOCBA_PKI_DIR` (`ca/root.crt.pem`,
`ca/crl.pem`), as `hocba up` gives every process it starts. Without one, every new checkpoint is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from uuid import uuid4

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hocba.infra import private_folder, private_opener
from shared.crypto.archive_log import CHECKPOINT_FIELDS, check_checkpoint_fields
from shared.crypto.certs import ReloadingTrust, TrustStore
from shared.crypto.merkle import HASH_SIZE, verify_consistency
from shared.settings import DEFAULT_HTTP_PORTS

IDEMPOTENCY_HEADER = "Idempotency-Key"
RECORD = "record"
CHECKPOINT = "checkpoint"
REQUIRED_FIELDS = {
    RECORD: ("record_id", "version", "digest", "personal_id"),
    CHECKPOINT: ("origin", "tree_size", "root_hash"),
}
#: What a receipt repeats of the body, per kind; the first field pair names the entry. A checkpoint is held whole.
ECHOED = {RECORD: ("record_id", "version", "digest"), CHECKPOINT: CHECKPOINT_FIELDS}
#: The field that must stay the same for one key.
DIGEST = {RECORD: "digest", CHECKPOINT: "root_hash"}
PERSONAL_ID = re.compile(r"^\d{12}$")
#: Items one batch request may carry at most.
BATCH_LIMIT = 100

log = logging.getLogger("hocba.ministry_simulator")


@dataclass
class Faults:
    """What the simulated ministry does wrong next (see the module's docstring)."""

    latency_seconds: float = 0.0
    fail_next: int = 0
    fail_status: int = 503
    timeout_next: int = 0
    lose_next: int = 0
    duplicate_next: int = 0
    fail_items_next: int = 0
    hang_seconds: float = 30.0

    def update(self, body: dict[str, Any]) -> None:
        if body.get("reset"):
            for f in fields(self):
                setattr(self, f.name, f.default)
        for f in fields(self):
            if f.name in body:
                kind = float if f.type in ("float", float) else int
                value = kind(body[f.name])
                if value < 0 or (f.name == "fail_status" and not 400 <= value <= 599):
                    raise ValueError(f"{f.name} out of range: {value}")
                setattr(self, f.name, value)


class ReceiptStore:
    """The receipts the simulated ministry has issued, by kind and idempotency key."""

    def __init__(self, data_file: Path | None = None, trust: Callable[[], TrustStore] | None = None) -> None:
        self.data_file = data_file
        #: The department's trust anchor and CRL, which a checkpoint's signature must chain to (None: none given).
        self.trust = trust
        self.receipts: dict[str, dict[str, Any]] = {}
        self.checkpoints: dict[str, dict[str, Any]] = {}
        #: Second acknowledgements of keys already acknowledged (the duplicate-acknowledgement fault).
        self.extra: dict[str, list[dict[str, Any]]] = {RECORD: [], CHECKPOINT: []}
        self.duplicates = 0
        self.requests = 0
        self.batches = 0
        self.faults = Faults()
        #: The data file, open for appending one line per receipt (line-buffered: each line reaches the file whole).
        self.out: IO[str] | None = None
        if data_file is not None:
            # The receipts are the stack's data like any other: 0600, in a folder of its user's own.
            private_folder(data_file.parent)
            if data_file.exists():
                with data_file.open(encoding="utf-8") as lines:
                    for line in lines:
                        if line.strip():
                            self._load(json.loads(line))
            self.out = open(data_file, "a", encoding="utf-8", buffering=1, opener=private_opener)  # noqa: SIM115 - kept open until close()

    def close(self) -> None:
        """Close the data file (a store without one has nothing to close)."""
        if self.out is not None:
            self.out.close()
            self.out = None

    def _load(self, line: dict[str, Any]) -> None:
        kind, extra = line.pop("kind", RECORD), line.pop("extra", False)
        receipt = line
        if extra:
            self.extra[kind].append(receipt)
        else:
            self.held(kind).setdefault(receipt["idempotency_key"], receipt)

    @property
    def fail_next(self) -> int:
        return self.faults.fail_next

    @fail_next.setter
    def fail_next(self, n: int) -> None:
        self.faults.fail_next = n

    @property
    def accepted(self) -> int:
        return len(self.receipts)

    def held(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.receipts if kind == RECORD else self.checkpoints

    def _receipt(self, kind: str, key: str, body: dict[str, Any], extra: bool = False) -> dict[str, Any]:
        receipt = {
            "receipt_id": f"MOET-{uuid4().hex}",
            "received_at": datetime.now(UTC).isoformat(),
            "idempotency_key": key,
            **{name: body.get(name) for name in ECHOED[kind]},
        }
        if self.out is not None:
            line = {**receipt, "kind": kind, **({"extra": True} if extra else {})}
            self.out.write(json.dumps(line, ensure_ascii=False) + "\n")
        return receipt

    def accept(self, key: str, body: dict[str, Any], kind: str = RECORD) -> tuple[dict[str, Any], bool]:
        """The receipt for `key` and whether it is new. Synchronous, so atomic on the event loop."""
        held = self.held(kind)
        known = held.get(key)
        if known is not None:
            if kind == RECORD:
                self.duplicates += 1
            return known, False
        receipt = self._receipt(kind, key, body)
        held[key] = receipt
        if self.faults.duplicate_next > 0:
            self.faults.duplicate_next -= 1
            self.extra[kind].append(self._receipt(kind, key, body, extra=True))
        return receipt, True

    def latest_checkpoint(self, origin: str) -> dict[str, Any] | None:
        """The checkpoint of `origin` with the largest tree held: what a new one must be proven consistent with."""
        held = [c for c in self.checkpoints.values() if c.get("origin") == origin]
        return max(held, key=lambda c: int(c["tree_size"]), default=None)

    def listing(self, kind: str, after: str | None, limit: int | None) -> tuple[list[dict[str, Any]], str | None]:
        """Acknowledgements of `kind` in key order after `after`, at most `limit`; and the cursor for more."""
        extra: dict[str, list[dict[str, Any]]] = {}
        for receipt in self.extra[kind]:
            extra.setdefault(receipt["idempotency_key"], []).append(receipt)
        held = self.held(kind)
        keys = sorted(k for k in set(held) | set(extra) if after is None or k > after)
        if limit is not None and len(keys) > limit:
            keys, more = keys[:limit], True
        else:
            more = False
        items = [r for k in keys for r in ([held[k]] if k in held else []) + extra.get(k, [])]
        return items, (keys[-1] if more and keys else None)

    def stats(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "requests": self.requests,
            "checkpoints": len(self.checkpoints),
            "acknowledgements": self.accepted + len(self.extra[RECORD]),
            "batches": self.batches,
        }


def _error(status: int, message: str, **more: Any) -> JSONResponse:
    return JSONResponse({"error": message, **more}, status_code=status)


@dataclass(frozen=True)
class Refusal:
    """Why a write is not taken: the status answered, a sentence, and for a checkpoint a reason code and details."""

    status: int
    message: str
    more: dict[str, Any] = field(default_factory=dict)

    def response(self) -> JSONResponse:
        return _error(self.status, self.message, **self.more)

    def result(self, key: str) -> dict[str, Any]:
        """As one item's result in a batch answer."""
        return {"idempotency_key": key, "status": self.status, "error": self.message, **self.more}


def witness_refusal(
    body: dict[str, Any], latest: dict[str, Any] | None, trust: Callable[[], TrustStore] | None
) -> Refusal | None:
    """Why a new checkpoint is not taken (None when it is): its signature over its fields as written must be the
    archive certificate's, chaining to the anchor, and its consistency proof must link it with `latest`, the
    checkpoint of its origin with the largest tree held here (none: the first checkpoint needs no proof)."""
    if body.get("signature") in (None, ""):
        return Refusal(422, "the checkpoint is not signed: an unsigned checkpoint proves nothing", {"reason": "unsigned"})
    if trust is None:
        return Refusal(422, "this ministry holds no trust anchor to check checkpoints against (--anchor)", {"reason": "no-anchor"})
    try:
        anchor = trust()
    except (OSError, ValueError) as exc:
        return Refusal(422, f"this ministry cannot read its trust anchor: {exc}", {"reason": "no-anchor"})
    check = check_checkpoint_fields(body, anchor)
    if not check.ok:
        return Refusal(422, "the checkpoint's signature is not the archive's: " + "; ".join(check.failed), {"reason": "bad-signature"})
    if latest is None:
        return None
    return consistency_refusal(body, latest)


def consistency_refusal(body: dict[str, Any], latest: dict[str, Any]) -> Refusal | None:
    """Why the checkpoint's `consistency` proof does not show it and `latest` to be one log (None when it does)."""
    size, held = int(body["tree_size"]), int(latest["tree_size"])
    not_linked = Refusal(
        412,
        f"the checkpoint's consistency proof must link tree size {size} with {held}, the latest checkpoint held: "
        "ask the archive for that proof and send it again",
        {"reason": "not-linked", "latest_tree_size": held},
    )
    proof = body.get("consistency")
    if not isinstance(proof, dict):
        return not_linked
    first, second = sorted([size, held])
    path = proof.get("proof")
    if [proof.get("first"), proof.get("second")] != [first, second]:
        return not_linked
    try:
        hashes = [bytes.fromhex(p) for p in path] if isinstance(path, list) else None
        roots = {size: bytes.fromhex(str(body["root_hash"])), held: bytes.fromhex(str(latest["root_hash"]))}
    except (ValueError, TypeError):
        hashes = None
    if hashes is None or any(len(h) != HASH_SIZE for h in hashes):
        return Refusal(422, "the consistency proof must be a list of 32-byte hashes in hex", {"reason": "bad-proof"})
    if not verify_consistency(first, second, roots[first], roots[second], hashes):
        return Refusal(
            422,
            f"the consistency proof from tree size {first} to {second} does not hold: the log of this checkpoint is not "
            f"an extension of the one held (root {roots[first].hex()[:16]}… of size {first})",
            {"reason": "inconsistent", "latest_tree_size": held},
        )
    return None


def _invalid(kind: str, body: Any) -> str | None:
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    missing = [name for name in REQUIRED_FIELDS[kind] if body.get(name) in (None, "")]
    if missing:
        return f"missing fields: {', '.join(missing)}"
    if kind == RECORD and not PERSONAL_ID.match(str(body["personal_id"])):
        return "personal_id must be 12 digits"
    if kind == CHECKPOINT and (not isinstance(body["tree_size"], int) or isinstance(body["tree_size"], bool) or body["tree_size"] < 1):
        return "tree_size must be a positive whole number"
    return None


class MinistryApi:
    """The simulator's endpoints over one receipt store (and its faults)."""

    def __init__(self, store: ReceiptStore) -> None:
        self.store = store
        self.faults = store.faults

    def routes(self) -> list[Route]:
        return [
            Route("/v1/records", self.post_record, methods=["POST"]),
            Route("/v1/records/{key:path}", self.get_record, methods=["GET"]),
            Route("/v1/receipts", self.listing(RECORD, "receipts"), methods=["GET"]),
            Route("/v1/checkpoints", self.post_checkpoint, methods=["POST"]),
            Route("/v1/batch", self.post_batch, methods=["POST"]),
            Route("/v1/checkpoints", self.listing(CHECKPOINT, "checkpoints"), methods=["GET"]),
            Route("/v1/stats", self.stats, methods=["GET"]),
            Route("/v1/faults", self.set_faults, methods=["POST"]),
            Route("/v1/faults", self.get_faults, methods=["GET"]),
            Route("/health/live", self.live, methods=["GET"]),
        ]

    async def post_record(self, request: Request) -> JSONResponse:
        return await self.write(request, RECORD)

    async def post_checkpoint(self, request: Request) -> JSONResponse:
        return await self.write(request, CHECKPOINT)

    async def write(self, request: Request, kind: str) -> JSONResponse:
        """An idempotent write: faults first, then the request checked, stored once, answered with its receipt."""
        if kind == RECORD:
            self.store.requests += 1
        if failed := await self.fault_before_storing():
            return failed
        accepted = await self.read_write(request, kind)
        if isinstance(accepted, JSONResponse):
            return accepted
        key, body = accepted
        receipt, new = self.store.accept(key, body, kind)
        if lost := await self.lost_answer():
            return lost
        return JSONResponse(receipt, status_code=201 if new else 200)

    async def fault_before_storing(self, writes: int = 1) -> JSONResponse | None:
        """The latency, failure or time-out rehearsed for this request of `writes` writes, if any."""
        faults = self.faults
        if faults.latency_seconds > 0:
            await asyncio.sleep(faults.latency_seconds)
        if faults.fail_next > 0:
            faults.fail_next = max(faults.fail_next - writes, 0)
            return _error(faults.fail_status, "simulated failure")
        if faults.timeout_next > 0:
            faults.timeout_next = max(faults.timeout_next - writes, 0)
            await asyncio.sleep(faults.hang_seconds)
            return _error(504, "simulated timeout: nothing was stored")
        return None

    async def lost_answer(self, writes: int = 1) -> JSONResponse | None:
        """After storing: the answer lost as rehearsed (hanging past the caller's timeout), if any."""
        if self.faults.lose_next <= 0:
            return None
        self.faults.lose_next = max(self.faults.lose_next - writes, 0)
        await asyncio.sleep(self.faults.hang_seconds)
        return _error(504, "simulated lost answer: the write was stored")

    async def read_write(self, request: Request, kind: str) -> tuple[str, dict[str, Any]] | JSONResponse:
        """The write's idempotency key and body, or the answer that refuses it."""
        key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
        if not key:
            return _error(400, f"the {IDEMPOTENCY_HEADER} header is required")
        try:
            body = await request.json()
        except ValueError:
            return _error(422, "the body must be JSON")
        if refused := self.refusal(kind, key, body):
            return refused.response()
        return key, body

    def refusal(self, kind: str, key: str, body: Any) -> Refusal | None:
        """Why a write of `body` under `key` is refused, or None when it is taken (a repeat of a known key included)."""
        if problem := _invalid(kind, body):
            return Refusal(422, problem)
        known = self.store.held(kind).get(key)
        if known is not None and str(known.get(DIGEST[kind])) != str(body[DIGEST[kind]]):
            return Refusal(409, f"idempotency key {key} was already used for a different {DIGEST[kind]}")
        if kind == CHECKPOINT and known is None:
            return witness_refusal(body, self.store.latest_checkpoint(str(body["origin"])), self.store.trust)
        return None

    async def post_batch(self, request: Request) -> JSONResponse:
        """Several writes in one request, each checked, stored once and answered on its own.

        The request's faults (latency, failure, time-out, lost answer) hit the whole batch, as a
        broken connection would; a refused item refuses only itself.
        """
        self.store.batches += 1
        try:
            body = await request.json()
        except ValueError:
            return _error(422, "the body must be JSON")
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return _error(422, "the body must be an object with a non-empty list of items")
        if len(items) > BATCH_LIMIT:
            return _error(413, f"at most {BATCH_LIMIT} items a batch, not {len(items)}")
        self.store.requests += sum(1 for item in items if isinstance(item, dict) and item.get("kind") == RECORD)
        if failed := await self.fault_before_storing(len(items)):
            return failed
        results = [self.batch_item(item) for item in items]
        if lost := await self.lost_answer(len(items)):
            return lost
        return JSONResponse({"results": results})

    def batch_item(self, item: Any) -> dict[str, Any]:
        """One item of a batch: stored and answered as the single endpoint would, or refused alone."""
        if not isinstance(item, dict):
            return {"idempotency_key": None, "status": 422, "error": "an item must be a JSON object"}
        key, kind = str(item.get("idempotency_key") or "").strip(), item.get("kind")
        if not key:
            return {"idempotency_key": None, "status": 400, "error": "an item needs its idempotency_key"}
        if kind not in REQUIRED_FIELDS:
            return {"idempotency_key": key, "status": 422, "error": f"unknown kind {kind!r}"}
        if self.faults.fail_items_next > 0:
            self.faults.fail_items_next -= 1
            return {"idempotency_key": key, "status": self.faults.fail_status, "error": "simulated failure"}
        if refused := self.refusal(kind, key, item.get("body")):
            return refused.result(key)
        receipt, new = self.store.accept(key, item["body"], kind)
        return {"idempotency_key": key, "status": 201 if new else 200, "receipt": receipt}

    async def get_record(self, request: Request) -> JSONResponse:
        receipt = self.store.receipts.get(request.path_params["key"])
        return JSONResponse(receipt) if receipt is not None else _error(404, "no receipt for this key")

    def listing(self, kind: str, name: str) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def handler(request: Request) -> JSONResponse:
            try:
                limit = int(request.query_params["limit"]) if "limit" in request.query_params else None
            except ValueError:
                return _error(422, "limit must be a number")
            items, more = self.store.listing(kind, request.query_params.get("after"), limit)
            return JSONResponse({name: items, "next": more})

        return handler

    async def stats(self, request: Request) -> JSONResponse:
        return JSONResponse(self.store.stats())

    async def set_faults(self, request: Request) -> JSONResponse:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise TypeError("not an object")
            self.faults.update(body)
        except (ValueError, TypeError) as exc:
            return _error(422, f"expected an object of fault settings: {exc}")
        return JSONResponse(asdict(self.faults))

    async def get_faults(self, request: Request) -> JSONResponse:
        return JSONResponse(asdict(self.faults))

    async def live(self, request: Request) -> JSONResponse:
        return JSONResponse({"live": True})


def create_app(store: ReceiptStore | None = None) -> Starlette:
    """The simulator as an ASGI app over `store` (a fresh in-memory one when not given)."""
    api = MinistryApi(store if store is not None else ReceiptStore())
    app = Starlette(routes=api.routes())
    app.state.store = api.store
    return app


def anchor_trust(anchor: Path | None, crl: Path | None) -> Callable[[], TrustStore] | None:
    """The trust anchor and CRL checkpoints are checked against: those given, else the PKI's at HOCBA_PKI_DIR."""
    if anchor is None and os.environ.get("HOCBA_PKI_DIR"):
        anchor = Path(os.environ["HOCBA_PKI_DIR"]) / "ca" / "root.crt.pem"
    if anchor is None:
        return None
    return ReloadingTrust(anchor.resolve(), [(crl or anchor.parent / "crl.pem").resolve()])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hocba.ministry_simulator",
        description="Simulator standing in for the ministry's record endpoint (not the real API).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_HTTP_PORTS["ministry-simulator"])
    parser.add_argument(
        "--data-file", type=Path, default=None, help="JSON lines file that keeps receipts across restarts"
    )
    parser.add_argument(
        "--anchor", type=Path, default=None,
        help="the department's trust anchor (PEM) checkpoints must chain to; default: ca/root.crt.pem under HOCBA_PKI_DIR",
    )
    parser.add_argument("--crl", type=Path, default=None, help="its CRL (PEM); default: ca/crl.pem beside the anchor")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    store = ReceiptStore(args.data_file, anchor_trust(args.anchor, args.crl))
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s ministry-simulator %(levelname)s %(message)s")
    log.info("ministry simulator on %s:%d holding %d receipts", args.host, args.port, store.accepted)
    if store.trust is None:
        log.warning("no trust anchor (--anchor or HOCBA_PKI_DIR): every new checkpoint will be refused")
    try:
        uvicorn.run(create_app(store), host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    finally:
        store.close()


if __name__ == "__main__":
    main()
