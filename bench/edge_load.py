"""How long opening a built Edge version takes, and what it costs the searches beside it.

After a graph build the index host opens the built version (``EdgeQueryEngine.optimize``
-> ``_open_version`` -> ``EdgeShard.load``); qdrant-edge-py 0.9 holds the GIL for the
whole load, so every search and upsert of that process waits for it. This builds one
``--points`` x ``--dim`` version as the engine builds them (``EdgeQueryEngine.reindex``
with a graph: ``_edge_config``, ``_payload_indexes``), copies it once per variant, changes
the copy (its payload indexes recreated in another memory placement, or dropped), then
opens each copy ``--loads`` times, each in a fresh process (so RSS is that load's), and
prints per variant the medians of:

* the load's wall and CPU time, and the longest a Python thread beside it went without
  the GIL (a thread waking every 1 ms: the stall searches would see);
* the first search after the load, then p50 / p99 of ``--searches`` single searches
  (k=10, unfiltered), and p50 of searches filtered by ``split`` + ``dataset`` and by a
  ``logged_at`` range (mmap'd indexes may be slow at first);
* RSS after the load and after the searches (MiB), and the flush and close of the shard
  (as a retired version's, GIL held too).

Variants (each recreates the payload indexes of its copy, so the build's own placement
does not matter): ``ram-indexes`` (``memory`` unset: read into RAM at load, as versions
were made before ``edge.PAYLOAD_INDEX_MEMORY``), ``cold-indexes`` (``Memory.Cold``: mmap'd,
as made now), ``cached-indexes`` (``Memory.Cached``), ``cold-float`` (keywords in RAM,
``logged_at`` mmap'd), ``no-float`` (keywords in RAM, no ``logged_at`` index),
``no-indexes`` (none).

    .venv/bin/python bench/edge_load.py [--points 200000] [--dim 128] [--loads 5]
        [--searches 1000] [--variants ram-indexes,cold-indexes,...] [--keep DIR]

``--keep DIR`` keeps the built version in DIR and reuses it next time (a 1M build with
its graph takes ~10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as edge

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import gil_ticker, machine_info, median

from chroma.index import IndexConfig, IndexedRecord
from chroma.index.edge import _KEYWORD_FIELDS, EdgeQueryEngine

KEY = "edge-load-bench"
CENTRES = 100


def batches(points: int, dim: int, step: int = 10_000):  # type: ignore[no-untyped-def]
    """Clustered vectors with payloads like a production log's (two datasets)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(CENTRES, dim)).astype(np.float32)
    for first in range(0, points, step):
        n = min(step, points - first)
        records = [IndexedRecord(dataset=f"prod{i % 2}", record_id=f"r{i}", split="production",
                                 inference_class=f"c{i % 10}", logged_at=float(i))
                   for i in range(first, first + n)]
        noise = rng.normal(scale=0.3, size=(n, dim)).astype(np.float32)
        yield records, centres[rng.integers(0, CENTRES, n)] + noise


def build(root: Path, points: int, dim: int) -> Path:
    """The built version's directory (built here unless ``root`` holds one already)."""
    pointer = root / KEY / "CURRENT"
    if not pointer.exists():
        engine = EdgeQueryEngine(IndexConfig(backend="edge", path=root))
        try:
            began = time.perf_counter()
            engine.reindex(KEY, dim, "cosine", batches(points, dim), graph=True)
            print(f"built {points:,} x {dim} with its graph in"
                  f" {time.perf_counter() - began:.0f} s", flush=True)
        finally:
            engine.close()
    return root / KEY / pointer.read_text().strip()


_DROP = object()


def _reindexed(memory: Any, fields: tuple[str, ...]) -> Callable[[edge.EdgeShard], None]:
    """Recreate ``fields``' payload indexes with ``memory`` (``None``: unset, i.e. read
    into RAM, as versions were made before; ``_DROP``: no index)."""
    def change(shard: edge.EdgeShard) -> None:
        for name in fields:
            shard.update(edge.UpdateOperation.delete_field_index(name))
            if memory is _DROP:
                continue
            params: Any = (edge.FloatIndexParams(enable_hnsw=False, memory=memory)
                           if name == "logged_at" else
                           edge.KeywordIndexParams(enable_hnsw=False, memory=memory))
            shard.update(edge.UpdateOperation.create_field_index(name, params))
    return change


def _then(*changes: Callable[[edge.EdgeShard], None]) -> Callable[[edge.EdgeShard], None]:
    def change(shard: edge.EdgeShard) -> None:
        for one in changes:
            one(shard)
    return change


ALL_FIELDS = (*_KEYWORD_FIELDS, "logged_at")
VARIANTS: dict[str, Callable[[edge.EdgeShard], None]] = {
    "ram-indexes": _reindexed(None, ALL_FIELDS),
    "cold-indexes": _reindexed(edge.Memory.Cold, ALL_FIELDS),
    "cached-indexes": _reindexed(edge.Memory.Cached, ALL_FIELDS),
    "cold-float": _then(_reindexed(None, _KEYWORD_FIELDS),
                        _reindexed(edge.Memory.Cold, ("logged_at",))),
    "no-float": _then(_reindexed(None, _KEYWORD_FIELDS), _reindexed(_DROP, ("logged_at",))),
    "no-indexes": _reindexed(_DROP, ALL_FIELDS),
}


