"""The web gateway's composition root: `build_app` puts the board, the link to the bus, the voucher, the sign-in
check, the staff register and the pages together into one Starlette app."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from hocba.staff import StaffRegister
from hocba.web import pages
from hocba.web.board import Board
from hocba.web.link import Link
from hocba.web.people import NotSignedIn, SignIn, Voucher
from shared.auth import SIGN_IN_LIFETIME
from shared.contracts.signing import SIGNING_ORDER
from shared.observability import from_zero

log = logging.getLogger("hocba.web")
HERE = Path(__file__).parent
#: How long a sign-in lasts at most (seconds): a working day, the longest the services accept behind the gateway
#: (HOCBA_WEB_SESSION_MAX_SECONDS may shorten it).
SESSION_SECONDS = int(SIGN_IN_LIFETIME.total_seconds())


@dataclass(frozen=True)
class GatewayConfig:
    #: The school year the pages open on (each page can be asked for another: `?year=`).
    school_year: str
    #: Signs the session cookie; a new one each start unless given (sign-ins then end with the process).
    session_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    #: Cookies only over https (behind a TLS-terminating proxy).
    secure_cookies: bool = False
    #: How often a progress page asks for news, in seconds.
    poll_seconds: float = 1.0
    #: How long the session cookie lasts; a sign-in by token ends with its token, if that is sooner.
    session_seconds: int = SESSION_SECONDS


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.clicks = Counter(
            "hocba_gateway_sign_requests_total",
            "Sign-all requests sent from the web page, by role and outcome of the sending (sent, unsent).",
            ["role", "outcome"],
            registry=registry,
        )
        from_zero(self.clicks, SIGNING_ORDER, ("sent", "unsent"))


@dataclass
class Gateway:
    """Everything the pages use."""

    config: GatewayConfig
    link: Link
    board: Board
    voucher: Voucher
    #: The staff register as it is now (read again for each page: enrolments change while the gateway runs).
    register: Callable[[], StaffRegister]
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    #: Checks sign-in tokens (None: the gateway takes none, having no certificate of its own or no issuer keys).
    sign_in: SignIn | None = None
    #: The development picker of the enrolled staff (development only: the development issuer key vouches then).
    picker: bool = True

    def __post_init__(self) -> None:
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.globals["poll_seconds"] = self.config.poll_seconds
        self.metrics = GatewayMetrics(self.registry)


def build_app(gateway: Gateway, manage_link: bool = True) -> Starlette:
    """The app; with `manage_link` its lifespan starts and stops the link (else whoever runs it does)."""

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if not manage_link:
            yield
            return
        await gateway.link.start()
        try:
            yield
        finally:
            await gateway.link.stop()

    async def live(_: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(_: Request) -> Response:
        ok = gateway.link.ready
        return JSONResponse({"ready": ok, "checks": {"bus": ok}}, status_code=200 if ok else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(gateway.registry), media_type=CONTENT_TYPE_LATEST)

    app = Starlette(
        routes=[
            *pages.routes(),
            Route("/health/live", live),
            Route("/health/ready", ready),
            Route("/metrics", metrics),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=gateway.config.session_key,
                session_cookie="hocba_web",
                max_age=gateway.config.session_seconds,
                same_site="strict",
                https_only=gateway.config.secure_cookies,
            )
        ],
        exception_handlers={
            HTTPException: pages.http_error,
            NotSignedIn: pages.signed_out,
            Exception: pages.unexpected_error,
        },
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app
