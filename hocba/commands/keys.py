"""`hocba keys`: rotate a service's data key (over the bus, with progress), re-wrap its key ring under a new
key-encryption key (on the service's host, with the service stopped or running)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hocba.commands import DataDir, Session, fail, run, session
from hocba.console import console
from hocba.watch import Watch
from shared.contracts.identity import KeyRotationProgress, RotateIdentityKey
from shared.contracts.keys import (
    ArchiveKeyRotationProgress,
    DataKeyRotationProgress,
    GradesKeyRotationProgress,
    RotateArchiveKey,
    RotateDataKey,
    RotateGradesKey,
    RotateSigningKey,
    RotateSyncKey,
    SigningKeyRotationProgress,
    SyncKeyRotationProgress,
)
from shared.crypto.kek import FileKek, KekError
from shared.crypto.vault import Vault, kek_for
from shared.errors import NoAnswer
from shared.settings import SERVICES, Settings

app = typer.Typer(help="Data keys at rest: rotate a service's data key, re-wrap its key ring under a new KEK.")

#: Each service's rotation: the operator's command and the progress it announces.
ROTATIONS: dict[str, tuple[type[RotateDataKey], type[DataKeyRotationProgress]]] = {
    "identity": (RotateIdentityKey, KeyRotationProgress),
    "grades": (RotateGradesKey, GradesKeyRotationProgress),
    "signing": (RotateSigningKey, SigningKeyRotationProgress),
    "archive": (RotateArchiveKey, ArchiveKeyRotationProgress),
    "sync": (RotateSyncKey, SyncKeyRotationProgress),
}

Service = Annotated[str, typer.Option("--service", help=f"One of {', '.join(SERVICES)}.")]


def known(service: str) -> str:
    if service not in ROTATIONS:
        raise typer.BadParameter(f"unknown service {service!r}: one of {', '.join(SERVICES)}")
    return service


@app.command("rotate")
def rotate_command(
    service: Service,
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait without progress before giving up.")] = 120.0,
) -> None:
    """Add a new data key to SERVICE's key ring, make it current and re-encrypt everything it keeps under it.

    Reads keep working throughout: the service keeps the old keys, and each document names the key it is under.
    """
    name = known(service)

    async def conversation() -> DataKeyRotationProgress:
        async with session(data_dir, timeout) as s:
            return await rotate(s, name, timeout)

    final = run(conversation())
    console.print(f"{name}: key {escape(final.key_id)} is current; {final.done} document(s) re-encrypted")


async def rotate(s: Session, service: str, timeout: float) -> DataKeyRotationProgress:
    """Ask `service` to rotate its data key and follow the re-encryption until it has finished."""
    command_type, progress_type = ROTATIONS[service]
    command = s.operator.signs(command_type(message_id=uuid.uuid4().hex))
    latest: asyncio.Queue[DataKeyRotationProgress] = asyncio.Queue()

    def progress(event: DataKeyRotationProgress) -> None:
        if event.source_message_id == command.message_id:
            latest.put_nowait(event)

    watch = Watch(s.settings.amqp_url, s.settings.names())
    watch.on(progress_type, progress)
    await watch.start()
    try:
        await s.send(command)
        return await follow_rotation(latest, service, timeout)
    except TimeoutError:
        raise NoAnswer(f"no progress from {service}: is the stack up, and is this an operator's data folder?") from None
    finally:
        await watch.stop()


async def follow_rotation(
    latest: asyncio.Queue[DataKeyRotationProgress], service: str, timeout: float
) -> DataKeyRotationProgress:
    """Show the re-encryption's progress until its last event; `TimeoutError` when none comes for `timeout`."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as bars:
        task = bars.add_task(f"{service}: re-encrypting", total=None)
        while True:
            event = await asyncio.wait_for(latest.get(), timeout)
            bars.update(task, completed=event.done, total=event.total,
                        description=f"{service}: re-encrypting under {escape(event.key_id)}")
            if event.finished:
                return event


@app.command("rewrap")
def rewrap_command(
    service: Service,
    new_kek_file: Annotated[Path, typer.Option("--new-kek-file", help="The new key-encryption key (32 bytes, base64).")],
    data_dir: DataDir = None,
) -> None:
    """Wrap SERVICE's key ring under a new key-encryption key; the data keys, and so the data, stay as they are.

    Run it where the service's key ring is, with its current KEK configured (HOCBA_KEK_FILE, or the development
    one); then give the service the new KEK file and retire the old one.
    """
    name = known(service)
    settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    path = settings.key_ring_path(name)
    if not path.exists():
        fail(f"{name} has no key ring at {path}: nothing to re-wrap")
    try:
        new = FileKek.read(new_kek_file)
        vault = Vault.at(path, kek_for(settings, name), name)
        vault.rewrap(new)
    except KekError as exc:
        fail(f"cannot re-wrap {name}'s key ring: {exc}")
    console.print(f"{name}: key ring {escape(str(path))} is wrapped under {escape(new.kek_id)} ({vault.key_count} data key(s))")
