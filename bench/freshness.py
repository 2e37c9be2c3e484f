"""End to end: how long after its 201 a production record is in the index and the queue.

Starts ``chroma run`` (embedded PostgreSQL and Qdrant Edge, default settings) in a
temporary folder, logs a clustered training set (default 20,000 x 64-d, 10 classes),
waits until the implicit operations are idle, then logs production records for
``--seconds`` at a steady rate with random pauses: batches of 1-100 records, mostly
0.05-0.4 s apart (within the trigger's debounce period), sometimes after 1-4 s.

A poller reads ``/api/v1/status`` every ``--poll`` seconds (head of the change feed, and
what the index and the labelling queue consumed). A batch's change number is at most
the head seen by the first poll after its 201, so its lag is measured to the first poll
where the index (``indexed_seq``) or the queue (``scored_seq``) reached that number: an
upper bound, by at most one poll interval. After the last write it waits (no traffic)
until both cover everything, and prints p50/p95/p99/max per consumer.

    .venv/bin/python bench/freshness.py [--training 20000] [--seconds 60] [--poll 0.25]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from refresh import start_system, wait_idle

from chroma.client import Client

DIM = 64
CLASSES = 10


@dataclass
class Sample:
    at: float
    head: int
    indexed: int
    scored: int


@dataclass
class Poller:
    """Samples the set's feed head and watermarks until stopped."""

    http: httpx.Client
    key: str
    interval_s: float
    samples: list[Sample] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                sets = self.http.get("/api/v1/status").json()["embedding_sets"]
                row = next(s for s in sets if s["embedding_set_key"] == self.key)
                self.samples.append(Sample(time.monotonic(), row["latest_seq"],
                                           row["indexed_seq"], row["scored_seq"]))
            except (httpx.HTTPError, StopIteration, KeyError, ValueError):
                pass
            self.stop.wait(self.interval_s)

    def covered(self) -> bool:
        last = self.samples[-1] if self.samples else None
        return last is not None and last.indexed >= last.head and last.scored >= last.head


def lags(written: list[float], samples: list[Sample], attr: str) -> list[float]:
    """Seconds from each write to the first sample whose ``attr`` covers it."""
    out = []
    for at in written:
        after = [s for s in samples if s.at >= at]
        if not after:
            continue
        target = after[0].head
        reached = next((s.at for s in after if getattr(s, attr) >= target), None)
        if reached is not None:
            out.append(reached - at)
    return out


def describe(name: str, values: list[float], expected: int) -> str:
    if not values:
        return f"  {name}: no batch covered"
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return (f"  {name}: p50 {p50:.2f} s | p95 {p95:.2f} s | p99 {p99:.2f} s | "
            f"max {max(values):.2f} s  ({len(values)} of {expected} batches covered)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--training", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--poll", type=float, default=0.25)
    parser.add_argument("--catch-up", type=float, default=300.0,
                        help="how long to wait for coverage after the last write")
    args = parser.parse_args()

    print(machine_info(("qdrant-edge-py", "numpy", "psycopg", "pyarrow")))
    workdir = Path(tempfile.mkdtemp(prefix="chroma-freshness-"))
    workdir.chmod(0o755)
    port = 19000 + int(time.time()) % 1000
    system = start_system(workdir, port)
    url = f"http://127.0.0.1:{port}"
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(CLASSES, DIM)) * 3
    model = {"model": "freshness-bench", "dim": DIM}
    try:
        with Client(url, progress=False) as client, httpx.Client(base_url=url,
                                                                 timeout=60) as http:
            labels = rng.integers(0, CLASSES, size=args.training)
            key = client.log_many(centres[labels] + rng.normal(size=(args.training, DIM)),
                                  embedding_set=model, dataset="train", split="training",
                                  label_classes=[f"c{c}" for c in labels])["embedding_set_key"]
            wait_idle(http)
            poller = Poller(http, key, args.poll)
            thread = threading.Thread(target=poller.run, daemon=True)
            thread.start()
            written: list[float] = []
            records = 0
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                n = int(rng.integers(1, 101))
                batch = rng.integers(0, CLASSES, size=n)
                client.log_many(centres[batch] + rng.normal(size=(n, DIM)), embedding_set=model,
                                dataset="prod", split="production",
                                inference_classes=[f"c{c}" for c in batch])
                written.append(time.monotonic())
                records += n
                time.sleep(float(rng.uniform(1.0, 4.0)) if rng.random() < 0.15
                           else float(rng.uniform(0.05, 0.4)))
            last_write = time.monotonic()
            until = last_write + args.catch_up
            while time.monotonic() < until and not poller.covered():
                time.sleep(args.poll)
            covered_after = time.monotonic() - last_write
            poller.stop.set()
            thread.join()
            print(f"\n{args.training:,} training x {DIM}-d; {records:,} production records in "
                  f"{len(written)} batches over {args.seconds:.0f} s; status polled every "
                  f"{args.poll} s (lags are upper bounds by one poll)")
            print("load average during the run (1/5/15 min): "
                  + " / ".join(f"{x:.1f}" for x in os.getloadavg()))
            print(f"everything covered {covered_after:.1f} s after the last write"
                  if poller.covered() else
                  f"NOT covered {args.catch_up:.0f} s after the last write")
            print("lag from 201 to ...")
            print(describe("index", lags(written, poller.samples, "indexed"), len(written)))
            print(describe("queue", lags(written, poller.samples, "scored"), len(written)))
    finally:
        system.send_signal(signal.SIGTERM)
        system.wait(120)


if __name__ == "__main__":
    main()
