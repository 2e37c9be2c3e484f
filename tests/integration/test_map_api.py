"""The web app's server side through a real ``chroma run``: the map of an embedding set
(202 and a ``project`` operation, then 200 with every record; a new version when records
change) and a record's page (``GET /api/v1/datasets/{name}/records/{id}``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from chroma.client import Client
from chroma.keys import embedding_set_key
from tests.conftest import _fresh_database, free_port
from tests.integration.system import System, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ES = {"model": "map-test", "version": "1"}
KEY = embedding_set_key(ES)
DIM = 12
CLASSES = ("cat", "dog", "fox")


@pytest.fixture(scope="module")
def system(postgres_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp_path = tmp_path_factory.mktemp("mapsys")
    with _fresh_database(postgres_admin_dsn) as database_url:
        env = {"CHROMA_DATABASE_URL": database_url, "CHROMA_OPERATION_LEASE_S": "5",
               "CHROMA_WORKER_POLL_S": "0.2", "CHROMA_INDEX_TRIGGER_DEBOUNCE_S": "0"}
        chroma = System(tmp_path / "data", env, tmp_path / "run.log", free_port())
        chroma.start()
        yield chroma
        chroma.stop()


@pytest.fixture(scope="module")
def seeded(system: System) -> dict[str, Any]:
    """Three well-separated classes: 300 labelled training records, 120 production
    records with scores and metadata; returns what was logged."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, DIM)) * 8
    train_labels = rng.integers(0, 3, size=300)
    prod_labels = rng.integers(0, 3, size=120)
    with Client(system.url, progress=False) as client:
        client.log_many(centres[train_labels] + rng.normal(size=(300, DIM)), embedding_set=ES,
                        dataset="map-train", split="training", ids=[f"t{i}" for i in range(300)],
                        label_classes=[CLASSES[c] for c in train_labels])
        client.log_many(centres[prod_labels] + rng.normal(size=(120, DIM)), embedding_set=ES,
                        dataset="map-prod", split="production",
                        ids=[f"p{i}" for i in range(120)],
                        inference_classes=[CLASSES[c] for c in prod_labels],
                        scores=[{CLASSES[c]: 0.9, "other": 0.1} for c in prod_labels],
                        metadata=[{"camera": f"c{i % 4}", "n": i} for i in range(120)],
                        tags=[["night"] if i % 2 else [] for i in range(120)])
    _wait_until_scored(system, 120)
    return {"train": {f"t{i}": CLASSES[c] for i, c in enumerate(train_labels)},
            "prod": {f"p{i}": CLASSES[c] for i, c in enumerate(prod_labels)},
            "centres": centres}


def _wait_until_scored(system: System, total: int) -> None:
    def scored() -> bool:
        page = httpx.get(f"{system.url}/api/v1/recommendations",
                         params={"embedding_set_key": KEY, "limit": 1}).json()
        lag = system.status()
        behind = [s for s in lag["embedding_sets"] if s["embedding_set_key"] == KEY]
        return page.get("total") == total and bool(behind) and not behind[0]["stale"]
    wait_for(scored, 180, f"{total} records in the labelling queue")


def _get_map(system: System, **params: Any) -> httpx.Response:
    return httpx.get(f"{system.url}/api/v1/map",
                     params={"embedding_set_key": KEY, **params}, timeout=30)


def _ready_map(system: System, **params: Any) -> dict[str, Any]:
    """GET the map, waiting out each ``project`` operation it answers with, until 200."""
    answers: list[httpx.Response] = []

    def ready() -> bool:
        answers.append(_get_map(system, **params))
        if answers[-1].status_code == 202:
            op_id = answers[-1].json()["operation_id"]
            wait_for(lambda: system.operation(op_id)["state"] in ("succeeded", "failed"),
                     120, f"project #{op_id}")
            assert system.operation(op_id)["state"] == "succeeded", system.operation(op_id)
            return False
        assert answers[-1].status_code == 200, answers[-1].text
        return True
    wait_for(ready, 240, "the map")
    return answers[-1].json()


