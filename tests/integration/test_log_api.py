"""The write path and read side through real HTTP, on both stores (local folder, S3)."""

from __future__ import annotations

import concurrent.futures as cf
import math

import httpx
import numpy as np
import pytest

from chroma.client import Client
from chroma.keys import embedding_set_key

pytestmark = pytest.mark.integration


@pytest.fixture
def es(uid: str) -> dict[str, str]:
    """An embedding set of this test's own (the server is shared by the module)."""
    return {"model": "resnet50", "version": "3", "layer": "avgpool", "test": uid}


def log(url: str, body: dict, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/log", json=body, timeout=30, **kwargs)


def test_log_one_record_then_read_it_back(chroma_server, es, uid) -> None:
    url = chroma_server.url
    answer = log(
        url,
        {
            "embedding_set": es,
            "dataset": f"train-{uid}",
            "split": "training",
            "id": "r1",
            "embedding": [0.5, 1.5, 2.5],
            "label_class": "cat",
            "input_uri": "s3://imgs/1.png",
            "tags": ["a"],
            "scores": {"cat": 0.9},
            "metadata": {"k": 1},
        },
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body == {"embedding_set_key": embedding_set_key(es), "ids": ["r1"], "count": 1}

    all_sets = httpx.get(f"{url}/api/v1/embeddingsets", params={"limit": 1000}).json()["data"]
    sets = [s for s in all_sets if s["fields"].get("test") == uid]
    assert [(s["key"], s["dimension"], s["counts"]) for s in sets] == [
        (embedding_set_key(es), 3, {"training": 1, "production": 0})
    ]
    assert sets[0]["fields"] == es and sets[0]["first_log"] and sets[0]["last_log"]
    page = httpx.get(
        f"{url}/api/v1/datasets/train-{uid}/records", params={"include_embeddings": True}
    ).json()
    (record,) = page["data"]
    assert record["id"] == "r1" and record["label_class"] == "cat"
    assert record["input_uri"] == "s3://imgs/1.png" and record["tags"] == ["a"]
    assert record["embedding"] == [0.5, 1.5, 2.5]


def test_same_id_again_is_an_upsert_not_a_duplicate(chroma_server, es, uid) -> None:
    url = chroma_server.url
    first = {
        "embedding_set": es,
        "dataset": f"d-{uid}",
        "split": "training",
        "records": [{"id": "x", "embedding": [1, 0]}, {"id": "y", "embedding": [0, 1]}],
    }
    assert log(url, first).status_code == 201
    again = {
        "embedding_set": es,
        "dataset": f"d-{uid}",
        "split": "training",
        "records": [
            {"id": "x", "embedding": [2, 2], "label_class": "new"},
            {"id": "x", "embedding": [3, 3], "label_class": "newest"},
        ],
    }
    assert log(url, again).status_code == 201
    assert httpx.get(f"{url}/api/v1/datasets/d-{uid}").json()["record_count"] == 2
    records = httpx.get(
        f"{url}/api/v1/datasets/d-{uid}/records", params={"include_embeddings": True}
    ).json()["data"]
    by_id = {r["id"]: r for r in records}
    assert sorted(by_id) == ["x", "y"]
    assert by_id["x"]["embedding"] == [3.0, 3.0] and by_id["x"]["label_class"] == "newest"


def test_production_records_are_committed_with_202_when_no_assessment(
    chroma_server, es, uid
) -> None:
    answer = log(
        chroma_server.url,
        {
            "embedding_set": es,
            "dataset": f"prod-{uid}",
            "split": "production",
            "embedding": [1.0, 2.0],
        },
    )
    assert answer.status_code == 202
    assert "assessments" not in answer.json()
    assert httpx.get(f"{chroma_server.url}/api/v1/datasets/prod-{uid}").json()["record_count"] == 1


def test_concurrent_single_records_are_group_committed_and_all_readable(
    chroma_server, es, uid
) -> None:
    url = chroma_server.url
    with httpx.Client(base_url=url, timeout=30) as http:

        def one(i: int) -> int:
            body = {"embedding_set": es, "dataset": f"many-{uid}", "split": "production",
                    "id": f"r{i}", "embedding": [float(i), 1.0]}
            return http.post("/api/v1/log", json=body).status_code

        with cf.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(one, range(300)))
    assert set(codes) == {202}
    client = Client(url, progress=False)
    ids = [r["id"] for r in client.iter_records(f"many-{uid}", page_size=70)]
    assert sorted(ids) == sorted(f"r{i}" for i in range(300))


def test_delete_and_tag_records(chroma_server, es, uid) -> None:
    url = chroma_server.url
    with Client(url, progress=False) as client:
        client.log_many(
            np.eye(4, dtype=np.float32),
            embedding_set=es,
            dataset=f"t-{uid}",
            split="training",
            ids=["a", "b", "c", "d"],
        )
        assert client.delete(f"t-{uid}", ["a", "zzz"]) == ["a"]
        assert client.delete(f"t-{uid}", ["a"]) == []
        assert sorted(client.tag(f"t-{uid}", ["b", "c"], add=["hard", "seen"])) == ["b", "c"]
        assert client.tag(f"t-{uid}", ["b"], remove=["seen"]) == ["b"]
        records = {r["id"]: r for r in client.iter_records(f"t-{uid}")}
        assert sorted(records) == ["b", "c", "d"]
        assert records["b"]["tags"] == ["hard"] and records["c"]["tags"] == ["hard", "seen"]
        assert client.dataset(f"t-{uid}")["record_count"] == 3
        single = httpx.delete(f"{url}/api/v1/datasets/t-{uid}/records/d")
        assert single.json() == {"deleted": ["d"], "count": 1}


def test_client_bulk_arrow_path_and_sessions(chroma_server, es, uid) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5000, 16)).astype(np.float32)
    with Client(chroma_server.url, batch_size=2000, bulk_threshold=1000, progress=False) as client:
        labels = [f"c{i % 3}" for i in range(5000)]
        with client.training(es, f"train-{uid}") as session:
            ids = session.log_many(
                vectors, label_classes=labels, tags=[["t"] if i % 2 else [] for i in range(5000)]
            )
        assert session.sent == 5000
        with client.production(es, f"prod-{uid}") as prod:
            prod.log(vectors[0], input_uri="u0", scores={"c0": 0.7, "c1": 0.3})
        assert client.dataset(f"train-{uid}")["record_count"] == 5000
        assert client.dataset(f"prod-{uid}")["record_count"] == 1
        page = client.records(f"train-{uid}", limit=5, include_embeddings=True)
        by_id = dict(zip(ids, range(5000), strict=True))
        for record in page["data"]:
            row = by_id[record["id"]]
            assert np.allclose(record["embedding"], vectors[row])
            assert record["label_class"] == labels[row]
            assert record["tags"] == (["t"] if row % 2 else [])
        (mine,) = [s for s in client.embedding_sets() if s["key"] == embedding_set_key(es)]
        assert mine["counts"] == {"training": 5000, "production": 1} and mine["dimension"] == 16


