"""Term-end throughput per stage, next to raw ES256 signing and raw insert_many measured in the same run.

    .venv/bin/python bench/term_end.py --students 10000 [--schools 1] [--signing-workers 1]

The machines are shared and noisy, so each stage is reported as records/s and as a ratio to the
two baselines measured in this run, not as an absolute target.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hocba.baselines import raw_es256_rate
from hocba.keys import dev_issuer
from hocba.stack import Stack, StackConfig, interrupt_on_signals
from hocba.term_end import TermEnd
from shared.at_rest import sealed_records
from shared.crypto.vault import Vault
from shared.mongo import make_client, packed
from shared.settings import Settings


async def sample_documents(mongo_url: str, settings: Settings, limit: int) -> list[dict]:
    """Record documents as signing keeps them, opened with signing's key ring (the stack's development one)."""
    client = make_client(mongo_url)
    try:
        records = sealed_records(client[settings.names().database("signing")]["records"], Vault.for_service(settings, "signing"))
        cursor = records.collection.find({}, {"_id": 0, "record_id": 1, "version": 1, "document": 1, "key_id": 1})
        return [records.opened(doc) async for doc in cursor.limit(limit)]
    finally:
        await client.close()


async def raw_insert_rate(mongo_url: str, documents: list[dict], chunk: int) -> float:
    """insert_many(ordered=False) of the same record documents, each as one JSON string (the services keep
    each sealed, as bytes of about that size), in the same chunks, into the same server."""
    client = make_client(mongo_url)
    scratch = f"bench_baseline_{uuid.uuid4().hex[:8]}"
    try:
        collection = client[scratch]["records"]
        copies = [{"record_id": d.get("record_id"), "document": packed(d)} for d in documents]
        began = time.perf_counter()
        for start in range(0, len(copies), chunk):
            await collection.insert_many(copies[start : start + chunk], ordered=False)
        return len(copies) / (time.perf_counter() - began)
    finally:
        await client.drop_database(scratch)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=10_000, help="students in all (default 10000)")
    parser.add_argument("--schools", type=int, default=1)
    parser.add_argument("--signing-workers", type=int, default=1)
    parser.add_argument("--chunk-size", type=int, default=100)
    args = parser.parse_args()
    console = Console(width=140)
    per_school = args.students // args.schools
    namespace = f"bench{uuid.uuid4().hex[:8]}."
    data_dir = Path(tempfile.mkdtemp(prefix="hocba-bench-"))
    config = StackConfig.from_environment(
        data_dir,
        namespace=namespace,
        fixed_ports=False,
        ephemeral=True,
        signing_workers=args.signing_workers,
        extra_env={"HOCBA_CHUNK_SIZE": str(args.chunk_size)},
    )
    stack = Stack(config, report=lambda line: console.print(f"[dim]· {line}[/dim]"))
    interrupt_on_signals()
    stack.start()
    # The driver stands in for the schools' tools: it logs in to the broker as their user.
    settings = Settings(amqp_url=stack.url_for("school"), namespace=namespace, chunk_size=args.chunk_size, data_dir=data_dir)
    try:
        console.print(f"term end: {args.schools} school(s) × {per_school} students, {args.signing_workers} signing worker(s)")
        issuer, _ = dev_issuer(data_dir)
        results = asyncio.run(TermEnd(settings, issuer, args.schools, per_school, stage_timeout=3600).run())
        documents = asyncio.run(sample_documents(stack.mongo_url, settings, args.students))
        signing_baseline = raw_es256_rate(documents)
        insert_baseline = asyncio.run(raw_insert_rate(stack.mongo_url, documents, args.chunk_size))
    finally:
        stack.stop()

    shutil.rmtree(data_dir, ignore_errors=True)  # kept, with its logs, only when the run failed
    table = Table(title=f"term end, {args.students:,} students")
    for column in ("stage", "count", "seconds", "per second", "÷ raw ES256", "÷ raw insert_many"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for r in results:
        table.add_row(
            r.what, f"{r.count:,}", f"{r.seconds:.1f}", f"{r.rate:,.0f}",
            f"{r.rate / signing_baseline:.3f}", f"{r.rate / insert_baseline:.3f}",
        )
    table.add_row("baseline: raw ES256 sign (1 process)", f"{len(documents):,}", "", f"{signing_baseline:,.0f}", "1.000", "")
    table.add_row("baseline: raw insert_many (same server)", f"{len(documents):,}", "", f"{insert_baseline:,.0f}", "", "1.000")
    console.print(table)
    console.print("[dim]archive and delivery overlap signing; their seconds count from the signing request. "
                  "'assess' counts assessment entries (24 a student), the other stages records.[/dim]")


if __name__ == "__main__":
    main()
