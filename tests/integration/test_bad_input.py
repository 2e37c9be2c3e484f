"""Bad input gets a clear 4xx, never a 500, and leaves stored data exactly as it was."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pyarrow as pa
import pytest

from chroma.client import Client
from chroma.client.client import arrow_stream
from chroma.keys import embedding_set_key

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
    with Client(url, progress=False) as client:  # every page of each list
        sets, datasets = client.embedding_sets(), client.datasets()
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


# -- issue 12: hostile input at the edge ------------------------------------------------

NUL = "bad\x00text"


@pytest.mark.parametrize("field", ["id", "input_uri", "inference_class", "label_class", "tags"])
def test_a_nul_character_is_a_422_not_a_failed_commit(seeded: dict, field: str) -> None:
    """PostgreSQL's COPY refuses NUL: it must be refused before the record joins a group."""
    before = snapshot(seeded["url"])
    value: object = [NUL] if field == "tags" else NUL
    answer = httpx.post(f"{seeded['url']}/api/v1/log", json=base(seeded, **{field: value}))
    assert answer.status_code == 422, answer.text
    columns = {"tags": [[NUL]]} if field == "tags" else {field: [NUL]}
    if field == "id":
        body = arrow_stream(np.ones((1, 3), np.float32), [NUL], {}, embedding_set=seeded["es"],
                            dataset=seeded["dataset"], split="training")
    else:
        body = _arrow(seeded, np.ones((1, 3), np.float32), **columns)
    answer = httpx.post(f"{seeded['url']}/api/v1/log", content=body,
                        headers={"content-type": ARROW})
    assert answer.status_code == 422, answer.text
    assert "NUL" in answer.json()["message"]
    assert snapshot(seeded["url"]) == before


@pytest.mark.parametrize(("column", "value", "fragment"), [
    ("scores", '{"a": "high"}', "scores"),
    ("inference_class", "x" * 100_000, "inference_class"),
    ("input_uri", "x" * 1_000_000, "input_uri"),
])
def test_arrow_records_meet_the_json_rules(seeded: dict, column: str, value: str,
                                           fragment: str) -> None:
    before = snapshot(seeded["url"])
    table = pa.table({"embedding": pa.array([[1.0, 2.0, 3.0]]),
                      column: pa.array([value], pa.string())})
    answer = httpx.post(f"{seeded['url']}/api/v1/log", content=_table_bytes(table, seeded),
                        headers={"content-type": ARROW})
    assert answer.status_code == 422, answer.text
    assert fragment in answer.json()["message"] and "record 0" in answer.json()["message"]
    assert snapshot(seeded["url"]) == before


def test_arrow_dimension_is_capped(seeded: dict) -> None:
    es = {"model": "wide", "test": seeded["uid"]}
    body = arrow_stream(np.ones((1, 70_000), np.float32), ["w"], {}, embedding_set=es,
                        dataset=f"wide-{seeded['uid']}", split="training")
    answer = httpx.post(f"{seeded['url']}/api/v1/log", content=body,
                        headers={"content-type": ARROW})
    assert answer.status_code == 422, answer.text
    assert "70000" in answer.json()["message"]


LISTINGS = ["/api/v1/embeddingsets", "/api/v1/operations", "/api/v1/datasets"]


@pytest.mark.parametrize("fields", [{"model": 1e20}, {"model": 2**70}, {"model": NUL}])
def test_embedding_set_fields_beyond_storage_are_refused(seeded: dict, fields: dict) -> None:
    answer = httpx.post(f"{seeded['url']}/api/v1/log",
                        json=base(seeded, embedding_set=fields, dataset=f"big-{seeded['uid']}"))
    assert answer.status_code == 422, answer.text
    for path in LISTINGS:
        assert httpx.get(f"{seeded['url']}{path}").status_code == 200, path


