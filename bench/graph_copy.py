"""How long Edge's ``optimize`` holds writes while it copies the live version.

``EdgeQueryEngine.optimize`` builds the graph in a child on a copy of the live version
(``_copy_live``): copied in rounds while writes go on, then once more with writes held.
This fills one shard with ``--points`` x ``--dim`` (written by a child, as a bulk fill:
graph-less unless ``--graph``), then, while a writer thread upserts ``--rate`` records/s
(a batch every 0.1 s, as fresh commits do), copies it ``--runs`` times and prints, per
copy, the bytes of the rounds, how long writes were held (the engine's own figure) and
the writer's upsert latency p50 / p99 / max over the copy. No graph is built: the child's
build runs off this process and is timed by ``bench/freshness.py``. ``--baseline DIR``
(a checkout of another revision) also copies with that revision's ``_copy_live`` (its
``edge.py`` loaded beside ours, run on the same engine and shard), alternating with
ours, in one invocation. ``--busy N`` keeps N threads of this process busy in Python
(as the index host's search, reading and scoring threads are): each time the copy
releases the GIL (a read, a stat) it may wait a switch interval (5 ms) to get it back.

    .venv/bin/python bench/graph_copy.py [--points 200000] [--dim 128] [--runs 3]
        [--rate 1000] [--graph] [--baseline DIR] [--busy N]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, median

from chroma.index import IndexConfig, IndexedRecord
from chroma.index.edge import EdgeQueryEngine

KEY = "graph-copy-bench"


class Held(logging.Handler):
    """Takes the engine's own "copied ... held for" figures from its log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.figures: list[tuple[float, float, float, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "copied for a graph build" in record.msg:
            copied, again, held = record.args[2:5]  # type: ignore[index]
            flush = record.args[5] if len(record.args) > 5 else float("nan")  # type: ignore[arg-type]
            self.figures.append((float(copied), float(again), float(held), float(flush)))


