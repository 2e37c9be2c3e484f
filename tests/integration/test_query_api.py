"""``POST /api/v1/query`` on the running system: ``chroma run`` (API + indexer worker).

Records go in through ``/log``; the implicit ``index`` operation builds the Qdrant Edge
index in the indexer worker, which hosts it for the API process. Answers are checked
against numpy brute force (exact on this small data), with filters; deletions, tag
changes, ``/status`` and queries running throughout a full re-index are covered.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from chroma.client import Client
from chroma.keys import embedding_set_key
from tests.conftest import free_port
from tests.integration.system import System

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DIM = 16
CLASSES = ("cat", "dog", "fox")


@pytest.fixture(scope="module")
def system(
    postgres_admin_dsn: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("query")
    env = {"CHROMA_DATABASE_URL": database_url, "CHROMA_OPERATION_LEASE_S": "3",
           "CHROMA_WORKER_POLL_S": "0.2", "CHROMA_STORAGE_URL": str(tmp / "store")}
    running = System(tmp / "data", env, tmp / "run.log", free_port())
    running.start(components=("api", "indexer"))
    yield running
    running.stop()


# -- data and brute force ------------------------------------------------------------------


@dataclass
class Logged:
    """What a test logged: ids, vectors and fields, for brute-force answers."""

    key: str
    embedding_set: dict[str, str]
    ids: list[str]
    datasets: list[str]
    splits: list[str]
    labels: list[str | None]
    tags: list[list[str]]
    logged_at: list[datetime]
    vectors: np.ndarray

    def brute_force(self, query: np.ndarray, k: int, keep: np.ndarray | None = None) -> list[str]:
        """Ids of the k nearest by cosine distance among rows where ``keep`` holds."""
        unit = self.vectors / np.linalg.norm(self.vectors, axis=1, keepdims=True)
        distances = 1.0 - unit @ (query / np.linalg.norm(query))
        if keep is not None:
            distances = np.where(keep, distances, np.inf)
        order = np.argsort(distances, kind="stable")[:k]
        return [self.ids[i] for i in order if np.isfinite(distances[i])]

    def where(self, predicate: Callable[[int], bool]) -> np.ndarray:
        return np.array([predicate(i) for i in range(len(self.ids))])


def clustered(rng: np.random.Generator, n: int, dim: int = DIM) -> tuple[np.ndarray, list[str]]:
    """A Gaussian mixture, one component per class."""
    centres = rng.normal(size=(len(CLASSES), dim)) * 3
    labels = rng.integers(0, len(CLASSES), size=n)
    vectors = centres[labels] + rng.normal(size=(n, dim))
    return vectors.astype(np.float32), [CLASSES[i] for i in labels]


@pytest.fixture(scope="module")
def logged(system: System) -> Logged:
    """300 training records, then two production batches of 100 an instant apart."""
    rng = np.random.default_rng(7)
    uid = os.urandom(4).hex()
    es = {"model": "query-test", "version": "1", "run": uid}
    key = embedding_set_key(es)
    vectors, labels = clustered(rng, 500)
    data = Logged(key, es, [], [], [], [], [], [], vectors)
    batches = [("training", f"train-{uid}", 0, 300), ("production", f"prod-{uid}", 300, 400),
               ("production", f"prod-{uid}", 400, 500)]
    for split, dataset, start, stop in batches:
        records = []
        for i in range(start, stop):
            tags = ["odd"] if i % 2 else []
            record: dict[str, Any] = {"id": f"r{i}", "embedding": vectors[i].tolist(),
                                      "tags": tags, "input_uri": f"file:///img/{i}.png"}
            if split == "training":
                record["label_class"] = labels[i]
            else:
                record["inference_class"] = labels[i]
            records.append(record)
        answer = system.post("/api/v1/log", {"embedding_set": es, "dataset": dataset,
                                             "split": split, "records": records})
        assert answer.status_code in (201, 202), answer.text
        logged_at = datetime.now(UTC)
        for i in range(start, stop):
            data.ids.append(f"r{i}")
            data.datasets.append(dataset)
            data.splits.append(split)
            data.labels.append(labels[i] if split == "training" else None)
            data.tags.append(["odd"] if i % 2 else [])
            data.logged_at.append(logged_at)
        time.sleep(0.3)
    system.wait_indexed(key)
    return data


def query(system: System, body: dict[str, Any]) -> httpx.Response:
    return system.post("/api/v1/query", body)


def neighbour_ids(answer: httpx.Response) -> list[list[str]]:
    assert answer.status_code == 200, answer.text
    return [[n["id"] for n in r["neighbours"]] for r in answer.json()["results"]]


# -- tests ---------------------------------------------------------------------------------


def test_the_implicit_index_makes_status_fresh(system: System, logged: Logged) -> None:
    status = system.wait_indexed(logged.key)
    assert status["index_version"] >= 1
    assert status["indexed_count"] == 500
    assert status["indexed_seq"] == status["latest_seq"]
    assert status["stale"] is False


def test_neighbours_match_brute_force(system: System, logged: Logged) -> None:
    rng = np.random.default_rng(1)
    queries = logged.vectors[rng.choice(500, 8, replace=False)] + rng.normal(size=(8, DIM)) * 0.5
    answer = query(system, {"embedding_set_key": logged.key, "embeddings": queries.tolist(),
                            "k": 10})
    got = neighbour_ids(answer)
    assert got == [logged.brute_force(q, 10) for q in queries]
    # A search's own hnsw_ef is taken (this small set is scanned exactly: same answer).
    assert neighbour_ids(query(system, {"embedding_set_key": logged.key, "k": 10,
                                        "embeddings": queries.tolist(), "hnsw_ef": 10})) == got
    assert neighbour_ids(query(system, {"embedding_set_key": logged.key, "k": 10, "hnsw_ef": 16,
                                        "embedding": queries[0].tolist()})) == got[:1]
    first = answer.json()["results"][0]["neighbours"][0]
    assert set(first) == {"id", "dataset", "split", "distance", "input_uri", "payload"}
    row = logged.ids.index(first["id"])
    unit = logged.vectors[row] / np.linalg.norm(logged.vectors[row])
    expected = 1.0 - float(unit @ (queries[0] / np.linalg.norm(queries[0])))
    assert first["distance"] == pytest.approx(expected, abs=1e-4)
    assert first["input_uri"] == f"file:///img/{row}.png"
    assert first["dataset"] == logged.datasets[row] and first["split"] == logged.splits[row]


def test_one_embedding_by_set_fields_and_the_client(system: System, logged: Logged) -> None:
    q = logged.vectors[3] + 0.1
    answer = query(system, {"embedding_set": logged.embedding_set, "embedding": q.tolist(),
                            "k": 5})
    assert neighbour_ids(answer) == [logged.brute_force(q, 5)]
    with Client(system.url, progress=False) as client:
        results = client.query(logged.embedding_set, np.stack([q, q * 2]), k=5,
                               filter={"split": "training"})
    train = logged.where(lambda i: logged.splits[i] == "training")
    assert [[n["id"] for n in r] for r in results] == [logged.brute_force(q, 5, train)] * 2


def test_filters(system: System, logged: Logged) -> None:
    q = logged.vectors[10] * 0.9
    prod = logged.datasets[400]
    cases: list[tuple[dict[str, Any], Callable[[int], bool]]] = [
        ({"split": "production"}, lambda i: logged.splits[i] == "production"),
        ({"dataset": prod}, lambda i: logged.datasets[i] == prod),
        ({"label_classes": ["dog", "fox"]}, lambda i: logged.labels[i] in ("dog", "fox")),
        ({"tags": ["odd"], "split": "training"},
         lambda i: "odd" in logged.tags[i] and logged.splits[i] == "training"),
        ({"logged_from": logged.logged_at[350].isoformat()},  # after batch 2 was answered
         lambda i: logged.logged_at[i] > logged.logged_at[350]),
        ({"logged_until": (logged.logged_at[0] + timedelta(milliseconds=100)).isoformat()},
         lambda i: logged.splits[i] == "training"),
    ]
    for given, predicate in cases:
        answer = query(system, {"embedding_set_key": logged.key, "embedding": q.tolist(),
                                "k": 10, "filter": given})
        expected = logged.brute_force(q, 10, logged.where(predicate))
        assert neighbour_ids(answer) == [expected], given


def test_query_by_record_excludes_the_record(system: System, logged: Logged) -> None:
    answer = query(system, {"record_id": "r42", "dataset": logged.datasets[42], "k": 6})
    keep = logged.where(lambda i: logged.ids[i] != "r42")
    assert neighbour_ids(answer) == [logged.brute_force(logged.vectors[42], 6, keep)]


def test_bad_input(system: System, logged: Logged) -> None:
    wrong = query(system, {"embedding_set_key": logged.key, "embedding": [0.1, 0.2, 0.3]})
    assert wrong.status_code == 422
    assert "dimension 3" in wrong.json()["message"] and f"dimension {DIM}" in wrong.json()[
        "message"]
    assert query(system, {"embedding_set_key": logged.key}).status_code == 422
    assert query(system, {"embedding_set_key": logged.key, "embedding": [1.0] * DIM,
                          "k": 0}).status_code == 422
    assert query(system, {"embedding_set_key": logged.key, "embedding": [1.0] * DIM,
                          "filter": {"colour": "red"}}).status_code == 422
    for ef in (0, 1_025, "many"):
        assert query(system, {"embedding_set_key": logged.key, "embedding": [1.0] * DIM,
                              "hnsw_ef": ef}).status_code == 422
    assert query(system, {"embedding_set_key": "0" * 40,
                          "embedding": [1.0] * DIM}).status_code == 404
    assert query(system, {"record_id": "nope", "dataset": logged.datasets[0]}).status_code == 404
    assert query(system, {"record_id": "r1", "dataset": "no-such-dataset"}).status_code == 404


def test_deleted_records_are_never_returned(system: System, logged: Logged) -> None:
    q = logged.vectors[200] + 0.05
    before = neighbour_ids(query(system, {"embedding_set_key": logged.key,
                                          "embedding": q.tolist(), "k": 10}))[0]
    victims = before[:4]
    by_dataset: dict[str, list[str]] = {}
    for victim in victims:
        by_dataset.setdefault(logged.datasets[logged.ids.index(victim)], []).append(victim)
    for dataset, ids in by_dataset.items():
        answer = system.post(f"/api/v1/datasets/{dataset}/records/delete", {"ids": ids})
        assert answer.status_code == 200 and answer.json()["count"] == len(ids)
    keep = logged.where(lambda i: logged.ids[i] not in victims)

    def check() -> None:
        got = neighbour_ids(query(system, {"embedding_set_key": logged.key,
                                           "embedding": q.tolist(), "k": 10}))[0]
        assert not set(got) & set(victims)
        assert got == logged.brute_force(q, 10, keep)

    check()  # before the index has caught up: the catalog check drops them
    system.run_operation("index", logged.key)
    status = system.wait_indexed(logged.key)
    assert status["indexed_count"] == 500 - len(victims)  # gone from the index itself
    check()
    for victim in victims:  # and a query by a deleted record is a 404
        dataset = logged.datasets[logged.ids.index(victim)]
        assert query(system, {"record_id": victim, "dataset": dataset}).status_code == 404
    logged.vectors = logged.vectors[keep]
    for name in ("ids", "datasets", "splits", "labels", "tags", "logged_at"):
        setattr(logged, name, [v for v, k in zip(getattr(logged, name), keep, strict=True) if k])


def test_tag_changes_reach_the_filters(system: System, logged: Logged) -> None:
    dataset = logged.datasets[0]
    chosen = [i for i in range(len(logged.ids)) if logged.datasets[i] == dataset][:5]
    ids = [logged.ids[i] for i in chosen]
    answer = system.post(f"/api/v1/datasets/{dataset}/records/tags",
                         {"ids": ids, "add": ["hot"]})
    assert answer.status_code == 200, answer.text
    system.run_operation("index", logged.key)
    system.wait_indexed(logged.key)
    q = logged.vectors[chosen[0]]
    got = query(system, {"embedding_set_key": logged.key, "embedding": q.tolist(), "k": 10,
                         "filter": {"tags": ["hot"]}})
    assert sorted(neighbour_ids(got)[0]) == sorted(ids)
    assert all("hot" in n["payload"]["tags"] for n in got.json()["results"][0]["neighbours"])


def test_queries_during_a_full_reindex_never_fail_nor_see_a_partial_index(
    system: System,
) -> None:
    """20k records; queries run on several threads from before the reindex to after it."""
    rng = np.random.default_rng(3)
    es = {"model": "reindex-test", "run": os.urandom(4).hex()}
    key = embedding_set_key(es)
    vectors, labels = clustered(rng, 20_000, dim=32)
    ids = [f"x{i}" for i in range(len(vectors))]
    with Client(system.url, progress=False) as client:
        client.log_many(vectors, embedding_set=es, dataset=f"big-{key[:8]}", split="training",
                        ids=ids, label_classes=labels)
    before = system.wait_indexed(key, timeout=120)
    assert before["indexed_count"] == 20_000
    data = Logged(key, es, ids, [], [], [], [], [], vectors)
    queries = vectors[rng.choice(len(vectors), 16, replace=False)] + rng.normal(size=(16, 32))
    truth = [set(data.brute_force(q, 10)) for q in queries]

    failures: list[str] = []
    recalls: list[float] = []
    latencies: list[float] = []
    stop = threading.Event()

    def hammer(worker: int) -> None:
        with httpx.Client(base_url=system.url, timeout=30) as http:
            n = worker
            while not stop.is_set():
                i = n % len(queries)
                n += 1
                started = time.perf_counter()
                answer = http.post("/api/v1/query", json={
                    "embedding_set_key": key, "embedding": queries[i].tolist(), "k": 10})
                latencies.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code}: {answer.text[:200]}")
                    continue
                got = [n_["id"] for n_ in answer.json()["results"][0]["neighbours"]]
                if len(got) != 10:
                    failures.append(f"{len(got)} neighbours")
                recalls.append(len(truth[i] & set(got)) / 10)

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        op = system.run_operation("reindex", key, timeout=120)
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    after = system.wait_indexed(key)
    assert after["index_version"] > before["index_version"]
    assert after["indexed_count"] == 20_000
    assert op["result"]["embedding_sets"][key]["graph"] == "rebuilt"
    assert not failures, failures[:5]
    assert len(recalls) > 50
    # A partial index would miss most true neighbours; HNSW itself keeps recall@10 high.
    assert min(recalls) >= 0.9, sorted(recalls)[:10]
    ms = np.array(latencies) * 1000
    print(f"\n{len(ms)} queries during reindex (4 threads): p50 {np.percentile(ms, 50):.1f} ms,"
          f" p99 {np.percentile(ms, 99):.1f} ms, max {ms.max():.1f} ms,"
          f" mean recall@10 {np.mean(recalls):.3f}")



def test_reindex_drops_the_previous_version(system: System) -> None:
    """Two fresh sets, both at version 1; re-indexing one must drop its version 1."""
    rng = np.random.default_rng(5)
    keys = []
    for name in ("a", "b"):
        es = {"model": "drop-test", "set": name, "run": os.urandom(4).hex()}
        keys.append(embedding_set_key(es))
        answer = system.post("/api/v1/log", {
            "embedding_set": es, "dataset": f"drop-{name}-{keys[-1][:8]}", "split": "training",
            "records": [{"id": f"d{i}", "embedding": v.tolist()}
                        for i, v in enumerate(rng.normal(size=(20, 4)))]})
        assert answer.status_code in (201, 202), answer.text
    for key in keys:
        assert system.wait_indexed(key)["index_version"] == 1
    op = system.run_operation("reindex", keys[0])
    assert op["result"]["embedding_sets"][keys[0]]["dropped_versions"] == [1]


def test_queries_survive_a_killed_indexer(system: System, logged: Logged) -> None:
    """SIGKILL the indexer (the index host): the next query wakes the restarted worker."""
    indexer = next(c for c in system.get("/api/v1/status")["components"]
                   if c["name"] == "indexer")
    os.kill(indexer["pid"], signal.SIGKILL)
    q = logged.vectors[7]
    answer = query(system, {"embedding_set_key": logged.key, "embedding": q.tolist(), "k": 5})
    assert neighbour_ids(answer) == [logged.brute_force(q, 5)]
    restarted = next(c for c in system.get("/api/v1/status")["components"]
                     if c["name"] == "indexer")
    assert restarted["pid"] != indexer["pid"]
