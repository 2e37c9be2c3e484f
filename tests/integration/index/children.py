"""The index's child processes as ``/proc`` shows them, for the suites that check that a
build or a graph runs in a child and that none is left behind."""

from __future__ import annotations

import os
from pathlib import Path


def hnsw_builders(parent: int | None = None) -> list[int]:
    """Pids of ``parent``'s (default: this process's) live ``chroma.index._hnsw_build``
    children; zombies are not counted."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == parent and state != "Z" and b"chroma.index._hnsw_build" in cmdline:
            found.append(int(entry.name))
    return found
