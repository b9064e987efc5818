"""Runs a signing worker: `python -m services.signing`."""

from services.signing.app import NAME, build_app
from shared.service import main

main(NAME, build_app)
