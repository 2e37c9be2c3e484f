"""The queue page in a real browser: the API's order, marking labelled, keyboard."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.pages import api, base_url, open_queue, production_set, queue, row_ids, shoot

# How the page names each signal (web/src/signals.ts): the words a labeller reads.
PHRASES = {
    "mhb_predicted": "far from its predicted class",
    "mhb_nearest": "far from every class",
    "mhb_relative": "unlike the training data as a whole",
    "knn_distance": "few similar training records nearby",
    "entropy": "the model is unsure",
    "low_margin": "uncertain: margin",
    "disagreement": "its neighbours disagree with the prediction",
}


def _expected_reasons(item: dict[str, Any]) -> list[str]:
    """The signals at least p80 among training, strongest first, at most three."""
    strong = [(name, level) for name, level in item["signals"].items()
              if level is not None and level >= 0.8]
    strong.sort(key=lambda pair: -pair[1])  # stable, as the page's sort: ties keep API order
    return [PHRASES[name] for name, _ in strong[:3]]


def test_queue_shows_the_top_items_in_the_apis_order(
    seeded_server: Any, browser_page: Page, screenshot_dir: Any
) -> None:
    set_key = production_set(seeded_server)
    items = queue(seeded_server, set_key, 50)
    expected = [(item["dataset"], item["id"]) for item in items]
    assert expected, "the seeded set has an empty queue"
    open_queue(browser_page, seeded_server, set_key)
    expect(browser_page.locator("[data-testid=queue-row]")).to_have_count(len(expected))
    assert row_ids(browser_page) == expected
    # Each row says why in words (its strong signals, strongest first) and shows its
    # thumbnail as a lazy image.
    rows = browser_page.locator("[data-testid=queue-row]").all()
    for row, item in list(zip(rows, items, strict=True))[:10]:
        reasons = _expected_reasons(item)
        text = row.locator("td.why").inner_text()
        if reasons:
            positions = [text.find(phrase) for phrase in reasons]
            assert -1 not in positions and positions == sorted(positions), (text, reasons)
        else:
            assert text.startswith("nothing stands out"), text
    assert rows[0].locator("img.thumb").get_attribute("loading") == "lazy"
    assert not browser_page.errors  # type: ignore[attr-defined]
    shoot(browser_page, screenshot_dir, "queue")


def test_marking_rows_labelled_removes_them_here_and_in_the_api(
    seeded_server: Any, browser_page: Page
) -> None:
    set_key = production_set(seeded_server)
    open_queue(browser_page, seeded_server, set_key)
    before = row_ids(browser_page)
    boxes = browser_page.locator("[data-testid=queue-row] input[type=checkbox]")
    boxes.nth(0).click()
    boxes.nth(2).click(modifiers=["Shift"])  # a range: rows 1 to 3
    marked = before[:3]
    browser_page.click("[data-testid=mark-labelled]")
    expect(browser_page.locator("[data-testid=notice]")).to_contain_text(
        "Marked 3 records labelled")
    expect(browser_page.locator("[data-testid=queue-row]").first).not_to_have_attribute(
        "data-id", marked[0][1])
    shown = row_ids(browser_page)
    assert not set(marked) & set(shown)
    assert shown[: len(before) - 3] == before[3:]
    remaining = {(i["dataset"], i["id"]) for i in queue(seeded_server, set_key, 1000)}
    assert not set(marked) & remaining


def test_keyboard_moves_selects_and_opens(seeded_server: Any, browser_page: Page) -> None:
    set_key = production_set(seeded_server)
    open_queue(browser_page, seeded_server, set_key)
    ids = row_ids(browser_page)
    browser_page.keyboard.press("j")
    browser_page.keyboard.press("x")
    rows = browser_page.locator("[data-testid=queue-row]")
    expect(rows.nth(1)).to_have_class("focus selected")
    expect(browser_page.locator("[data-testid=mark-labelled]")).to_have_text("Mark 1 labelled")
    browser_page.keyboard.press("k")
    browser_page.keyboard.press("Enter")
    expect(browser_page.locator("[data-testid=record] h2")).to_have_text(ids[0][1])
    assert browser_page.url.startswith(f"{base_url(seeded_server)}/ui/record/")


def test_paging_forward_and_back_follows_the_apis_cursor(
    seeded_server: Any, browser_page: Page
) -> None:
    set_key = production_set(seeded_server)
    first = api(seeded_server, "GET", "/api/v1/recommendations",
                params={"embedding_set_key": set_key, "limit": 50}).json()
    assert first["next_cursor"], "the seeded queue should hold more than one page"
    second = api(seeded_server, "GET", "/api/v1/recommendations", params={
        "embedding_set_key": set_key, "limit": 50, "cursor": first["next_cursor"]}).json()
    open_queue(browser_page, seeded_server, set_key)
    browser_page.click("[data-testid=next]")
    expect(browser_page.locator("[data-testid=queue-row]").first).to_have_attribute(
        "data-id", second["items"][0]["id"])
    assert row_ids(browser_page) == [(i["dataset"], i["id"]) for i in second["items"]]
    browser_page.click("[data-testid=prev]")
    expect(browser_page.locator("[data-testid=queue-row]").first).to_have_attribute(
        "data-id", first["items"][0]["id"])


def test_filters_and_diverse_ask_the_api_for_the_same_page(
    seeded_server: Any, browser_page: Page
) -> None:
    set_key = production_set(seeded_server)
    top = queue(seeded_server, set_key, 1)[0]
    predicted = top["inference_class"]
    assert predicted is not None, "the seeded production records carry a predicted class"
    expected = api(seeded_server, "GET", "/api/v1/recommendations", params={
        "embedding_set_key": set_key, "limit": 50, "inference_class": [predicted],
        "dataset": [top["dataset"]], "diverse": "true"}).json()["items"]
    open_queue(browser_page, seeded_server, set_key)
    page = browser_page
    page.select_option("form.filters select[name=dataset]", top["dataset"])
    page.fill("form.filters input[name=class]", predicted)
    page.check("form.filters input[name=diverse]")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**diverse=1**")
    want = [i["id"] for i in expected]
    page.wait_for_function(  # the filtered page replaced the unfiltered one
        "want => JSON.stringify([...document.querySelectorAll('[data-testid=queue-row]')]"
        ".map(r => r.dataset.id)) === JSON.stringify(want)", arg=want, timeout=15_000)
    assert row_ids(page) == [(i["dataset"], i["id"]) for i in expected]
    assert {r.locator("td").nth(5).inner_text() for r in
            page.locator("[data-testid=queue-row]").all()} == {predicted}
