"""Copying a live Edge shard's directory, in rounds, for ``EdgeQueryEngine.optimize``.

``sync_tree`` makes a copy of a directory tree; later calls rewrite only the files
modified since a time, and of those only the blocks that differ (see ``copy_file``).
``python -m chroma.index._tree_copy SOURCE TARGET`` runs it in a child process on its
parent's request: one line on stdin per round (the time ``since``, or empty for a first,
full copy), answered by the bytes written on stdout. The parent then waits on a pipe,
not on its own GIL: a copy in the parent released and took back the GIL at every stat
and read (hundreds of times at 1M), and each time the index host's busy threads (search,
reading, scoring) could keep it a switch interval (5 ms): 0.6-1.6 s with writes held
(``bench/graph_copy.py --busy 2``), the tail of the searchable p99.
"""

from __future__ import annotations

import argparse
import mmap
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from chroma.lifetime import die_with_parent, parent_pid_from_env

__all__ = ["DIFF_BLOCK", "copy_file", "sync_tree"]


def sync_tree(source: Path, target: Path, *, since: float | None) -> int:
    """Make ``target`` a copy of the files under ``source``; bytes written. With ``since``
    (a time), a file already in ``target`` with the same size is copied again only if
    ``source``'s was modified at or after ``since``; files gone from ``source`` go."""
    copied = 0
    seen: set[Path] = set()
    for directory, _, files in os.walk(source):
        relative = Path(directory).relative_to(source)
        (target / relative).mkdir(parents=True, exist_ok=True)
        seen.add(relative)
        for name in files:
            path, there = Path(directory) / name, target / relative / name
            seen.add(relative / name)
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            if since is not None and stat.st_mtime < since and there.exists() \
                    and there.stat().st_size == stat.st_size:
                continue
            copied += copy_file(path, there, stat.st_size)
    if since is not None:
        for directory, _, files in os.walk(target, topdown=False):
            relative = Path(directory).relative_to(target)
            for name in files:
                if relative / name not in seen:
                    (target / relative / name).unlink()
            if relative not in seen:
                shutil.rmtree(target / relative, ignore_errors=True)
    return copied


DIFF_BLOCK = 1 << 20
"""Block size of ``copy_file``'s comparison. Edge preallocates 32 MiB files (a segment's
vector chunk and payload page, the write-ahead log's segment) of which a second of
writes changes a few blocks."""


def copy_file(path: Path, there: Path, size: int) -> int:
    """Make ``there`` a copy of ``path`` (``size`` bytes, as stat'ed); bytes written.

    A file the copy has already is updated in place: only the blocks of the common
    length that differ are written, then what ``path`` has beyond it (Edge's id tracker
    files only grow, by appends), then it is cut to size. Comparing both from the page
    cache costs less than rewriting a file, and a file is never truncated and written
    again (ext4 then writes its blocks back at close: 5 ms a file under load)."""
    if not there.exists():
        shutil.copyfile(path, there)
        return size
    with open(path, "rb") as source, open(there, "r+b") as target:
        had = os.fstat(target.fileno()).st_size
        common = min(had, size)
        written = _copy_changed_blocks(source.fileno(), target.fileno(), common)
        if size > common:
            written += _copy_range(source.fileno(), target.fileno(), common, size)
        if had > size:
            os.ftruncate(target.fileno(), size)
    return written


def _copy_changed_blocks(source: int, target: int, length: int) -> int:
    """Write the ``DIFF_BLOCK`` blocks of ``source``'s first ``length`` bytes that differ
    in ``target``; bytes written. Each block of ``source`` is read into one reused buffer
    (reading into new ones, i.e. ``pread``, cost twice as much: allocation and faults)
    and compared by numpy with the copy through a mapping of it (ours: never shortened
    under it), the GIL released for both. ``source`` is not mapped: in a round that does
    not hold writes Edge might shorten a file, and a mapping past its end kills us."""
    if length == 0:
        return 0
    size = min(DIFF_BLOCK, length)
    buffer = bytearray(size)
    view = memoryview(buffer)
    written = 0
    with mmap.mmap(target, length, access=mmap.ACCESS_READ) as ours:
        read, copy = np.frombuffer(buffer, np.uint8), np.frombuffer(ours, np.uint8)
        try:
            for offset in range(0, length, size):
                got = os.preadv(source, [view[:min(size, length - offset)]], offset)
                if got <= 0:  # the source got shorter meanwhile (an unlocked round)
                    break
                if not _same(read[:got], copy[offset:offset + got]):
                    written += os.pwrite(target, view[:got], offset)
        finally:
            del read, copy  # a mapping (or buffer) with arrays over it cannot close
    view.release()
    return written


def _same(ours: np.ndarray, theirs: np.ndarray) -> bool:
    """Byte arrays equal? Compared as 64-bit words when the length allows (4x fewer)."""
    if len(ours) % 8 == 0:
        return bool(np.array_equal(ours.view(np.uint64), theirs.view(np.uint64)))
    return bool(np.array_equal(ours, theirs))


def _copy_range(source: int, target: int, start: int, end: int) -> int:
    """Copy bytes [start, end) of ``source`` to the same place in ``target``."""
    done = start
    while done < end:
        moved = os.copy_file_range(source, target, end - done, done, done)
        if moved == 0:  # the source got shorter meanwhile (an unlocked round): later rounds
            break
        done += moved
    return done - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="copy a shard's tree on request")
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    die_with_parent(parent_pid_from_env())
    for line in sys.stdin:
        since = float(line) if line.strip() else None
        print(sync_tree(args.source, args.target, since=since), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
