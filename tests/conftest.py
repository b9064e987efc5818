"""Fixtures for every layer: settings with a unique namespace per test."""

from __future__ import annotations

import uuid

import pytest

from shared.settings import Settings


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def settings(namespace: str) -> Settings:
    return Settings(namespace=namespace, delivery_limit=3, chunk_size=10)
