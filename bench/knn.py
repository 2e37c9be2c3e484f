"""Exact against approximate (IVF) k nearest training records: time and recall.

For each scale ``production x training`` (``--scales``, default ``20000x100000`` and
``1000000x100000``) and each kind of data, builds ``chroma.scoring.IvfNearest`` over the
training vectors and times its search of every production vector (median of
``--rounds``; in pages of ``--page`` queries, one call each, as the recommender asks:
``chroma.labelling.runs.PAGE``, 5,000; ``--page 0``: one call for all), then times
``ExactNearest`` on the same queries in the same invocation.
Above ``--exact-max`` queries the exact search runs on a random sample of that many
queries only and its time for all of them is extrapolated linearly (its cost is exactly
linear in the number of queries: one matrix product block after another); the line
says so. Recall@k and the distance error are measured on that sample.

Data (128-d, float32):

* ``isotropic``: ``bench/refresh_inprocess.py``'s records: 14 Gaussian clusters with
  unit noise in all 128 dimensions. The hardest case for any index: inside a cluster
  distances concentrate, so a query's 10 nearest are barely nearer than the rest of its
  cluster and lie in many lists.
* ``manifold``: 200 clusters, each spread over its own 16-d subspace plus small noise;
  closer to real model embeddings, whose intrinsic dimension is far below 128.

Per line: build (k-means and lists), approximate and exact time (wall, and CPU seconds
of all threads: on a shared machine the CPU time says more about an idle one), their
ratio, recall@k (share of the exact k nearest found), the mean distance of the k found
over the exact mean (1.000 = as near), the rank correlation of each query's mean kNN
distance (the queue's kNN signal) approximate against exact, and the load average.

    .venv/bin/python bench/knn.py [--scales 20000x100000 1000000x100000] [--rounds 3]
        [--page 5000] [--probes N] [--lists-per-sqrt F]

Another tree's code: ``PYTHONPATH=/tmp/base/components .venv/bin/python bench/knn.py``
(its path and its default parameters are used and printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, median

from chroma.labelling.runs import PAGE
from chroma.scoring import ExactNearest, IvfNearest, IvfParams

DIM = 128
K = 10


def isotropic(n: int, rng: np.random.Generator) -> np.ndarray:
    centres = np.random.default_rng(1).normal(size=(14, DIM)) * 3
    return (centres[rng.integers(0, 14, n)] + rng.normal(size=(n, DIM))).astype(np.float32)


def manifold(n: int, rng: np.random.Generator) -> np.ndarray:
    shape = np.random.default_rng(1)
    centres = shape.normal(size=(200, DIM)) * 3
    bases = shape.normal(size=(200, 16, DIM)) / 4
    labels = rng.integers(0, 200, n)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):  # bounded temporaries at 1M
        part = labels[start:start + 100_000]
        spread = np.einsum("nk,nkd->nd", rng.normal(size=(len(part), 16)), bases[part])
        out[start:start + len(part)] = (centres[part] + spread
                                        + 0.05 * rng.normal(size=(len(part), DIM)))
    return out


KINDS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "isotropic": isotropic, "manifold": manifold,
}


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def timed(action: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median wall and CPU seconds (all threads of this process) of ``rounds`` runs: on a
    shared machine the CPU time says more about an idle one than the wall time."""
    walls, cpus = [], []
    for _ in range(rounds):
        began, began_cpu = time.perf_counter(), time.process_time()
        action()
        walls.append(time.perf_counter() - began)
        cpus.append(time.process_time() - began_cpu)
    return median(walls), median(cpus)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's correlation (no ties expected in float distances)."""
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def compare(kind: str, production: int, training: int, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    stored = KINDS[kind](training, rng)
    queries = KINDS[kind](production, rng)
    params = IvfParams(probes=args.probes, lists_per_sqrt=args.lists_per_sqrt)
    began = time.perf_counter()
    ivf = IvfNearest(stored, args.distance, params)
    build = time.perf_counter() - began
    page = args.page or production

    def search() -> None:
        for start in range(0, production, page):
            ivf.nearest(queries[start:start + page], K)

    approx_s, approx_cpu = timed(search, args.rounds)
    load_approx = load()
    sample = (np.arange(production) if production <= args.exact_max
              else np.sort(rng.choice(production, args.exact_max, replace=False)))
    exact = ExactNearest(stored, args.distance)
    exact_rows: list[np.ndarray] = []

    def run_exact() -> None:
        exact_rows[:] = exact.nearest(queries[sample], K)

    exact_s, exact_cpu = timed(run_exact, args.rounds if len(sample) == production else 1)
    exact_s, exact_cpu = (t * production / len(sample) for t in (exact_s, exact_cpu))
    rows, distances = ivf.nearest(queries[sample], K)
    truth, true_distances = exact_rows
    recall = np.mean([len(np.intersect1d(a, b)) / K for a, b in zip(rows, truth, strict=True)])
    ratio = distances.mean() / true_distances.mean()
    # The signal the queue ranks by: each record's mean distance to its k nearest.
    spearman = rank_correlation(distances.mean(axis=1), true_distances.mean(axis=1))
    note = ("" if len(sample) == production
            else f" (exact: {len(sample):,} sampled, x{production / len(sample):.0f})")
    print(f"{kind:>9} {production:>9,} x {training:>7,} lists {ivf.lists:>4} probes "
          f"{min(params.probes, ivf.lists):>2}: build {build:6.2f} s  approx {approx_s:7.2f} s"
          f" (cpu {approx_cpu:7.2f})  exact {exact_s:8.1f} s (cpu {exact_cpu:8.1f})  "
          f"x{exact_s / approx_s:5.1f}  recall@{K} {recall:.3f}  distance {ratio:.3f}  "
          f"rank corr {spearman:.3f}  load {load_approx} / {load()}{note}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", nargs="+", default=["20000x100000", "1000000x100000"],
                        help="production x training")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--distance", default="cosine", choices=["cosine", "dot", "euclid"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--exact-max", type=int, default=20_000,
                        help="most queries the exact search runs on (else a sample)")
    parser.add_argument("--page", type=int, default=PAGE,
                        help="queries per call of the approximate search (0: all at once)")
    parser.add_argument("--probes", type=int, default=IvfParams().probes)
    parser.add_argument("--lists-per-sqrt", type=float, default=IvfParams().lists_per_sqrt)
    args = parser.parse_args()
    print(machine_info(("numpy", "threadpoolctl")))
    print(f"distance {args.distance}, k={K}, medians of {args.rounds} rounds, "
          f"pages of {args.page or 'all'} queries, load at start {load()}")
    import chroma.scoring

    print(f"code: {Path(chroma.scoring.__file__).parent}")
    for scale in args.scales:
        production, training = (int(part) for part in scale.split("x"))
        for kind in args.kinds:
            compare(kind, production, training, args)


if __name__ == "__main__":
    main()
