"""``_tree_copy.sync_tree``: the two-pass copy of a live shard's files (pure file logic).

The first pass copies everything; the second copies again only what was modified at or
after a time (or changed size, or is new) and removes what is gone, so the writes it
holds back wait for the recently written files, not for the whole shard.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from chroma.index._tree_copy import DIFF_BLOCK
from chroma.index._tree_copy import sync_tree as _sync_tree


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_the_second_pass_copies_only_what_changed_since_and_drops_what_is_gone(
    tmp_path: Path,
) -> None:
    source, target = tmp_path / "live", tmp_path / "copy"
    (source / "segments" / "sealed").mkdir(parents=True)
    (source / "segments" / "open").mkdir(parents=True)
    (source / "wal").mkdir()
    sealed = source / "segments" / "sealed" / "graph.bin"
    sealed.write_bytes(b"g" * 1000)
    growing = source / "segments" / "open" / "vectors.dat"
    growing.write_bytes(b"v" * 100)
    rewritten = source / "wal" / "open-1"
    rewritten.write_bytes(b"w" * 64)
    gone = source / "wal" / "closed-0"
    gone.write_bytes(b"old")
    for path in (sealed, growing, rewritten, gone):
        _age(path, 60)
    assert _sync_tree(source, target, since=None) == 1000 + 100 + 64 + 3
    assert _tree(target) == _tree(source)

    began = time.time()
    growing.write_bytes(b"v" * 150)  # grew
    rewritten.write_bytes(b"W" * 64)  # same size, written after the first pass
    (source / "wal" / "open-2").write_bytes(b"new")
    gone.unlink()
    (source / "segments" / "sealed").rename(source / "segments" / "merged")  # a new dir
    (target / "segments" / "open" / "stray").write_bytes(b"x")  # not in the source
    copied = _sync_tree(source, target, since=began - 1.0)
    assert _tree(target) == _tree(source)
    # The grown file: only its 50 new bytes; the moved sealed file is new to the copy.
    assert copied == 50 + 64 + 3 + 1000
    assert not (target / "segments" / "sealed").exists()

    # A file older than ``since``, of the same size, is taken as unchanged: not copied.
    (target / "segments" / "merged" / "graph.bin").write_bytes(b"G" * 1000)
    assert _sync_tree(source, target, since=time.time() - 1.0) == 0  # all the same
    assert (target / "segments" / "merged" / "graph.bin").read_bytes() == b"G" * 1000


def test_a_large_file_of_the_same_size_gets_only_its_changed_blocks_written(
    tmp_path: Path,
) -> None:
    source, target = tmp_path / "live", tmp_path / "copy"
    source.mkdir()
    big = source / "chunk_0.mmap"
    big.write_bytes(bytes(4 * DIFF_BLOCK))
    _age(big, 60)
    assert _sync_tree(source, target, since=None) == 4 * DIFF_BLOCK
    began = time.time()
    with open(big, "r+b") as handle:  # a few points appended into a preallocated file
        handle.seek(2 * DIFF_BLOCK + 10)
        handle.write(b"points")
    assert _sync_tree(source, target, since=began - 1.0) == DIFF_BLOCK
    assert _tree(target) == _tree(source)
    with open(big, "r+b") as handle:  # and a change of size: the whole file again
        handle.truncate(3 * DIFF_BLOCK)
    assert _sync_tree(source, target, since=began - 1.0) == 0  # cut to size, nothing written
    assert _tree(target) == _tree(source)


def test_a_grown_file_gets_its_changed_blocks_and_its_new_tail_and_a_small_one_its_bytes(
    tmp_path: Path,
) -> None:
    """Edge's id tracker files grow by appends (20 MiB at 1M): the copy held writes while
    it rewrote them whole. Now the common length is compared and only the tail added;
    odd lengths (not whole 64-bit words, a last short block) are compared exactly."""
    source, target = tmp_path / "live", tmp_path / "copy"
    source.mkdir()
    grown, small = source / "mutable_id_tracker.mappings", source / "status.dat"
    grown.write_bytes(bytes(2 * DIFF_BLOCK + 13))
    small.write_bytes(b"abcdefghijk")  # 11 bytes
    assert _sync_tree(source, target, since=None) == 2 * DIFF_BLOCK + 13 + 11
    began = time.time()
    with open(grown, "r+b") as handle:
        handle.seek(2 * DIFF_BLOCK + 12)  # the last byte of the short block, then appends
        handle.write(b"\x01" + b"\x02" * (DIFF_BLOCK + 5))
    small.write_bytes(b"abcdefghijK")  # its last byte, past the whole words
    copied = _sync_tree(source, target, since=began - 1.0)
    assert _tree(target) == _tree(source)
    assert copied == 13 + (DIFF_BLOCK + 5) + 11
