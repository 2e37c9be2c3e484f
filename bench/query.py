"""Query-engine benchmark: HNSW build, incremental upsert, single-query latency, recall@10.

For each size N (clustered 128-d float32: a Gaussian mixture with N/1000 centres), through
``chroma.index`` exactly as the service calls it:

* full build: ``reindex`` of N records (points written here, HNSW graph built in a child
  process), then load and switch;
* single-query latency p50/p99 of ``search(k=10)`` over --queries queries, --runs times
  (medians of the runs printed), and recall@10 against exact numpy brute force;
* incremental: ``upsert`` of 100k new records (searchable when it returns), the latency
  while they are still outside the graph, then ``optimize`` (graph over the new points)
  and latency/recall again;
* ``--ef-sweep 32 64 96 128``: after the full build, per ``hnsw_ef``, batched searches
  (100 vectors a call, ``search_stored`` as the index host runs them) in vectors/s of
  wall time and of this process's CPU, and recall@10; then whether Edge lets other
  threads run during a search (the GIL): the longest gap of a thread waking every 1 ms
  during one 1,000-vector call, and two threads searching halves against one thread.
  ``--sweep-only`` skips the incremental part; ``--data peers`` uses
  ``bench/peers.py``'s clustered vectors (the set of the HTTP figures) instead;
* ``--quantization none int8``: each size is built and measured once per setting, in this
  invocation (``IndexConfig.quantization``); ``--oversampling 1 1.5 2`` sweeps int8's
  rescoring candidates per hit beside each ``hnsw_ef`` (the first value is the one the
  single-query figures use). RSS before and after the build's open shows what the
  loaded version holds in RAM.

    .venv/bin/python bench/query.py [--sizes 100000 1000000] [--runs 3]
    .venv/bin/python bench/query.py --sizes 100000 --data peers --ef-sweep 32 64 96 128 \
        --sweep-only
    .venv/bin/python bench/query.py --sizes 100000 --data peers --ef-sweep 96 128 \
        --sweep-only --quantization none int8 --oversampling 1 1.5 2
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import gil_ticker, machine_info, median

from chroma.index import (
    IndexConfig,
    IndexedRecord,
    QueryEngine,
    open_query_engine,
)
from chroma.index.edge import EdgeQueryEngine, _quantization_search

DIM = 128
K = 10
KEY = "bench"
INCREMENT = 100_000  # the "100k new records" target
BATCH = 10_000


def gaussian_mixture(n: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    labels = rng.integers(0, len(centres), n)
    return centres[labels] + rng.normal(scale=0.35, size=(n, DIM)).astype(np.float32)


def records(start: int, count: int) -> list[IndexedRecord]:
    return [
        IndexedRecord(
            dataset="train" if i % 4 else "prod",
            record_id=f"r{i}",
            split="training" if i % 4 else "production",
            input_uri=f"s3://bench/{i}.png",
            inference_class=f"class-{i % 10}",
            tags=("bench",),
            logged_at=1.7e9 + i,
        )
        for i in range(start, start + count)
    ]


def exact_top_k(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Exact cosine top-k indices, in chunks so 1M x 128 fits comfortably."""
    normed_queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    best_scores = np.full((len(queries), K), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), K), dtype=np.int64)
    for start in range(0, len(vectors), 200_000):
        chunk = vectors[start : start + 200_000]
        scores = normed_queries @ (chunk / np.linalg.norm(chunk, axis=1, keepdims=True)).T
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], axis=1)
        ids = np.concatenate([best_ids, top + start], axis=1)
        keep = np.argsort(-scores, axis=1)[:, :K]
        best_scores = np.take_along_axis(scores, keep, 1)
        best_ids = np.take_along_axis(ids, keep, 1)
    return best_ids


def latency_and_recall(
    engine: QueryEngine, queries: np.ndarray, truth: np.ndarray, runs: int
) -> tuple[float, float, float]:
    """Median over runs of p50 and p99 (ms) of single-query searches, and recall@10."""
    p50s, p99s = [], []
    found: list[list[str]] = []
    for run in range(runs):
        latencies = []
        for query in queries:
            started = time.perf_counter()
            hits = engine.search(KEY, query, K)[0]
            latencies.append(time.perf_counter() - started)
            if run == 0:
                found.append([hit.record_id for hit in hits])
        p50s.append(float(np.percentile(latencies, 50)) * 1e3)
        p99s.append(float(np.percentile(latencies, 99)) * 1e3)
    expected = [{f"r{i}" for i in row} for row in truth]
    recall = sum(len(set(f) & e) for f, e in zip(found, expected, strict=True)) / truth.size
    return median(p50s), median(p99s), recall


