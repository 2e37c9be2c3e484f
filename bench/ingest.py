"""Ingest benchmark: bulk Arrow, JSON batches, concurrent single records.

Starts a real PostgreSQL (embedded) and ``chroma serve`` on a local store in a temporary
folder, then measures, for 128-d float32 vectors, over several runs (medians printed):

* bulk Arrow IPC records/s (requests of --bulk-batch records);
* JSON batch records/s (requests of --json-batch records, bodies encoded beforehand);
* concurrent single-record logs/s with p50/p99 latency (--concurrency clients);
* baselines in the same invocation: parquet encode + fsync'd write of the same data
  without HTTP or catalog, and concurrent ``GET /health`` (the HTTP floor).

    .venv/bin/python bench/ingest.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, median

from chroma.catalog.embedded import start_embedded_postgres
from chroma.client.client import arrow_stream
from chroma.storage import FileStore, RecordBatch, batch_to_table

DIM = 128
ES = {"model": "bench", "version": "1"}


def start_server(workdir: Path, dsn: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CHROMA_DATABASE_URL": dsn,
           "CHROMA_STORAGE_URL": str(workdir / "store")}
    chroma = str(Path(sys.executable).parent / "chroma")
    log = open(workdir / "server.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen([chroma, "serve", "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def bench_bulk(url: str, total: int, batch: int) -> float:
    rng = np.random.default_rng(1)
    dataset = f"bulk-{uuid.uuid4().hex[:8]}"
    bodies = []
    for start in range(0, total, batch):
        n = min(batch, total - start)
        matrix = rng.normal(size=(n, DIM)).astype(np.float32)
        ids = [f"{start + i}" for i in range(n)]
        bodies.append(arrow_stream(matrix, ids, {}, embedding_set=ES, dataset=dataset,
                                   split="training"))
    with httpx.Client(base_url=url, timeout=300) as http:
        began = time.perf_counter()
        for body in bodies:
            answer = http.post("/api/v1/log", content=body,
                               headers={"content-type": "application/vnd.apache.arrow.stream"})
            answer.raise_for_status()
        return total / (time.perf_counter() - began)


def bench_json(url: str, total: int, batch: int) -> float:
    rng = np.random.default_rng(2)
    dataset = f"json-{uuid.uuid4().hex[:8]}"
    bodies = []
    for start in range(0, total, batch):
        matrix = rng.normal(size=(batch, DIM)).astype(np.float32).round(6).tolist()
        bodies.append(json.dumps({
            "embedding_set": ES, "dataset": dataset, "split": "training",
            "records": [{"id": f"{start + i}", "embedding": v} for i, v in enumerate(matrix)],
        }).encode())
    with httpx.Client(base_url=url, timeout=300) as http:
        began = time.perf_counter()
        for body in bodies:
            http.post("/api/v1/log", content=body,
                      headers={"content-type": "application/json"}).raise_for_status()
        return total / (time.perf_counter() - began)


async def _concurrent(url: str, bodies: list[bytes] | None, requests: int,
                      concurrency: int) -> tuple[float, list[float]]:
    """``requests`` requests from ``concurrency`` keep-alive clients (aiohttp: httpx's
    async client itself tops out near 300 requests/s here, which would measure it)."""
    import aiohttp

    latencies: list[float] = []
    next_index = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector) as http:

        async def worker() -> None:
            for i in next_index:
                began = time.perf_counter()
                if bodies is None:
                    async with http.get("/health") as answer:
                        await answer.read()
                else:
                    async with http.post("/api/v1/log", data=bodies[i],
                                         headers={"content-type": "application/json"}) as answer:
                        await answer.read()
                if answer.status >= 400:
                    raise RuntimeError(f"HTTP {answer.status}")
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return requests / elapsed, latencies


def bench_singles(url: str, requests: int, concurrency: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(3)
    dataset = f"single-{uuid.uuid4().hex[:8]}"
    bodies = [json.dumps({"embedding_set": ES, "dataset": dataset, "split": "production",
                          "id": str(i), "embedding": rng.normal(size=DIM).round(6).tolist()}
                         ).encode() for i in range(requests)]
    rate, latencies = asyncio.run(_concurrent(url, bodies, requests, concurrency))
    ms = np.array(latencies) * 1000
    return rate, float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def bench_health(url: str, requests: int, concurrency: int) -> float:
    rate, _ = asyncio.run(_concurrent(url, None, requests, concurrency))
    return rate


def bench_raw_write(workdir: Path, total: int, batch: int) -> float:
    """Baseline: parquet encoding + fsync'd writes of the same volume, no HTTP, no catalog."""
    store = FileStore(str(workdir / "raw"))
    rng = np.random.default_rng(4)
    stamp = np.datetime64("2026-01-01T00:00:00", "us")
    batches = []
    for start in range(0, total, batch):
        n = min(batch, total - start)
        batches.append(RecordBatch(
            ids=[str(start + i) for i in range(n)],
            embeddings=rng.normal(size=(n, DIM)).astype(np.float32),
            input_uris=[None] * n, inference_classes=[None] * n, label_classes=[None] * n,
            scores_json=[None] * n, tags=[[] for _ in range(n)], metadata_json=[None] * n))
    began = time.perf_counter()
    for i, records in enumerate(batches):
        store.write_table(f"raw-{uuid.uuid4().hex}-{i}.parquet", batch_to_table(records, stamp))
    return total / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bulk-total", type=int, default=200_000)
    parser.add_argument("--bulk-batch", type=int, default=50_000)
    parser.add_argument("--json-total", type=int, default=30_000)
    parser.add_argument("--json-batch", type=int, default=1_000)
    parser.add_argument("--single-requests", type=int, default=4_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    print(machine_info(("pyarrow", "psycopg", "fastapi", "uvicorn", "embedded-postgres")))
    workdir = Path(tempfile.mkdtemp(prefix="chroma-bench-"))
    workdir.chmod(0o755)
    atexit.register(shutil.rmtree, workdir, True)  # after PostgreSQL stops (registered later)
    dsn = start_embedded_postgres(workdir / "pg")
    port = 18000 + os.getpid() % 1000
    server = start_server(workdir, dsn, port)
    url = f"http://127.0.0.1:{port}"
    try:
        results: dict[str, list[float]] = {k: [] for k in (
            "bulk", "raw", "json", "single", "p50", "p99", "health")}
        for run in range(args.runs):
            results["raw"].append(bench_raw_write(workdir, args.bulk_total, args.bulk_batch))
            results["bulk"].append(bench_bulk(url, args.bulk_total, args.bulk_batch))
            results["json"].append(bench_json(url, args.json_total, args.json_batch))
            rate, p50, p99 = bench_singles(url, args.single_requests, args.concurrency)
            results["single"].append(rate)
            results["p50"].append(p50)
            results["p99"].append(p99)
            results["health"].append(bench_health(url, args.single_requests, args.concurrency))
            print(f"run {run + 1}: bulk {results['bulk'][-1]:,.0f} rec/s | json "
                  f"{results['json'][-1]:,.0f} rec/s | single {rate:,.0f}/s p50 {p50:.1f} ms "
                  f"p99 {p99:.1f} ms", flush=True)
        m = {k: median(v) for k, v in results.items()}
        print(f"\nmedians of {args.runs} runs, {DIM}-d float32, local store:")
        print(f"  bulk Arrow        {m['bulk']:>12,.0f} records/s  ({args.bulk_batch:,}/request)"
              f"   target >= 300,000")
        print(f"    baseline: parquet+fsync only {m['raw']:,.0f} records/s "
              f"-> bulk is {m['bulk'] / m['raw']:.2f}x of it")
        print(f"  JSON batches      {m['json']:>12,.0f} records/s  ({args.json_batch:,}/request)"
              f"    target >= 30,000")
        print(f"  single, {args.concurrency} clients {m['single']:>9,.0f} logs/s     "
              f"p50 {m['p50']:.1f} ms  p99 {m['p99']:.1f} ms   target >= 2,000/s, p99 < 50 ms")
        print(f"    baseline: GET /health {m['health']:,.0f} req/s "
              f"-> single logs are {m['single'] / m['health']:.2f}x of the HTTP floor")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
