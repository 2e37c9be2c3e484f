"""Us beside our peers, on the same data in one invocation: the table of issue 15.

``chroma run`` (embedded PostgreSQL + Qdrant Edge, default settings, over HTTP) beside
chromadb and Qdrant Edge used in-process as libraries, on the same clustered vectors
(default 100,000 x 128: 20% training with classes, 80% production) and the same 1,000
queries (drawn from the same clusters). The peers run in their own virtualenv
(``~/.cache/chroma-bench-peers/<hash of bench/peers-requirements.txt>``, made with
``python -m uv`` or ``pip`` on first use), each in its own process driven by
``bench/_peer_worker.py``, so they never enter our dependencies and their memory is their own.

Figures, per system:

* ingest: records/s until the last write was acknowledged (ours: the Python client's
  ``log_many``, Arrow bulk, training then production);
* last record searchable: seconds from that acknowledgement until a k=10 search for the
  last record's vector answers it (polled every 10 ms);
* single query p50/p99, k=10: medians over ``--rounds`` interleaved rounds (ours: ``POST
  /api/v1/query`` with one vector, each query followed by a ``GET /health`` whose p50 is
  the HTTP floor of the same run); recall@10 against exact cosine neighbours;
* batched: 100 vectors a request (ours: ``embeddings``), vectors/s;
* our query bodies are encoded as ``chroma.client`` sends them (orjson, :func:`post_query`):
  httpx's ``json=`` (the standard library's encoder) took ~150 µs for one 128-float
  vector and ~15 ms for 100, in the timed client, not in the service; ``--stdlib-json``
  measures that way (1,114 against 2,179 batched vectors/s on one server, load ~10);
* memory after ingest (and the index settled): RSS and PSS summed over the processes
  (ours: ``chroma run``, its workers and the PostgreSQL server with its backends);
* full refresh (ours only): ``recommend`` with ``full=true``, the operation's duration.

    .venv/bin/python bench/peers.py [--records 100000] [--queries 1000] [--rounds 3]
        [--peers [chromadb] [edge]] [--no-refresh] [--stdlib-json]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
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
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, median
from _system import LineChild
from refresh import run_operation, start_system, wait_idle

from chroma.client import Client

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "peers-requirements.txt"
DIM = 128
CLUSTERS = 100
CLASSES = 12
PEERS = ("chromadb", "edge")


# -- data --------------------------------------------------------------------------------


def make_data(records: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLUSTERS, DIM)).astype(np.float32) * 3
    vectors = centres[rng.integers(0, CLUSTERS, records)] + rng.normal(size=(records, DIM))
    asked = centres[rng.integers(0, CLUSTERS, queries)] + rng.normal(size=(queries, DIM))
    return vectors.astype(np.float32), asked.astype(np.float32)


def exact_top10(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    asked = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    out = []
    for start in range(0, len(asked), 100):
        scores = asked[start:start + 100] @ unit.T
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        out.append(top)
    return np.concatenate(out)


def recall(truth: np.ndarray, found: list[list[int]]) -> float:
    hits = sum(len(set(row) & set(true.tolist())) for row, true in zip(found, truth, strict=True))
    return hits / (10 * len(truth))


# -- the peers' virtualenv ---------------------------------------------------------------


def peer_python() -> Path:
    """The peers' interpreter, installing ``peers-requirements.txt`` on first use."""
    digest = hashlib.sha1(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = Path.home() / ".cache" / "chroma-bench-peers" / digest
    python = venv / "bin" / "python"
    if (venv / ".installed").exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    uv = [sys.executable, "-m", "uv"] if shutil.which("uv") is None else ["uv"]
    try:
        subprocess.run([*uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
                       check=True)
        subprocess.run([*uv, "pip", "install", "--quiet", "--python", str(python),
                        "-r", str(REQUIREMENTS)], check=True)
    except (OSError, subprocess.CalledProcessError):  # no uv: the standard library's venv
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r",
                        str(REQUIREMENTS)], check=True)
    (venv / ".installed").touch()
    return python


class Peer(LineChild):
    """One peer engine in its own process (``_peer_worker.py``)."""

    def __init__(self, name: str, python: Path, data: Path, workdir: Path) -> None:
        (workdir / name).mkdir()
        super().__init__(name, [str(python), str(HERE / "_peer_worker.py"), name, str(data),
                                str(workdir / name)])

    def close(self, timeout_s: float = 60) -> None:
        with contextlib.suppress(RuntimeError, OSError):
            self.ask("quit")
        self.proc.wait(timeout_s)


# -- us ----------------------------------------------------------------------------------

STDLIB_JSON = False
"""``--stdlib-json``: query bodies through httpx's ``json=`` (as before), not orjson."""


