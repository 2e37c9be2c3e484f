"""End to end: a full refresh of the labelling queue by the running system.

``bench/recommend.py`` times the scoring maths alone. This one starts ``chroma run`` (API,
indexer, MHB fitter, recommender, compactor; embedded PostgreSQL and Qdrant Edge) in a
temporary folder, logs a clustered training set and a production set through the
Python client (Arrow bulk path), lets the implicit operations catch up, then times:

* ``reindex`` of the embedding set (a new index version: the HNSW build of every record);
* ``recommend`` with ``full=true`` right after it: a full refresh — reading every
  production embedding from parquet, the k nearest training records of each (in memory
  up to ``CHROMA_RECOMMEND_EXACT_KNN_MAX`` training records, else one search per record
  through the index host), MHB scoring, every signal, and the upsert of the queue into
  the catalog. Its rate (records/s) is what a 1M refresh would run at, minus cache
  effects. Set ``CHROMA_RECOMMEND_EXACT_KNN_MAX=0`` to measure the index path.

Then, per round, ``--incremental`` (10,000) new production records are logged and an
incremental ``recommend`` scores them, and a ``recommend`` with nothing new follows
(targets: <= 2 s and well under a second).

The durations are the operations' own (``duration_s`` in ``/api/v1/operations``).

    .venv/bin/python bench/refresh.py [--training 20000] [--production 100000] [--runs 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, median
from _system import start_chroma_run

from chroma.client import Client

DIM = 128
CLASSES = 12


def start_system(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    return start_chroma_run(workdir, port)


def operations(http: httpx.Client) -> list[dict[str, Any]]:
    return http.get("/api/v1/operations", params={"limit": 500}).json()["data"]


def wait_idle(http: httpx.Client, timeout: float = 3600) -> None:
    """Until no operation is queued or running (the implicit ones have caught up)."""
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        busy = [op for op in operations(http) if op["state"] in ("queued", "running")]
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 3.0:  # debounced triggers may still fire
            return
        time.sleep(0.5)
    raise RuntimeError("operations did not settle")


def run_operation(http: httpx.Client, kind: str, key: str, **params: Any) -> dict[str, Any]:
    answer = http.post("/api/v1/operations",
                       json={"kind": kind, "embedding_set_key": key, "params": params})
    answer.raise_for_status()
    op_id = answer.json()["id"]
    while True:
        op = http.get(f"/api/v1/operations/{op_id}").json()
        if op["state"] in ("succeeded", "failed", "cancelled"):
            if op["state"] != "succeeded":
                raise RuntimeError(f"{kind} ended {op['state']}: {op.get('error')}")
            return op
        time.sleep(0.5)


def clustered(
    rng: np.random.Generator, n: int, centres: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    labels = rng.integers(0, len(centres), size=n)
    vectors = centres[labels] + rng.normal(size=(n, centres.shape[1]))
    return vectors.astype(np.float32), [f"class-{c}" for c in labels]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--training", type=int, default=20_000)
    parser.add_argument("--production", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=2, help="reindex + recommend rounds")
    parser.add_argument("--incremental", type=int, default=10_000,
                        help="new production records per incremental run")
    args = parser.parse_args()

    print(machine_info(("qdrant-edge-py", "numpy", "psycopg", "pyarrow")))
    workdir = Path(tempfile.mkdtemp(prefix="chroma-refresh-"))
    workdir.chmod(0o755)
    port = 19000 + os.getpid() % 1000
    system = start_system(workdir, port)
    url = f"http://127.0.0.1:{port}"
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(CLASSES + 2, DIM)) * 3
    model = {"model": "refresh-bench", "dim": DIM}
    try:
        with Client(url, progress=False) as client, httpx.Client(base_url=url,
                                                                 timeout=60) as http:
            train, train_labels = clustered(rng, args.training, centres[:CLASSES])
            began = time.perf_counter()
            key = client.log_many(train, embedding_set=model, dataset="train", split="training",
                                  label_classes=train_labels)["embedding_set_key"]
            # Production: mostly the training classes, 5% from two classes never trained.
            prod, prod_labels = clustered(rng, args.production, centres)
            client.log_many(prod, embedding_set=model, dataset="prod", split="production",
                            inference_classes=prod_labels)
            logged_s = time.perf_counter() - began
            print(f"logged {args.training:,} training + {args.production:,} production in "
                  f"{logged_s:.1f} s")
            wait_idle(http)
            settled_s = time.perf_counter() - began
            print(f"implicit index + fit-mhb + recommend settled {settled_s - logged_s:.1f} s "
                  "after the last log")
            reindex_s, refresh_s, incremental_s, noop_s = [], [], [], []
            for run in range(args.runs):
                reindex = run_operation(http, "reindex", key)
                recommend = run_operation(http, "recommend", key, full=True)
                result = recommend["result"]["embedding_sets"][key]
                assert result["full_refresh"], result
                reindex_s.append(reindex["duration_s"])
                refresh_s.append(recommend["duration_s"])
                print(f"run {run + 1}: reindex {reindex['duration_s']:.1f} s | full refresh "
                      f"{recommend['duration_s']:.1f} s for {result['scored']:,} records "
                      f"({result['scored'] / recommend['duration_s']:,.0f} rec/s, kNN "
                      f"{result['knn']})", flush=True)
                more, more_labels = clustered(rng, args.incremental, centres)
                client.log_many(more, embedding_set=model, dataset=f"prod-{run}",
                                split="production", inference_classes=more_labels)
                wait_idle(http)  # the implicit recommend scores them: time our own below
                more, more_labels = clustered(rng, args.incremental, centres)
                client.log_many(more, embedding_set=model, dataset=f"prod-more-{run}",
                                split="production", inference_classes=more_labels)
                incremental = run_operation(http, "recommend", key)
                noop = run_operation(http, "recommend", key)
                incremental_s.append(incremental["duration_s"])
                noop_s.append(noop["duration_s"])
                done = incremental["result"]["embedding_sets"][key]
                print(f"  incremental recommend of {args.incremental:,} new: "
                      f"{incremental['duration_s']:.2f} s (scored {done['scored']:,}; "
                      f"phases {done.get('seconds')}); nothing new: "
                      f"{noop['duration_s']:.2f} s; load {os.getloadavg()[0]:.1f}", flush=True)
            n = args.production
            rate = n / median(refresh_s)
            print(f"\nmedians of {args.runs} runs, {DIM}-d, {args.training:,} training, "
                  f"{n:,} production:")
            print(f"  reindex (HNSW build of {args.training + n:,} records) "
                  f"{median(reindex_s):.1f} s")
            print(f"  full refresh {median(refresh_s):.1f} s = {rate:,.0f} records/s "
                  f"-> 1M would take ~{1_000_000 / rate:.0f} s (target <= 60 s)")
            print(f"  incremental recommend of {args.incremental:,}: "
                  f"{median(incremental_s):.2f} s (target <= 2 s); nothing new: "
                  f"{median(noop_s):.2f} s")
            print(f"  load average at the end {os.getloadavg()}")
    finally:
        system.send_signal(signal.SIGTERM)
        system.wait(120)


if __name__ == "__main__":
    main()
