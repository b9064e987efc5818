"""Runs the grades service: `python -m services.grades`."""

from services.grades.app import NAME, build_app
from shared.service import main

main(NAME, build_app)
