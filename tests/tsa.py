"""The development TSA (hocba.tsa) served in a thread of the test process, on a free port."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import uvicorn

from hocba.infra import free_port
from hocba.tsa import TimeStampAuthority, create_app


@contextlib.contextmanager
def serving(authority: TimeStampAuthority, port: int | None = None, timeout: float = 10.0) -> Iterator[str]:
    """`authority` over HTTP (on `port`, else a free one) until the block ends; yields its URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(authority), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the test TSA did not start on port {port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout)
