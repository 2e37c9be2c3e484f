"""One peer engine in-process, driven by ``bench/peers.py`` over stdin/stdout (JSON lines).

Runs in the peers' own virtualenv (``bench/peers-requirements.txt``), never in ours, and
imports nothing of Chroma. ``python _peer_worker.py chromadb|edge DATA.npz WORKDIR``, then
one command per line: ``ingest``, ``round`` (timed single queries), ``batched``,
``memory``, ``quit``; each answers one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 1_000


def rss_pss_mib() -> tuple[float, float | None]:
    """This process's RSS and PSS (MiB; PSS from smaps_rollup, None where unreadable)."""
    rss = pss = None
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
    except OSError:
        pass
    if rss is None:
        import psutil

        rss = psutil.Process().memory_info().rss / 2**20
    return rss, pss


class Chromadb:
    def __init__(self, workdir: Path, dimension: int) -> None:
        import chromadb

        self.client = chromadb.PersistentClient(path=str(workdir / "chromadb"))
        self.collection = self.client.create_collection(
            "bench", metadata={"hnsw:space": "cosine"})
        self.batch = min(BATCH * 5, self.client.get_max_batch_size())

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        for start in range(0, len(ids), self.batch):
            self.collection.add(ids=ids[start:start + self.batch],
                                embeddings=vectors[start:start + self.batch])

    def search(self, vector: np.ndarray, k: int) -> list[str]:
        return self.collection.query(query_embeddings=[vector], n_results=k,
                                     include=[])["ids"][0]

    def search_many(self, vectors: np.ndarray, k: int) -> list[list[str]]:
        return self.collection.query(query_embeddings=vectors, n_results=k, include=[])["ids"]

    def build(self) -> None:
        """chromadb indexes as it inserts."""


class Edge:
    def __init__(self, workdir: Path, dimension: int) -> None:
        import qdrant_edge as edge

        self.edge = edge
        config = edge.EdgeConfig(
            vectors=edge.EdgeVectorParams(size=dimension, distance=edge.Distance.Cosine))
        (workdir / "edge").mkdir(parents=True, exist_ok=True)
        self.shard = edge.EdgeShard.create(str(workdir / "edge"), config)
        self.names: dict[int, str] = {}

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        edge = self.edge
        base = len(self.names)
        for start in range(0, len(ids), BATCH):
            rows = vectors[start:start + BATCH].tolist()
            points = []
            for offset, row in enumerate(rows):
                number = base + start + offset
                self.names[number] = ids[start + offset]
                points.append(edge.Point(number, row, {"id": ids[start + offset]}))
            self.shard.update(edge.UpdateOperation.upsert_points(points))

    def _request(self, row: list[float], k: int) -> Any:
        return self.edge.QueryRequest(limit=k, query=self.edge.Query.Nearest(row),
                                      with_payload=False)

    def search(self, vector: np.ndarray, k: int) -> list[str]:
        hits = self.shard.query(self._request(vector.tolist(), k))
        return [self.names[int(hit.id)] for hit in hits]

    def search_many(self, vectors: np.ndarray, k: int) -> list[list[str]]:
        requests = [self._request(row, k) for row in vectors.tolist()]
        results = self.shard.query_batch(self.edge.QueryBatchRequest(requests))
        return [[self.names[int(hit.id)] for hit in hits] for hits in results]

    def build(self) -> None:
        self.shard.optimize()


def searchable_lag(engine: Any, last_id: str, vector: np.ndarray, since: float) -> float:
    """Seconds from ``since`` until a search for ``vector`` answers ``last_id``."""
    while True:
        if last_id in engine.search(vector, 10):
            return time.perf_counter() - since
        time.sleep(0.01)


def main() -> None:
    which, data_path, workdir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    data = np.load(data_path)
    vectors, queries = data["vectors"], data["queries"]
    ids = [f"r{i}" for i in range(len(vectors))]
    engine: Any = (Chromadb if which == "chromadb" else Edge)(workdir, vectors.shape[1])
    for line in sys.stdin:
        command = line.strip()
        answer: dict[str, Any] = {}
        if command == "ingest":
            began = time.perf_counter()
            engine.add(ids, vectors)
            acked = time.perf_counter()
            answer["ingest_s"] = acked - began
            answer["lag_s"] = searchable_lag(engine, ids[-1], vectors[-1], acked)
            began = time.perf_counter()
            engine.build()
            answer["build_s"] = time.perf_counter() - began
        elif command == "round":
            latencies, found = [], []
            for query in queries:
                began = time.perf_counter()
                hits = engine.search(query, 10)
                latencies.append(time.perf_counter() - began)
                found.append(hits)
            answer["latencies_s"] = latencies
            answer["hits"] = [[int(h[1:]) for h in row] for row in found]
        elif command == "batched":
            began = time.perf_counter()
            for start in range(0, len(queries), 100):
                engine.search_many(queries[start:start + 100], 10)
            answer["vectors_per_s"] = len(queries) / (time.perf_counter() - began)
        elif command == "memory":
            answer["rss_mib"], answer["pss_mib"] = rss_pss_mib()
        elif command == "quit":
            print(json.dumps({}), flush=True)
            return
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