def post_query(http: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    """``POST /api/v1/query`` with ``body`` encoded as ``chroma.client`` encodes it."""
    if STDLIB_JSON:
        return http.post("/api/v1/query", json=body)
    return http.post("/api/v1/query", content=orjson.dumps(body),
                     headers={"content-type": "application/json"})


def memory_of(root: int, workdir: Path) -> tuple[float, float | None, int]:
    """RSS and PSS (MiB) summed over ``root``, its descendants and the PostgreSQL server
    under ``workdir`` (pg_ctl detaches it) with its backends; and how many processes."""
    procs: dict[int, psutil.Process] = {}
    top = psutil.Process(root)
    for proc in [top, *top.children(recursive=True)]:
        procs[proc.pid] = proc
    pgdata = f"{workdir / 'data'}{os.sep}"  # not the peers, whose data.npz is beside it
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if pgdata in cmdline:
            procs[proc.pid] = proc
            for child in proc.children(recursive=True):
                procs[child.pid] = child
    rss = 0.0
    pss: float | None = 0.0
    for proc in procs.values():
        try:
            info = proc.memory_full_info()
            rss += info.rss / 2**20
            pss = None if pss is None else pss + info.pss / 2**20
        except psutil.AccessDenied:
            rss += proc.memory_info().rss / 2**20
            pss = None
        except psutil.NoSuchProcess:
            continue
    return rss, pss, len(procs)


def last_searchable(http: httpx.Client, key: str, vector: np.ndarray, record_id: str,
                    since: float, timeout: float = 600) -> float | None:
    body = {"embedding_set_key": key, "embedding": vector.tolist(), "k": 10}
    deadline = since + timeout
    while time.perf_counter() < deadline:
        answer = post_query(http, body)
        if answer.status_code == 200:
            ids = [n["id"] for n in answer.json()["results"][0]["neighbours"]]
            if record_id in ids:
                return time.perf_counter() - since
        time.sleep(0.01)
    return None


def our_round(http: httpx.Client, key: str, queries: np.ndarray) -> dict[str, Any]:
    latencies, health, found = [], [], []
    for query in queries:
        body = {"embedding_set_key": key, "embedding": query.tolist(), "k": 10}
        began = time.perf_counter()
        answer = post_query(http, body)
        latencies.append(time.perf_counter() - began)
        answer.raise_for_status()
        found.append([int(n["id"][1:]) for n in answer.json()["results"][0]["neighbours"]])
        began = time.perf_counter()
        http.get("/health").raise_for_status()
        health.append(time.perf_counter() - began)
    return {"latencies_s": latencies, "health_s": health, "hits": found}


def our_batched(http: httpx.Client, key: str, queries: np.ndarray) -> float:
    began = time.perf_counter()
    for start in range(0, len(queries), 100):
        body = {"embedding_set_key": key, "embeddings": queries[start:start + 100].tolist(),
                "k": 10}
        post_query(http, body).raise_for_status()
    return len(queries) / (time.perf_counter() - began)


# -- report ------------------------------------------------------------------------------


def ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def summarise(rounds: list[dict[str, Any]], truth: np.ndarray) -> dict[str, float]:
    out = {"p50_ms": median([ms(r["latencies_s"], 50) for r in rounds]),
           "p99_ms": median([ms(r["latencies_s"], 99) for r in rounds]),
           "recall": median([recall(truth, r["hits"]) for r in rounds])}
    if "health_s" in rounds[0]:
        out["health_ms"] = median([ms(r["health_s"], 50) for r in rounds])
    return out


def row(name: str, figures: dict[str, Any]) -> str:
    def fmt(value: Any, pattern: str) -> str:
        return "—" if value is None else pattern.format(value)

    query = f"{figures['p50_ms']:.2f} / {figures['p99_ms']:.2f} ms"
    if "health_ms" in figures:
        query += (f" (/health {figures['health_ms']:.2f} ms; "
                  f"{figures['p50_ms'] / figures['health_ms']:.1f}x)")
    memory = fmt(figures.get("rss_mib"), "{:,.0f} RSS")
    if figures.get("pss_mib") is not None:
        memory += f" / {figures['pss_mib']:,.0f} PSS"
    return (f"| {name} | {figures['ingest_rps']:,.0f} rec/s | {query} | "
            f"{figures['recall']:.3f} | {figures['batched_vps']:,.0f} vec/s | "
            f"{fmt(figures.get('lag_s'), '{:.2f} s')} | {memory} MiB | "
            f"{fmt(figures.get('refresh_s'), '{:.1f} s')} |")


def loadavg() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-refresh", action="store_true", help="skip the full refresh")
    parser.add_argument("--peers", nargs="*", choices=PEERS, default=list(PEERS),
                        help="peers to run beside us (none: only ours, e.g. at 1M)")
    parser.add_argument("--stdlib-json", action="store_true",
                        help="encode our query bodies with httpx's json= (the stdlib encoder)")
    args = parser.parse_args()
    global STDLIB_JSON
    STDLIB_JSON = args.stdlib_json

    print(machine_info(("qdrant-edge-py", "numpy", "psycopg", "fastapi", "pydantic")))
    print(f"load average at start (1/5/15 min): {loadavg()}")
    workdir = Path(tempfile.mkdtemp(prefix="chroma-peers-"))
    workdir.chmod(0o755)
    vectors, queries = make_data(args.records, args.queries)
    truth = exact_top10(vectors, queries)
    data = workdir / "data.npz"
    np.savez(data, vectors=vectors, queries=queries)
    python = peer_python() if args.peers else Path(sys.executable)
    if args.peers:
        versions = subprocess.run(
            [str(python), "-c", "import chromadb, importlib.metadata as m; print('chromadb', "
             "chromadb.__version__, '| qdrant-edge-py', m.version('qdrant-edge-py'))"],
            capture_output=True, text=True, check=True).stdout.strip()
        print(f"peers ({python.parent.parent}): {versions}")
    figures: dict[str, dict[str, Any]] = {}
    port = 19000 + os.getpid() % 1000
    system = start_system(workdir, port)
    peers = [Peer(name, python, data, workdir) for name in args.peers]
    try:
        figures["us"] = ingest_us(system.pid, port, workdir, vectors)
        for peer in peers:
            answer = peer.ask("ingest")
            figures[peer.name] = {"ingest_rps": len(vectors) / answer["ingest_s"],
                                  "lag_s": answer["lag_s"], "build_s": answer["build_s"]}
            memory = peer.ask("memory")
            figures[peer.name].update(rss_mib=memory["rss_mib"], pss_mib=memory["pss_mib"])
        measure_rounds(port, figures, peers, queries, truth, args.rounds,
                       refresh=not args.no_refresh)
    finally:
        for peer in peers:
            peer.close()
        system.send_signal(signal.SIGTERM)
        system.wait(120)
    print(f"\n{args.records:,} x {DIM} clustered vectors ({CLUSTERS} clusters), "
          f"{args.queries:,} queries, k=10, {args.rounds} interleaved rounds (medians); "
          f"our query bodies encoded {'by httpx json=' if STDLIB_JSON else 'with orjson'}")
    print(f"load average at the end (1/5/15 min): {loadavg()}")
    print("| system | ingest until acked | single query p50 / p99 | recall@10 | "
          "batched (100/request) | last record searchable | memory after ingest | "
          "full refresh |")
    print("|---|---|---|---|---|---|---|---|")
    print(row("us (chroma run, HTTP)", figures["us"]))
    if "chromadb" in figures:
        print(row("chromadb (in-process)", figures["chromadb"]))
    if "edge" in figures:
        print(row("Qdrant Edge (in-process)", figures["edge"]))
        print(f"Qdrant Edge HNSW build after ingest: {figures['edge']['build_s']:.1f} s")
    print(f"ours: {figures['us']['processes']} processes")
    shutil.rmtree(workdir, ignore_errors=True)


def ingest_us(pid: int, port: int, workdir: Path, vectors: np.ndarray) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}"
    n_train = len(vectors) // 5
    labels = [f"class-{i % CLASSES}" for i in range(n_train)]
    ids = [f"r{i}" for i in range(len(vectors))]
    model = {"model": "peers-bench", "dim": DIM}
    out: dict[str, Any] = {}
    with Client(url, progress=False) as client, httpx.Client(base_url=url, timeout=60) as http:
        began = time.perf_counter()
        key = client.log_many(vectors[:n_train], embedding_set=model, dataset="train",
                              split="training", ids=ids[:n_train],
                              label_classes=labels)["embedding_set_key"]
        client.log_many(vectors[n_train:], embedding_set=model, dataset="prod",
                        split="production", ids=ids[n_train:],
                        inference_classes=[f"class-{i % CLASSES}"
                                           for i in range(len(vectors) - n_train)])
        acked = time.perf_counter()
        out["ingest_rps"] = len(vectors) / (acked - began)
        out["lag_s"] = last_searchable(http, key, vectors[-1], ids[-1], acked)
        wait_idle(http)
        out["rss_mib"], out["pss_mib"], out["processes"] = memory_of(pid, workdir)
    out["key"] = key
    return out


