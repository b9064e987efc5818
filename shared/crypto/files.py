"""Owner-only key files that are never seen half-written: made whole beside their place, then linked or renamed in.

Several processes of one service start together (signing workers) and may each find a key file missing:
the first to link its complete file wins, the others read that one. A file created in place and then
written (`O_EXCL`, then `write`) would let a second process read it empty in between.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _written_beside(path: Path, data: bytes) -> str:
    """A temporary file in `path`'s folder holding `data`, synced, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return temporary


def create_whole(path: Path, data: bytes) -> bool:
    """Make `path` hold `data` unless it exists; False when another process made it first (theirs stands)."""
    temporary = _written_beside(path, data)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        Path(temporary).unlink(missing_ok=True)
    return True


def replace_whole(path: Path, data: bytes) -> None:
    """Make `path` hold `data`, replacing what it held in one step."""
    temporary = _written_beside(path, data)
    try:
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
