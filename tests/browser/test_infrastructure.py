"""The browser tier's own footing: Chromium starts with WebGL, the app is served to it,
and the seeded digits are realistic (the inverted ones top the queue, the map holds
every record)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.browser.conftest import Seeded

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_chromium_loads_the_app_with_webgl(seeded_server: Seeded, browser_page: Any) -> None:
    answer = browser_page.goto(f"{seeded_server.url}/")
    assert answer is not None and answer.ok
    assert browser_page.url == f"{seeded_server.url}/ui/"
    assert browser_page.evaluate(
        "() => !!document.createElement('canvas').getContext('webgl2')")


def test_the_seed_is_settled_and_its_unfamiliar_digits_lead_the_queue(
    seeded_server: Seeded,
) -> None:
    url, key = seeded_server.url, seeded_server.embedding_set_key
    top = httpx.get(f"{url}/api/v1/recommendations", timeout=30,
                    params={"embedding_set_key": key, "limit": 40}).json()["items"]
    odd = set(seeded_server.odd_ids)
    assert sum(item["id"] in odd for item in top) >= 30, [i["id"] for i in top]
    assert all(item["input_uri"].startswith("data:image/png;base64,") for item in top)
    full = httpx.get(f"{url}/api/v1/map", params={"embedding_set_key": key}, timeout=60)
    assert full.status_code == 200
    assert set(full.json()["points"]["id"]) == (set(seeded_server.training_ids)
                                                | set(seeded_server.production_ids))


def test_the_auth_server_refuses_without_its_key(auth_server: Seeded) -> None:
    url = f"{auth_server.url}/api/v1/status"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers=auth_server.headers, timeout=10).status_code == 200
    assert httpx.get(f"{auth_server.url}/ui/", timeout=10).status_code == 200
