"""The REST API (FastAPI): routers per resource, assembled in :func:`create_app`.

Owns: HTTP — routing, request/response models (the contract in ``chroma-api.yaml``),
mapping :mod:`chroma.errors` to status codes in one place, readiness, API keys and the
scope each route needs (:mod:`chroma.api.auth`).
Must not touch: storage formats or SQL directly; it calls ingest, catalog and storage.
Called by: ``chroma serve`` / ``chroma run`` (uvicorn) and tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chroma.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # The app (and all it imports) loads on first use: ``chroma run``'s supervisor
    # imports ``chroma.api.auth`` for the start-up key check and serves no HTTP.
    if name == "create_app":
        from chroma.api.app import create_app

        return create_app
    raise AttributeError(name)