def test_the_map_is_computed_once_then_served_with_every_record(
    system: System, seeded: dict[str, Any],
) -> None:
    first = _get_map(system)
    assert first.status_code == 202, first.text
    pending = first.json()
    assert pending["status"] == "pending" and pending["embedding_set_key"] == KEY
    again = _get_map(system)  # joins the operation, does not queue a second one
    assert again.status_code in (200, 202)
    if again.status_code == 202:
        assert again.json()["operation_id"] == pending["operation_id"]

    body = _ready_map(system)
    points = body["points"]
    assert body["status"] == "ready" and body["method"] == "pca" and body["stale"] is False
    assert body["count"] == body["total"] == 420
    assert {len(column) for column in points.values()} == {420}
    expected = ({("map-train", i) for i in seeded["train"]}
                | {("map-prod", i) for i in seeded["prod"]})
    assert set(zip(points["dataset"], points["id"], strict=True)) == expected
    assert np.isfinite(points["x"]).all() and np.isfinite(points["y"]).all()
    by_id = {i: n for n, i in enumerate(points["id"])}
    for record_id, label in seeded["train"].items():
        n = by_id[record_id]
        assert (points["split"][n], points["label_class"][n], points["priority"][n]) == (
            "training", label, None)
    for record_id, predicted in seeded["prod"].items():
        n = by_id[record_id]
        assert points["split"][n] == "production" and points["inference_class"][n] == predicted
        assert 0.0 <= points["priority"][n] <= 1.0  # scored by the queue before the map

    # The classes are far apart in 12-D; the two leading axes must keep them apart.
    xy = np.column_stack([points["x"], points["y"]])
    labels = np.array([seeded["train"].get(i) or seeded["prod"][i] for i in points["id"]])
    means = {c: xy[labels == c].mean(axis=0) for c in CLASSES}
    spread = max(float(np.linalg.norm(xy[labels == c] - means[c], axis=1).mean())
                 for c in CLASSES)
    gaps = [float(np.linalg.norm(means[a] - means[b]))
            for a in CLASSES for b in CLASSES if a < b]
    assert min(gaps) > 2 * spread, (gaps, spread)

    # Stable: the same answer while nothing changes, compressed or not; a limit takes
    # the same subset.
    packed = _get_map(system)
    assert packed.headers["content-encoding"] == "gzip" and packed.json() == body
    plain = httpx.get(f"{system.url}/api/v1/map", params={"embedding_set_key": KEY},
                      headers={"Accept-Encoding": "identity"}, timeout=30)
    assert "content-encoding" not in plain.headers and plain.json() == body
    small = _get_map(system, limit=50).json()
    assert small["count"] == 50 and small["total"] == 420
    assert _get_map(system, limit=50).json() == small
    subset = set(small["points"]["id"])
    for n, record_id in enumerate(small["points"]["id"]):
        m = by_id[record_id]
        assert (small["points"]["x"][n], small["points"]["y"][n]) == (
            points["x"][m], points["y"][m])
    assert len(subset) == 50


def test_new_records_make_a_new_version(system: System, seeded: dict[str, Any]) -> None:
    before = _ready_map(system)
    rng = np.random.default_rng(11)
    with Client(system.url, progress=False) as client:
        client.log_many(seeded["centres"][[0] * 10] + rng.normal(size=(10, DIM)),
                        embedding_set=ES, dataset="map-prod", split="production",
                        ids=[f"new{i}" for i in range(10)], inference_classes=["cat"] * 10)
    # Asked to, the API answers the previous map while it computes the new one, saying so
    # (the first request after the log: the new one cannot be done yet).
    older = _get_map(system, stale="true")
    assert older.status_code == 200, older.text[:300]
    assert older.json()["stale"] is True and older.json()["version"] == before["version"]
    assert older.json()["points"] == before["points"]
    op_id = older.json()["operation_id"]
    assert system.operation(op_id)["kind"] == "project"
    # The same operation, or (the queue scored the new records meanwhile: a newer
    # version) another; or already the new map.
    answer = _get_map(system)
    assert answer.status_code in (200, 202), answer.text[:300]
    if answer.status_code == 202:
        assert system.operation(answer.json()["operation_id"])["kind"] == "project"
    else:
        assert answer.json()["version"] != before["version"]
    _wait_until_scored(system, 130)
    after = _ready_map(system)
    assert after["version"] != before["version"]
    assert after["total"] == 430
    assert {f"new{i}" for i in range(10)} <= set(after["points"]["id"])
    assert _get_map(system).status_code == 200


