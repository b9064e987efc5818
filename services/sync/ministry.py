"""The ministry's API over HTTP: one shared client (TLS when configured), bounded concurrency, batches of entries
where the ministry takes them, answers classified entry by entry."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.sync.domain import CHECKPOINT, Acknowledged, Answer, Attempt, classify
from shared.errors import Unavailable

RECORDS_PATH = "/v1/records"
CHECKPOINTS_PATH = "/v1/checkpoints"
RECEIPTS_PATH = "/v1/receipts"
BATCH_PATH = "/v1/batch"
#: Entries the batch endpoint takes in one request at most (docs/ministry-api.md).
BATCH_LIMIT = 100
PATHS = {"record": RECORDS_PATH, CHECKPOINT: CHECKPOINTS_PATH}
#: Where each kind's acknowledgements are listed, for reconciliation.
LISTINGS = {"record": RECEIPTS_PATH, CHECKPOINT: CHECKPOINTS_PATH}
IDEMPOTENCY_HEADER = "Idempotency-Key"
PAGE_SIZE = 1000
#: One entry to send: its kind, its idempotency key and its payload.
Item = tuple[str, str, dict[str, Any]]

log = logging.getLogger("hocba.sync")


@dataclass(frozen=True)
class Tls:
    """TLS towards the ministry: the CA that signs its certificate and this system's client certificate."""

    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    def context(self) -> ssl.SSLContext | bool:
        """An SSL context when anything is configured; otherwise True (httpx's defaults and SSL_CERT_FILE)."""
        if self.ca_file is None and self.client_cert is None:
            return True
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.client_cert is not None:
            context.load_cert_chain(str(self.client_cert), str(self.client_key) if self.client_key else None)
        return context


class MinistryError(Unavailable):
    """The ministry could not be asked for a listing, or its answer could not be read; the message says why."""