def measure_rounds(
    port: int, figures: dict[str, dict[str, Any]], peers: list[Peer], queries: np.ndarray,
    truth: np.ndarray, rounds: int, *, refresh: bool,
) -> None:
    url = f"http://127.0.0.1:{port}"
    key = figures["us"]["key"]
    collected: dict[str, list[dict[str, Any]]] = {"us": [], **{p.name: [] for p in peers}}
    batched: dict[str, list[float]] = {name: [] for name in collected}
    with httpx.Client(base_url=url, timeout=60) as http:
        for _ in range(3):  # warm-up: connections, caches
            http.get("/health")
            post_query(http, {"embedding_set_key": key, "embedding": queries[0].tolist(),
                              "k": 10})
        for _ in range(rounds):
            collected["us"].append(our_round(http, key, queries))
            batched["us"].append(our_batched(http, key, queries))
            for peer in peers:
                collected[peer.name].append(peer.ask("round"))
                batched[peer.name].append(peer.ask("batched")["vectors_per_s"])
        if refresh:
            operation = run_operation(http, "recommend", key, full=True)
            figures["us"]["refresh_s"] = operation["duration_s"]
    for name, runs in collected.items():
        figures[name].update(summarise(runs, truth), batched_vps=median(batched[name]))


if __name__ == "__main__":
    main()
