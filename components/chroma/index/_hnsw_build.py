"""Child-process entry point that builds a Qdrant Edge shard's HNSW graph.

``python -m chroma.index._hnsw_build <shard-dir>`` loads the (closed) shard, runs its
optimizers to completion, flushes and closes it. ``edge.EdgeQueryEngine`` runs this for
every new version because ``EdgeShard.optimize`` in qdrant-edge-py 0.9 holds the GIL for
the whole build (measured: a 100k x 128 build stalls every other Python thread of the
process for ~20 s). In a child, searches in the serving process keep running.
"""

from __future__ import annotations

import sys

import qdrant_edge as edge

from chroma.lifetime import die_with_parent, parent_pid_from_env


def build(shard_dir: str) -> None:
    shard = edge.EdgeShard.load(shard_dir)
    try:
        shard.optimize()
        shard.flush()
    finally:
        shard.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m chroma.index._hnsw_build <shard-dir>")
    # A worker stopped (or killed) mid-build must not leave us writing into a shard
    # that its next start opens again.
    die_with_parent(parent_pid_from_env())
    build(sys.argv[1])
