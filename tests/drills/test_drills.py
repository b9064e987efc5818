"""The failure drills of bench/drills.py at a reduced size: every fault recovers by itself, nothing lost or doubled.

Each drill runs on a RabbitMQ node (and, for the node kill, a three-node cluster) started for the test on
free ports from 5700 with a node name of its own, and on its own embedded database: the shared broker is
never touched. A drill fails when a record is missing from the ministry or the archive, stored twice, when
anything but the drill's own poison lands in a dead-letter queue, or when the school's records are not all
delivered within a generous bound after the fault (nobody acted: that would need a human). No speed is
asserted; each fault is shown to have landed before delivery was done.
"""

from __future__ import annotations

import shlex

import pytest
from rich.console import Console

from bench import drills

pytestmark = [pytest.mark.infra, pytest.mark.timeout(720)]

#: A few hundred records in all, 3 kills, 2 restarts, 40 poison messages; generous bound, no speed asserted.
REDUCED = shlex.split(
    "--records 60 --students 40 --kills 3 --kill-interval 1.0 --restarts 2 --poison 40 --chunk-size 10"
    " --signing-workers 2 --bound 240"
)


def test_every_drill_recovers_by_itself_with_nothing_lost_or_doubled():
    console = Console(width=220, force_terminal=False)
    results = drills.main(REDUCED, console)
    names = [r.drill for r in results]
    assert names == [
        "fault-free",
        "fault-free",
        "worker-kills",
        "broker-restarts",
        "database-kill",
        "archive-sync-kills",
        "poison",
        "ministry-faults",
        "fault-free",
        "cluster-node-kill",
    ]
    assert [r.expected for r in results if r.drill == "fault-free"] == [60, 40, 40], "one for each size, in each group"
    for r in results:
        assert r.expected > 0, r.drill
        assert r.missing == 0 and r.delivered == r.expected, f"{r.drill}: {r.missing} missing ({r.note})"
        assert r.duplicated == 0, f"{r.drill}: {r.duplicated} stored twice"
        assert r.dead_lettered == r.expected_dead, (
            f"{r.drill}: {r.dead_lettered} dead-lettered, {r.expected_dead} expected"
        )
        assert r.counted_dead in (None, r.dead_lettered), f"{r.drill}: the services counted {r.counted_dead} dead letters"
        assert r.recovered, f"{r.drill} needed help: not every record delivered within the bound ({r.note})"
        if r.drill == "fault-free":
            continue
        assert r.delivered_at_fault is not None and r.delivered_at_fault < r.expected, f"{r.drill}: the fault came late"
        assert r.added_seconds is not None, f"{r.drill}: not set against the fault-free run"
    poison = next(r for r in results if r.drill == "poison")
    assert poison.counted_dead == poison.dead_lettered == 40, "every dead letter counted where no process restarted"