@pytest.mark.parametrize("params", [
    {"seconds": 1e308}, {"seconds": 3601}, {"other": 1e20}, {"other": [NUL]}, {NUL: 1},
])
def test_operation_params_beyond_storage_are_refused(seeded: dict, params: dict) -> None:
    answer = httpx.post(f"{seeded['url']}/api/v1/operations",
                        json={"kind": "sleep", "params": params})
    assert answer.status_code == 422, answer.text
    assert "params" in answer.json()["message"]
    assert httpx.get(f"{seeded['url']}/api/v1/operations").status_code == 200


def test_listings_survive_numbers_already_stored(seeded: dict, server_env: dict) -> None:
    """Rows stored before the edge bounded numbers: jsonb gives 1e20 back as an integer."""
    import psycopg
    from psycopg.types.json import Jsonb

    key = f"stored-{seeded['uid']}"
    with psycopg.connect(server_env["CHROMA_DATABASE_URL"], autocommit=True) as conn:
        conn.execute("INSERT INTO embedding_sets (key, fields, dimension) VALUES (%s, %s, 3)",
                     (key, Jsonb({"model": 10**20, "huge": 10**400})))
        op_id = conn.execute(
            "INSERT INTO operations (kind, params, state, result) VALUES"
            " ('sleep', %s, 'failed', %s) RETURNING id",
            (Jsonb({"seconds": 10**308}), Jsonb({"n": -(10**30)}))).fetchone()[0]
    # One page: lists page by 100 (DESIGN §13); this module's server holds more sets.
    sets = httpx.get(f"{seeded['url']}/api/v1/embeddingsets", params={"limit": 1000})
    assert sets.status_code == 200, sets.text
    stored = next(s for s in sets.json()["data"] if s["key"] == key)
    assert stored["fields"]["model"] == 1e20
    assert httpx.get(f"{seeded['url']}/api/v1/embeddingsets/{key}").status_code == 200
    ops = httpx.get(f"{seeded['url']}/api/v1/operations")
    assert ops.status_code == 200, ops.text
    assert httpx.get(f"{seeded['url']}/api/v1/operations/{op_id}").status_code == 200
    assert httpx.get(f"{seeded['url']}/api/v1/status").status_code == 200


BIG = str(2**80)
NUL_IN_PATH = "bad%00text"


