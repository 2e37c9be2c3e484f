"""``chroma run`` with ``CHROMA_INDEX_HOST=api``: the API process runs the indexer loop and
hosts the embedded index, with real processes.

* the ``indexer`` component is the API process, its queries and fresh upserts reach the
  engine in-process, and it serves the socket the other workers read through;
* a SIGKILLed API (mid-``reindex``) is restarted by the supervisor, takes ``host.lock``
  again and hosts; the killed process's index run lost its lease and is run again once.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from chroma.client import Client
from chroma.index.hosting.host import socket_path
from chroma.index.hosting.reader import HostedReader
from chroma.keys import embedding_set_key
from chroma.settings import Settings
from tests.conftest import free_port
from tests.integration.system import System, wait_for
from tests.integration.test_supervisor import runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DIM = 32


@pytest.fixture(scope="module")
def system(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("colocated")
    env = {"CHROMA_DATABASE_URL": database_url, "CHROMA_OPERATION_LEASE_S": "3",
           "CHROMA_WORKER_POLL_S": "0.2", "CHROMA_INDEX_HOST": "api"}
    running = System(tmp / "data", env, tmp / "run.log", free_port())
    running.start()
    yield running
    running.stop()


def log_set(
    system: System, n: int, seed: int, dim: int = DIM,
) -> tuple[dict[str, str], np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    es = {"model": "colocated", "run": os.urandom(4).hex()}
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    ids = [f"r{i}" for i in range(n)]
    with Client(system.url, progress=False) as client:
        client.log_many(vectors, embedding_set=es, dataset=f"train-{es['run']}",
                        split="training", ids=ids, label_classes=["a"] * n)
    return es, vectors, ids


def brute_force(vectors: np.ndarray, ids: list[str], query: np.ndarray, k: int) -> list[str]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    order = np.argsort(1.0 - unit @ (query / np.linalg.norm(query)), kind="stable")[:k]
    return [ids[i] for i in order]


def query_ids(system: System, key: str, vector: np.ndarray, k: int) -> list[str]:
    answer = system.post("/api/v1/query", {"embedding_set_key": key,
                                           "embedding": vector.tolist(), "k": k})
    assert answer.status_code == 200, answer.text
    return [n["id"] for n in answer.json()["results"][0]["neighbours"]]


def served_ids(system: System, key: str, vector: np.ndarray, k: int) -> list[str]:
    """A search through the host's unix socket, as the workers process reads it."""
    reader = HostedReader(str(socket_path(Settings(data_dir=system.data_dir))), wait_s=0)
    try:
        return [n.record_id for n in reader.search(key, vector[np.newaxis, :], k)[0]]
    finally:
        reader.close()


def host_pid(system: System) -> int:
    """The pid in ``host.lock``: the process that holds it hosts the index."""
    text = (system.data_dir / "index" / "host.lock").read_text()
    return int(text.split()[1])  # "pid N"


def components(system: System) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in system.status()["components"]}


def test_the_api_process_runs_the_indexer_and_hosts_the_index(system: System) -> None:
    es, vectors, ids = log_set(system, 400, seed=1)
    key = embedding_set_key(es)
    system.wait_indexed(key)
    up = components(system)
    assert up["indexer"]["pid"] == up["api"]["pid"] == host_pid(system)
    assert up["recommender"]["pid"] != up["api"]["pid"]  # the others stay in the workers
    for row in (3, 77, 250):
        expected = brute_force(vectors, ids, vectors[row], 5)
        assert query_ids(system, key, vectors[row], 5) == expected
        assert served_ids(system, key, vectors[row], 5) == expected

    # A record logged now is searchable before any index run (fresh feed, in-process).
    new = np.full(DIM, 9.0, dtype=np.float32)  # far out: nearest to itself alone
    with Client(system.url, progress=False) as client:
        client.log_many(new[np.newaxis, :], embedding_set=es, dataset=f"train-{es['run']}",
                        split="training", ids=["fresh"], label_classes=["a"])
    wait_for(lambda: query_ids(system, key, new, 1) == ["fresh"], 30, "fresh record found")


def test_a_killed_api_comes_back_hosting_and_its_index_run_is_retried(system: System) -> None:
    # 60k x 64 (15 MB of vectors): over Edge's graph threshold, so the reindex builds a
    # graph in a child for a few seconds, long enough to be killed mid-way.
    es, vectors, ids = log_set(system, 60_000, seed=2, dim=64)
    key = embedding_set_key(es)
    system.wait_indexed(key, timeout=180)
    # The first index run may still build its graph after the set reads as indexed.
    wait_for(lambda: not _indexing(system, key), 600, "first index run over")
    before = components(system)
    answer = system.post("/api/v1/operations", {"kind": "reindex", "embedding_set_key": key})
    assert answer.status_code in (200, 201), answer.text
    op_id = answer.json()["id"]
    wait_for(lambda: system.operation(op_id)["state"] == "running", 120, "reindex running")
    os.kill(before["api"]["pid"], signal.SIGKILL)

    wait_for(lambda: _back(system, before["api"]["pid"]), 90, "api back")
    wait_for(lambda: system.operation(op_id)["state"] in ("succeeded", "failed"), 600,
             "reindex done")
    assert system.operation(op_id)["state"] == "succeeded"
    attempts = runs(system, op_id)
    assert [r["outcome"] for r in attempts] == ["lost", "succeeded"]
    assert attempts[0]["owner"] != attempts[1]["owner"]

    after = components(system)
    assert after["indexer"]["pid"] == after["api"]["pid"] == host_pid(system)
    assert after["api"]["restarts"] == before["api"]["restarts"] + 1
    for row in (5, 40_000):
        expected = brute_force(vectors, ids, vectors[row], 5)
        assert query_ids(system, key, vectors[row], 5)[:1] == expected[:1]
        assert served_ids(system, key, vectors[row], 5)[:1] == expected[:1]


def _indexing(system: System, key: str) -> bool:
    ops = system.get("/api/v1/operations", limit=100)["data"]
    return any(op["kind"] in ("index", "reindex") and op["embedding_set_key"] == key
               and op["state"] in ("queued", "running") for op in ops)


def _back(system: System, old_pid: int) -> bool:
    try:
        up = components(system)
    except Exception:  # the API is down a moment
        return False
    return (up["api"]["state"] == "up" and up["api"]["pid"] != old_pid
            and up["indexer"]["pid"] == up["api"]["pid"])
