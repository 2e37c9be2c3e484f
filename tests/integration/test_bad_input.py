"""Bad input gets a clear 4xx, never a 500, and leaves stored data exactly as it was."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pyarrow as pa
import pytest

from chroma.client.client import arrow_stream

pytestmark = pytest.mark.integration


@pytest.fixture
def seeded(chroma_server, uid: str) -> dict:
    """A server holding one training dataset of 3-d vectors, and a snapshot of its state."""
    es = {"model": "m", "test": uid}
    body = {
        "embedding_set": es,
        "dataset": f"train-{uid}",
        "split": "training",
        "records": [{"id": f"r{i}", "embedding": [i, 1.0, 2.0]} for i in range(5)],
    }
    assert httpx.post(f"{chroma_server.url}/api/v1/log", json=body).status_code == 201
    return {"url": chroma_server.url, "es": es, "dataset": f"train-{uid}", "uid": uid}


def snapshot(url: str) -> tuple:
    sets = httpx.get(f"{url}/api/v1/embeddingsets").json()["data"]
    datasets = httpx.get(f"{url}/api/v1/datasets").json()["data"]
    return (
        sorted((s["key"], s["dimension"], json.dumps(s["counts"])) for s in sets),
        sorted((d["name"], d["record_count"]) for d in datasets),
    )


def base(seeded: dict, **overrides: object) -> dict:
    body = {
        "embedding_set": seeded["es"],
        "dataset": seeded["dataset"],
        "split": "training",
        "embedding": [1.0, 2.0, 3.0],
    }
    body.update(overrides)
    return body


CASES = {
    "wrong dimension": (
        lambda s: base(s, embedding=[1.0, 2.0]),
        422,
        ["dimension 2", "dimension 3"],
    ),
    "NaN": (lambda s: json.dumps(base(s)).replace("3.0", "NaN"), 422, ["finite"]),
    "Infinity": (lambda s: json.dumps(base(s)).replace("3.0", "Infinity"), 422, ["finite"]),
    "beyond float32": (lambda s: base(s, embedding=[1.0, 2.0, 1e300]), 422, ["non-finite"]),
    "overflow to inf": (lambda s: json.dumps(base(s)).replace("3.0", "1e999"), 422, ["finite"]),
    "empty body": (lambda s: "", 400, ["empty"]),
    "malformed JSON": (lambda s: '{"embedding": [1, 2', 400, ["malformed JSON"]),
    "not an object": (lambda s: "[1, 2, 3]", 422, ["object"]),
    "wrong type": (lambda s: base(s, embedding=["a", "b", "c"]), 422, ["embedding.0"]),
    "tags not a list": (lambda s: base(s, tags="x"), 422, ["tags"]),
    "unknown field": (lambda s: base(s, colour="red"), 422, ["colour", "Extra inputs"]),
    "unknown split": (lambda s: base(s, split="validation"), 422, ["split"]),
    "missing split": (
        lambda s: {k: v for k, v in base(s).items() if k != "split"},
        422,
        ["split is required"],
    ),
    "missing embedding set": (
        lambda s: {k: v for k, v in base(s).items() if k != "embedding_set"},
        422,
        ["embedding_set is required"],
    ),
    "bad dataset name": (lambda s: base(s, dataset="../etc"), 422, ["dataset"]),
    "empty records": (
        lambda s: {
            "embedding_set": s["es"],
            "dataset": s["dataset"],
            "split": "training",
            "records": [],
        },
        422,
        ["records"],
    ),
    "mixed dimensions": (
        lambda s: {
            "embedding_set": s["es"],
            "dataset": s["dataset"],
            "split": "training",
            "records": [{"embedding": [1, 2, 3]}, {"embedding": [1]}],
        },
        422,
        ["record 1 has dimension 1"],
    ),
    "dataset of another embedding set": (
        lambda s: base(s, embedding_set={"model": "other", "test": s["uid"]}),
        409,
        ["belongs to embedding set"],
    ),
    "dataset of another split": (lambda s: base(s, split="production"), 409, ["holds training"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_json_is_a_clear_4xx_and_changes_nothing(seeded: dict, case: str) -> None:
    make, status, fragments = CASES[case]
    before = snapshot(seeded["url"])
    payload = make(seeded)
    content = payload if isinstance(payload, str) else json.dumps(payload)
    answer = httpx.post(
        f"{seeded['url']}/api/v1/log", content=content, headers={"content-type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] and body["message"]
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    assert snapshot(seeded["url"]) == before


def test_oversized_body_is_413_and_changes_nothing(seeded: dict, server_env, tmp_path) -> None:
    from tests.conftest import ServerProcess

    small = ServerProcess(
        env={**server_env, "CHROMA_MAX_BODY_BYTES": "4096"}, log_path=tmp_path / "small.log"
    )
    small.start()
    try:
        before = snapshot(small.url)
        body = {
            "embedding_set": seeded["es"],
            "dataset": seeded["dataset"],
            "split": "training",
            "records": [{"embedding": [1.0, 2.0, 3.0]}] * 500,
        }
        answer = httpx.post(f"{small.url}/api/v1/log", json=body)
        assert answer.status_code == 413
        assert "limit" in answer.json()["message"]
        # Chunked upload without Content-Length is cut off too.
        chunks = iter([json.dumps(body).encode()[i : i + 1000] for i in range(0, 20000, 1000)])
        chunked = httpx.post(
            f"{small.url}/api/v1/log", content=chunks, headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413
        assert snapshot(small.url) == before
    finally:
        small.stop()


def test_unsupported_content_type_is_415(seeded: dict) -> None:
    answer = httpx.post(
        f"{seeded['url']}/api/v1/log", content=b"a,b", headers={"content-type": "text/csv"}
    )
    assert answer.status_code == 415
    assert "application/json" in answer.json()["message"]


def _arrow(seeded: dict, matrix: np.ndarray, **columns) -> bytes:
    return arrow_stream(
        matrix,
        [f"a{i}" for i in range(len(matrix))],
        columns,
        embedding_set=seeded["es"],
        dataset=seeded["dataset"],
        split="training",
    )


ARROW = "application/vnd.apache.arrow.stream"


def test_arrow_bulk_body_is_committed(seeded: dict) -> None:
    body = _arrow(seeded, np.ones((10, 3), np.float32), label_class=["x"] * 10)
    answer = httpx.post(
        f"{seeded['url']}/api/v1/log", content=body, headers={"content-type": ARROW}
    )
    assert answer.status_code == 201, answer.text
    dataset = httpx.get(f"{seeded['url']}/api/v1/datasets/{seeded['dataset']}").json()
    assert dataset["record_count"] == 15


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda s: _arrow(s, np.ones((4, 2), np.float32)), "dimension 2"),
        (lambda s: _arrow(s, np.array([[1, 2, np.nan]], np.float32)), "non-finite"),
        (lambda s: b"not arrow at all", "Arrow IPC"),
        (
            lambda s: _table_bytes(pa.table({"embedding": [[1.0, 2.0, 3.0]], "x": [1]}), s),
            "unknown columns",
        ),
        (lambda s: _table_bytes(pa.table({"embedding": [[1.0, 2.0, 3.0]]}), None), "required"),
    ],
    ids=["wrong dimension", "NaN", "garbage", "unknown column", "no shared fields"],
)
def test_bad_arrow_is_a_clear_4xx_and_changes_nothing(seeded: dict, make, fragment) -> None:
    before = snapshot(seeded["url"])
    answer = httpx.post(
        f"{seeded['url']}/api/v1/log", content=make(seeded), headers={"content-type": ARROW}
    )
    assert 400 <= answer.status_code < 500, answer.text
    assert fragment in answer.json()["message"]
    assert snapshot(seeded["url"]) == before


def _table_bytes(table: pa.Table, seeded: dict | None) -> bytes:
    if seeded is not None:
        table = table.replace_schema_metadata(
            {
                "chroma.embedding_set": json.dumps(seeded["es"]),
                "chroma.dataset": seeded["dataset"],
                "chroma.split": "training",
            }
        )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
