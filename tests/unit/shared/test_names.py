"""The names a namespace gives the broker's exchanges and queues and the services' databases."""

from __future__ import annotations

import pytest

from shared.settings import Names, Settings


@pytest.mark.parametrize("given", ["demo", "demo."])
def test_a_namespace_is_separated_from_the_names_by_a_dot(given):
    names = Settings(namespace=given).names()
    assert names.exchange == "demo.hocba"
    assert names.dead_letter_exchange == "demo.hocba.dlx"
    assert names.queue("sync", "archive.record.archived.v3") == "demo.sync.archive.record.archived.v3"
    assert names.database("grades") == "demo_grades"
    assert Names(given) == names


def test_the_empty_namespace_adds_nothing():
    names = Settings(namespace="").names()
    assert (names.exchange, names.queue("grades", "x.v1"), names.database("grades")) == ("hocba", "grades.x.v1", "grades")
