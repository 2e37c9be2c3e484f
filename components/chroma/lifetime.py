"""Child processes that die with their parent.

Owns the one Linux mechanism for it (``prctl(PR_SET_PDEATHSIG)``) so every child we
start, directly or through multiprocessing, ends when the process that started it is
gone. Shared by all components; imports nothing of chroma.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["PARENT_PID_ENV", "die_with_parent", "parent_pid_from_env"]

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

# Set by a parent that starts a plain subprocess (not multiprocessing): the child checks
# it to close the race where the parent died before the child asked to be told.
PARENT_PID_ENV = "CHROMA_PARENT_PID"


def die_with_parent(parent_pid: int | None) -> None:
    """Have the kernel SIGKILL this process when its parent dies.

    The signal fires when the *thread* that started us ends, so parents start children
    from a thread that lives as long as the child matters (the main thread, or one that
    waits for the child). ``parent_pid``: the pid the parent had when it started us; if
    it is already gone (we were reparented before the prctl), die now.
    """
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)


def parent_pid_from_env() -> int | None:
    """The pid a plain-subprocess parent put in :data:`PARENT_PID_ENV`, if any."""
    value = os.environ.get(PARENT_PID_ENV, "")
    return int(value) if value.isdigit() else None
