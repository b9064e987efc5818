"""The term-end driver's own cost per record: each large announcement decoded whole, or as the keys it counts.

    .venv/bin/python bench/driver_watch.py [--records 1000] [--chunk 100] [--repeat 3]

Chunks of grade-6 records as grades assembles them, announced as each stage announces them
(RecordsReady, RecordsCompleted, RecordsArchived, RecordsDelivered); CPU time (this process) to
decode every chunk with the whole message model and with the driver's view (hocba.term_end.VIEWS).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hocba.term_end import VIEWS  # noqa: E402
from tests.unit.test_watch import announcements, versions  # noqa: E402


def cpu_per_record(bodies: list[tuple[type[BaseModel], bytes]], records: int, whole: bool) -> float:
    """Milliseconds of CPU per record to decode every body, whole or as the driver's view."""
    began = time.process_time()
    for message, body in bodies:
        (message if whole else VIEWS[message]).model_validate_json(body)
    return (time.process_time() - began) * 1000 / records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    chunk = versions(args.chunk)
    bodies = [(type(m), m.model_dump_json().encode()) for m in announcements(chunk)] * (args.records // args.chunk)
    size = sum(len(b) for _, b in bodies) / len(bodies)
    print(f"{args.records} records in chunks of {args.chunk}, 4 announcements each, {size / 1e6:.2f} MB a message on average")
    for n in range(args.repeat):
        whole = cpu_per_record(bodies, args.records, whole=True)
        view = cpu_per_record(bodies, args.records, whole=False)
        print(f"run {n + 1}: whole messages {whole:.3f} ms/record, keys only {view:.3f} ms/record, ratio {whole / view:.1f}×")


if __name__ == "__main__":
    main()
