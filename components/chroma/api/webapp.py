"""The web app's files, served at ``/ui/`` by the API itself (``/`` redirects there).

The app is built from ``web/`` (TypeScript, Vite) into ``chroma/api/static/ui/``, which
ships inside the Python package: ``chroma run`` and the image serve it with no Node.js.

* ``/ui/assets/...``: Vite's content-hashed files, cached for a year (``immutable``); a
  missing one is a 404, never the page (a browser would try to run HTML as a script).
* every other ``/ui/<path>``: the file if there is one (``no-cache``), else ``index.html``
  (``no-cache``), so that the app's own routes (``/ui/record/<dataset>/<id>``) load it.
* without a build (a checkout where ``web/`` was never built), a page saying so.

Open without a key, like ``/docs``: these files hold no data, and every API call the app
makes carries the key the user typed (``chroma.api.auth`` lists these routes as open).
The security headers keep the page to its own scripts and its own API: images may come
from anywhere (thumbnails are ``input_uri`` s: http(s) or data URIs).

Owns: the mount, its caching and security headers. Called by ``chroma.api.app``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["ASSETS", "UI_DIR", "UI_PATH", "WebApp", "mount_webapp"]

UI_DIR = Path(__file__).parent / "static" / "ui"
"""Where the build lands (``web/vite.config.ts`` writes here); shipped as package data."""
UI_PATH = "/ui"
ASSETS = "assets"
"""Vite's output folder of content-hashed files."""

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    # 'unsafe-eval': regl (under the map's WebGL scatter) compiles its draw calls with
    # `new Function`. Scripts still come only from this server.
    "script-src 'self' 'unsafe-eval'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob: https: http:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Chroma</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>The web app is not built</h1>
<p>This copy of Chroma has no built web app. Build it from the repository's
<code>web/</code> folder (<code>npm ci &amp;&amp; npm run build</code>), or install a
release, which ships it. The API is at <a href="../docs">/docs</a>.</p>
</body></html>
"""


class WebApp(StaticFiles):
    """``StaticFiles`` with the app's fallback to ``index.html`` and its cache headers."""

    def __init__(self, directory: Path = UI_DIR) -> None:
        super().__init__(directory=directory, check_dir=False)
        self.root = Path(directory)

    async def check_config(self) -> None:
        """Nothing to check: a missing build is answered by :data:`NOT_BUILT`."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(status_code=405, headers={"Allow": "GET, HEAD"})
        if path in ("", "."):
            return self._index(scope)
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or _is_asset(path):
                raise
            return self._index(scope)

    def file_response(self, full_path: str | os.PathLike[str], stat_result: os.stat_result,
                      scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        relative = os.path.relpath(full_path, self.root)
        response.headers["Cache-Control"] = IMMUTABLE if _is_asset(relative) else REVALIDATE
        response.headers.update(SECURITY_HEADERS)
        return response

    def _index(self, scope: Scope) -> Response:
        index = self.root / "index.html"
        try:
            stat_result = os.stat(index)
        except OSError:
            return HTMLResponse(NOT_BUILT, headers={"Cache-Control": REVALIDATE,
                                                    **SECURITY_HEADERS})
        return self.file_response(index, stat_result, scope)


def _is_asset(path: str) -> bool:
    return Path(path).parts[:1] == (ASSETS,)


root_router = APIRouter(include_in_schema=False)


@root_router.get("/")
async def to_the_app(request: Request) -> RedirectResponse:
    """``/`` -> ``/ui/`` (under a proxy's prefix, if any)."""
    return RedirectResponse(f"{request.scope.get('root_path', '')}{UI_PATH}/", status_code=307)


def mount_webapp(app: FastAPI, directory: Path = UI_DIR) -> None:
    """``/`` and ``/ui/`` on ``app``; compressed (the scatter bundle is mostly text)."""
    app.include_router(root_router)
    app.mount(UI_PATH, GZipMiddleware(WebApp(directory), minimum_size=1024), name="ui")