class Ministry:
    """Sends entries to `{base_url}/v1/batch` up to `batch_size` a request, or (`batch_size` 0) each to
    `/v1/records` or `/v1/checkpoints`; at most `concurrency` requests at once.

    The client is either given (tests) or opened by `open()` at start-up with the TLS settings and
    closed by `close()` at shutdown. A request that takes longer than `timeout` seconds counts as a
    failed attempt for every entry it carried: the ministry may have stored them, which the
    idempotency keys make harmless. A ministry that answers a batch with 404 or 405 has no batch
    endpoint: that batch and every later entry go one request each.
    """

    def __init__(
        self,
        base_url: str,
        concurrency: int,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        tls: Tls | None = None,
        batch_size: int = 0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client
        self.owns_client = client is None
        self.timeout = timeout
        self.tls = tls or Tls()
        self.limit = asyncio.Semaphore(concurrency)
        self.batch_size = min(max(batch_size, 0), BATCH_LIMIT)

    def url(self, kind: str) -> str:
        return self.base_url + PATHS[kind]

    async def open(self) -> None:
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=self.timeout, verify=self.tls.context())

    async def close(self) -> None:
        if self.owns_client and self.client is not None:
            await self.client.aclose()
            self.client = None

    async def deliver(self, items: list[Item]) -> list[Attempt]:
        """Send every item; one answer per item, in their order. Never raises for HTTP trouble."""
        if not self.batch_size:
            return list(await asyncio.gather(*(self.send(*item) for item in items)))
        groups = [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        answers = await asyncio.gather(*(self.send_batch(group) for group in groups))
        return [attempt for answer in answers for attempt in answer]

    async def send_batch(self, items: list[Item]) -> list[Attempt]:
        """POST several entries in one request, each with its idempotency key; each answered on its own."""
        async with self.limit:
            started = time.perf_counter()
            if self.client is None:
                return shared_by(items, Attempt(Answer.RETRY, 0.0, error="the ministry client is not open"))
            body = {"items": [{"kind": kind, "idempotency_key": key, "body": payload} for kind, key, payload in items]}
            try:
                response = await self.client.post(self.base_url + BATCH_PATH, json=body, timeout=self.timeout)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                failed = Attempt(Answer.RETRY, time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}")
                return shared_by(items, failed)
            seconds = time.perf_counter() - started
        if response.status_code in (404, 405) and self.batch_size:
            log.warning("the ministry has no batch endpoint (HTTP %d): sending one entry a request", response.status_code)
            self.batch_size = 0
            return await self.deliver(items)
        return batch_attempts(response, [key for _, key, _ in items], seconds)

    async def send(self, kind: str, key: str, payload: dict[str, Any]) -> Attempt:
        """POST one entry with its idempotency key; never raises for HTTP trouble."""
        async with self.limit:
            started = time.perf_counter()
            if self.client is None:
                return Attempt(Answer.RETRY, 0.0, error="the ministry client is not open")
            try:
                response = await self.client.post(
                    self.url(kind), json=payload, headers={IDEMPOTENCY_HEADER: key}, timeout=self.timeout
                )
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                return Attempt(Answer.RETRY, time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}")
            seconds = time.perf_counter() - started
        answer = classify(response.status_code)
        if answer is not Answer.DELIVERED:
            said, reason = refusal_of(response)
            return Attempt(answer, seconds, error=f"HTTP {response.status_code}: {said}", reason=reason)
        try:
            receipt = response.json()
            if not isinstance(receipt, dict) or not receipt.get("receipt_id"):
                raise ValueError("no receipt_id")
        except ValueError as exc:
            return Attempt(Answer.RETRY, seconds, error=f"HTTP {response.status_code} without a receipt: {exc}")
        return Attempt(Answer.DELIVERED, seconds, receipt=receipt)

    async def acknowledgements(self, kind: str) -> AsyncIterator[Acknowledged]:
        """Every acknowledgement the ministry lists for `kind`, in key order, page by page."""
        after: str | None = None
        while True:
            items, after = await self.page(kind, after)
            for item in items:
                yield item
            if not after or not items:
                return

    async def page(self, kind: str, after: str | None) -> tuple[list[Acknowledged], str | None]:
        """One page of `kind`'s listing after the key `after`, and the key the next page starts after."""
        if self.client is None:
            raise MinistryError("the ministry client is not open")
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        if after is not None:
            params["after"] = after
        try:
            url = self.base_url + LISTINGS[kind]
            response = await self.client.get(url, params=params, timeout=max(self.timeout, 30.0))
            response.raise_for_status()
            page = response.json()
            items = page.get("receipts", page.get("checkpoints", []))
            return [acknowledged(item) for item in items], page.get("next")
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MinistryError(f"listing {LISTINGS[kind]} failed: {type(exc).__name__}: {exc}") from exc


def shared_by(items: list[Item], attempt: Attempt) -> list[Attempt]:
    """One request's outcome for each entry it carried; its duration counted once."""
    return _alike([key for _, key, _ in items], attempt.answer, attempt.seconds, attempt.error)


def batch_attempts(response: httpx.Response, keys: list[str], seconds: float) -> list[Attempt]:
    """Each entry's answer from a batch response: a refused or unreadable request fails every entry alike."""
    answer = classify(response.status_code)
    if answer is not Answer.DELIVERED:
        return _alike(keys, answer, seconds, f"HTTP {response.status_code}: {response.text[:500]}")
    try:
        results = response.json()["results"]
        if not isinstance(results, list) or [str(r["idempotency_key"]) for r in results] != keys:
            raise ValueError("the results do not answer the entries sent, in their order")
    except (ValueError, KeyError, TypeError) as exc:
        return _alike(keys, Answer.RETRY, seconds, f"HTTP {response.status_code} without a result per entry: {exc}")
    attempts = [item_attempt(result, seconds) for result in results]
    return [a if n == 0 else Attempt(a.answer, a.seconds, a.receipt, a.error, False) for n, a in enumerate(attempts)]


def _alike(keys: list[str], answer: Answer, seconds: float, error: str) -> list[Attempt]:
    """The same failed attempt for every entry of one request; its duration counted once."""
    return [Attempt(answer, seconds, error=error, counts_request=n == 0) for n in range(len(keys))]


def item_attempt(result: dict[str, Any], seconds: float) -> Attempt:
    """One entry's result in a batch answer, read as a single request's answer would be."""
    status = result.get("status")
    if not isinstance(status, int):
        return Attempt(Answer.RETRY, seconds, error=f"a batch result without a status: {str(result)[:200]}")
    answer = classify(status)
    if answer is not Answer.DELIVERED:
        reason = result.get("reason")
        more = {k: v for k, v in result.items() if k not in ("idempotency_key", "status", "error", "reason")}
        said = str(result.get("error", "")) + (f" {json.dumps(more)}" if more else "")
        return Attempt(answer, seconds, error=f"HTTP {status}: {said[:500]}", reason=reason if isinstance(reason, str) else "")
    receipt = result.get("receipt")
    if not isinstance(receipt, dict) or not receipt.get("receipt_id"):
        return Attempt(Answer.RETRY, seconds, error=f"HTTP {status} without a receipt")
    return Attempt(Answer.DELIVERED, seconds, receipt=receipt)


def refusal_of(response: httpx.Response) -> tuple[str, str]:
    """What a refusal says, and its reason code: the sentence and code of a JSON body `{"error", "reason"}` (its other
    fields after the sentence), else the body's text; "" for no code."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return response.text[:500], ""
    more = {k: v for k, v in body.items() if k not in ("error", "reason")}
    said = body["error"] + (f" {json.dumps(more)}" if more else "")
    reason = body.get("reason")
    return said[:500], reason if isinstance(reason, str) else ""


def acknowledged(item: dict[str, Any]) -> Acknowledged:
    """One entry of a listing: a receipt (with the record's digest) or a checkpoint (with its root hash)."""
    return Acknowledged(
        key=str(item["idempotency_key"]),
        receipt_id=str(item["receipt_id"]),
        digest=str(item.get("digest") or item.get("root_hash") or ""),
    )