def _cursor(*values: object) -> str:
    """A forged labelling-queue cursor (the API's own are base64 JSON)."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


PARAMETERS = [
    ("GET", f"/api/v1/datasets/{NUL_IN_PATH}", None),
    ("GET", "/api/v1/datasets", {"embedding_set_key": NUL}),
    ("GET", "/api/v1/datasets/{dataset}/records", {"after": NUL}),
    ("GET", "/api/v1/datasets/{dataset}/records", {"limit": BIG}),
    ("DELETE", "/api/v1/datasets/{dataset}/records/" + NUL_IN_PATH, None),
    ("POST", "/api/v1/datasets/{dataset}/records/delete", {"ids": [NUL]}),
    ("POST", "/api/v1/datasets/{dataset}/records/tags", {"ids": ["r1"], "add": [NUL]}),
    ("GET", f"/api/v1/embeddingsets/{NUL_IN_PATH}", None),
    ("GET", f"/api/v1/operations/{BIG}", None),
    ("POST", f"/api/v1/operations/{BIG}/cancel", None),
    ("GET", "/api/v1/operations", {"state": NUL}),
    ("GET", "/api/v1/operations", {"embedding_set_key": NUL}),
    ("POST", "/api/v1/operations", {"kind": "index", "embedding_set_key": NUL}),
    ("GET", "/api/v1/recommendations", {"embedding_set_key": NUL}),
    ("GET", "/api/v1/recommendations", {"embedding_set_key": "{key}", "skip": BIG}),
    ("GET", "/api/v1/recommendations", {"embedding_set_key": "{key}", "dataset": NUL}),
    ("GET", "/api/v1/recommendations", {"embedding_set_key": "{key}",
                                        "cursor": _cursor(1, 1, NUL)}),
    ("GET", "/api/v1/recommendations", {"embedding_set_key": "{key}",
                                        "cursor": _cursor(1, 1e30, "a")}),
    ("POST", "/api/v1/recommendations/labelled", {"dataset": "{dataset}", "ids": [NUL]}),
    ("POST", "/api/v1/query", {"embedding_set_key": NUL, "embedding": [1, 2, 3]}),
    ("POST", "/api/v1/query", {"record_id": NUL, "dataset": "{dataset}"}),
    ("POST", "/api/v1/query", {"embedding": [1, 2, 3], "filter": {"label_class": NUL}}),
    ("PUT", "/api/v1/datasets/{dataset}", {"split": "training", "description": NUL}),
    ("PUT", "/api/v1/datasets/{dataset}", {"split": "training", "retention_days": BIG}),
]


@pytest.mark.parametrize(("method", "path", "given"), PARAMETERS,
                         ids=[f"{m} {p} {g}"[:80] for m, p, g in PARAMETERS])
def test_nul_and_out_of_range_parameters_are_4xx(seeded: dict, method: str, path: str,
                                                 given: object) -> None:
    path = path.replace("{dataset}", seeded["dataset"])
    named = json.loads(json.dumps(given).replace("{dataset}", seeded["dataset"])
                       .replace("{key}", embedding_set_key(seeded["es"])))
    if isinstance(named, dict) and method != "GET":
        body = {k: int(v) if v == BIG else v for k, v in named.items()}
        answer = httpx.request(method, f"{seeded['url']}{path}", json=body)
    else:
        answer = httpx.request(method, f"{seeded['url']}{path}", params=named)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["error"] and answer.json()["message"]


def test_largest_query_is_refused_up_front(seeded: dict) -> None:
    """1,000 vectors x k=1000 used to fail after ~24 s with a misleading 'restarting' 503."""
    answer = httpx.post(f"{seeded['url']}/api/v1/query", timeout=30, json={
        "embedding_set": seeded["es"], "embeddings": [[1.0, 2.0, 3.0]] * 1000, "k": 1000})
    assert answer.status_code == 422, answer.text
    assert "k=1000" in answer.json()["message"] and "100000" in answer.json()["message"]


@pytest.mark.parametrize("path", ["/api/v1/query", "/api/v1/operations",
                                  "/api/v1/datasets/{dataset}/records/delete"])
def test_malformed_json_is_400(seeded: dict, path: str) -> None:
    answer = httpx.post(f"{seeded['url']}{path.replace('{dataset}', seeded['dataset'])}",
                        content=b'{"ids": [', headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "malformed_body"


def test_every_request_body_has_a_limit(seeded: dict, server_env, tmp_path) -> None:
    from tests.conftest import ServerProcess

    small = ServerProcess(env={**server_env, "CHROMA_MAX_JSON_BODY_BYTES": "4096"},
                          log_path=tmp_path / "small.log")
    small.start()
    try:
        ids = [f"id-{i}" for i in range(1000)]
        for path, body in [("/api/v1/query", {"embedding": [1.0] * 2000}),
                           (f"/api/v1/datasets/{seeded['dataset']}/records/delete",
                            {"ids": ids})]:
            answer = httpx.post(f"{small.url}{path}", json=body)
            assert answer.status_code == 413, answer.text
            assert "CHROMA_MAX_JSON_BODY_BYTES" in answer.json()["message"]
            raw = json.dumps(body).encode()
            chunked = httpx.post(f"{small.url}{path}", headers={"content-type": "application/json"},
                                 content=iter([raw[i:i + 1000] for i in range(0, len(raw), 1000)]))
            assert chunked.status_code == 413, chunked.text
        # Under the limit, the routes still read their bodies.
        answer = httpx.post(f"{small.url}/api/v1/datasets/{seeded['dataset']}/records/delete",
                            json={"ids": ["nope"]})
        assert answer.status_code == 200, answer.text
    finally:
        small.stop()
