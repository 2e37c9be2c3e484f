"""End to end: how long after its 201 a production record is searchable, indexed and queued.

Starts ``chroma run`` (embedded PostgreSQL and Qdrant Edge, default settings) in a
temporary folder, logs a clustered training set (default 20,000 x 64-d, 10 classes,
Arrow bulk) into a new embedding set, measures when its last record is first answered
by a search (*new set searchable*: the set has no index until its first ``index`` run),
optionally logs ``--preload N`` production records into it (Arrow bulk, ``log_many`` in
chunks of ``PRELOAD_CHUNK``; the issue's figure is at 1M x 128: ``--preload 1000000
--dim 128``), waits until the implicit operations are idle and the index and queue
cover the feed, then logs production records for ``--seconds``:

* ``--rate R``: a steady R records/s, a batch of R/10 records every 0.1 s, sent by
  ``--writers`` threads (so one slow answer does not hold the schedule back). The rate
  really reached (records acknowledged / time from the first send to the last 201) is
  printed: the figure only means what it says at that rate.
* no ``--rate``: batches of 1-100 records, mostly 0.05-0.4 s apart (within the
  trigger's debounce period), sometimes after 1-4 s.

*Searchable*: every batch's last record is probed. One prober thread searches the
vectors of every probe not found yet in one request (k=10) about every 10 ms; a probe's
lag is from its batch's 201 to the answer that first holds it (an upper bound, by one
request). This is what a user sees: records reach the live index straight from the
commit, before the ``index`` run that moves ``indexed_seq``.

*Index* and *queue*: a poller reads ``/api/v1/status`` every ``--poll`` seconds (head of
the change feed, and what the index and the labelling queue consumed). A batch's change
number is at most the head seen by the first poll after its 201, so its lag is measured
to the first poll where ``indexed_seq`` or ``scored_seq`` reached that number: an upper
bound, by at most one poll interval. After the last write it waits (no traffic) until
both cover everything.

``--no-assessments`` turns off the assessment of production records on ``/log`` (its
exact kNN against the training set bounds the rate the API absorbs at 100k training).
``--baseline DIR`` runs another checkout's code too (``DIR/.venv/bin/chroma``, e.g. a
worktree of main with ``make install`` done), alternating baseline and this checkout
``--runs`` times each in one invocation, and prints the medians side by side.

    .venv/bin/python bench/freshness.py [--training 20000] [--seconds 60] [--poll 0.25]
        [--rate 1000] [--writers 4] [--runs 1] [--baseline DIR] [--keep] [--no-assessments]
        [--preload N] [--dim 64] [--env NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, median
from _system import start_chroma_run
from refresh import wait_idle

from chroma.client import Client

CLASSES = 10
PRELOAD_CHUNK = 100_000
PROBE_GIVE_UP_S = 120.0


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
            self.sample()
            self.stop.wait(self.interval_s)

    def sample(self) -> None:
        try:
            sets = self.http.get("/api/v1/status").json()["embedding_sets"]
            row = next(s for s in sets if s["embedding_set_key"] == self.key)
            self.samples.append(Sample(time.monotonic(), row["latest_seq"],
                                       row["indexed_seq"], row["scored_seq"]))
        except (httpx.HTTPError, StopIteration, KeyError, ValueError):
            pass

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
    """Searches every probe not found yet in one request until each is answered."""

    http: httpx.Client
    key: str
    todo: queue.SimpleQueue[tuple[str, list[float], float] | None] = field(
        default_factory=queue.SimpleQueue)
    lags: list[float] = field(default_factory=list)
    acked_at: list[float] = field(default_factory=list)
    """Wall-clock time of each lag's 201 (to find a stall's cause in the run's log)."""
    lost: int = 0

    def run(self) -> None:
        pending: dict[str, tuple[list[float], float]] = {}
        done = False
        while not done or pending:
            while True:
                try:
                    item = self.todo.get(timeout=0.01 if not pending and not done else 0)
                except queue.Empty:
                    break
                if item is None:
                    done = True
                    break
                pending[item[0]] = (item[1], item[2])
            if not pending:
                continue
            ids = list(pending)[:1000]
            body = {"embedding_set_key": self.key, "k": 10,
                    "embeddings": [pending[i][0] for i in ids]}
            try:
                answer = self.http.post("/api/v1/query", json=body)
            except httpx.HTTPError:  # a busy server may reset a connection: ask again
                time.sleep(0.01)
                continue
            now = time.monotonic()
            if answer.status_code == 200:
                for record_id, result in zip(ids, answer.json()["results"], strict=True):
                    if record_id in {n["id"] for n in result["neighbours"]}:
                        lag = now - pending.pop(record_id)[1]
                        self.lags.append(lag)
                        self.acked_at.append(time.time() - lag)
            for record_id in [i for i, (_, acked) in pending.items()
                              if now - acked > PROBE_GIVE_UP_S]:
                del pending[record_id]
                self.lost += 1
            time.sleep(0.01)


