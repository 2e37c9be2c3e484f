"""The query route's direct path (``_OrjsonBodyRoute`` + ``_DIRECT``): a body the model
accepts is validated once and handed to the endpoint without FastAPI's dependency
solving; anything else is answered exactly as FastAPI's own route answers it."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field

from chroma.api.routers.query import _DIRECT, _OrjsonBodyRoute
from chroma.api.strict import reject_unknown_query
from chroma.errors import InvalidInput


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vector: list[float] = Field(min_length=1)
    k: int = Field(default=10, ge=1)


CALLS: list[str] = []


async def endpoint(body: Body, request: Request,
                   tasks: BackgroundTasks = None) -> Response:  # type: ignore[assignment]
    """FastAPI hands every endpoint that asks a ``BackgroundTasks``; the direct path
    calls it with ``(body, request)`` only."""
    taken = "fastapi" if tasks is not None else "direct"
    CALLS.append(taken)
    return Response(orjson.dumps({"via": taken, "sum": sum(body.vector), "k": body.k}),
                    media_type="application/json")


def _client(route_class: type[APIRoute]) -> TestClient:
    router = APIRouter(route_class=route_class)
    router.add_api_route("/q", endpoint, methods=["POST"])
    app = FastAPI()
    app.include_router(router)
    return TestClient(app)


@pytest.fixture
def clients() -> Iterator[tuple[TestClient, TestClient]]:
    _DIRECT[endpoint] = Body
    CALLS.clear()
    try:
        yield _client(_OrjsonBodyRoute), _client(APIRoute)
    finally:
        del _DIRECT[endpoint]


def test_a_valid_body_goes_straight_to_the_endpoint_once(clients) -> None:
    ours, _ = clients
    answer = ours.post("/q", content=orjson.dumps({"vector": [1.0, 2.5], "k": 3}),
                       headers={"content-type": "application/json"})
    assert answer.status_code == 200
    assert answer.json() == {"via": "direct", "sum": 3.5, "k": 3}
    assert CALLS == ["direct"]


@pytest.mark.parametrize("raw", [
    b'{"vector": [], "k": 3}',            # too short
    b'{"vector": [1.0], "k": 0}',         # out of range
    b'{"vector": ["x"]}',                 # not a number
    b'{"vector": [1.0], "extra": true}',  # unknown field
    b'[1.0, 2.0]',                        # not an object
    b'{"vector": [NaN]}',                 # orjson refuses it, json.loads takes it
    b'{"vector": [1.0',                   # not JSON
], ids=["short", "range", "non-number", "extra", "array", "nan-literal", "broken"])
def test_anything_else_is_answered_as_fastapi_answers_it(clients, raw: bytes) -> None:
    ours, plain = clients
    headers = {"content-type": "application/json"}
    got, expected = ours.post("/q", content=raw, headers=headers), plain.post(
        "/q", content=raw, headers=headers)
    assert (got.status_code, got.json()) == (expected.status_code, expected.json())
    assert "direct" not in CALLS


def test_a_body_without_a_json_content_type_is_left_to_fastapi(clients) -> None:
    ours, plain = clients
    raw = orjson.dumps({"vector": [1.0]})
    got = ours.post("/q", content=raw, headers={"content-type": "text/plain"})
    expected = plain.post("/q", content=raw, headers={"content-type": "text/plain"})
    assert (got.status_code, got.json()) == (expected.status_code, expected.json())
    assert "direct" not in CALLS


def test_a_route_with_a_dependency_the_direct_path_does_not_know_goes_fastapis_way() -> None:
    """A dependency of the app (auth, say) is never skipped: the direct path runs only
    the ones it knows (``_GATES``), and with any other the route is FastAPI's alone."""
    ran: list[str] = []

    def gate() -> None:
        ran.append("gate")

    router = APIRouter(route_class=_OrjsonBodyRoute)
    router.add_api_route("/q", endpoint, methods=["POST"])
    app = FastAPI(dependencies=[Depends(gate)])
    app.include_router(router)
    _DIRECT[endpoint] = Body
    CALLS.clear()
    try:
        answer = TestClient(app).post("/q", content=orjson.dumps({"vector": [1.0]}),
                                      headers={"content-type": "application/json"})
    finally:
        del _DIRECT[endpoint]
    assert answer.json()["via"] == "fastapi" and ran == ["gate"] and CALLS == ["fastapi"]


def test_the_direct_path_runs_the_apps_own_dependencies_first() -> None:
    """``reject_unknown_query`` (as ``create_app`` declares it) still refuses a query
    parameter the route does not take, before the endpoint runs."""
    router = APIRouter(route_class=_OrjsonBodyRoute)
    router.add_api_route("/q", endpoint, methods=["POST"])
    app = FastAPI(dependencies=[Depends(reject_unknown_query)])
    app.include_router(router)
    client = TestClient(app)
    _DIRECT[endpoint] = Body
    CALLS.clear()
    try:
        raw, headers = orjson.dumps({"vector": [1.0]}), {"content-type": "application/json"}
        with pytest.raises(InvalidInput, match="unknown query parameter 'x'"):
            client.post("/q?x=1", content=raw, headers=headers)
        assert CALLS == []
        assert client.post("/q", content=raw, headers=headers).json()["via"] == "direct"
    finally:
        del _DIRECT[endpoint]


def test_the_apps_query_route_takes_the_direct_path_behind_auth_and_strict_queries(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """In the app itself, with API keys configured: a valid query body without a key is
    a 401, as on every other route (the endpoint never runs: this app has no services),
    and the direct path is on and runs the app's two dependencies (``authorize`` with its
    bearer credentials, then ``reject_unknown_query``). A third dependency in
    ``create_app`` turns it off (above) and fails this test: add it to ``_GATES`` if the
    direct path should run it."""
    from chroma.api.app import create_app
    from chroma.api.routers.query import _DIRECT_GATES, _authorize, query
    from chroma.settings import Settings

    monkeypatch.setenv("CHROMA_API_KEYS", "read " + "r" * 32)
    client = TestClient(create_app(Settings()), raise_server_exceptions=False)
    body = orjson.dumps({"embedding_set_key": "abcd", "embedding": [1.0]})
    for key in (None, "w" * 32):
        headers = {"content-type": "application/json"} | (
            {"authorization": f"Bearer {key}"} if key else {})
        answer = client.post("/api/v1/query", content=body, headers=headers)
        assert answer.status_code == 401, answer.text
    assert _DIRECT_GATES[query] == [_authorize, reject_unknown_query]
