"""Helpers the browser tests share: the API's own answers (what the page must show) and
waiting for the app's pages. The fixtures (servers, browser) live in ``conftest.py``."""

from __future__ import annotations

import time
from typing import Any

import httpx
from playwright.sync_api import Page


def base_url(server: Any) -> str:
    """The server's root URL, whether the fixture hands out a URL or an object with one."""
    return (server if isinstance(server, str) else server.url).rstrip("/")


def api(server: Any, method: str, path: str, key: str | None = None, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    answer = httpx.request(method, base_url(server) + path, headers=headers, timeout=60, **kwargs)
    answer.raise_for_status()
    return answer


def production_set(server: Any, key: str | None = None) -> str:
    """The key of the (first) embedding set with production records."""
    sets = api(server, "GET", "/api/v1/embeddingsets", key).json()["data"]
    return next(s["key"] for s in sets if s["counts"].get("production"))


def queue(server: Any, set_key: str, limit: int = 50, key: str | None = None
          ) -> list[dict[str, Any]]:
    params = {"embedding_set_key": set_key, "limit": limit}
    return api(server, "GET", "/api/v1/recommendations", key, params=params).json()["items"]


def ready_map(server: Any, set_key: str, timeout: float = 180) -> dict[str, Any]:
    """The map once computed (the first call may queue it: 202, poll)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = api(server, "GET", "/api/v1/map", params={"embedding_set_key": set_key})
        if answer.status_code == 200:
            return answer.json()
        assert answer.status_code == 202, answer.text
        assert time.monotonic() < deadline, f"the map of {set_key} was not ready in {timeout} s"
        time.sleep(1)


def row_ids(page: Page) -> list[tuple[str, str]]:
    rows = page.locator("[data-testid=queue-row]")
    return [(r.get_attribute("data-dataset") or "", r.get_attribute("data-id") or "")
            for r in rows.all()]


def open_queue(page: Page, server: Any, set_key: str) -> None:
    page.goto(f"{base_url(server)}/ui/queue?set={set_key}")
    page.wait_for_selector("[data-testid=queue-row]")


def shoot(page: Page, directory: Any, name: str) -> None:
    page.screenshot(path=str(directory / f"{name}.png"), full_page=False)