def test_saved_session_uploads_with_the_cli(
    chroma_server, es, uid, tmp_path, chroma_binary
) -> None:
    import subprocess

    from chroma.client import TrainingSession

    session = TrainingSession(None, es, f"offline-{uid}")
    for i in range(25):
        session.log([float(i), 0.0, 1.0], id=f"o{i}", label_class="a")
    path = tmp_path / "buffer.jsonl"
    assert session.save(path) == 25
    done = subprocess.run(
        [chroma_binary, "upload", str(path), "--url", chroma_server.url, "--batch-size", "10"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "uploaded 25 records" in done.stdout
    assert (
        httpx.get(f"{chroma_server.url}/api/v1/datasets/offline-{uid}").json()["record_count"] == 25
    )


def test_paging_through_records_visits_each_once(chroma_server, es, uid) -> None:
    with Client(chroma_server.url, progress=False) as client:
        client.log_many(
            np.ones((250, 2)),
            embedding_set=es,
            dataset=f"p-{uid}",
            split="training",
            ids=[f"id{i:04d}" for i in range(250)],
        )
        seen = []
        after = None
        while True:
            page = client.records(f"p-{uid}", limit=60, after=after)
            seen += [r["id"] for r in page["data"]]
            after = page["next_cursor"]
            if after is None:
                break
    assert seen == [f"id{i:04d}" for i in range(250)]


def test_ready_and_health(chroma_server, es, uid) -> None:
    assert httpx.get(f"{chroma_server.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{chroma_server.url}/ready").json()
    assert ready == {"status": "ready", "checks": {"catalog": "ok", "store": "ok"}}


def test_missing_dataset_is_404(chroma_server, es, uid) -> None:
    answer = httpx.get(f"{chroma_server.url}/api/v1/datasets/nope")
    assert answer.status_code == 404
    assert "nope" in answer.json()["message"]


def test_float32_values_round_trip(chroma_server, es, uid) -> None:
    value = 1.0 / 3.0
    log(
        chroma_server.url,
        {
            "embedding_set": es,
            "dataset": f"f-{uid}",
            "split": "training",
            "embedding": [value, -value],
        },
    )
    (record,) = httpx.get(
        f"{chroma_server.url}/api/v1/datasets/f-{uid}/records", params={"include_embeddings": True}
    ).json()["data"]
    assert math.isclose(record["embedding"][0], float(np.float32(value)))


def test_register_a_dataset_ahead_of_its_records(chroma_server, es, uid) -> None:
    url = f"{chroma_server.url}/api/v1/datasets/reg-{uid}"
    created = httpx.put(url, json={"split": "production", "retention_days": 30})
    assert created.status_code == 201, created.text
    assert created.json()["embedding_set_key"] is None and created.json()["record_count"] == 0
    again = httpx.put(url, json={"split": "production", "retention_days": 7,
                                 "description": "traffic"})
    assert again.status_code == 200
    assert again.json()["retention_days"] == 7 and again.json()["description"] == "traffic"
    # The first record binds it to its embedding set; the split cannot change.
    logged = log(chroma_server.url, {"embedding_set": es, "dataset": f"reg-{uid}",
                                     "split": "production", "embedding": [1.0, 2.0]})
    assert logged.status_code == 202
    assert httpx.get(url).json()["embedding_set_key"] == embedding_set_key(es)
    assert httpx.put(url, json={"split": "training"}).status_code == 409
    other = {"split": "production", "embedding_set": {"model": "other", "test": uid}}
    assert httpx.put(url, json=other).status_code == 409
    assert httpx.put(f"{chroma_server.url}/api/v1/datasets/bad name!",
                     json={"split": "training"}).status_code == 422
