"""`hocba archive`: audit the log, export a record's verification bundle, print a certified copy."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from hocba.commands import DataDir, Purpose, ask, fail
from hocba.console import console
from hocba.pdf import render_copy
from shared.contracts.archive import AuditArchive, AuditReport, ExportRecord, IssueCheckpoint, ProofReply

app = typer.Typer(
    help="The permanent archive: audit, export, certified copies (each request with the operator's token for it).",
    no_args_is_help=True,
)


def export_bundle(
    record: str, version: int | None, purpose: str, data_dir: Path | None = None, timeout: float = 60.0
) -> dict[str, Any]:
    """The record version's verification bundle, read by the operator for `purpose`."""
    reply = ask(ExportRecord(record_id=record, version=version, purpose=purpose), ProofReply, timeout, data_dir=data_dir)
    if reply.bundle is None:
        fail(f"the archive sent no bundle for {record}")
    return reply.bundle


@app.command("audit")
def audit(
    timeout: Annotated[float, typer.Option(help="Seconds the audit may take.")] = 600.0,
    data_dir: DataDir = None,
) -> None:
    """Recompute the log from its stored entries and check it against every signed checkpoint."""
    report = ask(AuditArchive(), AuditReport, timeout, data_dir=data_dir)
    show_audit(report)


def show_audit(report: AuditReport) -> None:
    """The audit's checks and findings, as the archive words them (printed as written); exits 1 on a finding."""
    console.print(f"audited {report.entries:,} entries against {report.checkpoints} signed checkpoints")
    for line in report.passed:
        console.print(f"  [green]✓[/green] {escape(line)}")
    for finding in report.findings:
        console.print(f"  [red]✗[/red] {escape(finding.problem)}")
    if not report.ok:
        console.print(f"[red]the log has been tampered with: {len(report.findings)} finding(s)[/red]")
        raise typer.Exit(1)
    console.print("[green]the log is intact[/green]")


@app.command("export")
def export(
    record: Annotated[str, typer.Argument(help="Record id.")],
    version: Annotated[int | None, typer.Option(help="Version (default: the latest).")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Bundle file (default <record>-v<N>.json).")] = None,
    purpose: Purpose = "record export from the command line",
    data_dir: DataDir = None,
) -> None:
    """Write the record version's offline verification bundle (record, signatures, chains, proof, checkpoint).

    The archive logs the export (who, why) in its access log: `hocba audit access` shows it.
    """
    bundle = export_bundle(record, version, purpose, data_dir)
    path = out or Path(f"{record}-v{bundle['record']['version']}.json")
    path.write_text(json.dumps(bundle, ensure_ascii=False, indent=1))
    where = f"entry {bundle['log']['leaf_index']} of {bundle['log']['tree_size']}"
    console.print(f"wrote {escape(str(path))}: {escape(where)}; check it with `hocba verify {escape(str(path))}`")


@app.command("print")
def print_copy(
    record: Annotated[str, typer.Argument(help="Record id.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="PDF to write.")] = Path("copy.pdf"),
    version: Annotated[int | None, typer.Option(help="Version (default: the latest).")] = None,
    purpose: Purpose = "certified copy printed from the command line",
    data_dir: DataDir = None,
) -> None:
    """Print a certified copy on A4: the record as on paper, signers and times, a signed QR code, the bundle attached.

    The archive logs the print (who, why) in its access log: `hocba audit access` shows it.
    """
    request = ExportRecord(record_id=record, version=version, certified_copy=True, purpose=purpose)
    reply = ask(request, ProofReply, 60.0, data_dir=data_dir)
    if reply.bundle is None or reply.qr is None:
        fail(f"the archive sent no certified copy of {record}")
    render_copy(reply.bundle, reply.qr, out, datetime.now(UTC))
    console.print(f"wrote {escape(str(out))}; check it with `hocba verify {escape(str(out))}`")


@app.command("checkpoint")
def checkpoint(data_dir: DataDir = None) -> None:
    """Have the archive sign a checkpoint of its log now (it also does after every batch and on a schedule)."""
    reply = ask(IssueCheckpoint(), ProofReply, 60.0, data_dir=data_dir)
    stated = (reply.bundle or {}).get("checkpoint") or {}
    said = f"{stated.get('tree_size')} entries, root {stated.get('root_hash')}, {stated.get('issued_at')}"
    console.print(f"checkpoint: {escape(said)}")
