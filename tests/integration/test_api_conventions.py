"""Conventions every route keeps, through real HTTP to a real ``chroma serve``:

* an embedding-set key may be given as any unique prefix of 4+ characters (like git),
  wherever a key is taken (query, path, body); ambiguous: 422 saying how many; none: 404;
* every list pages the same way (DESIGN §13): ``cursor`` and ``limit`` in,
  ``next_cursor`` out; ``/datasets/{name}/records`` still takes the deprecated ``after``;
* an unknown query parameter is a 422 naming it, on every route;
* ``/docs`` and ``/redoc`` load their assets from this server, none from a CDN.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from chroma.client import Client
from chroma.keys import embedding_set_key
from tests.conftest import ServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("conventions")
    process = ServerProcess(env={"CHROMA_DATABASE_URL": database_url,
                                 "CHROMA_STORAGE_URL": str(tmp / "store")},
                            log_path=tmp / "server.log")
    process.start()
    yield process
    process.stop()


def prefix_twins() -> tuple[dict[str, Any], dict[str, Any], int]:
    """Two embedding sets whose keys share their first ``n`` (>= 5) characters."""
    seen: dict[str, int] = {}
    for i in range(200_000):
        key = embedding_set_key({"model": "prefix-twins", "n": i})
        if key[:5] in seen:
            first = {"model": "prefix-twins", "n": seen[key[:5]]}
            other = {"model": "prefix-twins", "n": i}
            shared = next(j for j in range(40) if key[j] != embedding_set_key(first)[j])
            return first, other, shared
        seen[key[:5]] = i
    raise AssertionError("no twins found")


@pytest.fixture(scope="module")
def twins(server: ServerProcess) -> tuple[str, str, int]:
    """The two sets logged (one record each): their keys and shared prefix length."""
    first, other, shared = prefix_twins()
    with Client(server.url, progress=False) as client:
        for n, fields in enumerate((first, other)):
            client.log_many(np.ones((3, 2)) * (n + 1), embedding_set=fields,
                            dataset=f"twin-{n}", split="production", ids=["a", "b", "c"])
    return embedding_set_key(first), embedding_set_key(other), shared


def get(server: ServerProcess, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", params=params, timeout=30)


# -- key prefixes ----------------------------------------------------------------------------


def test_a_unique_prefix_names_the_set_wherever_a_key_is_taken(server, twins) -> None:
    key, _, shared = twins
    for prefix in (key, key[:12], key[:shared + 1]):
        answer = get(server, f"/api/v1/embeddingsets/{prefix}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["key"] == key  # the answer carries the full key
        listed = get(server, "/api/v1/datasets", embedding_set_key=prefix).json()["data"]
        assert [d["name"] for d in listed] == ["twin-0"]
        queue = get(server, "/api/v1/recommendations", embedding_set_key=prefix)
        assert queue.status_code == 200, queue.text
        query = httpx.post(f"{server.url}/api/v1/query", timeout=30,
                           json={"embedding_set_key": prefix, "embedding": [1.0, 1.0]})
        assert query.status_code in (200, 503), query.text  # 503: index not built (serve)
        if query.status_code == 200:
            assert query.json()["embedding_set_key"] == key
    started = httpx.post(f"{server.url}/api/v1/operations", timeout=30,
                         json={"kind": "sleep", "embedding_set_key": key[:12],
                               "params": {"seconds": 0}})
    assert started.status_code in (200, 201), started.text
    assert started.json()["embedding_set_key"] == key
    ops = get(server, "/api/v1/operations", embedding_set_key=key[:12]).json()["data"]
    assert started.json()["id"] in [op["id"] for op in ops]  # with the implicit ones
    assert {op["embedding_set_key"] for op in ops} == {key}


def test_an_ambiguous_prefix_is_a_422_saying_how_many(server, twins) -> None:
    key, other, shared = twins
    assert key[:shared] == other[:shared]
    for answer in (
        get(server, f"/api/v1/embeddingsets/{key[:shared]}"),
        get(server, "/api/v1/recommendations", embedding_set_key=key[:shared]),
        get(server, "/api/v1/operations", embedding_set_key=key[:shared]),
        httpx.post(f"{server.url}/api/v1/operations", timeout=30,
                   json={"kind": "sleep", "embedding_set_key": key[:shared]}),
    ):
        assert answer.status_code == 422, answer.text
        assert "ambiguous: 2 sets" in answer.json()["message"]


def test_a_prefix_naming_nothing_is_a_404_and_a_short_one_a_422(server, twins) -> None:
    assert get(server, "/api/v1/embeddingsets/ffffffffffff").status_code in (404, 422)
    missing = get(server, "/api/v1/recommendations", embedding_set_key="zzzzzz")
    assert missing.status_code == 404, missing.text
    assert "no embedding set zzzzzz" in missing.json()["message"]
    short = get(server, "/api/v1/datasets", embedding_set_key=twins[0][:3])
    assert short.status_code == 422 and "at least 4 characters" in short.json()["message"]


# -- paging ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paged(server: ServerProcess) -> dict[str, Any]:
    es = {"model": "paging"}
    with Client(server.url, progress=False) as client:
        client.log_many(np.ones((25, 2)), embedding_set=es, dataset="paged",
                        split="training", ids=[f"r{i:02d}" for i in range(25)])
        for n in range(5):
            client.log_many(np.ones((1, 3)), embedding_set={"model": "paging", "n": n},
                            dataset=f"paged-{n}", split="training", ids=["x"])
    return {"key": embedding_set_key(es)}


def walk(server: ServerProcess, path: str, field: str, cursor_name: str = "cursor",
         **params: Any) -> list[Any]:
    seen: list[Any] = []
    cursor = None
    for _ in range(100):
        page = get(server, path, **params, **({cursor_name: cursor} if cursor else {}))
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [item[field] for item in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("paging did not end")


def test_records_page_by_cursor_and_still_by_after(server, paged) -> None:
    expected = [f"r{i:02d}" for i in range(25)]
    assert walk(server, "/api/v1/datasets/paged/records", "id", limit=7) == expected
    assert walk(server, "/api/v1/datasets/paged/records", "id", "after", limit=7) == expected
    both = get(server, "/api/v1/datasets/paged/records", cursor="r03", after="r03")
    assert both.status_code == 422, both.text


def test_every_list_pages_by_cursor_and_limit(server, paged) -> None:
    datasets = walk(server, "/api/v1/datasets", "name", limit=2)
    assert datasets == sorted(datasets) and len(datasets) == len(set(datasets)) >= 6
    assert {f"paged-{n}" for n in range(5)} <= set(datasets)
    sets = walk(server, "/api/v1/embeddingsets", "key", limit=2)
    assert sets == sorted(sets) and paged["key"] in sets
    assert len(sets) == len(get(server, "/api/v1/embeddingsets", limit=1000).json()["data"])
    for _ in range(3):
        httpx.post(f"{server.url}/api/v1/operations", timeout=30,
                   json={"kind": "sleep", "params": {"seconds": 0, "tag": str(_)}})
    ops = walk(server, "/api/v1/operations", "id", limit=2)
    assert ops == sorted(ops, reverse=True) and len(ops) == len(set(ops)) >= 3
    with Client(server.url, progress=False) as client:
        assert [d["name"] for d in client.datasets()] == datasets
        assert [r["id"] for r in client.iter_records("paged", page_size=4)] == [
            f"r{i:02d}" for i in range(25)]


def test_a_forged_operations_cursor_is_a_422(server) -> None:
    assert get(server, "/api/v1/operations", cursor="abc").status_code == 422


# -- unknown query parameters ----------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/health", "/ready", "/metrics", "/api/v1/status", "/api/v1/datasets",
    "/api/v1/embeddingsets", "/api/v1/operations", "/api/v1/datasets/paged/records",
])
def test_an_unknown_query_parameter_is_a_422_naming_it(server, paged, path: str) -> None:
    answer = get(server, path, curser="x")
    assert answer.status_code == 422, answer.text
    assert "unknown query parameter 'curser'" in answer.json()["message"]
    assert get(server, path).status_code == 200  # and without it, the route answers


def test_an_unknown_parameter_of_a_post_route_is_a_422(server, paged) -> None:
    answer = httpx.post(f"{server.url}/api/v1/datasets/paged/records/tags?dry_run=1",
                        json={"ids": ["r00"], "add": ["t"]}, timeout=30)
    assert answer.status_code == 422 and "'dry_run'" in answer.json()["message"]
    recs = get(server, "/api/v1/recommendations", embedding_set_key=paged["key"], limt=3)
    assert recs.status_code == 422 and "'limt'" in recs.json()["message"]
    assert "limit" in recs.json()["message"]  # it says what the route takes


# -- /docs without a CDN ---------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(server, page: str) -> None:
    answer = get(server, page)
    assert answer.status_code == 200
    html = answer.text
    urls = re.findall(r'(?:src|href|spec-url)="([^"]+)"', html) + re.findall(
        r"url: '([^']+)'", html)
    assert len(urls) >= 2, html
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        assert get(server, url).status_code == 200, url
    assert "http://" not in html and "https://" not in html  # no CDN, no font service
    assert '"validatorUrl": null' in html or page == "/redoc"  # no validator.swagger.io


def test_the_contract_still_answers(server) -> None:
    assert get(server, "/openapi.json").json()["info"]["title"] == "Chroma service"


def test_the_docs_assets_ship_with_the_package() -> None:
    from chroma.api.docs import ASSETS_DIR

    assert (Path(ASSETS_DIR) / "swagger-ui-bundle.js").stat().st_size > 100_000
