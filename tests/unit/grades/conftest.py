"""Fixtures for grades' unit tests: a repository with three enrolled students, metrics, and the handlers' Deps."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from services.grades.handlers import Deps
from services.grades.metrics import GradesMetrics
from services.grades.repository import InMemoryGradesRepository
from shared.contracts.identity import StudentSnapshots
from tests.unit.grades.builders import KEYS, enrolled, snapshot


class FakeLookup:
    """Identity as far as these tests need it: knows some students, remembers what it was asked."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.asked: list[list[str]] = []

    async def __call__(self, refs: list[str]) -> StudentSnapshots:
        self.asked.append(list(refs))
        return StudentSnapshots(
            students=[snapshot(r) for r in refs if r in self.known], missing=[r for r in refs if r not in self.known]
        )


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> GradesMetrics:
    return GradesMetrics(registry)


@pytest.fixture
async def repo() -> InMemoryGradesRepository:
    """s1 and s2 in class 6A1, s3 in 6A2, all in grade 6 of the school."""
    repo = InMemoryGradesRepository()
    await repo.enrol([enrolled("s1"), enrolled("s2"), enrolled("s3", class_name="6A2")])
    return repo


@pytest.fixture
def deps(repo: InMemoryGradesRepository, metrics: GradesMetrics) -> Deps:
    return Deps(repo=repo, metrics=metrics, issuer_keys=KEYS, lookup=FakeLookup(set()), records_per_message=10)
