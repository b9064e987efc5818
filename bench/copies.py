"""Certified copies signed PAdES B-LT by the school's seal: the cost per copy of printing a whole class in one command,
beside pyHanko's raw rate on the same unsigned PDF in the same run.

    .venv/bin/python bench/copies.py                 # one class of 40
    .venv/bin/python bench/copies.py --class-size 35 --rounds 2

signing (one worker) and the archive run as processes, with the development TSA (`python -m hocba.tsa`), on RabbitMQ
and the embedded MongoDB-wire server. A class's records are seeded as grades publishes them, reviewed, signed by the
homeroom teacher and by the principal with the seal, and archived (bench/signing.py's steps). Then the class is
printed as `hocba archive print --class` prints it, in this process (the command's code: one session, the school's
records administrator; per copy an export from the archive, the unsigned PDF/A-3, a `SealCopy` to signing, a
timestamp from the TSA, the chains and CRLs embedded), leaving out only grades' one listing of the class (grades does
not run here). The CPU each process spent per copy (user + system, from /proc) is printed with the wall-clock rate.

Beside it, in the same process and run: the unsigned PDF rendered alone, and pyHanko signing that same unsigned PDF
with the seal's key held locally (no broker), PAdES B-B (no timestamp, no validation information) and B-LT (the same
TSA over HTTP, the same chains and CRLs embedded). The machines are shared and noisy: compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import httpx
from asn1crypto import keys as asn1_keys
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner
from pyhanko_certvalidator.registry import SimpleCertificateStore
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

import signing as steps  # noqa: E402 - bench/signing.py: the seeding and signing steps

from hocba import demo_data  # noqa: E402
from hocba.commands import session  # noqa: E402
from hocba.commands.archive import sealing  # noqa: E402
from hocba.commands.pki import enrol, open_pki  # noqa: E402
from hocba.infra import EmbeddedMongo, ensure_rabbitmq, free_port  # noqa: E402
from hocba.keys import dev_issuer  # noqa: E402
from hocba.pades import CopySealing, HttpTimeStamper, seal_chain  # noqa: E402
from hocba.pdf import copy_pdf_bytes  # noqa: E402
from hocba.stack import Child, interrupt_on_signals  # noqa: E402
from hocba.staff import Staff  # noqa: E402
from hocba.watch import Watch  # noqa: E402
from shared.auth import service_subject  # noqa: E402
from shared.contracts.archive import ExportRecord, ProofReply  # noqa: E402
from shared.contracts.signing import CopySeal, seal_subject  # noqa: E402
from shared.crypto.certs import load_crls, to_x5c  # noqa: E402
from shared.crypto.pki import DevPki  # noqa: E402
from shared.crypto.signer import SoftwareKey, X509Signer  # noqa: E402
from shared.crypto.timestamps import asn1_certificate  # noqa: E402
from shared.messaging import Bus, delete_exchanges  # noqa: E402
from shared.settings import Names, Settings  # noqa: E402

console = Console()
PURPOSE = "benchmark: a class's certified copies"


@dataclass
class Printed:
    copies: int
    seconds: float
    #: CPU seconds per process kind while the class was printed.
    cpu: dict[str, float]
    #: Bytes of the first sealed copy, and of the unsigned one.
    sealed_bytes: int
    unsigned_bytes: int


def started(child: Child, timeout: float = 60.0) -> None:
    child.start()
    with httpx.Client(timeout=2) as client:
        steps.ready(child, client, time.monotonic() + timeout)


async def signed_and_archived(amqp_url: str, namespace: str, staff: Staff, by_school: dict) -> list[str]:
    """The class signed by its homeroom teacher, then by the principal with the seal, and archived (record ids)."""
    settings = Settings(amqp_url=amqp_url, namespace=namespace)
    total = sum(len(r) for r in by_school.values())
    seen = steps.Seen()
    watch = seen.watching(Watch(amqp_url, settings.names()))
    bus = Bus(settings, "bench")
    await watch.start()
    await bus.broker.connect()
    try:
        await steps.seed_records(bus, by_school)
        await seen.until("records received", lambda: seen.received >= total)
        await steps.reviews_confirmed(bus, staff, by_school)
        teachers = await steps.homeroom_batches(bus, staff, by_school)
        await seen.until("homeroom batches", lambda: all(b in seen.done for b in teachers))
        principals = await steps.principal_batches(bus, staff, by_school)
        await seen.until("principal batches", lambda: all(b in seen.done for b in principals))
        await seen.until("archived", lambda: len(seen.archived) >= total)
    finally:
        await bus.broker.stop()
        await watch.stop()
    return [r.record_id for rows in by_school.values() for r in rows]


async def print_class(school: str, record_ids: list[str], folder: Path, cpu: dict[str, int | None]) -> Printed:
    """The class printed as `hocba archive print --class` does, after grades' listing: one session, the school's
    records administrator, per copy an export, the unsigned PDF, the seal from signing, the TSA's timestamp."""
    folder.mkdir(parents=True, exist_ok=True)
    before = {kind: steps.cpu_seconds(pid) for kind, pid in cpu.items()}
    own_before = time.process_time()
    began = time.perf_counter()
    sizes: list[tuple[int, int]] = []
    async with session(None, 120, "school") as s, sealing(s, school, "school_admin", PURPOSE) as sealer:
        reader = sealer.person
        for n, record_id in enumerate(record_ids, start=1):
            reply = await s.ask(
                reader.signs(ExportRecord(record_id=record_id, certified_copy=True, purpose=PURPOSE)), ProofReply
            )
            assert reply.bundle is not None
            data = await sealer.copy(reply.bundle, reply.qr)
            (folder / f"6A1-{n:02d}-v1.pdf").write_bytes(data)
            if not sizes:
                sizes.append((len(data), len(copy_pdf_bytes(reply.bundle, reply.qr or "", _now()))))
    seconds = time.perf_counter() - began
    used = {kind: steps.cpu_seconds(pid) - before[kind] for kind, pid in cpu.items()}
    used["command"] = time.process_time() - own_before
    return Printed(len(record_ids), seconds, used, *sizes[0])