def set_oversampling(engine: EdgeQueryEngine, config: IndexConfig, oversampling: float) -> None:
    """Searches of ``engine`` rescore ``oversampling`` x k candidates from now on (the
    engine keeps its config's value; the bench swaps it to sweep one built version)."""
    engine._quantization_search = _quantization_search(
        dataclasses.replace(config, quantization_oversampling=oversampling))


def ef_sweep(engine: QueryEngine, config: IndexConfig, queries: np.ndarray,
             truth: np.ndarray, efs: list[int], oversamplings: list[float], runs: int) -> None:
    """Batched vectors/s (wall and CPU of this process) and recall@10 per ``hnsw_ef`` (and
    int8 oversampling); the values take turns within each run, so a load change of the
    machine hits them alike."""
    assert isinstance(engine, EdgeQueryEngine)
    calls = [queries[start:start + 100] for start in range(0, len(queries), 100)]
    expected = [{f"r{i}" for i in row} for row in truth]
    settings = [(ef, over) for ef in efs
                for over in (oversamplings if config.quantization != "none" else [0.0])]
    walls: dict[tuple[int, float], list[float]] = {each: [] for each in settings}
    cpus: dict[tuple[int, float], list[float]] = {each: [] for each in settings}
    recalls: dict[tuple[int, float], float] = {}
    for _ in range(runs):
        for ef, over in settings:
            if over:
                set_oversampling(engine, config, over)
            found: list[list[str]] = []
            wall, cpu = time.perf_counter(), time.process_time()
            for call in calls:
                rows = engine.search_stored(KEY, call, K, hnsw_ef=ef)
                found.extend([payload["record_id"] for _, payload in row] for row in rows)
            walls[ef, over].append(time.perf_counter() - wall)
            cpus[ef, over].append(time.process_time() - cpu)
            recalls[ef, over] = sum(len(set(f) & e)
                                    for f, e in zip(found, expected, strict=True)) / truth.size
    if oversamplings and config.quantization != "none":
        set_oversampling(engine, config, oversamplings[0])
    for ef, over in settings:
        label = f"hnsw_ef {ef:4d}" + (f" oversampling {over:.2f}" if over else "")
        cpu_s = median(cpus[ef, over])
        print(f"{label}: batched {len(queries) / median(walls[ef, over]):,.0f} vec/s "
              f"({len(queries) / cpu_s:,.0f} vec/s of CPU, "
              f"{cpu_s / len(queries) * 1e6:,.0f} µs/vector = {cpu_s / len(calls) * 1e3:.1f} "
              f"ms CPU per 100), recall@10 {recalls[ef, over]:.4f}", flush=True)


