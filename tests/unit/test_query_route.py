"""The query route's direct path (``_OrjsonBodyRoute`` + ``_DIRECT``): a body the model
accepts is validated once and handed to the endpoint without FastAPI's dependency
solving; anything else is answered exactly as FastAPI's own route answers it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field

from chroma.api.routers.query import _DIRECT, _OrjsonBodyRoute


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vector: list[float] = Field(min_length=1)
    k: int = Field(default=10, ge=1)


CALLS: list[str] = []


def _fastapi_ran() -> str:
    return "fastapi"


async def endpoint(body: Body, request: Request,
                   via: Any = Depends(_fastapi_ran)) -> Response:
    """``via`` is ``"fastapi"`` when FastAPI solved the dependencies, its default (the
    ``Depends`` marker) when the route called this directly."""
    taken = "fastapi" if via == "fastapi" else "direct"
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
