"""The ministry's record endpoint over HTTP: one shared client, bounded concurrency, answers classified."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from services.sync.domain import Attempt, Outcome, classify

RECORDS_PATH = "/v1/records"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class Ministry:
    """Sends record versions to `{base_url}/v1/records`, at most `concurrency` requests at once.

    The client is either given (tests, or a caller that configures TLS itself) or opened by
    `open()` at start-up and closed by `close()` at shutdown. TLS verification follows httpx's
    defaults and the environment (SSL_CERT_FILE, proxies), so it is a deployment setting.
    """

    def __init__(
        self,
        base_url: str,
        concurrency: int,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = base_url.rstrip("/") + RECORDS_PATH
        self.client = client
        self.owns_client = client is None
        self.timeout = timeout
        self.limit = asyncio.Semaphore(concurrency)

    async def open(self) -> None:
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=self.timeout)

    async def close(self) -> None:
        if self.owns_client and self.client is not None:
            await self.client.aclose()
            self.client = None

    async def send(self, key: str, payload: dict[str, Any]) -> Attempt:
        """POST one record version with its idempotency key; never raises for HTTP trouble."""
        async with self.limit:
            started = time.perf_counter()
            if self.client is None:
                return Attempt(Outcome.RETRY, 0.0, error="the ministry client is not open")
            try:
                response = await self.client.post(self.url, json=payload, headers={IDEMPOTENCY_HEADER: key})
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                return Attempt(Outcome.RETRY, time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}")
            seconds = time.perf_counter() - started
        outcome = classify(response.status_code)
        if outcome is not Outcome.DELIVERED:
            return Attempt(outcome, seconds, error=f"HTTP {response.status_code}: {response.text[:500]}")
        try:
            receipt = response.json()
            if not isinstance(receipt, dict) or not receipt.get("receipt_id"):
                raise ValueError("no receipt_id")
        except ValueError as exc:
            return Attempt(Outcome.RETRY, seconds, error=f"HTTP {response.status_code} without a receipt: {exc}")
        return Attempt(Outcome.DELIVERED, seconds, receipt=receipt)
