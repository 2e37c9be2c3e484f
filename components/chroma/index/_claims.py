"""Who is building an index version: a claim file beside each version directory.

A version newer than the live one is a build in progress, here or in another process
(a ``reindex`` from the command line, the workers' background graph build), or what is
left of a build whose process died: a graph build over 1M points leaves ~1 GiB. The
claim file names the building process (pid and its start time, so a reused pid is not
mistaken for it); ``EdgeQueryEngine.drop_old_versions`` removes a newer version only
when its claim names a process that is gone. Linux only (``/proc``), as the engine is.

Owns: the claim file's format and the liveness check. Must not touch the versions
themselves: the engine removes them under its file lock.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["claim_path", "orphaned", "write_claim"]

_SUFFIX = ".claim"


def claim_path(version_dir: Path) -> Path:
    """The claim file of ``version_dir`` (a sibling: the copier and Edge own the inside)."""
    return version_dir.with_name(version_dir.name + _SUFFIX)


def write_claim(version_dir: Path) -> None:
    """Name this process as the builder of ``version_dir``."""
    pid = os.getpid()
    claim_path(version_dir).write_text(f"{pid} {_start_time(pid)}\n")


def orphaned(version_dir: Path) -> bool:
    """Whether the process that claimed ``version_dir`` is gone. ``False`` when there is
    no readable claim: it may be written a moment after the directory (``mkdir`` reserves
    the number), or the version predates claims; such a version is left alone."""
    try:
        pid_text, started = claim_path(version_dir).read_text().split()
        pid = int(pid_text)
    except (FileNotFoundError, ValueError):
        return False
    return _start_time(pid) != started


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22),
    or ``"gone"``. The command name (field 2) may hold spaces and parentheses, so the
    fields are counted from its closing one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return "gone"
    return stat[stat.rindex(")") + 2:].split()[19]
