"""The map page in a real browser: every point drawn, and a box selection that lists
exactly the records the API's coordinates put inside the box."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from playwright.sync_api import Page, expect

from tests.browser.pages import base_url, production_set, ready_map, shoot

EDGE_GAP_PX = 1.5  # no point this close to the box's edges: inside or out is unambiguous


def _pixels(points: dict[str, list[Any]], view: dict[str, float], box: dict[str, float]
            ) -> list[tuple[float, float]]:
    """Page pixel of every point from the data range the page shows at its edges."""
    sx = box["width"] / (view["x1"] - view["x0"])
    sy = box["height"] / (view["y1"] - view["y0"])
    return [(box["x"] + (x - view["x0"]) * sx, box["y"] + (y - view["y0"]) * sy)
            for x, y in zip(points["x"], points["y"], strict=True)]


def _clear_box(pixels: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    """A box over part of the cloud with no point within EDGE_GAP_PX of its edges, holding
    between 1 and 300 points (seeded search: the same box every run)."""
    rng = np.random.default_rng(16)
    xy = np.asarray(pixels)
    x, y = xy[:, 0], xy[:, 1]
    x_lo, x_hi = np.quantile(x, [0.1, 0.9])
    y_lo, y_hi = np.quantile(y, [0.1, 0.9])
    gap = EDGE_GAP_PX
    for _ in range(20_000):
        width, height = rng.uniform(12, 120, 2)
        left = rng.uniform(x_lo, max(x_lo, x_hi - width))
        top = rng.uniform(y_lo, max(y_lo, y_hi - height))
        right, bottom = left + width, top + height
        band_x = (y >= top - gap) & (y <= bottom + gap)
        band_y = (x >= left - gap) & (x <= right + gap)
        near = (band_x & ((np.abs(x - left) < gap) | (np.abs(x - right) < gap))) | (
            band_y & ((np.abs(y - top) < gap) | (np.abs(y - bottom) < gap)))
        if near.any():
            continue
        inside = int(((x > left) & (x < right) & (y > top) & (y < bottom)).sum())
        if 1 <= inside <= 300:
            return float(left), float(top), float(right), float(bottom)
    raise AssertionError("found no box with clear edges")


def test_map_draws_every_point_and_a_box_selects_exactly_the_points_inside(
    seeded_server: Any, browser_page: Page, screenshot_dir: Any
) -> None:
    set_key = production_set(seeded_server)
    answer = ready_map(seeded_server, set_key)
    points = answer["points"]
    page = browser_page
    page.goto(f"{base_url(seeded_server)}/ui/map?set={set_key}")
    scatter = page.locator("[data-testid=scatter]")
    expect(scatter).to_have_attribute("data-point-count", str(answer["count"]), timeout=60_000)
    assert answer["count"] == len(points["id"]) > 0
    expect(scatter).not_to_have_attribute("data-view", "")
    view = json.loads(scatter.get_attribute("data-view") or "{}")
    canvas = scatter.locator("canvas").bounding_box()
    assert canvas is not None
    pixels = _pixels(points, view, canvas)

    left, top, right, bottom = _clear_box(pixels)
    inside = {(points["dataset"][i], points["id"][i]) for i, (x, y) in enumerate(pixels)
              if left < x < right and top < y < bottom}
    assert 0 < len(inside) <= 500, len(inside)  # the page lists up to 500

    page.click("[data-testid=mode-box]")
    page.mouse.move(left, top)
    page.mouse.down()
    page.mouse.move((left + right) / 2, (top + bottom) / 2, steps=4)
    page.mouse.move(right, bottom, steps=4)
    page.mouse.up()
    expect(page.locator("[data-testid=selection-count]")).to_have_text(str(len(inside)))
    listed = {(li.get_attribute("data-dataset"), li.get_attribute("data-id"))
              for li in page.locator("[data-testid=selected-id]").all()}
    assert listed == inside
    assert not page.errors  # type: ignore[attr-defined]
    shoot(page, screenshot_dir, "map")

    # The production records of the selection open in the queue page.
    production = {p for p in inside
                  if points["split"][points["id"].index(p[1])] == "production"}
    if production:
        page.click("[data-testid=open-in-queue]")
        expect(page.locator("[data-testid=queue-total]")).to_contain_text("selected on the map")
        shown = {(r.get_attribute("data-dataset"), r.get_attribute("data-id"))
                 for r in page.locator("[data-testid=queue-row]").all()}
        assert shown <= production
