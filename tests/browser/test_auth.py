"""The app with API keys on, in a real browser: no key -> the key prompt, a wrong key -> a
clear message, the right key -> the queue; the key stays out of every URL."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.pages import base_url, shoot


def _key(server: Any) -> str:
    for name in ("key", "api_key", "admin_key", "write_key"):
        if isinstance(getattr(server, name, None), str):
            return str(getattr(server, name))
    raise AssertionError(f"the auth_server fixture names no key: {server!r}")


def test_no_key_prompts_wrong_key_is_refused_right_key_opens_the_queue(
    auth_server: Any, browser_page: Page, screenshot_dir: Any
) -> None:
    page = browser_page
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{base_url(auth_server)}/ui/")
    prompt = page.locator("[data-testid=key-prompt]")
    expect(prompt).to_be_visible()
    shoot(page, screenshot_dir, "key-prompt")

    page.fill("[data-testid=key-prompt] input", "not-the-key-" + "x" * 40)
    page.click("[data-testid=key-prompt] button")
    expect(page.locator("[data-testid=key-error]")).to_contain_text("did not accept this key")
    expect(prompt).to_be_visible()

    key = _key(auth_server)
    page.fill("[data-testid=key-prompt] input", key)
    page.click("[data-testid=key-prompt] button")
    expect(prompt).to_be_hidden()
    expect(page.locator("[data-testid=queue-table]")).to_be_visible()
    page.wait_for_selector("[data-testid=queue-total]")
    assert page.evaluate("sessionStorage.getItem('chroma.apiKey')") == key
    assert not [url for url in requests if key in url]


def test_a_read_key_may_look_but_marking_labelled_says_which_scope_it_lacks(
    auth_server: Any, browser_page: Page
) -> None:
    page = browser_page
    page.goto(f"{base_url(auth_server)}/ui/")
    page.fill("[data-testid=key-prompt] input", auth_server.read_key)
    page.click("[data-testid=key-prompt] button")
    page.wait_for_selector("[data-testid=queue-row]")
    first = page.locator("[data-testid=queue-row]").first
    first.locator("input[type=checkbox]").click()
    page.click("[data-testid=mark-labelled]")
    expect(page.locator("[data-testid=notice]")).to_have_text("This key lacks the write scope.")
    expect(page.locator("[data-testid=key-prompt]")).to_be_hidden()
