"""The browser tier: the web app in Debian's Chromium, driven by Playwright, against real
``chroma run`` servers seeded with scikit-learn's digits (``tests/browser/digits.py``).

Fixtures (all servers are started once per session and stopped at its end):

``seeded_server`` -> :class:`Seeded`
    ``chroma run`` without keys, seeded and settled: every production digit scored into
    the labelling queue, the index fresh, the map computed (``GET /api/v1/map`` answers
    200). Attributes: ``url`` (``http://127.0.0.1:<port>``), ``keys`` (None: auth off),
    ``key`` (None), ``embedding_set_key``, ``training_dataset``, ``production_dataset``,
    ``training_ids``, ``production_ids`` (inverted digits included), ``odd_ids`` (the
    inverted digits: unfamiliar inputs, expected at the top of the queue), ``labels`` and
    ``predicted`` (id -> class), ``system`` (the ``tests.integration.system.System``).
    Tests that change it (marking labelled, tags) must leave what others rely on: mark
    a few records, not the whole first page of every test's expectations.
``auth_server`` -> :class:`Seeded`
    The same with API keys on and a lighter seed (300 digits). ``key`` is a ``write``
    key (what a person labelling needs), ``keys`` maps ``"read" / "write" / "admin"`` to
    a key each, ``read_key`` / ``write_key`` / ``admin_key`` name them too.
``browser_page`` -> ``playwright.sync_api.Page``
    A fresh headless Chromium page (its own context: no session storage shared between
    tests), 1400x900. Console errors and uncaught page errors are collected in
    ``browser_page.errors`` (a list of str) for tests that want to assert none happened.
``screenshot_dir`` -> ``pathlib.Path``
    ``test-artifacts/screenshots/`` at the repository root (git-ignored), created.

Chromium: ``CHROMA_CHROMIUM`` or ``/usr/bin/chromium`` (Playwright never downloads a
browser here). ``scripts/test.sh`` installs Debian's ``chromium`` package when it is
missing and it can (root, apt-get); otherwise every test that needs ``browser_page``
is skipped, saying why. WebGL runs on SwiftShader (software), as on any headless CI box.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from chroma.client import Client
from chroma.keys import embedding_set_key
from tests.browser.digits import Digits, digits
from tests.conftest import _fresh_database, free_port
from tests.integration.system import System, wait_for

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("CHROMA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # tests may run as root, where Chromium's sandbox refuses to start
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",  # WebGL without a GPU
    "--ignore-gpu-blocklist",
]
VIEWPORT = {"width": 1400, "height": 900}
EMBEDDING_SET = {"model": "digits-pixels", "version": "1"}
TRAINING_DATASET = "digits-train"
PRODUCTION_DATASET = "digits-prod"
SETTLE_TIMEOUT_S = 600.0


def _browser_missing() -> str | None:
    """Why no browser test can run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (`make install` installs the dev extra)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(
            CHROMIUM):
        return (f"no Chromium at {CHROMIUM}: scripts/test.sh installs Debian's chromium "
                "package (needs root and apt-get), or set CHROMA_CHROMIUM")
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip, before any server starts, the tests that need a browser when there is none."""
    why = _browser_missing()
    if why is None:
        return
    for item in items:
        if "browser_page" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason=why))


@dataclass
class Seeded:
    """A running, settled, seeded ``chroma run`` (see the module docstring)."""

    system: System
    embedding_set_key: str
    training_ids: list[str]
    production_ids: list[str]
    odd_ids: list[str]
    labels: dict[str, str]
    predicted: dict[str, str]
    keys: dict[str, str] | None = None
    training_dataset: str = TRAINING_DATASET
    production_dataset: str = PRODUCTION_DATASET
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.system.url

    @property
    def key(self) -> str | None:
        return self.keys["write"] if self.keys else None

    @property
    def read_key(self) -> str | None:
        return self.keys["read"] if self.keys else None

    @property
    def write_key(self) -> str | None:
        return self.key

    @property
    def admin_key(self) -> str | None:
        return self.keys["admin"] if self.keys else None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}


def _start(tmp: Path, database_url: str, keys: dict[str, str] | None) -> System:
    env = {"CHROMA_DATABASE_URL": database_url, "CHROMA_OPERATION_LEASE_S": "10",
           "CHROMA_WORKER_POLL_S": "0.2", "CHROMA_INDEX_TRIGGER_DEBOUNCE_S": "0"}
    if keys:
        env["CHROMA_API_KEYS"] = ",".join(f"{scope} {key}" for scope, key in keys.items())
    system = System(tmp / "data", env, tmp / "run.log", free_port(),
                    api_key=keys["admin"] if keys else None)
    system.start()
    return system


def _seed(system: System, data: Digits, keys: dict[str, str] | None) -> Seeded:
    with Client(system.url, api_key=keys["write"] if keys else None, progress=False) as client:
        t, p = data.training, data.production
        client.log_many(t.embeddings, embedding_set=EMBEDDING_SET, dataset=TRAINING_DATASET,
                        split="training", ids=t.ids, input_uris=t.input_uris,
                        label_classes=t.labels, tags=t.tags)
        client.log_many(p.embeddings, embedding_set=EMBEDDING_SET, dataset=PRODUCTION_DATASET,
                        split="production", ids=p.ids, input_uris=p.input_uris,
                        inference_classes=p.predicted, scores=p.scores, tags=p.tags)
    seeded = Seeded(
        system=system, embedding_set_key=embedding_set_key(EMBEDDING_SET),
        training_ids=list(t.ids), production_ids=list(p.ids), odd_ids=list(data.odd_ids),
        labels=dict(zip(t.ids, t.labels, strict=True)),  # type: ignore[arg-type]
        predicted=dict(zip(p.ids, p.predicted, strict=True)),  # type: ignore[arg-type]
        keys=keys,
    )
    _settle(seeded)
    return seeded


def _settle(seeded: Seeded) -> None:
    """Until the queue holds every production record, the index is fresh and the map of
    this data is computed (asking for it queues it)."""
    system, key = seeded.system, seeded.embedding_set_key

    def queued() -> bool:
        page = httpx.get(f"{system.url}/api/v1/recommendations", headers=seeded.headers,
                         params={"embedding_set_key": key, "limit": 1}, timeout=30).json()
        return page.get("total") == len(seeded.production_ids)
    wait_for(queued, SETTLE_TIMEOUT_S, "every production digit in the labelling queue")
    system.wait_indexed(key, SETTLE_TIMEOUT_S)

    def mapped() -> bool:
        answer = httpx.get(f"{system.url}/api/v1/map", headers=seeded.headers,
                           params={"embedding_set_key": key, "limit": 1}, timeout=60)
        assert answer.status_code in (200, 202), answer.text
        return answer.status_code == 200
    wait_for(mapped, SETTLE_TIMEOUT_S, "the map of the digits")


@pytest.fixture(scope="session")
def seeded_server(postgres_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Seeded]:
    tmp = tmp_path_factory.mktemp("browser-seeded")
    with _fresh_database(postgres_admin_dsn) as database_url:
        system = _start(tmp, database_url, None)
        try:
            yield _seed(system, digits(), None)
        finally:
            system.stop()


@pytest.fixture(scope="session")
def auth_server(postgres_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Seeded]:
    import secrets

    keys = {scope: secrets.token_urlsafe(32) for scope in ("read", "write", "admin")}
    tmp = tmp_path_factory.mktemp("browser-auth")
    with _fresh_database(postgres_admin_dsn) as database_url:
        system = _start(tmp, database_url, keys)
        try:
            yield _seed(system, digits(200, 10, limit=300), keys)
        finally:
            system.stop()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def _chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(_chromium: Any) -> Iterator[Any]:
    context = _chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(f"console: {message.text}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.errors = errors  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        context.close()
