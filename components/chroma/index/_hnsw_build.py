"""Child-process entry point that writes a new Qdrant Edge version and builds its graph.

``python -m chroma.index._hnsw_build <shard-dir> [--write BATCH] [--no-graph]`` loads the
(closed) shard; with ``--write`` it first upserts the points its parent streams on stdin
(pickled ``(records, float32 matrix)`` pairs, ``BATCH`` points per update, until end of
input); unless ``--no-graph`` it moves payload indexes still read into RAM to mmap
(``edge.move_payload_indexes``) and runs the optimizers to completion (the HNSW graph); then
flushes and closes it. Points are written with their shared payload fields set per
group (``edge.upsert_points_grouped``): no one searches the version before its switch.
``edge.EdgeQueryEngine`` builds every new version this way because
qdrant-edge-py 0.9 holds the GIL both while it converts points (~40 us a point with our
payload) and for the whole ``optimize`` (a 100k x 128 build stalls every other Python
thread of the process for ~20 s). In a child, searches and the other workers of the
serving process keep running, and the child has a core of its own.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from typing import BinaryIO

import qdrant_edge as edge

from chroma.lifetime import die_with_parent, parent_pid_from_env


def write(shard: edge.EdgeShard, frames: BinaryIO, batch_size: int) -> int:
    """Upsert every ``(records, matrix)`` frame of ``frames``; how many points."""
    # The parent's own point layout; nobody searches this version before the switch.
    from chroma.index.edge import upsert_points_grouped

    written = 0
    while True:
        try:
            records, matrix = pickle.load(frames)
        except EOFError:
            return written
        written += upsert_points_grouped(shard, records, matrix, batch_size)


def build(shard_dir: str, *, frames: BinaryIO | None = None, batch_size: int = 1_000,
          graph: bool = True) -> None:
    from chroma.index.edge import move_payload_indexes

    shard = edge.EdgeShard.load(shard_dir)
    try:
        if frames is not None:
            write(shard, frames, batch_size)
        if graph:
            # A version made before its indexes were mmap'd: moved here, off the index
            # host, so the host's open of what this builds is the cheap one.
            move_payload_indexes(shard)
            shard.optimize()
        shard.flush()
    finally:
        shard.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m chroma.index._hnsw_build")
    parser.add_argument("shard_dir")
    parser.add_argument("--write", type=int, metavar="BATCH", default=None,
                        help="upsert the points streamed on stdin first, BATCH per update")
    parser.add_argument("--no-graph", action="store_true", help="do not build the graph")
    args = parser.parse_args(argv)
    build(args.shard_dir, frames=sys.stdin.buffer if args.write else None,
          batch_size=args.write or 1_000, graph=not args.no_graph)


if __name__ == "__main__":
    # A worker stopped (or killed) mid-build must not leave us writing into a shard
    # that its next start opens again.
    die_with_parent(parent_pid_from_env())
    main(sys.argv[1:])
