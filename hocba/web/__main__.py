"""`python -m hocba.web`: the web gateway on a running stack (`hocba up` starts it; it can also run on its own).

Read from the environment, beside the stack's own settings (HOCBA_ENVIRONMENT, HOCBA_NAMESPACE, HOCBA_DATA_DIR,
HOCBA_PKI_DIR, HOCBA_PKI_PASSPHRASE_FILE, HOCBA_ACTOR_ISSUER_JWKS, HOCBA_ACTOR_ISSUER, AMQP_URL):

* HOCBA_WEB_HOST, HOCBA_WEB_PORT: where it listens (127.0.0.1:9190);
* HOCBA_WEB_SCHOOL_YEAR: the school year the pages open on (the current one: from September, the year that
  begins then);
* HOCBA_WEB_SCHOOL_AMQP_URL, HOCBA_WEB_OPERATOR_AMQP_URL: its two broker logins (default: the command line's
  roles, `hocba broker url school|operator`);
* HOCBA_WEB_SESSION_KEY_FILE: the key that signs session cookies (default: a new one each start);
* HOCBA_WEB_SECURE_COOKIES: the session cookie over https only (default: true in production, behind its TLS
  proxy; false in development, where `hocba up` serves plain http on loopback);
* HOCBA_WEB_SESSION_MAX_SECONDS: the longest sign-in it accepts, from the sign-in token's issue to its expiry
  (default and most: 28800, a working day, as long as the services accept behind it).

People sign in with a sign-in token of the school management system (checked with the public keys at
HOCBA_ACTOR_ISSUER_JWKS; in development, without it, the development issuer key's), and the gateway vouches for
each of their messages with its own certificate, `svc-web` from the PKI (`hocba pki init` issues it; in production
its part of the PKI is `hocba pki export --service web`). Production needs both, and says which is missing.
Development also offers the choice among the enrolled staff, vouched for by the development issuer key.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import uvicorn

from hocba.broker import role_settings
from hocba.commands import BrokerUnreachable, current_school_year
from hocba.keys import dev_issuer
from hocba.staff import StaffRegister
from hocba.web import WEB_PORT
from hocba.web.app import SESSION_SECONDS, Gateway, GatewayConfig, build_app
from hocba.web.board import Board
from hocba.web.link import BusLink
from hocba.web.people import DelegatingVoucher, DevelopmentVoucher, GatewayVoucher, SignIn
from shared.auth import IssuerKeys, ServiceIdentity
from shared.crypto.pki import GATEWAY, DevPki, gateway_holder
from shared.crypto.signer import UnknownSigner, X509Signer
from shared.observability import configure_logging
from shared.settings import Misconfigured, Settings

log = logging.getLogger("hocba.web")


def session_max_seconds(given: str | None) -> int:
    """HOCBA_WEB_SESSION_MAX_SECONDS: a whole number of seconds, at most a working day (the services accept no
    longer sign-in behind the gateway)."""
    if not given:
        return SESSION_SECONDS
    try:
        seconds = int(given)
    except ValueError:
        raise Misconfigured(f"HOCBA_WEB_SESSION_MAX_SECONDS is {given!r}: give a whole number of seconds") from None
    if not 60 <= seconds <= SESSION_SECONDS:
        raise Misconfigured(
            f"HOCBA_WEB_SESSION_MAX_SECONDS is {seconds}: give between 60 and {SESSION_SECONDS} seconds (a working "
            "day, the longest sign-in the services accept)"
        )
    return seconds


def gateway_signer(settings: Settings) -> X509Signer:
    """The gateway's own signer (svc-web) from the configured PKI, its key read now, so that a missing certificate
    or secret is told at start; Misconfigured saying what to do otherwise."""
    subject = gateway_holder().subject_id
    try:
        return DevPki.from_settings(settings).signer(subject)
    except UnknownSigner as exc:
        raise Misconfigured(
            f"the web gateway has no certificate of its own ({exc}): issue it with `hocba pki init` and give the "
            f"gateway its part of the PKI (`hocba pki export --service {GATEWAY} --to DIR`, then HOCBA_PKI_DIR=DIR)"
        ) from None
    except Misconfigured:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise Misconfigured(f"the web gateway's key ({subject}) cannot be read: {exc}") from None


def sign_in_keys(settings: Settings, lifetime: timedelta) -> IssuerKeys:
    """The school management system's public keys as the gateway checks sign-in tokens with: HOCBA_ACTOR_ISSUER_JWKS,
    or in development the development issuer key's."""
    if settings.actor_issuer_jwks is not None:
        try:
            keys = IssuerKeys.from_file(settings.actor_issuer_jwks, settings.actor_issuer)
        except (OSError, ValueError, KeyError) as exc:
            raise Misconfigured(
                f"HOCBA_ACTOR_ISSUER_JWKS ({settings.actor_issuer_jwks}) cannot be read: {exc}"
            ) from None
        return keys.for_sign_in(lifetime)
    if settings.production:
        raise Misconfigured(
            "the web gateway checks sign-in tokens with the school management system's public keys: name their JWKS "
            "file with HOCBA_ACTOR_ISSUER_JWKS"
        )
    issuer, _ = dev_issuer(settings.data_dir)
    return issuer.public_keys().for_sign_in(lifetime)


