"""Searches on the running system between index runs: fresh records, deletes, no catalog.

``chroma run`` (API + indexer) with the implicit triggers held back (a debounce period and
a freshness check of ten minutes: the first commit's trigger builds the index, later
commits queue nothing), so whatever a search answers after that came through the commit
path straight into the live index, not through an ``index`` run; ``/status`` proves no
run covered it. Deletes must never be answered meanwhile, and once an index run has
caught up the index host answers without asking for a catalog check.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from chroma.index import IndexedRecord
from chroma.index.hosting.reader import HostedReader
from chroma.keys import embedding_set_key
from tests.conftest import free_port
from tests.integration.system import System, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DIM = 16


@pytest.fixture(scope="module")
def system(
    postgres_admin_dsn: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("fresh")
    env = {"CHROMA_DATABASE_URL": database_url, "CHROMA_OPERATION_LEASE_S": "3",
           "CHROMA_WORKER_POLL_S": "0.2", "CHROMA_STORAGE_URL": str(tmp / "store"),
           "CHROMA_INDEX_TRIGGER_DEBOUNCE_S": "600", "CHROMA_FRESHNESS_CHECK_S": "600"}
    running = System(tmp / "data", env, tmp / "run.log", free_port())
    running.start(components=("api", "indexer"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def indexed(system: System) -> dict[str, Any]:
    """200 records, indexed by the run the first commit triggered."""
    rng = np.random.default_rng(3)
    es = {"model": "fresh-search", "run": os.urandom(4).hex()}
    vectors = rng.normal(size=(200, DIM)).astype(np.float32)
    records = [{"id": f"a{i}", "embedding": v.tolist()} for i, v in enumerate(vectors)]
    answer = system.post("/api/v1/log", {"embedding_set": es, "dataset": f"ds-{es['run']}",
                                         "split": "production", "records": records})
    assert answer.status_code in (201, 202), answer.text
    key = embedding_set_key(es)
    system.wait_indexed(key)
    return {"es": es, "key": key, "dataset": f"ds-{es['run']}", "vectors": vectors}


def nearest(system: System, key: str, vector: np.ndarray, k: int = 5) -> list[str]:
    answer = system.post("/api/v1/query", {"embedding_set_key": key,
                                           "embedding": vector.tolist(), "k": k})
    assert answer.status_code == 200, answer.text
    return [n["id"] for n in answer.json()["results"][0]["neighbours"]]


def index_lags(system: System, key: str) -> bool:
    status = system.index_status(key)
    assert status is not None
    return bool(status["stale"])


def reader_of(system: System) -> contextlib.closing[HostedReader]:
    return contextlib.closing(
        HostedReader(str((system.data_dir / "index" / "host.sock").resolve()), wait_s=0))


def test_a_logged_record_is_searchable_before_any_index_run(
    system: System, indexed: dict[str, Any]
) -> None:
    key, fresh = indexed["key"], np.full(DIM, 7.0, dtype=np.float32)
    answer = system.post("/api/v1/log", {"embedding_set": indexed["es"],
                                         "dataset": indexed["dataset"], "split": "production",
                                         "records": [{"id": "fresh-1",
                                                      "embedding": fresh.tolist(),
                                                      "tags": ["new"]}]})
    assert answer.status_code in (201, 202), answer.text
    wait_for(lambda: "fresh-1" in nearest(system, key, fresh), 10, "fresh-1 searchable")
    got = httpx.post(f"{system.url}/api/v1/query", timeout=30, json={
        "embedding_set_key": key, "embedding": fresh.tolist(), "k": 1}).json()
    hit = got["results"][0]["neighbours"][0]
    assert hit["id"] == "fresh-1" and hit["payload"]["tags"] == ["new"]
    assert hit["distance"] < 1e-5
    assert index_lags(system, key), "an index run covered the record: the test proves nothing"


def test_a_deleted_record_is_never_answered_while_the_index_lags(
    system: System, indexed: dict[str, Any]
) -> None:
    key, dataset, vectors = indexed["key"], indexed["dataset"], indexed["vectors"]
    victim = nearest(system, key, vectors[10], k=1)[0]
    assert victim == "a10"
    for record_id in ("a10", "fresh-1"):
        answer = httpx.delete(f"{system.url}/api/v1/datasets/{dataset}/records/{record_id}",
                              timeout=30)
        assert answer.status_code == 200 and answer.json()["count"] == 1, answer.text
    assert "a10" not in nearest(system, key, vectors[10], k=10)
    assert "fresh-1" not in nearest(system, key, np.full(DIM, 7.0, dtype=np.float32), k=10)
    assert index_lags(system, key)  # the deletes are not in the index yet
    with reader_of(system) as reader:
        hits, verify = reader.search_checked(key, vectors[10], 10, None, 16)
    assert verify, "the host must ask for the catalog check while a delete is not applied"
    assert "a10" in {p["record_id"] for _, p in hits[0]}  # still in the index: the check drops it


def test_searches_skip_the_catalog_once_an_index_run_has_caught_up(
    system: System, indexed: dict[str, Any]
) -> None:
    key, dataset, vectors = indexed["key"], indexed["dataset"], indexed["vectors"]
    system.run_operation("index", key)
    assert not index_lags(system, key)
    with reader_of(system) as reader:
        hits, verify = reader.search_checked(key, vectors[10], 10, None, 16)
        assert not verify
        assert len(hits[0]) == 10 and "a10" not in {p["record_id"] for _, p in hits[0]}
        assert nearest(system, key, vectors[10], k=10) == [p["record_id"] for _, p in hits[0]]
        # A tag change is a change the index lacks too: checked again until the next run.
        answer = system.post(f"/api/v1/datasets/{dataset}/records/tags",
                             {"ids": ["a11"], "add": ["hot"]})
        assert answer.status_code == 200, answer.text
        assert reader.search_checked(key, vectors[11], 10, None, 16)[1]
    got = httpx.post(f"{system.url}/api/v1/query", timeout=30, json={
        "embedding_set_key": key, "embedding": vectors[11].tolist(), "k": 1}).json()
    assert got["results"][0]["neighbours"][0]["payload"]["tags"] == ["hot"]  # as of now


def test_a_stale_upsert_cannot_bring_back_a_deleted_record(
    system: System, indexed: dict[str, Any]
) -> None:
    """A commit's upsert that reaches the host after a later delete is refused."""
    key, dataset, vectors = indexed["key"], indexed["dataset"], indexed["vectors"]
    before_delete = time.monotonic()  # as if the record's commit began now
    answer = httpx.delete(f"{system.url}/api/v1/datasets/{dataset}/records/a12", timeout=30)
    assert answer.status_code == 200 and answer.json()["count"] == 1
    record = IndexedRecord(dataset=dataset, record_id="a12", split="production")
    with reader_of(system) as reader:
        assert reader.upsert_fresh(key, [record], vectors[12:13], before_delete) == 0
        system.run_operation("index", key)
        assert "a12" not in nearest(system, key, vectors[12], k=10)
        # After that run, an upsert from before the delete is still refused: the host
        # answers without the catalog check now, so taking it would answer a deleted record.
        assert not reader.search_checked(key, vectors[12], 10, None, 16)[1]
        assert reader.upsert_fresh(key, [record], vectors[12:13], before_delete) == 0
        assert "a12" not in {n.record_id for n in reader.search(key, vectors[12], 10)[0]}


