"""The web app's files at ``/ui/``: the page for every app route, hashed assets cached for
good and missing ones a 404, ``/`` redirected, open without a key while the API is not,
the security headers, and a page that says so when the app was never built."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chroma.api.app import create_app
from chroma.api.webapp import IMMUTABLE, REVALIDATE, UI_DIR
from chroma.settings import Settings

KEY = "k" * 40
INDEX = "<!doctype html><title>Chroma</title><script src='/ui/assets/app-1a2b3c.js'></script>"
SCRIPT = "console.log('chroma');\n" * 200


@pytest.fixture
def built(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(INDEX)
    (tmp_path / "assets" / "app-1a2b3c.js").write_text(SCRIPT)
    (tmp_path / "favicon.svg").write_text("<svg/>")
    return tmp_path


def _client(ui_dir: Path, **settings: str) -> TestClient:
    # No `with`: the lifespan (catalog, store) is not needed to serve files.
    return TestClient(create_app(Settings(**settings), ui_dir=ui_dir), follow_redirects=False)


@pytest.mark.parametrize("path", ["/ui/", "/ui/queue", "/ui/record/train/img_001.png",
                                  "/ui/map?set=abc", "/ui/a/b/c/"])
def test_every_app_route_answers_the_page_revalidated(built: Path, path: str) -> None:
    answer = _client(built).get(path)
    assert answer.status_code == 200
    assert answer.text == INDEX
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["cache-control"] == REVALIDATE
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_hashed_assets_are_immutable_and_compressed(built: Path) -> None:
    client = _client(built)
    answer = client.get("/ui/assets/app-1a2b3c.js", headers={"Accept-Encoding": "gzip"})
    assert answer.status_code == 200 and answer.text == SCRIPT
    assert answer.headers["cache-control"] == IMMUTABLE
    assert answer.headers["content-type"].startswith(("text/javascript",
                                                      "application/javascript"))
    assert answer.headers["content-encoding"] == "gzip"
    raw = client.get("/ui/assets/app-1a2b3c.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers and raw.text == SCRIPT
    assert len(gzip.compress(SCRIPT.encode())) < len(SCRIPT)
    other = client.get("/ui/favicon.svg")
    assert other.status_code == 200 and other.headers["cache-control"] == REVALIDATE


def test_a_missing_asset_is_a_404_not_the_page(built: Path) -> None:
    answer = _client(built).get("/ui/assets/app-000000.js")
    assert answer.status_code == 404
    assert INDEX not in answer.text


def test_root_redirects_to_the_app(built: Path) -> None:
    client = _client(built)
    root = client.get("/")
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    bare = client.get("/ui")
    assert bare.status_code in (307, 308) and bare.headers["location"].endswith("/ui/")


def test_nothing_outside_the_build_is_served(built: Path, tmp_path_factory: pytest.TempPathFactory
                                             ) -> None:
    secret = built.parent / "secret.txt"
    secret.write_text("not for the web")
    client = _client(built)
    for path in ("/ui/../secret.txt", "/ui/%2e%2e/secret.txt", "/ui/assets/../../secret.txt"):
        answer = client.get(path)
        assert "not for the web" not in answer.text, path


def test_the_files_are_open_with_keys_on_but_the_api_is_not(built: Path) -> None:
    client = _client(built, api_keys=f"read {KEY}")
    assert client.get("/ui/").status_code == 200
    assert client.get("/ui/assets/app-1a2b3c.js").status_code == 200
    assert client.get("/").status_code == 307
    refused = client.get("/api/v1/map", params={"embedding_set_key": "abc"})
    assert refused.status_code == 401
    assert client.get("/api/v1/datasets/d/records/r").status_code == 401


def test_only_reads_are_answered(built: Path) -> None:
    assert _client(built).post("/ui/", content=b"x").status_code == 405


def test_without_a_build_a_page_says_how_to_build_it(tmp_path: Path) -> None:
    answer = _client(tmp_path / "never-built").get("/ui/")
    assert answer.status_code == 200
    assert "not built" in answer.text and "npm run build" in answer.text


def test_the_build_ships_in_the_package() -> None:
    """The pyproject's package data covers every file of the build (the image installs
    the package, not the checkout)."""
    import tomllib

    repo = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((repo / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["chroma.api"]
    package = repo / "components" / "chroma" / "api"
    assert package / "static" / "ui" == UI_DIR
    shipped = {p for pattern in patterns for p in package.glob(pattern) if p.is_file()}
    built = {p for p in UI_DIR.rglob("*") if p.is_file()}
    assert built <= shipped
