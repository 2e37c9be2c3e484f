"""End to end: how long after its 201 a production record is in the index and the queue.

Starts ``chroma run`` (embedded PostgreSQL and Qdrant Edge, default settings) in a
temporary folder, logs a clustered training set (default 20,000 x 64-d, 10 classes),
waits until the implicit operations are idle, then logs production records for
``--seconds`` at a steady rate with random pauses: batches of 1-100 records, mostly
0.05-0.4 s apart (within the trigger's debounce period), sometimes after 1-4 s.

With ``--rate R`` it logs at a steady R records/s instead (batches of R/10 every 0.1 s).

A poller reads ``/api/v1/status`` every ``--poll`` seconds (head of the change feed, and
what the index and the labelling queue consumed). A batch's change number is at most
the head seen by the first poll after its 201, so its lag is measured to the first poll
where the index (``indexed_seq``) or the queue (``scored_seq``) reached that number: an
upper bound, by at most one poll interval. After the last write it waits (no traffic)
until both cover everything, and prints p50/p95/p99/max per consumer.

*Searchable*: a prober thread takes every batch's last record and searches its vector
(k=10) until the record is answered; the lag from the batch's 201 to that answer is what
a user sees (records reach the live index straight from the commit, before the ``index``
run that moves ``indexed_seq``). A prober that falls behind only makes lags larger.

    .venv/bin/python bench/freshness.py [--training 20000] [--seconds 60] [--poll 0.25]
                                        [--rate 1000]
"""

from __future__ import annotations

import argparse
import os
import queue
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


@dataclass
class Prober:
    """Searches each probed record's vector until it is answered; lags from its 201."""

    http: httpx.Client
    key: str
    todo: queue.SimpleQueue[tuple[str, list[float], float] | None] = field(
        default_factory=queue.SimpleQueue)
    lags: list[float] = field(default_factory=list)

    def run(self) -> None:
        while (item := self.todo.get()) is not None:
            record_id, vector, acked = item
            body = {"embedding_set_key": self.key, "embedding": vector, "k": 10}
            deadline = acked + 120
            while time.monotonic() < deadline:
                answer = self.http.post("/api/v1/query", json=body)
                if answer.status_code == 200 and record_id in {
                        n["id"] for n in answer.json()["results"][0]["neighbours"]}:
                    self.lags.append(time.monotonic() - acked)
                    break
                time.sleep(0.005)


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
    parser.add_argument("--rate", type=float, default=0.0,
                        help="steady records/s (batches every 0.1 s); 0: random batches")
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
            probe_http = httpx.Client(base_url=url, timeout=60)
            prober = Prober(probe_http, key)
            probing = threading.Thread(target=prober.run, daemon=True)
            probing.start()
            written: list[float] = []
            records = 0
            deadline = time.monotonic() + args.seconds
            next_at = time.monotonic()
            while time.monotonic() < deadline:
                n = max(1, int(args.rate / 10)) if args.rate else int(rng.integers(1, 101))
                batch = rng.integers(0, CLASSES, size=n)
                vectors = centres[batch] + rng.normal(size=(n, DIM))
                ids = [f"p{records + i}" for i in range(n)]
                client.log_many(vectors, embedding_set=model, ids=ids,
                                dataset="prod", split="production",
                                inference_classes=[f"c{c}" for c in batch])
                written.append(time.monotonic())
                prober.todo.put((ids[-1], vectors[-1].tolist(), written[-1]))
                records += n
                if args.rate:
                    next_at += 0.1
                    time.sleep(max(0.0, next_at - time.monotonic()))
                else:
                    time.sleep(float(rng.uniform(1.0, 4.0)) if rng.random() < 0.15
                               else float(rng.uniform(0.05, 0.4)))
            last_write = time.monotonic()
            prober.todo.put(None)
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
            print(f"logged at {records / args.seconds:,.0f} records/s on average")
            print("lag from 201 to ...")
            probing.join(180)
            probe_http.close()
            print(describe("searchable", prober.lags, len(written)))
            print(describe("index", lags(written, poller.samples, "indexed"), len(written)))
            print(describe("queue", lags(written, poller.samples, "scored"), len(written)))
    finally:
        system.send_signal(signal.SIGTERM)
        system.wait(120)


if __name__ == "__main__":
    main()
