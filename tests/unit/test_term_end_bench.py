"""How the term-end benchmark charges CPU and memory to processes, phases and chunks."""

from __future__ import annotations

import os
import socket
import time

from bench.meter import Meter, Sample, cpu_seconds, listening_pid, peak_rss_mb


def busy(seconds: float) -> None:
    until = time.process_time() + seconds
    while time.process_time() < until:
        pass


def test_cpu_is_what_the_kernel_charged_the_process():
    before, mine = cpu_seconds(os.getpid()), time.process_time()
    busy(0.2)
    charged = cpu_seconds(os.getpid()) - before
    assert abs(charged - (time.process_time() - mine)) < 0.05 and charged >= 0.15


def test_a_process_that_is_gone_costs_nothing_and_has_no_peak():
    assert cpu_seconds(2**22 + 1) == 0.0 and peak_rss_mb(2**22 + 1) is None
    assert (peak_rss_mb(os.getpid()) or 0) > 1


def test_each_phase_is_charged_what_each_process_spent_between_its_milestones():
    meter = Meter({"driver": os.getpid()})
    meter.mark("click")
    busy(0.1)
    meter.mark("deliver")
    meter.mark("click")  # a milestone counts once: the first time it is reached
    spent = meter.spent("click", "deliver")["driver"]
    assert 0.08 <= spent < 0.3 and meter.seconds("click", "deliver") > 0


def test_the_cost_per_chunk_at_the_start_and_at_the_end_of_the_signing():
    meter = Meter({})
    # 5 s of CPU per 1,000 records over the first 2,000, then 10 s; idle samples after the last record.
    progress = [0, 500, 1000, 1500, 2000, 2500, 3000, 3000, 3000]
    cpu = [0, 2.5, 5, 7.5, 10, 15, 20, 20.5, 21]
    meter.samples = [Sample(float(n), c, p) for n, (c, p) in enumerate(zip(cpu, progress, strict=True))]
    assert meter.per_chunk(since=0, records=1000, chunk=100, first=True) == 0.5
    assert meter.per_chunk(since=0, records=1000, chunk=100, first=False) == 1.0
    assert meter.per_chunk(since=2, records=1000, chunk=100, first=True) == 0.5  # from a later milestone


def test_the_broker_is_found_by_the_port_it_listens_on():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert listening_pid(server.getsockname()[1]) == os.getpid()