def secure_cookies(given: str | None, production: bool) -> bool:
    """Whether the session cookie goes over https only: in production unless told otherwise (the gateway sits behind
    a TLS-terminating proxy there), in development only when told (`hocba up` serves plain http on loopback)."""
    if given is None or not given.strip():
        return production
    value = given.strip().lower()
    if value not in ("1", "true", "yes", "0", "false", "no"):
        raise Misconfigured(f"HOCBA_WEB_SECURE_COOKIES is {given!r}: say true or false")
    return value in ("1", "true", "yes")


def gateway_from_environment(settings: Settings) -> Gateway:
    """The gateway as configured: sign-in by token always (production refuses to start without the gateway's
    certificate or the issuer's keys), the development picker in development only."""
    school = role_settings("school", settings)
    operator = role_settings("operator", settings)
    if url := os.environ.get("HOCBA_WEB_SCHOOL_AMQP_URL"):
        school = settings.model_copy(update={"amqp_url": url})
    if url := os.environ.get("HOCBA_WEB_OPERATOR_AMQP_URL"):
        operator = settings.model_copy(update={"amqp_url": url})
    key_file = os.environ.get("HOCBA_WEB_SESSION_KEY_FILE")
    lifetime = session_max_seconds(os.environ.get("HOCBA_WEB_SESSION_MAX_SECONDS"))
    config = GatewayConfig(
        school_year=os.environ.get("HOCBA_WEB_SCHOOL_YEAR") or current_school_year(),
        secure_cookies=secure_cookies(os.environ.get("HOCBA_WEB_SECURE_COOKIES"), settings.production),
        session_seconds=lifetime,
    )
    if key_file:
        config = replace(config, session_key=Path(key_file).read_text().strip())
    keys = sign_in_keys(settings, timedelta(seconds=lifetime))
    delegating = None
    try:
        signer = gateway_signer(settings)
        delegating = DelegatingVoucher(ServiceIdentity(GATEWAY, lambda: signer))
    except Misconfigured as exc:
        if settings.production:
            raise
        log.warning("sign-in by token is off: %s", exc)
    development = None
    if not settings.production:
        issuer, _ = dev_issuer(settings.data_dir)
        development = DevelopmentVoucher(issuer, StaffRegister.configured)
    board = Board()
    return Gateway(
        config=config,
        link=BusLink(school, operator, board),
        board=board,
        voucher=GatewayVoucher(delegating, development),
        register=StaffRegister.configured,
        sign_in=SignIn(keys) if delegating is not None else None,
        picker=development is not None,
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
    host = os.environ.get("HOCBA_WEB_HOST", "127.0.0.1")
    port = int(os.environ.get("HOCBA_WEB_PORT") or WEB_PORT)
    try:
        gateway = gateway_from_environment(settings)
    except Misconfigured as exc:
        log.error("cannot start: %s", exc)
        return 2
    return asyncio.run(serve(gateway, host, port))


if __name__ == "__main__":
    sys.exit(main())
