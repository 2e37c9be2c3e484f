"""Where a query's time goes, phase by phase, in this process (no HTTP, no socket).

For one vector and for a batch of 100 (128-d, k=10), medians of many calls, in µs:

* the API's share: orjson parse of the body, ``QueryRequest`` validation, the vector
  checks (``check_queries``), the request frame to the index host, decoding the host's
  hits (``hits_from_wire``), the answer built and encoded (``_answer_from_index``);
* the route itself: an ASGI call of a route with the query's body model and a trivial
  endpoint, FastAPI's way against the direct path (``_OrjsonBodyRoute``), beside a
  ``GET``;
* the index host's share, on an index of ``--records`` (``bench/peers.py``'s data, built
  here): ``EdgeQueryEngine.search_stored`` at the default ``hnsw_ef``, in the host's
  slices, and at 128, against Edge's ``query_batch`` alone with and without payloads
  (wall and CPU time, in turns), and reading the hits' payloads; single searches back to back and
  after a 1.5 ms pause (as every client query comes).

    .venv/bin/python bench/query_phases.py [--records 100000] [--index DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from peers import make_data
from query import BATCH, records

from chroma.api.models.query import QueryRequest
from chroma.api.routers import query as query_route
from chroma.index import IndexConfig, open_query_engine
from chroma.index.base import scaled_ef
from chroma.index.hosting.host import SEARCH_SLICE
from chroma.index.hosting.wire import hits_from_wire
from chroma.search import Found, check_queries

KEY = "phases"


def median_us(call: Callable[[], Any], n: int = 300, pause: float = 0.0) -> float:
    times = []
    for _ in range(n):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
        if pause:
            time.sleep(pause)
    return statistics.median(times) * 1e6


def api_phases(queries: np.ndarray) -> None:
    for n in (1, 100):
        api_phase(queries, n)


def api_phase(queries: np.ndarray, n: int) -> None:
    payload = {"record_id": "r123", "dataset": "prod", "split": "production",
               "input_uri": "s3://bench/123.png", "inference_class": "class-3",
               "tags": ["bench"], "logged_at": 1.7e9 + 0.5}
    vectors = queries[:n].tolist()
    body: dict[str, Any] = {"embedding_set_key": "k" * 40, "k": 10}
    body.update({"embedding": vectors[0]} if n == 1 else {"embeddings": vectors})
    raw = orjson.dumps(body)
    parsed = orjson.loads(raw)
    given = [vectors[0]] if n == 1 else vectors
    matrix = check_queries(given, queries.shape[1], KEY)
    hits = [[[0.01 * i, {**payload, "record_id": f"r{j}-{i}"}] for i in range(10)]
            for j in range(n)]
    wire = orjson.dumps({"hits": hits, "verify": False})
    found = Found(hits_from_wire(orjson.loads(wire)["hits"]), False)
    print(f"\nAPI, {n} vector(s): body {len(raw):,} B, hits {len(wire):,} B (µs)")
    for name, call in [
        ("orjson parse of the body", lambda: orjson.loads(raw)),
        ("QueryRequest validation", lambda: QueryRequest.model_validate(parsed)),
        ("check_queries", lambda: check_queries(given, queries.shape[1], KEY)),
        ("request frame (header + float32 bytes)",
         lambda: orjson.dumps({"op": "search", "shape": list(matrix.shape)})
         + matrix.tobytes()),
        ("host: hits encoded", lambda: orjson.dumps({"hits": hits, "verify": False})),
        ("hits decoded (hits_from_wire)",
         lambda: hits_from_wire(orjson.loads(wire)["hits"])),
        ("answer built + encoded",
         lambda: query_route._answer_from_index(KEY, "cosine", found, 10)),
    ]:
        print(f"  {name:42s} {median_us(call):9.1f}")


def route_phases(queries: np.ndarray) -> None:
    from fastapi import APIRouter, FastAPI, Request, Response

    async def endpoint(body: QueryRequest, request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    async def health() -> Response:
        return Response(b"{}", media_type="application/json")

    router = APIRouter(route_class=query_route._OrjsonBodyRoute)
    router.add_api_route("/q", endpoint, methods=["POST"])
    router.add_api_route("/h", health, methods=["GET"])
    app = FastAPI()
    app.include_router(router)
    raw = orjson.dumps({"embedding_set_key": "k" * 40, "embedding": queries[0].tolist()})

    async def call(method: str, path: str, body: bytes = b"") -> None:
        scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "http_version": "1.1",
                 "scheme": "http", "server": ("bench", 80), "client": ("bench", 1),
                 "headers": [(b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode())]}
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            pass

        await app(scope, receive, send)

    async def timed(method: str, path: str, body: bytes = b"") -> float:
        times = []
        for _ in range(3000):
            began = time.perf_counter()
            await call(method, path, body)
            times.append(time.perf_counter() - began)
        return statistics.median(times[500:]) * 1e6

    async def run() -> None:
        print("\nroute, one ASGI call with a trivial endpoint (µs)")
        print(f"  GET /h                                     {await timed('GET', '/h'):9.1f}")
        print(f"  POST /q, FastAPI's way                     "
              f"{await timed('POST', '/q', raw):9.1f}")
        query_route._DIRECT[endpoint] = QueryRequest
        try:
            print(f"  POST /q, direct                            "
                  f"{await timed('POST', '/q', raw):9.1f}")
        finally:
            del query_route._DIRECT[endpoint]

    asyncio.run(run())


def engine_phases(index: Path, vectors: np.ndarray, queries: np.ndarray, build: bool) -> None:
    import qdrant_edge as edge

    engine = open_query_engine(IndexConfig(backend="edge", path=index))
    try:
        if build:
            began = time.perf_counter()
            engine.reindex(KEY, vectors.shape[1], "cosine",
                           ((records(i, min(BATCH, len(vectors) - i)), vectors[i:i + BATCH])
                            for i in range(0, len(vectors), BATCH)))
            print(f"\nindex of {len(vectors):,} built in {time.perf_counter() - began:.1f} s")
        calls = [queries[s:s + 100] for s in range(0, len(queries) - 99, 100)]
        default_ef = scaled_ef(engine._config.hnsw_ef_search, len(vectors))
        with engine._lease(KEY) as shard:
            def raw(payload: bool, ef: int = 128) -> Callable[[np.ndarray], Any]:
                return lambda rows: shard.shard.query_batch(edge.QueryBatchRequest([
                    edge.QueryRequest(limit=10, query=edge.Query.Nearest(row),
                                      with_payload=payload,
                                      params=edge.SearchParams(hnsw_ef=ef))
                    for row in rows.tolist()]))

            def in_slices(rows: np.ndarray) -> None:  # as the index host's search_guarded
                for start in range(0, len(rows), SEARCH_SLICE):
                    engine.search_stored(KEY, rows[start:start + SEARCH_SLICE], 10)

            answered = [raw(True)(c) for c in calls]
            print(f"\nengine, 100 vectors a call (µs per call, wall and CPU of this "
                  f"process, medians of 5 rounds taking turns; load "
                  f"{os.getloadavg()[0]:.1f})")
            rows: list[tuple[str, Callable[[np.ndarray], Any]]] = [
                (f"search_stored, default ef {default_ef}",
                 lambda c: engine.search_stored(KEY, c, 10)),
                (f"search_stored in slices of {SEARCH_SLICE} (the host)", in_slices),
                ("search_stored, ef 128", lambda c: engine.search_stored(KEY, c, 10, hnsw_ef=128)),
                ("query_batch with payloads, ef 128", raw(True)),
                (f"query_batch with payloads, ef {default_ef}", raw(True, default_ef)),
                ("query_batch without payloads, ef 128", raw(False)),
            ]
            walls: dict[str, list[float]] = {name: [] for name, _ in rows}
            cpus: dict[str, list[float]] = {name: [] for name, _ in rows}
            for _ in range(5):  # in turns, so a change of the machine's load hits all alike
                for name, one in rows:
                    wall, cpu = time.perf_counter(), time.process_time()
                    for c in calls:
                        one(c)
                    walls[name].append((time.perf_counter() - wall) / len(calls) * 1e6)
                    cpus[name].append((time.process_time() - cpu) / len(calls) * 1e6)
            for name, _ in rows:
                print(f"  {name:42s} {statistics.median(walls[name]):9.0f} "
                      f"{statistics.median(cpus[name]):9.0f}")
            print(f"  {'reading the hits payloads':42s} "
                  f"{median_us(lambda: [[h.payload for h in hits] for r in answered for hits in r], 5) / len(calls):9.0f}")  # noqa: E501
            singles = [q[np.newaxis, :] for q in queries[:300]]
            print(f"\nengine, single searches (µs p50; load {os.getloadavg()[0]:.1f})")
            for name, one in [("search_stored", lambda q: engine.search_stored(KEY, q, 10)),
                              ("query_batch with payloads", raw(True))]:
                for pause in (0.0, 0.0015):
                    it = iter(singles * 10)
                    label = f"{name}, {'after a 1.5 ms pause' if pause else 'back to back'}"
                    print(f"  {label:58s} "
                          f"{median_us(lambda one=one, it=it: one(next(it)), 300, pause):7.0f}")
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--index", type=Path,
                        help="an index directory this script built before (kept; else a "
                        "temporary one is built and removed)")
    args = parser.parse_args()
    print(machine_info(("qdrant-edge-py", "numpy", "fastapi", "orjson", "pydantic")))
    print(f"load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    vectors, queries = make_data(args.records, 1000)
    api_phases(queries)
    route_phases(queries)
    if args.index is not None:
        engine_phases(args.index, vectors, queries, build=not (args.index / KEY).exists())
    else:
        with tempfile.TemporaryDirectory(prefix="chroma-phases-") as tmp:
            engine_phases(Path(tmp), vectors, queries, build=True)
    print(f"\nload average now {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