@dataclass
class Writers:
    """Logs batches from ``threads`` threads, each with its own client."""

    url: str
    model: dict[str, Any]
    prober: Prober
    threads: int
    written: list[float] = field(default_factory=list)
    records: int = 0
    first_sent: float | None = None
    last_acked: float = 0.0
    failed: int = 0
    _local: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _clients: list[Client] = field(default_factory=list)

    def client(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = Client(self.url, progress=False)
            with self._lock:
                self._clients.append(client)
        return client

    def write(self, ids: list[str], vectors: np.ndarray, classes: list[str]) -> None:
        with self._lock:
            if self.first_sent is None:
                self.first_sent = time.monotonic()
        try:
            self.client().log_many(vectors, embedding_set=self.model, ids=ids, dataset="prod",
                                   split="production", inference_classes=classes)
        except Exception:
            with self._lock:
                self.failed += 1
            return
        acked = time.monotonic()
        with self._lock:
            self.written.append(acked)
            self.records += len(ids)
            self.last_acked = max(self.last_acked, acked)
        self.prober.todo.put((ids[-1], vectors[-1].tolist(), acked))

    def close(self) -> None:
        for client in self._clients:
            client.close()


def describe(name: str, values: list[float], expected: int) -> str:
    if not values:
        return f"  {name}: no batch covered"
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return (f"  {name}: p50 {p50:.2f} s | p95 {p95:.2f} s | p99 {p99:.2f} s | "
            f"max {max(values):.2f} s  ({len(values)} of {expected} batches covered)")


def start_system(
    chroma: Path, workdir: Path, port: int, extra_env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """``chroma run`` of the given installation, once every component is up."""
    return start_chroma_run(workdir, port, chroma=chroma, env=extra_env)


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def first_searchable(
    http: httpx.Client, key: str, record_id: str, vector: np.ndarray, acked: float
) -> float | None:
    """Seconds from the 201 of a new set's last record to its first answer (None: not
    within ``PROBE_GIVE_UP_S`` x 5; 503 while the set has no index yet)."""
    body = {"embedding_set_key": key, "embedding": vector.tolist(), "k": 10}
    while time.monotonic() - acked < PROBE_GIVE_UP_S * 5:
        try:
            answer = http.post("/api/v1/query", json=body)
        except httpx.HTTPError:
            continue
        if answer.status_code == 200 and record_id in {
                n["id"] for n in answer.json()["results"][0]["neighbours"]}:
            return time.monotonic() - acked
        time.sleep(0.05)
    return None


def run_once(chroma: Path, args: argparse.Namespace, label: str) -> dict[str, Any]:
    """One system, one training set, one steady phase; the lags and the rate reached."""
    workdir = Path(tempfile.mkdtemp(prefix="chroma-freshness-"))
    workdir.chmod(0o755)
    port = free_port()
    extra_env = {"CHROMA_ASSESSOR_CACHE_BYTES": "0"} if args.no_assessments else {}
    extra_env |= dict(pair.split("=", 1) for pair in args.env)
    system = start_system(chroma, workdir, port, extra_env)
    url = f"http://127.0.0.1:{port}"
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(CLASSES, args.dim)) * 3
    model = {"model": "freshness-bench", "dim": args.dim}
    try:
        with Client(url, progress=False) as client, httpx.Client(base_url=url,
                                                                 timeout=60) as http:
            labels = rng.integers(0, CLASSES, size=args.training)
            training = centres[labels] + rng.normal(size=(args.training, args.dim))
            loading = time.monotonic()
            answer = client.log_many(training, embedding_set=model, dataset="train",
                                     split="training", label_classes=[f"c{c}" for c in labels])
            acked = time.monotonic()
            key = answer["embedding_set_key"]
            first = first_searchable(http, key, answer["ids"][-1], training[-1], acked)
            wait_idle(http)
            settled = time.monotonic() - loading
            preload = _preload(client, http, key, model, centres, rng, args)
            return _steady_phase(http, url, key, model, centres, rng, args) | {
                "label": label, "load_s": acked - loading, "settled_s": settled,
                "first_searchable_s": first, "workdir": workdir, "preload": preload}
    finally:
        system.send_signal(signal.SIGTERM)
        system.wait(120)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _preload(
    client: Client, http: httpx.Client, key: str, model: dict[str, Any], centres: np.ndarray,
    rng: np.random.Generator, args: argparse.Namespace,
) -> dict[str, float]:
    """``--preload`` production records (Arrow bulk in chunks), then until the operations
    are idle and the index and queue cover the feed: seconds to ack and to settle."""
    if not args.preload:
        return {}
    began = time.monotonic()
    for start in range(0, args.preload, PRELOAD_CHUNK):
        n = min(PRELOAD_CHUNK, args.preload - start)
        labels = rng.integers(0, CLASSES, size=n)
        vectors = (centres[labels] + rng.normal(size=(n, args.dim))).astype(np.float32)
        client.log_many(vectors, embedding_set=model, dataset="preload", split="production",
                        ids=[f"pre{start + i}" for i in range(n)],
                        inference_classes=[f"c{c}" for c in labels])
    acked = time.monotonic()
    print(f"  preload: {args.preload:,} records acknowledged in {acked - began:.1f} s "
          f"(load {os.getloadavg()[0]:.1f})", flush=True)
    poller = Poller(http, key, 1.0)
    while not poller.covered():
        wait_idle(http, timeout=7200)
        poller.sample()
    settled = time.monotonic()
    print(f"  preload: indexed and queued {settled - acked:.1f} s after the last ack "
          f"(load {os.getloadavg()[0]:.1f})", flush=True)
    return {"ack_s": acked - began, "settle_s": settled - acked}


def _steady_phase(
    http: httpx.Client, url: str, key: str, model: dict[str, Any], centres: np.ndarray,
    rng: np.random.Generator, args: argparse.Namespace,
) -> dict[str, Any]:
    phase_began = datetime.now(UTC)
    poller = Poller(http, key, args.poll)
    polling = threading.Thread(target=poller.run, daemon=True)
    polling.start()
    probe_http = httpx.Client(base_url=url, timeout=60)
    prober = Prober(probe_http, key)
    probing = threading.Thread(target=prober.run, daemon=True)
    probing.start()
    writers = Writers(url, model, prober, args.writers if args.rate else 1)
    pool = ThreadPoolExecutor(max_workers=writers.threads, thread_name_prefix="writer")
    sent = 0
    deadline = time.monotonic() + args.seconds
    next_at = time.monotonic()
    while time.monotonic() < deadline:
        n = max(1, int(args.rate / 10)) if args.rate else int(rng.integers(1, 101))
        batch = rng.integers(0, CLASSES, size=n)
        vectors = centres[batch] + rng.normal(size=(n, args.dim))
        ids = [f"p{sent + i}" for i in range(n)]
        classes = [f"c{c}" for c in batch]
        if args.rate:
            pool.submit(writers.write, ids, vectors, classes)
            next_at += 0.1
            time.sleep(max(0.0, next_at - time.monotonic()))
        else:
            writers.write(ids, vectors, classes)
            time.sleep(float(rng.uniform(1.0, 4.0)) if rng.random() < 0.15
                       else float(rng.uniform(0.05, 0.4)))
        sent += n
    pool.shutdown(wait=True)
    writers.close()
    last_write = time.monotonic()
    prober.todo.put(None)
    until = last_write + args.catch_up
    while time.monotonic() < until and not poller.covered():
        time.sleep(args.poll)
    covered_after = time.monotonic() - last_write if poller.covered() else None
    poller.stop.set()
    polling.join()
    probing.join(PROBE_GIVE_UP_S + 60)
    probe_http.close()
    span = max(writers.last_acked - (writers.first_sent or writers.last_acked), 1e-9)
    return {
        "records": writers.records, "batches": len(writers.written), "failed": writers.failed,
        "rate": writers.records / span, "covered_after_s": covered_after,
        "load": os.getloadavg(), "lost": prober.lost,
        "searchable": prober.lags,
        "searchable_acked_at": prober.acked_at,
        "index": lags(writers.written, poller.samples, "indexed"),
        "queue": lags(writers.written, poller.samples, "scored"),
        "runs": {kind: operation_times(http, kind, phase_began)
                 for kind in ("index", "recommend")},
    }


def operation_times(http: httpx.Client, kind: str, since: datetime) -> dict[str, list[float]]:
    """The implicit runs of ``kind`` queued since ``since``: how long each waited in the
    queue (created to started) and ran (started to finished), in seconds; for ``index``
    also the records each upserted and the points it really wrote (``written``: what
    came fresh from its commit is not written again), and how its graph changed."""
    waited: list[float] = []
    ran: list[float] = []
    upserted: list[float] = []
    written: list[float] = []
    graphs: list[float] = []
    rounds: list[float] = []
    phases: dict[str, float] = {}
    parts: dict[str, list[float]] = {}  # index runs: where their catch-up went (if told)
    cursor = None
    while True:
        params: dict[str, Any] = {"kind": kind, "limit": 500, "state": "succeeded"}
        if cursor:
            params["cursor"] = cursor
        page = http.get("/api/v1/operations", params=params).json()
        for op in page["data"]:
            created = datetime.fromisoformat(op["created_at"].replace("Z", "+00:00"))
            if created < since or not op["started_at"]:
                continue
            started = datetime.fromisoformat(op["started_at"].replace("Z", "+00:00"))
            waited.append((started - created).total_seconds())
            ran.append(float(op["duration_s"] or 0.0))
            for one in ((op.get("result") or {}).get("embedding_sets") or {}).values():
                upserted.append(float(one.get("upserted", 0)))
                written.append(float(one.get("written", one.get("upserted", 0))))
                graphs.append(float(one.get("graph") in ("optimized", "rebuilt", "started")))
                rounds.append(float(one.get("rounds", 1 if one.get("scored") else 0)))
                for phase, seconds in (one.get("seconds") or {}).items():
                    phases[phase] = phases.get(phase, 0.0) + float(seconds)
                told = {**(one.get("reading") or {}),
                        **{name: one[name] for name in ("apply_s", "apply_cpu_s", "set_s",
                                                         "set_cpu_s") if name in one}}
                for name, value in told.items():
                    parts.setdefault(name, []).append(float(value))
        cursor = page.get("next_cursor")
        if not cursor:
            return {"waited": waited, "ran": ran, "upserted": upserted, "written": written,
                    "graphs": graphs, "rounds": rounds, "phases": phases, "parts": parts}


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n[{result['label']}] {args.training:,} training x {args.dim}-d (logged in "
          f"{result['load_s']:.1f} s, operations idle {result['settled_s']:.1f} s after "
          f"the start); {result['records']:,} production records in {result['batches']} "
          f"batches over {args.seconds:.0f} s ({result['failed']} failed)")
    if result["preload"]:
        print(f"  then {args.preload:,} production records preloaded: acknowledged in "
              f"{result['preload']['ack_s']:.1f} s, indexed and queued "
              f"{result['preload']['settle_s']:.1f} s later")
    first = result["first_searchable_s"]
    print("  new set: its last training record searchable "
          + (f"{first:.1f} s after its 201" if first is not None else "NEVER (gave up)"))
    print(f"  rate reached: {result['rate']:,.0f} records/s"
          + (f" (asked {args.rate:,.0f})" if args.rate else " (random batches)"))
    print("  load average at the end (1/5/15 min): "
          + " / ".join(f"{x:.1f}" for x in result["load"]))
    covered = result["covered_after_s"]
    print(f"  everything indexed and queued {covered:.1f} s after the last write"
          if covered is not None else
          f"  NOT covered {args.catch_up:.0f} s after the last write")
    if args.keep:
        print(f"  kept: {result['workdir']}")
    print("  lag from 201 to ...")
    print(describe("searchable", result["searchable"], result["batches"])
          + (f" [{result['lost']} never found]" if result["lost"] else ""))
    slowest = sorted(zip(result["searchable"], result["searchable_acked_at"],
                         strict=True), reverse=True)[:5]
    print("    slowest (201 at, UTC): " + ", ".join(
        f"{lag:.2f} s at {datetime.fromtimestamp(at, UTC):%H:%M:%S.%f}"[:-3]
        for lag, at in slowest))
    print(describe("index", result["index"], result["batches"]))
    print(describe("queue", result["queue"], result["batches"]))
    for kind, times in result["runs"].items():
        if times["ran"]:
            waited, ran = np.percentile(times["waited"], [50, 100]), np.percentile(
                times["ran"], [50, 100])
            print(f"  {kind} runs during the phase: {len(times['ran'])}, each queued "
                  f"{waited[0]:.2f} s (max {waited[1]:.2f}) and ran {ran[0]:.2f} s "
                  f"(max {ran[1]:.2f}, mean {np.mean(times['ran']):.2f}, "
                  f"{sum(times['ran']):.1f} s in all)")
            if kind == "recommend":  # where the queue's lag goes, run by run
                print(f"    {sum(times['rounds']):.0f} of them scored records; seconds per "
                      "phase summed: " + ", ".join(
                          f"{name} {seconds:.1f}" for name, seconds in
                          sorted(times["phases"].items())))
            if kind == "index":
                print(f"    they upserted {sum(times['upserted']):,.0f} records, wrote "
                      f"{sum(times['written']):,.0f} points (the rest came fresh), and "
                      f"built graph {sum(times['graphs']):.0f} time(s)")
                if parts := times.get("parts"):
                    print("    their catch-up, summed: " + ", ".join(
                        f"{name} {sum(values):,.2f}" for name, values in sorted(parts.items())))


def summary(results: list[dict[str, Any]]) -> None:
    """Medians over the runs of each code: p50 / p99 per consumer, and the rate."""
    print("\nmedians over runs (p50 / p99 seconds; rate in records/s; load at each end)")
    print("| code | runs | new set searchable | rate | searchable | index | queue | load |")
    print("|---|---|---|---|---|---|---|---|")
    for label in dict.fromkeys(r["label"] for r in results):
        mine = [r for r in results if r["label"] == label]

        def cell(name: str, mine: list[dict[str, Any]] = mine) -> str:
            values = [np.percentile(r[name], [50, 99]) for r in mine if r[name]]
            if not values:
                return "-"
            return (f"{median([float(v[0]) for v in values]):.2f} / "
                    f"{median([float(v[1]) for v in values]):.2f}")

        loads = ", ".join(f"{r['load'][0]:.1f}" for r in mine)
        firsts = [r["first_searchable_s"] for r in mine if r["first_searchable_s"] is not None]
        first = f"{median(firsts):.1f} s" if firsts else "never"
        print(f"| {label} | {len(mine)} | {first} | {median([r['rate'] for r in mine]):,.0f} | "
              f"{cell('searchable')} | {cell('index')} | {cell('queue')} | {loads} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--training", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--poll", type=float, default=0.25)
    parser.add_argument("--dim", type=int, default=64, help="vector dimension")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the system under test (repeatable), e.g. "
                             "CHROMA_INDEX_REBUILD_RATIO=0.01")
    parser.add_argument("--preload", type=int, default=0,
                        help="production records logged (and settled) before the phase")
    parser.add_argument("--catch-up", type=float, default=300.0,
                        help="how long to wait for coverage after the last write")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="steady records/s (batches every 0.1 s); 0: random batches")
    parser.add_argument("--writers", type=int, default=4,
                        help="threads sending the batches of --rate")
    parser.add_argument("--runs", type=int, default=1, help="runs of each code")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout (with its .venv) to run alternately")
    parser.add_argument("--keep", action="store_true", help="keep the data and run.log")
    parser.add_argument("--no-assessments", action="store_true",
                        help="CHROMA_ASSESSOR_CACHE_BYTES=0: /log answers 202 without "
                             "assessing (at 100k training they bound the rate reached)")
    args = parser.parse_args()

    print(machine_info(("qdrant-edge-py", "numpy", "psycopg", "pyarrow")))
    print("load average at start (1/5/15 min): "
          + " / ".join(f"{x:.1f}" for x in os.getloadavg()))
    ours = Path(sys.executable).parent / "chroma"
    codes = [("this checkout", ours)]
    if args.baseline is not None:
        baseline = args.baseline.resolve() / ".venv" / "bin" / "chroma"
        if not baseline.exists():
            parser.error(f"{baseline} does not exist (make install in {args.baseline})")
        codes.insert(0, (f"baseline {args.baseline}", baseline))
    results = []
    for _ in range(args.runs):
        for label, chroma in codes:
            result = run_once(chroma, args, label)
            report(result, args)
            results.append(result)
    summary(results)


if __name__ == "__main__":
    main()
