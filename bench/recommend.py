"""Throughput of the MHB and recommendation maths (no I/O, no kNN search).

Measures, on synthetic float32 embeddings (12 Gaussian classes, 128-d by default):

* MHB fit time on 100k training records (tied + per-class + background covariances);
* MHB scoring throughput (records/s) on 1M production records, for the default
  (nearest and relative under the tied covariance, predicted class under its own) and
  for the tied-only and all-per-class variants;
* the full refresh of the scoring maths for 1M records: class-name lookup, MHB scoring,
  every signal (kNN distances and neighbour labels given as arrays, as the query engine
  would return them; probabilities of 12 classes), rank normalisation against the
  reference, combination, and the sort into the queue. It excludes the kNN search itself
  (the query engine's), reading parquet and writing the catalog.

Medians of ``--repeats`` runs. Targets: scoring >= 100,000 records/s on 2 cores; full
refresh of 1M <= 60 s. Run: ``python bench/recommend.py`` (``--threads N`` limits BLAS).
On a machine shared with other busy processes, OpenBLAS threads spin and lose: there
``--threads 1`` measured faster than 2 (and a worker process should limit its threads).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info as shared_machine_info

from chroma.scoring import (
    compute_signals,
    fit_mhb,
    fit_reference,
    prioritise,
    rank_order,
    score_matrix,
    score_mhb,
)

N_CLASSES = 12
K_NEIGHBOURS = 10


def timed(action: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``repeats`` runs, and the last result."""
    durations, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = action()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations), result


def mixture(
    rng: np.random.Generator, n_records: int, dimension: int, centres: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(centres), n_records)
    embeddings = rng.standard_normal((n_records, dimension), dtype=np.float32)
    embeddings += centres[labels]
    return embeddings, labels


def machine_info() -> str:
    """The shared machine line plus what bounds numpy here: BLAS threads and load."""
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(
            f"{info['internal_api']} {info['num_threads']} threads" for info in threadpool_info()
        )
    except ImportError:
        blas = "unknown"
    return (
        shared_machine_info(("numpy", "scipy"))
        + f"\nBLAS: {blas}; load average at start {os.getloadavg()[0]:.1f}"
    )


def run(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    centres = (rng.standard_normal((N_CLASSES, args.dimension)) * 2.0).astype(np.float32)
    names = np.array([f"class-{k:02d}" for k in range(N_CLASSES)], dtype=object)
    train, train_labels = mixture(rng, args.train, args.dimension, centres)
    production, predicted = mixture(rng, args.production, args.dimension, centres)
    predicted_names = names[predicted]
    print(f"data: {args.train:,} training x {args.dimension}-d, {N_CLASSES} classes; "
          f"{args.production:,} production; repeats {args.repeats}\n")

    rows: list[tuple[str, str]] = []
    fit_seconds, model = timed(lambda: fit_mhb(train, names[train_labels]), args.repeats)
    rows.append((f"MHB fit, {args.train:,} x {args.dimension}", f"{fit_seconds:.2f} s"))
    score_mhb(model, production[:1000], predicted[:1000])  # derive the whitening factors once

    variants = {
        "default (tied nearest/relative, own-class predicted)": {},
        "tied only": {"predicted_covariance": "tied"},
        "per-class everywhere": {"covariance": "class"},
    }
    for label, options in variants.items():
        seconds, _ = timed(lambda o=options: score_mhb(model, production, predicted, **o),
                           args.repeats)
        rows.append((f"MHB scoring, {label}", f"{args.production / seconds:,.0f} records/s "
                     f"({seconds:.2f} s)"))

    # Inputs the operation would gather: the query engine's kNN answers, logged scores.
    knn = rng.uniform(0.1, 1.0, (args.production, K_NEIGHBOURS)).astype(np.float32)
    neighbour_labels = names[rng.integers(0, N_CLASSES, (args.production, K_NEIGHBOURS))]
    logits = rng.standard_normal((args.production, N_CLASSES))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    reference_rows = rng.choice(args.train, 10_000, replace=False)
    reference_signals = compute_signals(
        score_mhb(model, train[reference_rows], names[train_labels[reference_rows]]),
        knn_distances=knn[:10_000], scores=probabilities[:10_000],
        predicted_class=names[train_labels[reference_rows]],
        neighbour_labels=neighbour_labels[:10_000],
    )
    reference_seconds, reference = timed(lambda: fit_reference(reference_signals), args.repeats)
    rows.append(("scoring reference from 10k training records", f"{reference_seconds:.2f} s"))

    def refresh() -> np.ndarray:
        signals = compute_signals(
            score_mhb(model, production, predicted_names),
            knn_distances=knn, scores=probabilities,
            predicted_class=predicted_names, neighbour_labels=neighbour_labels,
        )
        return rank_order(prioritise(signals, reference).score)

    refresh_seconds, _ = timed(refresh, args.repeats)
    rows.append((f"full refresh of the scoring maths, {args.production:,} records",
                 f"{refresh_seconds:.1f} s ({args.production / refresh_seconds:,.0f} records/s)"))

    dicts = [dict(zip(names, row, strict=True)) for row in probabilities[:100_000]]
    dict_seconds, _ = timed(lambda: score_matrix(dicts), args.repeats)
    rows.append(("logged score dicts -> matrix (extra, if scores arrive as dicts)",
                 f"{dict_seconds * args.production / 100_000:.1f} s per {args.production:,}"))

    print("| measurement | median |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print("\nTargets: scoring >= 100,000 records/s on 2 cores; full refresh of 1M <= 60 s "
          "(kNN search, parquet reads and catalog writes not included).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=100_000)
    parser.add_argument("--production", type=int, default=1_000_000)
    parser.add_argument("--dimension", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="limit BLAS threads")
    args = parser.parse_args()
    print("# MHB / recommendation throughput\n")
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    print(f"Machine: {machine_info()}\n")
    run(args)


if __name__ == "__main__":
    main()
