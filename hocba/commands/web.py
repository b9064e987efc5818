"""`hocba web token`: a development sign-in token for the web page, as the school management system would give a
person signing in (shared.auth `issue_sign_in_token`), issued with the local development issuer key."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from hocba.commands import DataDir, fail
from hocba.keys import existing_dev_issuer
from hocba.staff import ENROL, Staff, StaffRegister
from hocba.web.people import OPERATOR, OPERATOR_LOGIN
from shared.auth import SIGN_IN_LIFETIME, Actor, IssuerKey, issue_sign_in_token
from shared.settings import Settings

app = typer.Typer(help="The web page of the term end: development sign-in tokens.", no_args_is_help=True)

#: The longest sign-in, in hours (the services accept no longer one behind the gateway).
MAX_HOURS = SIGN_IN_LIFETIME.total_seconds() / 3600


@app.command("token")
def token(
    as_: Annotated[
        str,
        typer.Option(
            "--as",
            help="The staff id of an enrolled staff member (`hocba pki enrol`), or 'operator' for the department.",
        ),
    ],
    hours: Annotated[
        float, typer.Option(min=0.01, max=MAX_HOURS, help="How long the sign-in lasts, in hours (at most 8).")
    ] = MAX_HOURS,
    data_dir: DataDir = None,
) -> None:
    """Print a sign-in token for the web page's token form (or to post to /sign-in/token), as the school management
    system would issue it: the development issuer key's, for the web gateway, naming the person as enrolled.

    Development only: in production the school management system issues sign-in tokens with its own key.
    """
    settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    if settings.production:
        fail(
            "no development sign-in tokens in production: the school management system issues them with its own key",
            2,
        )
    issuer = existing_dev_issuer(settings.data_dir)
    if issuer is None:
        fail(
            f"no development issuer key in {settings.data_dir / 'keys'}: start the stack once (`hocba up`), or pass the "
            "stack's --data-dir",
            2,
        )
    typer.echo(issue_sign_in_token(issuer, person(issuer, as_, settings), timedelta(hours=hours)))


def person(issuer: IssuerKey, key: str, settings: Settings) -> Actor:
    """Whom `key` names: the department's operator, or an enrolled staff member as enrolled."""
    if key == OPERATOR:
        return Staff(issuer).operator(OPERATOR_LOGIN).actor
    register = StaffRegister.configured(settings.data_dir)
    member = register.staff.get(key)
    if member is None:
        known = ", ".join(sorted(register.staff)[:5]) or "nobody is enrolled yet"
        fail(
            f"'{key}' is not in the staff register ({register.path}; for example: {known}): give an enrolled staff "
            f"id or 'operator', or {ENROL}"
        )
    return member.actor()