def _now() -> datetime:
    return datetime.now(UTC)


async def raw_rates(pki: DevPki, bundle: dict, qr: str, tsa_url: str, copies: int) -> dict[str, float]:
    """Seconds per copy, one process, no broker: rendering the unsigned PDF; pyHanko signing it with the seal's key
    held here, B-B and B-LT (the TSA over HTTP, the chains and CRLs embedded)."""
    unsigned = copy_pdf_bytes(bundle, qr, _now())
    seal = pki.signer(seal_subject(bundle["record"]["school_code"]))
    assert isinstance(seal.backend, SoftwareKey), "the benchmark's PKI keeps the seal's key in a file"
    key = seal.backend.key
    info = asn1_keys.PrivateKeyInfo.load(
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    chain = [asn1_certificate(c) for c in seal.chain]
    local = signers.SimpleSigner(chain[0], info, SimpleCertificateStore.from_certs(chain))
    rates: dict[str, float] = {}

    began = time.process_time()
    for _ in range(copies):
        copy_pdf_bytes(bundle, qr, _now())
    rates["render"] = (time.process_time() - began) / copies

    began = time.process_time()
    for _ in range(copies):
        meta = PdfSignatureMetadata(field_name="Seal", subfilter=fields.SigSeedSubFilter.PADES, md_algorithm="sha256")
        await PdfSigner(meta, signer=local).async_sign_pdf(
            IncrementalPdfFileWriter(BytesIO(unsigned)), output=BytesIO()
        )
    rates["pyhanko B-B"] = (time.process_time() - began) / copies

    async def ask(attributes: bytes) -> CopySeal:
        return CopySeal(signature=_raw_signature(seal, attributes), chain=to_x5c(seal.chain))

    async with httpx.AsyncClient() as client:
        sealing_here = CopySealing.of(HttpTimeStamper(tsa_url, 10, client), pki.anchors(), load_crls(pki.crl_path))
        await sealing_here.seal(unsigned, seal_chain(bundle), ask)  # the sizing timestamp, once, as in a command
        began, wall = time.process_time(), time.perf_counter()
        for _ in range(copies):
            await sealing_here.seal(unsigned, seal_chain(bundle), ask)
        rates["pyhanko B-LT"] = (time.process_time() - began) / copies
        rates["pyhanko B-LT wall"] = (time.perf_counter() - wall) / copies
    return rates


def _raw_signature(seal: X509Signer, attributes: bytes) -> str:
    return base64.b64encode(seal.sign_raw(attributes)).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--class-size", type=int, default=demo_data.CLASS_SIZE, help="records in the class")
    parser.add_argument("--rounds", type=int, default=1, help="times the class is printed (the best is shown)")
    args = parser.parse_args()
    interrupt_on_signals()
    amqp_url = Settings().amqp_url
    console.print(f"RabbitMQ: {ensure_rabbitmq(amqp_url)}")
    base = Path(tempfile.mkdtemp(prefix="hocba-bench-copies-"))
    mongo = EmbeddedMongo(base / "mongo", free_port())
    mongo.start()
    issuer, jwks = dev_issuer(base)
    pki = open_pki(base / "pki")
    [school] = demo_data.schools(1)
    enrol(pki, [(school.code, school.name, {"6A1"})])
    by_school = steps.records_for(1, args.class_size, pki.signer(service_subject("grades")))
    services = steps.Services(base, mongo.url, amqp_url, 1, jwks.resolve(), pki.folder.resolve())
    tsa_port = free_port()
    tsa = Child(
        "tsa",
        [sys.executable, "-m", "hocba.tsa", "--port", str(tsa_port), "--log-level", "warning"],
        {**os.environ, "HOCBA_PKI_DIR": str(pki.folder.resolve())},
        tsa_port,
        base / "logs" / "tsa.log",
    )
    tsa_url = f"http://127.0.0.1:{tsa_port}/"
    os.environ.update(
        {
            "HOCBA_NAMESPACE": services.namespace,
            "HOCBA_DATA_DIR": str(base),
            "HOCBA_PKI_DIR": str(pki.folder.resolve()),
            "HOCBA_TSA_URL": tsa_url,
            "AMQP_URL": amqp_url,
        }
    )
    runs: list[Printed] = []
    try:
        services.start()
        started(tsa)
        record_ids = asyncio.run(signed_and_archived(amqp_url, services.namespace, Staff(issuer), by_school))
        pids = {child.name.split("-")[0]: child.pid for child in services.children}
        pids |= {"tsa": tsa.pid, "database": mongo.process.pid if mongo.process is not None else None}
        for round_no in range(args.rounds):
            runs.append(asyncio.run(print_class(school.code, record_ids, base / f"copies-{round_no}", pids)))
        first = base / "copies-0" / "6A1-01-v1.pdf"

        async def bundle_of() -> ProofReply:
            async with session(None, 60, "school") as s:
                admin = Staff(issuer).school_admin(school.code)
                return await s.ask(admin.signs(ExportRecord(record_id=record_ids[0], certified_copy=True)), ProofReply)

        reply = asyncio.run(bundle_of())
        assert reply.bundle is not None and reply.qr is not None
        raw = asyncio.run(raw_rates(pki, reply.bundle, reply.qr, tsa_url, min(20, args.class_size)))
    finally:
        tsa.ask_to_stop()
        services.stop()
        if tsa.process is not None:
            tsa.process.wait(30)
        asyncio.run(delete_exchanges(amqp_url, Names(services.namespace)))
        mongo.stop()
    best = min(runs, key=lambda r: r.seconds)
    table = Table(title=f"a class of {best.copies} printed as certified copies sealed PAdES B-LT, one command")
    for column in ("copies", "seconds", "copies/s", "ms/copy (wall)", "sealed PDF (KB)", "unsigned PDF (KB)"):
        table.add_column(column, justify="right")
    table.add_row(
        str(best.copies),
        f"{best.seconds:.2f}",
        f"{best.copies / best.seconds:.2f}",
        f"{1000 * best.seconds / best.copies:.0f}",
        f"{best.sealed_bytes / 1024:.0f}",
        f"{best.unsigned_bytes / 1024:.0f}",
    )
    console.print(table)
    cpu = Table(title="CPU per copy while the class was printed (ms, user + system)")
    kinds = ("command", "signing", "archive", "tsa", "database")
    for column in (*kinds, "all"):
        cpu.add_column(column, justify="right")
    per_copy = {k: 1000 * best.cpu.get(k, 0.0) / best.copies for k in kinds}
    cpu.add_row(*(f"{per_copy[k]:.1f}" for k in kinds), f"{sum(per_copy.values()):.1f}")
    console.print(cpu)
    local = Table(title="the same unsigned copy in this process, no broker (CPU ms per copy; copies/s on one core)")
    for column in (
        "render unsigned PDF/A-3",
        "pyHanko B-B, local key",
        "pyHanko B-LT, local key + TSA + CRLs",
        "B-LT wall ms",
        "command CPU ÷ pyHanko B-LT",
    ):
        local.add_column(column, justify="right")
    local.add_row(
        f"{1000 * raw['render']:.1f} ({1 / raw['render']:.0f}/s)",
        f"{1000 * raw['pyhanko B-B']:.1f} ({1 / raw['pyhanko B-B']:.0f}/s)",
        f"{1000 * raw['pyhanko B-LT']:.1f} ({1 / raw['pyhanko B-LT']:.0f}/s)",
        f"{1000 * raw['pyhanko B-LT wall']:.1f}",
        f"{per_copy['command'] / (1000 * (raw['render'] + raw['pyhanko B-LT'])):.2f}",
    )
    console.print(local)
    console.print(f"[dim]copies in {first.parent}; data in {base}.[/dim]")


if __name__ == "__main__":
    main()