def baseline_copy(checkout: Path, held: Held) -> Callable[..., Any]:
    """The ``EdgeQueryEngine._copy_live`` of the revision checked out at ``checkout``."""
    path = checkout / "components" / "chroma" / "index" / "edge.py"
    spec = importlib.util.spec_from_file_location("baseline_edge", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    logging.getLogger("baseline_edge").addHandler(held)
    logging.getLogger("baseline_edge").setLevel(logging.INFO)
    return module.EdgeQueryEngine._copy_live  # type: ignore[no-any-return]


def batches(points: int, dim: int, start: int = 0, step: int = 10_000):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(start)
    centres = rng.normal(size=(100, dim)).astype(np.float32)
    for first in range(start, start + points, step):
        n = min(step, start + points - first)
        records = [IndexedRecord(dataset="prod", record_id=f"r{i}", split="production",
                                 logged_at=float(i)) for i in range(first, first + n)]
        noise = rng.normal(scale=0.3, size=(n, dim)).astype(np.float32)
        yield records, centres[rng.integers(0, 100, n)] + noise


def writer(engine: EdgeQueryEngine, dim: int, rate: float, stop: threading.Event,
           latencies: list[tuple[float, float]]) -> None:
    per_batch = max(1, int(rate / 10))
    fresh = batches(10_000_000, dim, start=50_000_000, step=per_batch)
    next_at = time.monotonic()
    while not stop.is_set():
        records, vectors = next(fresh)
        began = time.monotonic()
        engine.upsert(KEY, records, vectors)
        latencies.append((began, time.monotonic() - began))
        next_at += 0.1
        time.sleep(max(0.0, next_at - time.monotonic()))


def spin(stop: threading.Event) -> None:
    """Pure-Python work, holding the GIL but for the interpreter's forced switches."""
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1_000.0)
    parser.add_argument("--graph", action="store_true", help="build the shard's graph first")
    parser.add_argument("--busy", type=int, default=0,
                        help="threads kept busy in Python beside the copy")
    parser.add_argument("--baseline", type=Path,
                        help="a checkout whose _copy_live to alternate with ours")
    args = parser.parse_args()
    print(machine_info(("qdrant-edge-py", "numpy")))
    print("load average at start (1/5/15 min): "
          + " / ".join(f"{x:.1f}" for x in os.getloadavg()))
    held = Held()
    logging.getLogger("chroma.index.edge").addHandler(held)
    logging.getLogger("chroma.index.edge").setLevel(logging.INFO)
    root = Path(tempfile.mkdtemp(prefix="graph-copy-"))
    engine = EdgeQueryEngine(IndexConfig(backend="edge", path=root / "index"))
    try:
        began = time.perf_counter()
        engine.reindex(KEY, args.dim, "cosine", batches(args.points, args.dim),
                       graph=args.graph)
        print(f"{args.points:,} x {args.dim} filled in {time.perf_counter() - began:.1f} s"
              f" ({'with' if args.graph else 'without'} a graph)")
        stop = threading.Event()
        latencies: list[tuple[float, float]] = []
        thread = threading.Thread(target=writer,
                                  args=(engine, args.dim, args.rate, stop, latencies))
        thread.start()
        spinners = [threading.Thread(target=spin, args=(stop,), daemon=True)
                    for _ in range(args.busy)]
        for spinner in spinners:
            spinner.start()
        time.sleep(2.0)
        rows: dict[str, list[tuple[float, ...]]] = {}
        copiers: dict[str, Callable[..., Any]] = {"this tree": EdgeQueryEngine._copy_live}
        if args.baseline is not None:
            copiers = {"baseline": baseline_copy(args.baseline, held), **copiers}
        try:
            for run, mode in ((r, m) for r in range(args.runs) for m in copiers):
                copy = root / f"copy{run}"
                copy.mkdir()
                with engine._lease(KEY) as live:
                    start = time.monotonic()
                    taken = copiers[mode](engine, KEY, live, copy)
                    end = time.monotonic()
                with engine._journal_lock:
                    engine._journals.pop(KEY, None)
                assert taken is not None
                time.sleep(0.3)  # a write that waited for the copy has returned
                during = [s for t, s in latencies if start <= t <= end + 0.2]
                size = sum(f.stat().st_size for f in copy.rglob("*") if f.is_file())
                shutil.rmtree(copy)
                copied, again, hold, flush = held.figures[-1]
                p50, p99 = np.percentile(during, [50, 99]) if during else (0.0, 0.0)
                rows.setdefault(mode, []).append(
                    (end - start, copied, again, hold, p50, p99, max(during or [0.0])))
                print(f"copy {run + 1} ({mode}): {end - start:.2f} s in all, {copied:.0f} MiB while"
                      f" writing, then {again:.0f} MiB with writes held {hold * 1000:.0f} ms"
                      f" (copy {size / 2**20:.0f} MiB); upserts during it: {len(during)},"
                      f" p50 / p99 / max {p50 * 1000:.1f} / {p99 * 1000:.1f} /"
                      f" {max(during or [0.0]) * 1000:.1f} ms (the flush {flush * 1000:.0f} ms)"
                      f" | load"
                      f" {os.getloadavg()[0]:.1f}")
                time.sleep(2.0)
        finally:
            stop.set()
            thread.join()
        for mode, mine in rows.items():
            print(f"{mode}, medians over {len(mine)} copies: "
                  f"{median([r[0] for r in mine]):.2f} s in all, writes held"
                  f" {median([r[3] for r in mine]) * 1000:.0f} ms"
                  f" ({median([r[2] for r in mine]):.0f} MiB written), upsert p99 during a"
                  f" copy {median([r[5] for r in mine]) * 1000:.1f} ms")
        print("load at the end (1/5/15 min): " + " / ".join(f"{x:.1f}" for x in os.getloadavg()))
    finally:
        engine.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