def variant_copy(built: Path, root: Path, name: str) -> Path:
    target = root / f"variant-{name}"
    if target.exists():
        return target
    shutil.copytree(built, target)
    shard = edge.EdgeShard.load(str(target))
    try:
        began = time.perf_counter()
        VARIANTS[name](shard)
        shard.flush()
        print(f"variant {name}: payload indexes recreated in"
              f" {time.perf_counter() - began:.1f} s", flush=True)
    finally:
        shard.close()
    return target


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_once(version_dir: str, dim: int, searches: int) -> dict[str, float]:
    """One load as the engine opens a version, timed; run in a process of its own."""
    settings = edge.EdgeConfig(
        vectors=edge.EdgeVectorParams(size=dim, distance=edge.Distance.Cosine),
        max_search_threads=1)
    with gil_ticker() as gaps:
        began, cpu = time.perf_counter(), time.process_time()
        shard = edge.EdgeShard.load(version_dir, settings)
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
        time.sleep(0.05)
    rss_loaded = _rss_mib()
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(searches, dim)).astype(np.float32).tolist()
    params = edge.SearchParams(hnsw_ef=128)

    def timed(query: list[float], search_filter: Any = None) -> float:
        began = time.perf_counter()
        shard.query(edge.QueryRequest(limit=10, query=edge.Query.Nearest(query),
                                      filter=search_filter, with_payload=True, params=params))
        return time.perf_counter() - began

    first = timed(queries[0])
    single = [timed(q) for q in queries[1:]]
    by_split = edge.Filter(must=[
        edge.FieldCondition(key="split", match=edge.MatchValue("production")),
        edge.FieldCondition(key="dataset", match=edge.MatchAny(["prod0"]))])
    by_time = edge.Filter(must=[edge.FieldCondition(
        key="logged_at", range=edge.RangeFloat(gte=0.0, lt=float(2**40)))])
    split_times = [timed(q, by_split) for q in queries[:100]]
    time_times = [timed(q, by_time) for q in queries[:100]]
    rss_searched = _rss_mib()
    began = time.perf_counter()
    shard.flush()  # as a retired version is closed (``_Shard.close``)
    shard.close()
    closed = time.perf_counter() - began
    return {
        "wall": wall, "cpu": cpu, "stall": max(gaps), "first": first,
        "p50": float(np.percentile(single, 50)), "p99": float(np.percentile(single, 99)),
        "split_p50": float(np.percentile(split_times, 50)),
        "time_p50": float(np.percentile(time_times, 50)),
        "rss_loaded": rss_loaded, "rss_searched": rss_searched,
        "close": closed,
        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--searches", type=int, default=1_000)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the built versions here")
    parser.add_argument("--load-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_one:
        print(json.dumps(load_once(args.load_one, args.dim, args.searches)))
        return
    print(machine_info(("qdrant-edge-py", "numpy")))
    print("load average at start (1/5/15 min): "
          + " / ".join(f"{x:.1f}" for x in os.getloadavg()), flush=True)
    root = args.keep or Path(tempfile.mkdtemp(prefix="edge-load-"))
    root.mkdir(parents=True, exist_ok=True)
    names = args.variants.split(",")
    try:
        built = build(root, args.points, args.dim)
        copies = {name: variant_copy(built, root, name) for name in names}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for _ in range(args.loads):  # interleaved: load drifts hit every variant alike
            for name in names:
                out = subprocess.run(
                    [sys.executable, __file__, "--load-one", str(copies[name]),
                     "--dim", str(args.dim), "--searches", str(args.searches)],
                    check=True, capture_output=True, text=True).stdout
                results[name].append(json.loads(out.strip().splitlines()[-1]))
        print(f"\n{args.points:,} x {args.dim}, medians of {args.loads} loads each"
              " (each in a fresh process)")
        print(f"{'variant':<13} {'load s':>7} {'cpu s':>6} {'GIL stall s':>11}"
              f" {'1st ms':>7} {'p50 ms':>7} {'p99 ms':>7} {'split p50':>9}"
              f" {'time p50':>9} {'RSS load':>8} {'RSS srch':>8} {'close s':>7}")
        for name in names:
            rows = results[name]

            def m(field: str, rows: list[dict[str, float]] = rows) -> float:
                return median([row[field] for row in rows])

            print(f"{name:<13} {m('wall'):7.3f} {m('cpu'):6.3f} {m('stall'):11.3f}"
                  f" {m('first') * 1e3:7.2f} {m('p50') * 1e3:7.3f} {m('p99') * 1e3:7.3f}"
                  f" {m('split_p50') * 1e3:9.3f} {m('time_p50') * 1e3:9.3f}"
                  f" {m('rss_loaded'):8.0f} {m('rss_searched'):8.0f} {m('close'):7.3f}")
        print("load average at the end (1/5/15 min): "
              + " / ".join(f"{x:.1f}" for x in os.getloadavg()))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
