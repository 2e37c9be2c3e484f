"""The record page in a real browser: the nearest training records are POST /query's."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.pages import api, base_url, production_set, queue, shoot


def test_record_page_shows_the_nearest_training_records(
    seeded_server: Any, browser_page: Page, screenshot_dir: Any
) -> None:
    set_key = production_set(seeded_server)
    top = queue(seeded_server, set_key, 1)[0]
    hits = api(seeded_server, "POST", "/api/v1/query", json={
        "embedding_set_key": set_key, "record_id": top["id"], "dataset": top["dataset"],
        "k": 12, "filter": {"split": "training"}}).json()["results"][0]["neighbours"]
    assert hits
    page = browser_page
    page.goto(f"{base_url(seeded_server)}/ui/record/{top['dataset']}/{top['id']}?set={set_key}")
    neighbours = page.locator("[data-testid=neighbour]")
    expect(neighbours).to_have_count(len(hits))
    assert [(n.get_attribute("data-dataset"), n.get_attribute("data-id"))
            for n in neighbours.all()] == [(h["dataset"], h["id"]) for h in hits]
    # Each neighbour shows its label.
    for item, hit in zip(neighbours.all(), hits, strict=True):
        expect(item).to_contain_text(f"label {hit['payload'].get('label_class') or '—'}")
    expect(page.locator("[data-testid=signals]")).to_contain_text(top["verdict"])
    page.wait_for_selector("[data-testid=scatter][data-point-count]:not([data-point-count='0'])",
                           timeout=60_000)
    shoot(page, screenshot_dir, "record")


def test_tags_added_on_the_record_page_reach_the_api(
    seeded_server: Any, browser_page: Page
) -> None:
    set_key = production_set(seeded_server)
    top = queue(seeded_server, set_key, 1)[0]
    page = browser_page
    page.goto(f"{base_url(seeded_server)}/ui/record/{top['dataset']}/{top['id']}?set={set_key}")
    page.fill("[data-testid=tags] input", "looked-at")
    page.click("[data-testid=tags] button[type=submit]")
    expect(page.locator("[data-testid=tags] .chip")).to_contain_text(["looked-at"])
    record = api(seeded_server, "GET",
                 f"/api/v1/datasets/{top['dataset']}/records/{top['id']}").json()
    assert "looked-at" in record["tags"]