def test_unknown_sets_and_bad_limits_are_refused(system: System) -> None:
    unknown = httpx.get(f"{system.url}/api/v1/map", params={"embedding_set_key": "f" * 40})
    assert unknown.status_code == 404
    assert _get_map(system, limit=0).status_code == 422
    assert httpx.get(f"{system.url}/api/v1/map").status_code == 422


def test_a_record_page_has_its_scores_metadata_and_assessment(
    system: System, seeded: dict[str, Any],
) -> None:
    url = f"{system.url}/api/v1/datasets"
    record = httpx.get(f"{url}/map-prod/records/p3").json()
    assert record["id"] == "p3" and record["dataset"] == "map-prod"
    assert record["split"] == "production" and record["embedding_set_key"] == KEY
    assert record["inference_class"] == seeded["prod"]["p3"] and record["label_class"] is None
    assert record["scores"] == {seeded["prod"]["p3"]: 0.9, "other": 0.1}
    assert record["metadata"] == {"camera": "c3", "n": 3}
    assert record["tags"] == ["night"]
    assessment = record["assessment"]
    queue = httpx.get(f"{system.url}/api/v1/recommendations",
                      params={"embedding_set_key": KEY, "limit": 1000}).json()["items"]
    item = next(i for i in queue if i["id"] == "p3")
    assert assessment == {k: item[k] for k in ("score", "percentile", "verdict", "signals",
                                                "raw_signals")}

    training = httpx.get(f"{url}/map-train/records/t0").json()
    assert training["label_class"] == seeded["train"]["t0"] and training["assessment"] is None
    assert training["scores"] is None and training["metadata"] is None

    for path in ("map-prod/records/nope", "no-such-dataset/records/p3"):
        missing = httpx.get(f"{url}/{path}")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_a_record_whose_file_is_lost_is_a_503_naming_no_path(system: System) -> None:
    """The catalog lists the record, the store lost its file: an outage of the data (503,
    the path only in the log), not an unknown record (404 naming the file, before)."""
    other = {"model": "map-test-lost", "version": "1"}
    with Client(system.url, progress=False) as client:
        client.log_many(np.ones((1, 4)), embedding_set=other, dataset="map-lost",
                        split="training", ids=["gone"], label_classes=["cat"])
    files = list(system.data_dir.rglob("map-lost/*.parquet"))
    assert len(files) == 1, files
    files[0].unlink()
    for answer in (httpx.get(f"{system.url}/api/v1/datasets/map-lost/records/gone"),
                   httpx.get(f"{system.url}/api/v1/datasets/map-lost/records",
                             params={"include_embeddings": "true"})):
        assert answer.status_code == 503, answer.text
        assert "parquet" not in answer.text and "map-lost/" not in answer.text


def test_a_map_whose_computation_just_failed_answers_that_operation_not_a_new_one(
    system: System,
) -> None:
    """A client polling the map of a set whose ``project`` keeps failing gets the failed
    operation (its error says why) for a minute, instead of queueing a new failing
    computation at every poll (it did before); after that minute it is tried again."""
    import psycopg

    other = {"model": "map-test-failing", "version": "1"}
    key = embedding_set_key(other)
    with Client(system.url, progress=False) as client:
        client.log_many(np.ones((2, 4)), embedding_set=other, dataset="map-failing",
                        split="training", ids=["a", "b"], label_classes=["cat", "dog"])
    with psycopg.connect(system.env["CHROMA_DATABASE_URL"], autocommit=True) as conn:
        failed = conn.execute(
            "INSERT INTO operations (kind, embedding_set_key, state, attempts, error,"
            " started_at, finished_at) VALUES ('project', %s, 'failed', 3, 'the failure',"
            " now(), now()) RETURNING id", (key,)).fetchone()[0]
        for _ in range(3):
            answer = httpx.get(f"{system.url}/api/v1/map", params={"embedding_set_key": key})
            assert answer.status_code == 202 and answer.json()["operation_id"] == failed
        assert system.operation(failed)["error"] == "the failure"
        conn.execute("UPDATE operations SET finished_at = now() - interval '2 minutes'"
                     " WHERE id = %s", (failed,))
        retried = httpx.get(f"{system.url}/api/v1/map", params={"embedding_set_key": key})
        assert retried.status_code == 202 and retried.json()["operation_id"] > failed
