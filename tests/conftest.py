"""Fixtures for every layer: settings with a unique namespace per test."""

from __future__ import annotations

import sys
import uuid

import pytest
from hypothesis import settings as hypothesis_settings

from shared.crypto import canonical
from shared.settings import Settings

# Property tests assert what holds, never how fast: no per-example deadline, which a loaded machine would
# turn into failures that say nothing about the code.
hypothesis_settings.register_profile("hocba", deadline=None)
hypothesis_settings.load_profile("hocba")


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def settings(namespace: str) -> Settings:
    return Settings(namespace=namespace, delivery_limit=3, chunk_size=10)


@pytest.fixture
def canonicalised(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What is made canonical (RFC 8785) from now on, wherever it is asked for."""
    made: list[object] = []
    original = canonical.canonical_json

    def counted(value: object) -> bytes:
        made.append(value)
        return original(value)

    for module in list(sys.modules.values()):
        if getattr(module, "canonical_json", None) is original:
            monkeypatch.setattr(module, "canonical_json", counted)
    return made
