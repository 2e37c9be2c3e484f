"""Int8 scalar quantization against float32 Edge versions, in one invocation, interleaved.

Builds ``--builds`` versions per setting of ``IndexConfig.quantization`` (``none``,
``int8``) over ``bench/peers.py``'s clustered ``--points`` x 128 set (through
``EdgeQueryEngine.reindex``, the graph built in a child as the service builds it), then
takes turns over every (version, ``hnsw_ef``, oversampling) ``--runs`` times, so a change
of the machine's load hits all alike, and prints per setting the medians of: CPU of
this process per 100-vector ``search_stored`` call (the index host's batched call,
payloads included), wall vectors/s, single-search p50, and recall@10 of 1,000 queries
against exact brute force. Build time and the RSS a loaded version adds are printed as
each is built. HNSW graphs differ build to build (recall ±0.003 here): compare over
``--builds`` >= 2.

    .venv/bin/python bench/quantization.py [--points 100000] [--builds 2] [--runs 5] \\
        [--settings 128/1,128/4,192/4,128/10]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, median
from peers import make_data
from query import BATCH, DIM, KEY, K, exact_top_k, records, rss_mib

from chroma.index import IndexConfig, open_query_engine
from chroma.index.edge import EdgeQueryEngine, _quantization_search


def build(root: Path, quantization: str, vectors: np.ndarray) -> EdgeQueryEngine:
    config = IndexConfig(backend="edge", path=root, quantization=quantization)  # type: ignore[arg-type]
    engine = open_query_engine(config)
    assert isinstance(engine, EdgeQueryEngine)
    before, began = rss_mib(), time.perf_counter()
    engine.reindex(KEY, DIM, "cosine", ((records(i, BATCH), vectors[i:i + BATCH])
                                        for i in range(0, len(vectors), BATCH)))
    print(f"{root.name}: built in {time.perf_counter() - began:.1f} s, RSS "
          f"{before:,.0f} -> {rss_mib():,.0f} MiB", flush=True)
    return engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--builds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--settings", default="128/1,128/4,192/4,128/10",
                        help="hnsw_ef/oversampling pairs (oversampling: int8 only)")
    args = parser.parse_args()
    settings = [(int(ef), float(over)) for ef, over in
                (each.split("/") for each in args.settings.split(","))]
    print(machine_info(("numpy", "qdrant-edge-py")))
    vectors, queries = make_data(args.points, 1_000)
    expected = [{f"r{i}" for i in row} for row in exact_top_k(vectors, queries)]
    with tempfile.TemporaryDirectory(prefix="chroma-bench-quant-") as scratch:
        engines = {f"{q}-{b}": build(Path(scratch) / f"{q}-{b}", q, vectors)
                   for b in range(args.builds) for q in ("none", "int8")}
        efs = sorted({ef for ef, _ in settings})
        turns = [(name, ef, over) for name in engines
                 for ef, over in (settings if name.startswith("int8") else
                                  [(ef, 1.0) for ef in efs])]
        cpu: dict[tuple[str, int, float], list[float]] = {t: [] for t in turns}
        wall: dict[tuple[str, int, float], list[float]] = {t: [] for t in turns}
        single: dict[tuple[str, int, float], list[float]] = {t: [] for t in turns}
        recall: dict[tuple[str, int, float], float] = {}
        for _ in range(args.runs):
            for name, ef, over in turns:
                engine = engines[name]
                engine._quantization_search = _quantization_search(dataclasses.replace(
                    engine._config, quantization_oversampling=over))
                found: list[list[str]] = []
                began, used = time.perf_counter(), time.process_time()
                for start in range(0, len(queries), 100):
                    rows = engine.search_stored(KEY, queries[start:start + 100], K, hnsw_ef=ef)
                    found.extend([p["record_id"] for _, p in row] for row in rows)
                cpu[name, ef, over].append(time.process_time() - used)
                wall[name, ef, over].append(time.perf_counter() - began)
                hits = sum(len(set(f) & e) for f, e in zip(found, expected, strict=True))
                recall[name, ef, over] = hits / (len(expected) * K)
                latencies = []
                for query in queries[:300]:
                    began = time.perf_counter()
                    engine.search_stored(KEY, query, K, hnsw_ef=ef)
                    latencies.append(time.perf_counter() - began)
                single[name, ef, over].append(float(np.median(latencies)))
        for turn in turns:
            name, ef, over = turn
            label = f"{name:7} ef {ef:4d}" + (f" oversampling {over:4.1f}"
                                              if name.startswith("int8") else " " * 17)
            print(f"{label}: {median(cpu[turn]) / len(queries) * 1e5:5.1f} ms CPU per 100, "
                  f"{len(queries) / median(wall[turn]):,.0f} vec/s wall, single p50 "
                  f"{median(single[turn]) * 1e3:.3f} ms, recall@10 {recall[turn]:.4f}",
                  flush=True)
        for engine in engines.values():
            engine.close()


if __name__ == "__main__":
    main()