def test_an_index_run_reads_no_vector_of_what_came_fresh_and_leaves_the_index_as_the_catalog(
    system: System, indexed: dict[str, Any]
) -> None:
    """Records the commit path upserted fresh are not read from the store again by the
    index run (the live index holds them: same fields, file and row), while re-logged,
    re-tagged and deleted ones still end up in the index exactly as in the catalog."""
    key, dataset = indexed["key"], indexed["dataset"]
    system.run_operation("index", key)  # what earlier tests left is applied
    rng = np.random.default_rng(11)
    first = rng.normal(size=(40, DIM)).astype(np.float32)
    relogged = rng.normal(size=(5, DIM)).astype(np.float32)

    def log(ids: list[str], vectors: np.ndarray) -> None:
        answer = system.post("/api/v1/log", {
            "embedding_set": indexed["es"], "dataset": dataset, "split": "production",
            "records": [{"id": i, "embedding": v.tolist()} for i, v in zip(ids, vectors,
                                                                             strict=True)]})
        assert answer.status_code in (201, 202), answer.text

    log([f"b{i}" for i in range(40)], first)
    wait_for(lambda: "b39" in nearest(system, key, first[39], k=1), 10, "b39 fresh")
    log([f"b{i}" for i in range(5)], relogged)  # same ids, new vectors (another file)
    wait_for(lambda: "b4" in nearest(system, key, relogged[4], k=1), 10, "b4 re-logged")
    answer = system.post(f"/api/v1/datasets/{dataset}/records/tags",
                         {"ids": [f"b{i}" for i in range(5, 10)], "add": ["hot"]})
    assert answer.status_code == 200, answer.text
    for i in range(10, 15):
        gone = httpx.delete(f"{system.url}/api/v1/datasets/{dataset}/records/b{i}", timeout=30)
        assert gone.status_code == 200 and gone.json()["count"] == 1, gone.text
    assert index_lags(system, key), "an index run covered them: the test proves nothing"

    result = system.run_operation("index", key)["result"]["embedding_sets"][key]
    assert result["upserted"] == 35 and result["deleted"] == 5
    # Only the re-tagged ones (their fresh memory forgotten) are read and written again.
    assert result["reading"]["vectors_read"] == 5 and result["written"] == 5

    expected = {f"b{i}": (relogged[i] if i < 5 else first[i]) for i in range(40)
                if not 10 <= i < 15}
    with reader_of(system) as reader:  # the index itself, no catalog check
        for record_id, vector in expected.items():
            hit = reader.search(key, vector, 1)[0][0]
            assert hit.record_id == record_id and hit.distance < 1e-5, (record_id, hit)
            assert hit.payload.get("tags", []) == (["hot"] if record_id in
                                                   {f"b{i}" for i in range(5, 10)} else [])
        for i in [*range(5), *range(10, 15)]:  # first vectors of re-logged ones, deleted ones
            near = [(n.record_id, n.distance) for n in reader.search(key, first[i], 3)[0]]
            assert all(found != f"b{i}" or (i < 5 and distance > 1e-5)
                       for found, distance in near), (i, near)
