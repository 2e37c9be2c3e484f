"""The stand-in's FastAPI app: Qdrant REST request bodies parsed with qdrant-client's
own models, executed by a ``QdrantClient`` in local mode, answered in Qdrant's envelope
``{"result": ..., "status": "ok", "time": seconds}``. Errors as Qdrant answers them:
404 for a missing collection, 400 for bad input, ``{"status": {"error": ...}}``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from qdrant_client import QdrantClient, models

try:
    from importlib.metadata import version as _dist_version

    QDRANT_CLIENT_VERSION = _dist_version("qdrant-client")
except Exception:  # pragma: no cover - metadata missing
    QDRANT_CLIENT_VERSION = "unknown"

#: (method, path) pairs served; the subset chroma.index.remote uses, plus probes.
ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/"),
    ("GET", "/readyz"),
    ("GET", "/livez"),
    ("GET", "/healthz"),
    ("GET", "/collections"),
    ("GET", "/aliases"),
    ("POST", "/collections/aliases"),
    ("GET", "/collections/{name}"),
    ("GET", "/collections/{name}/exists"),
    ("PUT", "/collections/{name}"),
    ("DELETE", "/collections/{name}"),
    ("PUT", "/collections/{name}/index"),
    ("PUT", "/collections/{name}/points"),
    ("POST", "/collections/{name}/points"),
    ("POST", "/collections/{name}/points/delete"),
    ("POST", "/collections/{name}/points/payload"),
    ("POST", "/collections/{name}/points/count"),
    ("POST", "/collections/{name}/points/query/batch"),
)


def _update_result() -> models.UpdateResult:
    return models.UpdateResult(operation_id=0, status=models.UpdateStatus.COMPLETED)


def create_app(path: str | None = None, api_key: str | None = None) -> FastAPI:
    """The app over a fresh local-mode client (in memory unless ``path`` is given)."""
    client = QdrantClient(path=path) if path else QdrantClient(location=":memory:")
    lock = threading.Lock()  # local mode is not thread-safe
    app = FastAPI(title="Qdrant stand-in (tests only)", version=QDRANT_CLIENT_VERSION)
    app.state.client = client

    def answer(call: Callable[[], Any]) -> JSONResponse:
        started = time.perf_counter()
        try:
            with lock:
                result = call()
        except ValueError as exc:
            code = 404 if "not found" in str(exc).lower() else 400
            return JSONResponse({"status": {"error": str(exc)}, "time": 0.0}, status_code=code)
        except (TypeError, KeyError) as exc:
            return JSONResponse({"status": {"error": f"bad request: {exc}"}, "time": 0.0},
                                status_code=400)
        return JSONResponse({
            "result": jsonable_encoder(result, exclude_none=True),
            "status": "ok",
            "time": time.perf_counter() - started,
        })

    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        import json

        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError("the request body must be a JSON object")
        return value

    @app.exception_handler(ValidationError)
    async def bad_body(request: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse({"status": {"error": f"bad request: {exc}"}, "time": 0.0},
                            status_code=400)

    @app.middleware("http")
    async def check_api_key(request: Request, call_next: Any) -> Any:
        open_paths = {"/", "/readyz", "/livez", "/healthz"}
        if api_key and request.url.path not in open_paths:
            given = request.headers.get("api-key") or request.headers.get(
                "authorization", "").removeprefix("Bearer ")
            if given != api_key:
                return JSONResponse({"status": {"error": "Invalid api-key"}}, status_code=401)
        return await call_next(request)

    @app.get("/")
    def root() -> dict[str, str]:
        return {"title": "qdrant stand-in (qdrant-client local mode; tests only)",
                "version": QDRANT_CLIENT_VERSION}

    @app.get("/readyz")
    @app.get("/livez")
    @app.get("/healthz")
    def probe() -> JSONResponse:
        return JSONResponse({"title": "ok"})

    @app.get("/collections")
    def collections() -> JSONResponse:
        return answer(client.get_collections)

    @app.get("/aliases")
    def aliases() -> JSONResponse:
        return answer(client.get_aliases)

    @app.post("/collections/aliases")
    async def change_aliases(request: Request) -> JSONResponse:
        ops = models.ChangeAliasesOperation.model_validate(await body(request))
        return answer(lambda: client.update_collection_aliases(
            change_aliases_operations=ops.actions))

    @app.get("/collections/{name}")
    def get_collection(name: str) -> JSONResponse:
        return answer(lambda: client.get_collection(name))

    @app.get("/collections/{name}/exists")
    def exists(name: str) -> JSONResponse:
        return answer(lambda: models.CollectionExistence(exists=client.collection_exists(name)))

    @app.put("/collections/{name}")
    async def create_collection(name: str, request: Request) -> JSONResponse:
        spec = models.CreateCollection.model_validate(await body(request))
        renamed = {"vectors": "vectors_config", "sparse_vectors": "sparse_vectors_config"}
        kwargs = {renamed.get(k, k): getattr(spec, k) for k in spec.model_fields_set}
        return answer(lambda: client.create_collection(name, **kwargs))

    @app.delete("/collections/{name}")
    def delete_collection(name: str) -> JSONResponse:
        return answer(lambda: client.delete_collection(name))

    @app.put("/collections/{name}/index")
    async def create_index(name: str, request: Request) -> JSONResponse:
        models.CreateFieldIndex.model_validate(await body(request))  # checked, then ignored

        def call() -> models.UpdateResult:
            client.get_collection(name)  # 404 as Qdrant, then accepted; local mode ignores it
            return _update_result()

        return answer(call)

    @app.put("/collections/{name}/points")
    async def upsert(name: str, request: Request) -> JSONResponse:
        data = await body(request)
        if "batch" in data:
            points: Any = models.PointsBatch.model_validate(data).batch
        else:
            points = models.PointsList.model_validate(data).points
        return answer(lambda: client.upsert(name, points=points, wait=True))

    @app.post("/collections/{name}/points")
    async def retrieve(name: str, request: Request) -> JSONResponse:
        spec = models.PointRequest.model_validate(await body(request))
        return answer(lambda: client.retrieve(
            name, spec.ids,
            with_payload=True if spec.with_payload is None else spec.with_payload,
            with_vectors=bool(spec.with_vector) if spec.with_vector is not None else False,
        ))

    @app.post("/collections/{name}/points/delete")
    async def delete_points(name: str, request: Request) -> JSONResponse:
        data = await body(request)
        selector: Any = (models.PointIdsList.model_validate(data) if "points" in data
                         else models.FilterSelector.model_validate(data))
        return answer(lambda: client.delete(name, points_selector=selector, wait=True))

    @app.post("/collections/{name}/points/payload")
    async def set_payload(name: str, request: Request) -> JSONResponse:
        spec = models.SetPayload.model_validate(await body(request))
        selector: Any = spec.points if spec.points is not None else spec.filter
        return answer(lambda: client.set_payload(
            name, payload=spec.payload, points=selector, key=spec.key, wait=True))

    @app.post("/collections/{name}/points/count")
    async def count(name: str, request: Request) -> JSONResponse:
        spec = models.CountRequest.model_validate(await body(request))
        return answer(lambda: client.count(
            name, count_filter=spec.filter, exact=True if spec.exact is None else spec.exact))

    @app.post("/collections/{name}/points/query/batch")
    async def query_batch(name: str, request: Request) -> JSONResponse:
        spec = models.QueryRequestBatch.model_validate(await body(request))
        return answer(lambda: client.query_batch_points(name, requests=spec.searches))

    return app
