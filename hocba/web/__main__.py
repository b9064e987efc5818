"""`python -m hocba.web`: the web gateway on a running stack (`hocba up` starts it; it can also run on its own).

Read from the environment, beside the stack's own settings (HOCBA_NAMESPACE, HOCBA_DATA_DIR, HOCBA_PKI_DIR,
AMQP_URL):

* HOCBA_WEB_HOST, HOCBA_WEB_PORT: where it listens (127.0.0.1:9190);
* HOCBA_WEB_SCHOOL_YEAR: the school year the pages open on (the current one: from September, the year that
  begins then);
* HOCBA_WEB_SCHOOL_AMQP_URL, HOCBA_WEB_OPERATOR_AMQP_URL: its two broker logins (default: the command line's
  roles, `hocba broker url school|operator`);
* HOCBA_WEB_SESSION_KEY_FILE: the key that signs session cookies (default: a new one each start).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from datetime import date
from pathlib import Path

import uvicorn

from hocba.broker import role_settings
from hocba.commands import BrokerUnreachable
from hocba.keys import dev_issuer
from hocba.staff import StaffRegister
from hocba.web import WEB_PORT
from hocba.web.app import Gateway, GatewayConfig, build_app
from hocba.web.board import Board
from hocba.web.link import BusLink
from hocba.web.people import DevelopmentVoucher
from shared.observability import configure_logging
from shared.settings import Settings

log = logging.getLogger("hocba.web")


def current_school_year(today: date | None = None) -> str:
    """The school year under way: from September, the one that begins that year."""
    today = today or date.today()
    first = today.year if today.month >= 9 else today.year - 1
    return f"{first}-{first + 1}"


def gateway_from_environment(settings: Settings) -> Gateway:
    school = role_settings("school", settings)
    operator = role_settings("operator", settings)
    if url := os.environ.get("HOCBA_WEB_SCHOOL_AMQP_URL"):
        school = settings.model_copy(update={"amqp_url": url})
    if url := os.environ.get("HOCBA_WEB_OPERATOR_AMQP_URL"):
        operator = settings.model_copy(update={"amqp_url": url})
    key_file = os.environ.get("HOCBA_WEB_SESSION_KEY_FILE")
    config = GatewayConfig(school_year=os.environ.get("HOCBA_WEB_SCHOOL_YEAR") or current_school_year())
    if key_file:
        config = GatewayConfig(config.school_year, Path(key_file).read_text().strip())
    board = Board()
    issuer, _ = dev_issuer(settings.data_dir)
    return Gateway(
        config=config,
        link=BusLink(school, operator, board),
        board=board,
        voucher=DevelopmentVoucher(issuer, StaffRegister.configured),
        register=StaffRegister.configured,
    )


async def connected(gateway: Gateway, within: float) -> bool:
    """Start the link, trying again for `within` seconds: started beside the services, the gateway may come up
    before they have declared the namespace's exchange."""
    deadline = time.monotonic() + within
    while True:
        try:
            await gateway.link.start()
            return True
        except BrokerUnreachable as exc:
            if time.monotonic() > deadline:
                log.error("cannot start: %s", exc)
                return False
            log.info("waiting for the stack: %s", exc)
            await asyncio.sleep(1.0)


async def serve(gateway: Gateway, host: str, port: int, within: float = 60.0) -> int:
    if not await connected(gateway, within):
        return 2
    try:
        server = uvicorn.Server(
            uvicorn.Config(build_app(gateway, manage_link=False), host=host, port=port, lifespan="on")
        )
        await server.serve()
    finally:
        await gateway.link.stop()
    return 0


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level, "web")
    if settings.production:
        log.error(
            "cannot start: the web gateway gives each message the signed-in person's actor token from the development "
            "issuer key, which production does not have; outside development the school management system issues "
            "the tokens. Run it with HOCBA_ENVIRONMENT=development."
        )
        return 2
    host = os.environ.get("HOCBA_WEB_HOST", "127.0.0.1")
    port = int(os.environ.get("HOCBA_WEB_PORT") or WEB_PORT)
    return asyncio.run(serve(gateway_from_environment(settings), host, port))


if __name__ == "__main__":
    sys.exit(main())