def rss_mib() -> float:
    """This process's resident set now (MiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def gil_check(engine: QueryEngine, queries: np.ndarray) -> None:
    """Whether a search lets other Python threads run (Edge's ``query_batch`` and the GIL)."""
    assert isinstance(engine, EdgeQueryEngine)
    many = np.concatenate([queries] * max(1, 1000 // len(queries) + 1))[:1000]
    with gil_ticker() as gaps:
        began = time.perf_counter()
        engine.search_stored(KEY, many, K)
        call_s = time.perf_counter() - began
    print(f"GIL: one call of {len(many):,} vectors took {call_s * 1e3:.0f} ms; a thread "
          f"waking every 1 ms woke {len(gaps)} times, longest gap {max(gaps) * 1e3:.0f} ms")
    halves = [many[:500], many[500:]]
    began = time.perf_counter()
    for half in halves:
        engine.search_stored(KEY, half, K)
    one_s = time.perf_counter() - began
    threads = [threading.Thread(target=engine.search_stored, args=(KEY, half, K))
               for half in halves]
    began = time.perf_counter()
    for each in threads:
        each.start()
    for each in threads:
        each.join()
    two_s = time.perf_counter() - began
    print(f"GIL: 1,000 vectors in one thread {one_s * 1e3:.0f} ms, in two threads (500 "
          f"each) {two_s * 1e3:.0f} ms (x{one_s / two_s:.2f})", flush=True)


def bench_size(n: int, config: IndexConfig, args: argparse.Namespace) -> None:
    n_queries, runs = args.queries, args.runs
    rng = np.random.default_rng(n)
    if args.data == "peers":
        from peers import make_data

        vectors, queries = make_data(n + INCREMENT, n_queries)
        print(f"\n== {n:,} x {DIM} (bench/peers.py's clustered set), cosine, "
              f"quantization {config.quantization} ==", flush=True)
    else:
        centres = rng.normal(size=(max(100, n // 1000), DIM)).astype(np.float32)
        vectors = gaussian_mixture(n + INCREMENT, centres, rng)
        queries = gaussian_mixture(n_queries, centres, rng)
        print(f"\n== {n:,} x {DIM} (clustered, {len(centres)} centres), cosine, "
              f"quantization {config.quantization} ==", flush=True)

    with open_query_engine(config) as engine:
        if args.oversampling and config.quantization != "none":
            assert isinstance(engine, EdgeQueryEngine)
            set_oversampling(engine, config, args.oversampling[0])
        rss_before = rss_mib()
        started = time.perf_counter()
        batches = ((records(i, BATCH), vectors[i : i + BATCH]) for i in range(0, n, BATCH))
        info = engine.reindex(KEY, DIM, "cosine", batches)
        build_s = time.perf_counter() - started
        print(
            f"full build (write + HNSW + switch): {build_s:.1f} s "
            f"({n / build_s:,.0f} points/s); points={info.points:,} "
            f"indexed={info.indexed_points:,}; RSS {rss_before:,.0f} -> {rss_mib():,.0f} MiB",
            flush=True,
        )
        truth = exact_top_k(vectors[:n], queries)
        p50, p99, recall = latency_and_recall(engine, queries, truth, runs)
        print(f"search k=10: p50 {p50:.2f} ms, p99 {p99:.2f} ms, recall@10 {recall:.4f}")
        if args.ef_sweep:
            ef_sweep(engine, config, queries, truth, args.ef_sweep, args.oversampling or [],
                     runs)
            gil_check(engine, queries)
        if args.sweep_only:
            engine.drop_collection(KEY)
            return

        started = time.perf_counter()
        for i in range(n, n + INCREMENT, 1_000):
            engine.upsert(KEY, records(i, 1_000), vectors[i : i + 1_000])
        upsert_s = time.perf_counter() - started
        print(
            f"incremental upsert of {INCREMENT:,} new records: {upsert_s:.1f} s "
            f"({INCREMENT / upsert_s:,.0f} records/s), searchable on return",
            flush=True,
        )
        truth = exact_top_k(vectors, queries)
        p50, p99, recall = latency_and_recall(engine, queries, truth, runs)
        print(
            f"  search before optimize (new points scanned exactly): p50 {p50:.2f} ms, "
            f"p99 {p99:.2f} ms, recall@10 {recall:.4f}"
        )
        started = time.perf_counter()
        engine.optimize(KEY)
        optimize_s = time.perf_counter() - started
        info = engine.collection_info(KEY)
        print(
            f"  optimize (graph over the new points): {optimize_s:.1f} s; "
            f"points={info.points:,} indexed={info.indexed_points:,}",
            flush=True,
        )
        p50, p99, recall = latency_and_recall(engine, queries, truth, runs)
        print(
            f"  search after optimize: p50 {p50:.2f} ms, p99 {p99:.2f} ms, recall@10 {recall:.4f}"
        )
        engine.drop_collection(KEY)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS so far: {peak_gib:.1f} GiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=500, help="queries per latency run")
    parser.add_argument("--runs", type=int, default=3, help="latency runs; medians printed")
    parser.add_argument("--path", type=Path, help="data directory (default: a temporary one)")
    parser.add_argument("--ef-search", type=int, help="override IndexConfig.hnsw_ef_search")
    parser.add_argument("--ef-construct", type=int, help="override hnsw_ef_construct")
    parser.add_argument("--ef-sweep", type=int, nargs="+",
                        help="hnsw_ef values: batched vectors/s and recall@10 of each")
    parser.add_argument("--sweep-only", action="store_true",
                        help="skip the incremental upsert/optimize part")
    parser.add_argument("--data", choices=("query", "peers"), default="query",
                        help="this script's Gaussian mixture or bench/peers.py's set")
    parser.add_argument("--quantization", nargs="+", choices=("none", "int8"),
                        help="IndexConfig.quantization values, each measured in turn")
    parser.add_argument("--oversampling", type=float, nargs="+",
                        help="int8 rescoring candidates per hit (sweep; first is used)")
    args = parser.parse_args()

    print(machine_info(("numpy", "qdrant-edge-py", "qdrant-client")))
    with tempfile.TemporaryDirectory(prefix="chroma-bench-query-") as scratch:
        overrides = {}
        if args.ef_search:
            overrides["hnsw_ef_search"] = args.ef_search
        if args.ef_construct:
            overrides["hnsw_ef_construct"] = args.ef_construct
        config = IndexConfig(backend="edge", path=args.path or Path(scratch), **overrides)
        print(
            f"index: Qdrant Edge, m={config.hnsw_m}, ef_construct={config.hnsw_ef_construct}, "
            f"ef_search={config.hnsw_ef_search}, segments={config.edge_segment_number}, "
            f"filter_graph={config.filter_graph}, quantization={config.quantization} "
            f"(oversampling {config.quantization_oversampling})"
        )
        for n in args.sizes:
            for quantization in args.quantization or [config.quantization]:
                bench_size(n, dataclasses.replace(config, quantization=quantization), args)


if __name__ == "__main__":
    main()
