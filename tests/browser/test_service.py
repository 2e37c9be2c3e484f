"""The service page in a real browser: the components and sets /api/v1/status reports."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.pages import api, base_url, shoot


def test_service_page_lists_components_and_freshness(
    seeded_server: Any, browser_page: Page, screenshot_dir: Any
) -> None:
    status = api(seeded_server, "GET", "/api/v1/status").json()
    page = browser_page
    page.goto(f"{base_url(seeded_server)}/ui/service")
    components = page.locator("[data-testid=components] tbody tr")
    expect(components).to_have_count(len(status["components"]))
    names = [row.locator("td").first.inner_text() for row in components.all()]
    assert sorted(names) == sorted(c["name"] for c in status["components"])
    freshness = page.locator("[data-testid=freshness]")
    for entry in status["embedding_sets"]:
        expect(freshness).to_contain_text(entry["embedding_set_key"])
    expect(page.locator("[data-testid=operations] tbody tr").first).to_be_visible()
    shoot(page, screenshot_dir, "service")
