"""Where the embedded index is hosted: ``CHROMA_INDEX_HOST=workers`` against ``=api``.

Each layout gets its own ``chroma run`` (interleaved, ``--runs`` times each, medians) on
the same clustered vectors (``bench/peers.py``'s data: 20% training, 80% production):

* ingest: records/s until acknowledged (Arrow bulk through the client); the first
  ``index`` run of the set fills it meanwhile, in the API process with ``api``;
* idle single queries: p50/p99 and ``GET /health`` p50; CPU per query (ms) of the API
  and of the workers process, from ``/proc`` (user + system), far steadier than wall
  time on a busy machine;
* batched: 100 vectors a request, vectors/s, and CPU per vector (µs) of the API and of
  the process hosting the index; with ``--batched-ef 64 32`` also per request
  ``hnsw_ef`` (this checkout only): vectors/s and recall@10 of the answers;
* busy: a ``reindex`` of the set (its pages written, graph built in a child, journal
  replayed), with single queries in one thread (until it ends, at most ``BUSY_MAX_S``)
  and ``BUSY_BATCHES`` JSON ``/log`` batches of 500 production records in another:
  query p50/p99 and ingest records/s *while the index run goes* (the GIL of the process
  that hosts the index);
* RSS summed over the processes after ingest.

Then the engine alone on the index the last run left (``EdgeQueryEngine.search``, 100
vectors a call, in this process): the ceiling of the batched figure.

``--code DIR`` adds a baseline: the same runs with the ``chroma`` of another checkout
(``DIR/.venv/bin/chroma``, e.g. ``git archive`` of the base commit + ``make install``),
taking turns with this one, so a change is judged against its base in one invocation.
``--no-busy`` skips the reindex part. Query bodies are encoded as ``chroma.client`` sends
them (orjson; ``bench/peers.py``'s ``post_query``).

    .venv/bin/python bench/colocate.py [--records 100000] [--queries 500] [--runs 2]
        [--hosts workers api] [--code DIR] [--no-busy]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, median
from _system import start_chroma_run
from peers import exact_top10, make_data, memory_of, post_query, recall

from chroma.client import Client

HOSTS = ("workers", "api")
BUSY_BATCHES = 20
"""JSON batches of 500 logged during the reindex (more would keep a slow machine's
reindex catching up for ever)."""
BUSY_MAX_S = 180.0
"""Queries during the reindex stop after this long even if it has not ended."""
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def pids(http: httpx.Client) -> dict[str, int]:
    return {c["name"]: c["pid"] for c in http.get("/api/v1/status").json()["components"]}


def ingest(url: str, vectors: np.ndarray) -> tuple[str, float]:
    n_train = len(vectors) // 5
    ids = [f"r{i}" for i in range(len(vectors))]
    model = {"model": "colocate-bench"}
    with Client(url, progress=False) as client:
        began = time.perf_counter()
        key = client.log_many(vectors[:n_train], embedding_set=model, dataset="train",
                              split="training", ids=ids[:n_train],
                              label_classes=[f"c{i % 12}" for i in range(n_train)]
                              )["embedding_set_key"]
        client.log_many(vectors[n_train:], embedding_set=model, dataset="prod",
                        split="production", ids=ids[n_train:])
        return key, len(vectors) / (time.perf_counter() - began)


def wait_idle(http: httpx.Client, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    quiet = None
    while time.monotonic() < deadline:
        ops = http.get("/api/v1/operations", params={"limit": 200}).json()["data"]
        if any(op["state"] in ("queued", "running") for op in ops):
            quiet = None
        elif quiet is None:
            quiet = time.monotonic()
        elif time.monotonic() - quiet > 3.0:
            return
        time.sleep(0.5)
    raise RuntimeError("operations did not settle")


def single(http: httpx.Client, key: str, query: np.ndarray) -> tuple[float, list[str]]:
    began = time.perf_counter()
    answer = post_query(http, {"embedding_set_key": key, "embedding": query.tolist(), "k": 10})
    took = time.perf_counter() - began
    answer.raise_for_status()
    return took, [n["id"] for n in answer.json()["results"][0]["neighbours"]]


def idle_queries(http: httpx.Client, key: str, queries: np.ndarray, who: dict[str, int],
                 truth: np.ndarray) -> dict[str, float]:
    api, host = who["api"], who["indexer"]
    workers = who["recommender"]
    before = {pid: cpu_s(pid) for pid in {api, workers}}
    latencies, found = [], []
    for query in queries:
        took, ids = single(http, key, query)
        latencies.append(took)
        found.append([int(i[1:]) for i in ids])  # "r<row>" (nothing else is logged yet)
    spent = {pid: cpu_s(pid) - before[pid] for pid in before}
    api_before = cpu_s(api)
    health = []
    for _ in queries:
        began = time.perf_counter()
        http.get("/health").raise_for_status()
        health.append(time.perf_counter() - began)
    n = len(queries)
    return {"p50_ms": float(np.percentile(latencies, 50)) * 1e3,
            "p99_ms": float(np.percentile(latencies, 99)) * 1e3,
            "health_ms": float(np.percentile(health, 50)) * 1e3,
            "recall": recall(truth, found),
            "cpu_api_ms": spent[api] / n * 1e3,
            "cpu_workers_ms": spent[workers] / n * 1e3,
            "cpu_health_ms": (cpu_s(api) - api_before) / n * 1e3,
            "host_is_api": float(host == api)}


def batched(http: httpx.Client, key: str, queries: np.ndarray, who: dict[str, int],
            truth: np.ndarray | None = None, hnsw_ef: int | None = None,
            name: str = "batched") -> dict[str, float]:
    """100 vectors a request: vectors/s, CPU µs per vector of the API and the host, and
    recall@10 when ``truth`` is given."""
    api, host = who["api"], who["indexer"]
    extra = {} if hnsw_ef is None else {"hnsw_ef": hnsw_ef}
    bodies = [{"embedding_set_key": key, "k": 10, "embeddings": queries[s:s + 100].tolist(),
               **extra} for s in range(0, len(queries), 100)]
    answers = []
    before = {pid: cpu_s(pid) for pid in {api, host}}
    began = time.perf_counter()
    for body in bodies:
        answer = post_query(http, body)
        answer.raise_for_status()
        answers.append(answer)
    took = time.perf_counter() - began
    spent = {pid: cpu_s(pid) - before[pid] for pid in before}
    n = len(queries)
    out = {f"{name}_vps": n / took, f"{name}_cpu_api_us": spent[api] / n * 1e6,
           f"{name}_cpu_host_us": spent[host] / n * 1e6 if host != api else 0.0}
    if truth is not None:
        found = [[int(nb["id"][1:]) for nb in row["neighbours"]]
                 for answer in answers for row in answer.json()["results"]]
        out[f"{name}_recall"] = recall(truth, found)
    return out


def busy(url: str, http: httpx.Client, key: str, queries: np.ndarray) -> dict[str, float]:
    """Queries and JSON logs while a reindex of ``key`` runs."""
    answer = http.post("/api/v1/operations", json={"kind": "reindex", "embedding_set_key": key})
    answer.raise_for_status()
    op_id = answer.json()["id"]
    while http.get(f"/api/v1/operations/{op_id}").json()["state"] == "queued":
        time.sleep(0.05)
    done = threading.Event()
    logged = [0, 0.0]

    def log_loop() -> None:
        rng = np.random.default_rng(1)
        with httpx.Client(base_url=url, timeout=120) as client:
            began = time.perf_counter()
            batch = 0
            while not done.is_set() and batch < BUSY_BATCHES:
                vectors = rng.normal(size=(500, queries.shape[1])).astype(np.float32)
                records = [{"id": f"busy-{batch}-{i}", "embedding": v.tolist()}
                           for i, v in enumerate(vectors)]
                client.post("/api/v1/log", json={
                    "embedding_set": {"model": "colocate-bench"}, "dataset": "prod-busy",
                    "split": "production", "records": records}).raise_for_status()
                batch += 1
                logged[0] += len(records)
            logged[1] = time.perf_counter() - began

    thread = threading.Thread(target=log_loop)
    thread.start()
    latencies: list[float] = []
    began = time.perf_counter()
    i = 0
    while time.perf_counter() - began < BUSY_MAX_S:
        if i % 20 == 0 and http.get(f"/api/v1/operations/{op_id}").json()["state"] != "running":
            break
        latencies.append(single(http, key, queries[i % len(queries)])[0])
        i += 1
    reindex_s = time.perf_counter() - began
    done.set()
    thread.join()
    return {"busy_p50_ms": float(np.percentile(latencies, 50)) * 1e3,
            "busy_p99_ms": float(np.percentile(latencies, 99)) * 1e3,
            "busy_queries": float(len(latencies)),
            "busy_ingest_rps": logged[0] / logged[1] if logged[1] else 0.0,
            "reindex_s": reindex_s}


def one_run(host: str, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray,
            keep: Path | None, *, chroma: Path | None = None,
            with_busy: bool = True, efs: tuple[int, ...] = ()) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="chroma-colocate-"))
    port = 19000 + (os.getpid() + hash((host, str(chroma)))) % 1000
    url = f"http://127.0.0.1:{port}"
    system = start_chroma_run(workdir, port, chroma=chroma, env={"CHROMA_INDEX_HOST": host})
    out: dict[str, float] = {"load_start": os.getloadavg()[0]}
    try:
        key, out["ingest_rps"] = ingest(url, vectors)
        with httpx.Client(base_url=url, timeout=120) as http:
            wait_idle(http)
            out["rss_mib"] = memory_of(system.pid, workdir)[0]
            for _ in range(5):  # warm-up: connections, caches
                single(http, key, queries[0])
            who = pids(http)
            out.update(idle_queries(http, key, queries, who, truth))
            batched(http, key, queries[:100], who)  # warm-up
            out.update(batched(http, key, queries, who, truth))
            for ef in efs:
                out.update(batched(http, key, queries, who, truth, ef, f"ef{ef}"))
            if with_busy:
                out.update(busy(url, http, key, queries))
    finally:
        system.send_signal(signal.SIGTERM)
        system.wait(120)
    out["load_end"] = os.getloadavg()[0]
    if keep is not None:
        shutil.rmtree(keep, ignore_errors=True)
        shutil.move(str(workdir / "data" / "index"), keep)
    shutil.rmtree(workdir, ignore_errors=True)
    return out


def engine_rate(index: Path, queries: np.ndarray, rounds: int = 5) -> dict[str, float]:
    """``EdgeQueryEngine.search`` in this process, 100 vectors a call (vectors/s), and
    the share of it spent in Edge's ``query_batch`` (the rest: requests and payloads)."""
    import qdrant_edge as edge

    from chroma.index import IndexConfig, open_query_engine

    engine = open_query_engine(IndexConfig(backend="edge", path=index))
    key = next(p.name for p in index.iterdir() if p.is_dir())
    calls = [queries[s:s + 100] for s in range(0, len(queries), 100)]
    inner = 0.0
    rates = []
    try:
        for _ in range(rounds):
            began = time.perf_counter()
            for call in calls:
                engine.search(key, call, 10)
            rates.append(len(queries) / (time.perf_counter() - began))
        with engine._lease(key) as shard:  # the raw call, for the split
            requests = [[edge.QueryRequest(limit=10, query=edge.Query.Nearest(row),
                                           with_payload=True,
                                           params=edge.SearchParams(hnsw_ef=128))
                         for row in call.tolist()] for call in calls]
            began = time.perf_counter()
            for request in requests:
                shard.shard.query_batch(edge.QueryBatchRequest(request))
            inner = len(queries) / (time.perf_counter() - began)
    finally:
        engine.close()
    return {"engine_vps": median(rates), "query_batch_vps": inner}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--hosts", nargs="+", choices=HOSTS, default=list(HOSTS))
    parser.add_argument("--code", type=Path,
                        help="baseline checkout: its .venv/bin/chroma takes turns with ours")
    parser.add_argument("--no-busy", action="store_true", help="skip the reindex part")
    parser.add_argument("--batched-ef", type=int, nargs="*", default=[],
                        help="also batched with this per-request hnsw_ef (this checkout)")
    args = parser.parse_args()
    print(machine_info(("qdrant-edge-py", "numpy", "fastapi", "uvicorn")))
    vectors, queries = make_data(args.records, args.queries)
    truth = exact_top10(vectors, queries)
    keep = Path(tempfile.mkdtemp(prefix="chroma-colocate-index-")) / "index"
    codes: list[tuple[str, Path | None]] = [("this", None)]
    if args.code is not None:
        codes.insert(0, ("base", args.code.resolve() / ".venv" / "bin" / "chroma"))
    variants = [(f"{name} {host}" if args.code else host, host, chroma)
                for name, chroma in codes for host in args.hosts]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
    for run in range(args.runs):
        for name, host, chroma in variants:
            last = run == args.runs - 1 and name == variants[-1][0]
            figures = one_run(host, vectors, queries, truth, keep if last else None,
                              chroma=chroma, with_busy=not args.no_busy,
                              efs=tuple(args.batched_ef) if chroma is None else ())
            results[name].append(figures)
            print(f"run {run + 1} {name}: " + ", ".join(
                f"{field} {value:,.3f}" for field, value in figures.items()), flush=True)
    print(f"\n{args.records:,} x {vectors.shape[1]}, {args.queries} queries, "
          f"{args.runs} runs per variant (medians); load average now "
          f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    names = list(dict.fromkeys(f for runs in results.values() for f in runs[0]))
    print("| figure | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for field in names:
        print(f"| {field} | " + " | ".join(
            f"{median([r[field] for r in runs]):,.3f}" if field in runs[0] else "-"
            for runs in results.values()) + " |")
    rates = engine_rate(keep, queries)
    print(f"engine alone (this process, 100 vectors a call): "
          f"EdgeQueryEngine.search {rates['engine_vps']:,.0f} vec/s, Edge query_batch "
          f"alone {rates['query_batch_vps']:,.0f} vec/s")
    shutil.rmtree(keep.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
