"""Runs the archive service: `python -m services.archive`."""

from services.archive.app import NAME, build_app
from shared.service import main

main(NAME, build_app)
