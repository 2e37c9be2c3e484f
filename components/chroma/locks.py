"""A lock file held by one live process, naming its owner (flock: freed if it dies)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

__all__ = ["LockHeld", "hold_pid_lock"]


class LockHeld(RuntimeError):
    """Another live process holds the lock; ``owner`` says which (``pid N``)."""

    def __init__(self, owner: str) -> None:
        super().__init__(owner)
        self.owner = owner


def hold_pid_lock(path: Path) -> IO[str]:
    """Take ``path`` exclusively for this process's life (keep the returned handle open)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held until the process closes it or exits
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise LockHeld(owner) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle
