"""The web app's map, server side: the ``project`` operation and ``GET /api/v1/map``.

Starts ``chroma run`` in a temporary folder, logs a clustered training set and a
production set through the Python client (Arrow bulk path), then times:

* the ``project`` operation (its own ``duration_s``, and its phases from its result):
  PCA fitted on a 10k sample, every record's embedding read from parquet and projected,
  priorities looked up in the queue, the Arrow file written. Each run first logs one
  more production record: a new data version, so a full computation (as after any log).
* ``GET /api/v1/map`` at ``--limit`` points: the first answer after a computation (file
  read + decode + render) and the median of the next ``--gets`` (decoded map in memory),
  with the payload size, raw and as gzip would send it (level 6).

By default the implicit operations run (index, MHB, recommend) and settle before the
timings, so points carry their priority as in real use. ``--no-implicit`` disables them
(debounce and freshness check pushed past the run, and the operations the first log
triggers cancelled): for large sets (1M) where indexing and scoring would take far
longer than what is measured here; priorities are then null (their lookups still run,
finding nothing).

    .venv/bin/python bench/map.py [--training 20000] [--production 80000] [--runs 3]
    .venv/bin/python bench/map.py --training 100000 --production 900000 --no-implicit --runs 2
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
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
NEVER_S = "1000000000"


def start_system(workdir: Path, port: int, implicit: bool) -> subprocess.Popen[bytes]:
    quiet = {} if implicit else {"CHROMA_INDEX_TRIGGER_DEBOUNCE_S": NEVER_S,
                                 "CHROMA_FRESHNESS_CHECK_S": NEVER_S}
    return start_chroma_run(workdir, port, env=quiet, timeout_s=300)


def wait_idle(http: httpx.Client, timeout: float = 7200) -> None:
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        ops = http.get("/api/v1/operations", params={"limit": 500}).json()["data"]
        if any(op["state"] in ("queued", "running") for op in ops):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 3.0:
            return
        time.sleep(0.5)
    raise RuntimeError("operations did not settle")


def cancel_all(http: httpx.Client) -> None:
    """Cancel every queued or running operation; wait until none runs."""
    while True:
        ops = http.get("/api/v1/operations", params={"limit": 500}).json()["data"]
        active = [op for op in ops if op["state"] in ("queued", "running")]
        if not active:
            return
        for op in active:
            http.post(f"/api/v1/operations/{op['id']}/cancel")
        time.sleep(1.0)


def wait_operation(http: httpx.Client, op_id: int) -> dict[str, Any]:
    while True:
        op = http.get(f"/api/v1/operations/{op_id}").json()
        if op["state"] in ("succeeded", "failed", "cancelled"):
            if op["state"] != "succeeded":
                raise RuntimeError(f"project ended {op['state']}: {op.get('error')}")
            return op
        time.sleep(0.2)


def clustered(rng: np.random.Generator, n: int, centres: np.ndarray
              ) -> tuple[np.ndarray, list[str]]:
    labels = rng.integers(0, len(centres), size=n)
    vectors = centres[labels] + rng.normal(size=(n, centres.shape[1]))
    return vectors.astype(np.float32), [f"class-{c}" for c in labels]


def log_sets(url: str, training: int, production: int) -> str:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(CLASSES + 2, DIM)) * 3
    model = {"model": "map-bench", "dim": DIM}
    with Client(url, progress=False) as client:
        for split, n, classes in (("training", training, centres[:CLASSES]),
                                  ("production", production, centres)):
            for start in range(0, n, 100_000):  # bounded client memory at 1M
                vectors, labels = clustered(rng, min(100_000, n - start), classes)
                labelled = {"label_classes": labels} if split == "training" else {
                    "inference_classes": labels}
                key = client.log_many(
                    vectors, embedding_set=model, dataset=split[:5], split=split,
                    ids=[f"{split[0]}{start + i}" for i in range(len(vectors))],
                    **labelled)["embedding_set_key"]
    return str(key)


def new_version(url: str, run: int) -> None:
    """One more production record: the set's data version moves on."""
    with Client(url, progress=False) as client:
        client.log_many(np.zeros((1, DIM), np.float32), embedding_set={"model": "map-bench",
                        "dim": DIM}, dataset="produ", split="production", ids=[f"bump{run}"])


def project_once(http: httpx.Client, key: str, limit: int
                 ) -> tuple[dict[str, Any], float, int, int]:
    """(operation, first GET s, payload bytes, gzip bytes) of one full computation."""
    answer = http.get("/api/v1/map", params={"embedding_set_key": key, "limit": limit})
    assert answer.status_code == 202, answer.text[:300]
    op = wait_operation(http, answer.json()["operation_id"])
    began = time.perf_counter()
    ready = http.get("/api/v1/map", params={"embedding_set_key": key, "limit": limit})
    first_s = time.perf_counter() - began
    assert ready.status_code == 200, ready.text[:300]
    body = ready.content
    return op, first_s, len(body), len(gzip.compress(body, 6))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--training", type=int, default=20_000)
    parser.add_argument("--production", type=int, default=80_000)
    parser.add_argument("--runs", type=int, default=3, help="cold project operations")
    parser.add_argument("--gets", type=int, default=5, help="warm GETs per run")
    parser.add_argument("--limit", type=int, default=100_000, help="points per GET")
    parser.add_argument("--no-implicit", action="store_true",
                        help="no index / MHB / recommend (see the docstring)")
    args = parser.parse_args()
    total = args.training + args.production

    print(machine_info(("numpy", "pyarrow", "orjson", "psycopg")))
    print(f"load average at start: {os.getloadavg()}")
    workdir = Path(tempfile.mkdtemp(prefix="chroma-map-bench-"))
    port = 19500 + os.getpid() % 400
    system = start_system(workdir, port, implicit=not args.no_implicit)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=600) as http:
            began = time.perf_counter()
            key = log_sets(url, args.training, args.production)
            print(f"logged {total:,} records ({DIM}-d) in {time.perf_counter() - began:.0f} s")
            if args.no_implicit:
                cancel_all(http)
            else:
                wait_idle(http)
                print(f"implicit operations settled after {time.perf_counter() - began:.0f} s")
            ops, firsts, warm = [], [], []
            size = packed = 0
            for run in range(args.runs):
                new_version(url, run)
                if args.no_implicit:
                    cancel_all(http)
                else:
                    wait_idle(http)
                op, first_s, size, packed = project_once(http, key, args.limit)
                op_s = op["duration_s"]
                phases = op["result"]["maps"][key]["timings_s"]
                gets = []
                for _ in range(args.gets):
                    t0 = time.perf_counter()
                    http.get("/api/v1/map", params={"embedding_set_key": key,
                                                    "limit": args.limit}).raise_for_status()
                    gets.append(time.perf_counter() - t0)
                ops.append(op_s)
                firsts.append(first_s)
                warm.append(median(gets))
                print(f"run {run + 1}: project {op_s:.1f} s {phases} | first GET "
                      f"{first_s * 1000:.0f} ms | warm GET median {median(gets) * 1000:.0f} ms",
                      flush=True)
            points = min(args.limit, total)
            print(f"\nmedians of {args.runs} runs, {total:,} records ({DIM}-d), "
                  f"{'no implicit operations' if args.no_implicit else 'queue scored'}:")
            print(f"  project operation {median(ops):.1f} s "
                  f"({total / median(ops):,.0f} records/s)")
            print(f"  GET /api/v1/map, {points:,} points: first {median(firsts) * 1000:.0f} ms, "
                  f"warm {median(warm) * 1000:.0f} ms; payload {size / 2**20:.1f} MiB "
                  f"({size / points:.0f} B/point), gzip-6 {packed / 2**20:.1f} MiB")
            print(f"load average at end: {os.getloadavg()}")
    finally:
        system.send_signal(signal.SIGTERM)
        system.wait(120)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
