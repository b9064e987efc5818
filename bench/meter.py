"""CPU and memory of every process of a stack, read from /proc while a term end runs.

CPU is utime + stime of each process (what the kernel charged it, whatever else runs on the machine),
taken at each milestone of the run and sampled every quarter second with the driver's counts, so each
phase and each part of the signing can be charged per record; peak RSS is VmHWM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` in seconds; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of stat(5), after pid and comm


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM of `pid` in MB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def listening_pid(port: int) -> int | None:
    """The process listening on TCP `port` on this machine (the broker, say), when there is one."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and inodes:
            with contextlib.suppress(OSError):
                if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                    return int(entry.name)
    return None


@dataclass
class Sample:
    at: float
    cpu: float
    progress: float


@dataclass
class Meter:
    """The processes to charge (name -> pid), their CPU at each milestone, and samples of the signing phase."""

    pids: dict[str, int]
    #: Processes reported but left out of the sampled total (a broker other people's work shares).
    shared: tuple[str, ...] = ()
    marks: dict[str, tuple[float, dict[str, float]]] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    peaks: dict[str, float | None] = field(default_factory=dict)

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def mark(self, name: str) -> None:
        """Record every process's CPU now, under the milestone `name` (the first time it is reached)."""
        self.marks.setdefault(name, (time.monotonic(), self.cpu()))

    def spent(self, start: str, end: str) -> dict[str, float]:
        """CPU seconds each process spent between two milestones."""
        began, ended = self.marks[start][1], self.marks[end][1]
        return {name: ended[name] - began[name] for name in self.pids}

    def seconds(self, start: str, end: str) -> float:
        return self.marks[end][0] - self.marks[start][0]

    def measure_peaks(self) -> None:
        """Peak RSS of each process, to be read before the stack stops."""
        self.peaks = {name: peak_rss_mb(pid) for name, pid in self.pids.items()}

    async def sample(self, progress: Callable[[], float], every: float = 0.25) -> None:
        """Total CPU beside `progress` (records through the pipeline), until cancelled."""
        while True:
            spent = sum(cpu_seconds(pid) for name, pid in self.pids.items() if name not in self.shared)
            self.samples.append(Sample(time.monotonic(), spent, progress()))
            await asyncio.sleep(every)

    def per_chunk(self, since: float, records: float, chunk: int, first: bool) -> float | None:
        """CPU per `chunk` records over the first (or last) `records` of progress made after `since`."""
        window = [s for s in self.samples if s.at >= since]
        if len(window) < 2:
            return None
        if first:
            head = window[0]
            tail = next((s for s in window if s.progress - head.progress >= records), window[-1])
        else:
            tail = next(s for s in window if s.progress >= window[-1].progress)  # not the idle wait after it
            head = next((s for s in reversed(window) if tail.progress - s.progress >= records), window[0])
        done = tail.progress - head.progress
        return (tail.cpu - head.cpu) / done * chunk if done > 0 else None
