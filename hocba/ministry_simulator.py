"""A simulator standing in for the Ministry of Education and Training's record endpoint (development and tests).

It is not the ministry's API and makes no claim to match it beyond what hocba relies on: an
idempotent `POST /v1/records` keyed by the `Idempotency-Key` header, answering with a receipt.

    python -m hocba.ministry_simulator --host 127.0.0.1 --port 9180 [--data-file PATH]

Endpoints:

* `POST /v1/records` (header `Idempotency-Key`, JSON body with at least `record_id`, `version`
  and `digest`): the first request with a key is stored and answered 201 with a receipt
  `{"receipt_id", "received_at", "idempotency_key", "record_id", "version", "digest"}`; the same key
  again is answered 200 with the same receipt and counted as a duplicate. 400 without the
  header, 422 for a body without the required fields, 409 when a known key arrives with a
  different digest (one key must always mean the same record version).
* `GET /v1/records/{key}`: that key's receipt, or 404.
* `GET /v1/receipts`: `{"receipts": [...]}`, every receipt held, for reconciliation.
* `GET /v1/stats`: `{"accepted", "duplicates", "requests"}`. `accepted` is the number of receipts
  held (loaded ones included); the other two count since the process started.
* `POST /v1/faults` `{"fail_next": n}`: the next n record requests answer 503, to rehearse an outage.
* `GET /health/live`.

With `--data-file`, every new receipt is appended to the file as one JSON line and the file is
read at start, so a restarted simulator still knows every key it has acknowledged.
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.settings import DEFAULT_HTTP_PORTS

IDEMPOTENCY_HEADER = "Idempotency-Key"
REQUIRED_FIELDS = ("record_id", "version", "digest")

log = logging.getLogger("hocba.ministry_simulator")


class ReceiptStore:
    """The receipts the simulated ministry has issued, keyed by idempotency key."""

    def __init__(self, data_file: Path | None = None) -> None:
        self.data_file = data_file
        self.receipts: dict[str, dict[str, Any]] = {}
        self.duplicates = 0
        self.requests = 0
        self.fail_next = 0
        if data_file is not None and data_file.exists():
            with data_file.open(encoding="utf-8") as lines:
                for line in lines:
                    if line.strip():
                        receipt = json.loads(line)
                        self.receipts.setdefault(receipt["idempotency_key"], receipt)

    @property
    def accepted(self) -> int:
        return len(self.receipts)

    def accept(self, key: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The receipt for `key` and whether it is new. Synchronous, so atomic on the event loop."""
        known = self.receipts.get(key)
        if known is not None:
            self.duplicates += 1
            return known, False
        receipt = {
            "receipt_id": f"MOET-{uuid4().hex}",
            "received_at": datetime.now(UTC).isoformat(),
            "idempotency_key": key,
            "record_id": body["record_id"],
            "version": body["version"],
            "digest": body["digest"],
        }
        if self.data_file is not None:
            self.data_file.parent.mkdir(parents=True, exist_ok=True)
            with self.data_file.open("a", encoding="utf-8") as out:
                out.write(json.dumps(receipt, ensure_ascii=False) + "\n")
        self.receipts[key] = receipt
        return receipt, True

    def stats(self) -> dict[str, int]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "requests": self.requests}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(store: ReceiptStore | None = None) -> Starlette:
    """The simulator as an ASGI app over `store` (a fresh in-memory one when not given)."""
    store = store if store is not None else ReceiptStore()

    async def post_record(request: Request) -> JSONResponse:
        store.requests += 1
        if store.fail_next > 0:
            store.fail_next -= 1
            return _error(503, "simulated outage")
        key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
        if not key:
            return _error(400, f"the {IDEMPOTENCY_HEADER} header is required")
        try:
            body = await request.json()
        except ValueError:
            return _error(422, "the body must be JSON")
        if not isinstance(body, dict):
            return _error(422, "the body must be a JSON object")
        missing = [name for name in REQUIRED_FIELDS if body.get(name) in (None, "")]
        if missing:
            return _error(422, f"missing fields: {', '.join(missing)}")
        known = store.receipts.get(key)
        if known is not None and known.get("digest") != body["digest"]:
            return _error(409, f"idempotency key {key} was already used for a different digest")
        receipt, new = store.accept(key, body)
        return JSONResponse(receipt, status_code=201 if new else 200)

    async def get_record(request: Request) -> JSONResponse:
        receipt = store.receipts.get(request.path_params["key"])
        return JSONResponse(receipt) if receipt is not None else _error(404, "no receipt for this key")

    async def list_receipts(request: Request) -> JSONResponse:
        return JSONResponse({"receipts": list(store.receipts.values())})

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(store.stats())

    async def faults(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            store.fail_next = max(int(body.get("fail_next", 0)), 0)
        except (ValueError, TypeError, AttributeError):
            return _error(422, 'expected {"fail_next": n}')
        return JSONResponse({"fail_next": store.fail_next})

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    app = Starlette(
        routes=[
            Route("/v1/records", post_record, methods=["POST"]),
            Route("/v1/records/{key:path}", get_record, methods=["GET"]),
            Route("/v1/receipts", list_receipts, methods=["GET"]),
            Route("/v1/stats", stats, methods=["GET"]),
            Route("/v1/faults", faults, methods=["POST"]),
            Route("/health/live", live, methods=["GET"]),
        ]
    )
    app.state.store = store
    return app


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
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    store = ReceiptStore(args.data_file)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s ministry-simulator %(levelname)s %(message)s")
    log.info("ministry simulator on %s:%d holding %d receipts", args.host, args.port, store.accepted)
    uvicorn.run(create_app(store), host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
