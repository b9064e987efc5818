"""Runs the identity service: `python -m services.identity`."""

from services.identity.app import NAME, build_app
from shared.service import main

main(NAME, build_app)
