"""The stand-in over real HTTP answers every call chroma's remote backend makes (the
sequence of ``chroma.index.remote``: versioned collections behind an alias, payload
indexes, batched upserts, set_payload, delete, count, batched filtered queries, alias
switch) exactly as qdrant-client's local mode answers them in process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import uvicorn
from qdrant_client import QdrantClient, models

from tests.qdrant_standin import create_app

pytestmark = [
    pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection"),
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect"),
]
DIM = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def standin_url() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(api_key="k" * 32), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "stand-in did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def scenario(client: QdrantClient) -> list:
    """What the remote backend does, step by step; every answer collected."""
    rng = np.random.default_rng(3)
    out: list = []
    v1, alias = "chroma_es__v000001", "chroma_es"
    client.create_collection(v1, vectors_config=models.VectorParams(
        size=DIM, distance=models.Distance.COSINE),
        hnsw_config=models.HnswConfigDiff(m=16, ef_construct=100))
    client.create_payload_index(v1, "dataset", models.KeywordIndexParams(
        type=models.KeywordIndexType.KEYWORD), wait=True)
    client.update_collection_aliases(change_aliases_operations=[models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=v1, alias_name=alias))])
    out.append(sorted((a.alias_name, a.collection_name) for a in client.get_aliases().aliases))
    vectors = rng.normal(size=(40, DIM))
    client.upsert(alias, points=models.Batch(
        ids=list(range(40)), vectors=vectors.tolist(),
        payloads=[{"dataset": "a" if i % 2 else "b", "split": "production", "logged_at": i,
                   "tags": []} for i in range(40)]), wait=True)
    present = [r.id for r in client.retrieve(alias, [1, 2, 999], with_payload=False)]
    out.append(present)
    client.set_payload(alias, payload={"tags": ["x"]}, points=present, wait=True)
    client.delete(alias, points_selector=models.PointIdsList(points=[3, 4]), wait=True)
    out.append(client.count(alias, exact=True).count)
    flt = models.Filter(must=[
        models.FieldCondition(key="dataset", match=models.MatchAny(any=["a"])),
        models.FieldCondition(key="logged_at", range=models.Range(gte=5, lt=30))],
        must_not=[models.HasIdCondition(has_id=[7])])
    out.append(client.count(alias, count_filter=flt, exact=True).count)
    answers = client.query_batch_points(alias, requests=[
        models.QueryRequest(query=row, filter=flt, limit=5, with_payload=True)
        for row in vectors[:3].tolist()])
    out.append([[(p.id, round(p.score, 5), p.payload["dataset"]) for p in r.points]
                for r in answers])
    got = client.retrieve(alias, [2], with_payload=True, with_vectors=True)[0]
    out.append((got.payload["tags"], np.round(got.vector, 5).tolist()))
    info = client.get_collection(v1)
    out.append((info.status, info.config.params.vectors.size, info.points_count))
    # A re-index: build v2, switch the alias in one request, drop v1.
    v2 = "chroma_es__v000002"
    client.create_collection(v2, vectors_config=models.VectorParams(
        size=DIM, distance=models.Distance.COSINE))
    client.upsert(v2, points=models.Batch(ids=[100], vectors=[vectors[0].tolist()],
                                          payloads=[{"dataset": "c"}]), wait=True)
    client.update_collection_aliases(change_aliases_operations=[
        models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)),
        models.CreateAliasOperation(create_alias=models.CreateAlias(
            collection_name=v2, alias_name=alias))])
    client.delete_collection(v1)
    out.append(sorted(c.name for c in client.get_collections().collections))
    out.append(client.count(alias, exact=True).count)
    return out


def test_the_backend_sequence_matches_local_mode(standin_url: str) -> None:
    remote = QdrantClient(url=standin_url, api_key="k" * 32, prefer_grpc=False,
                          check_compatibility=False, https=False)
    local = QdrantClient(location=":memory:")
    try:
        assert scenario(remote) == scenario(local)
    finally:
        remote.close()
        local.close()


def test_errors_as_a_server_reports_them(standin_url: str) -> None:
    from qdrant_client.http.exceptions import UnexpectedResponse

    client = QdrantClient(url=standin_url, api_key="k" * 32, prefer_grpc=False,
                          check_compatibility=False, https=False)
    with pytest.raises(UnexpectedResponse) as missing:
        client.get_collection("nope")
    assert missing.value.status_code == 404
    unauthorised = httpx.get(f"{standin_url}/collections", timeout=5)
    assert unauthorised.status_code == 401
    bad = httpx.put(f"{standin_url}/collections/x", json={"vectors": {"size": "big"}},
                    headers={"api-key": "k" * 32}, timeout=5)
    assert bad.status_code == 400, bad.text
    assert httpx.get(f"{standin_url}/readyz", timeout=5).status_code == 200
