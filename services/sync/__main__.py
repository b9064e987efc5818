"""Runs the sync service: `python -m services.sync`."""

from services.sync.app import NAME, build_app
from shared.service import main

main(NAME, build_app)
