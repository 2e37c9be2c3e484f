"""API keys: parsing, hashing, reloading, the route table, the start-up refusal."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from chroma.api.app import create_app
from chroma.api.auth import (
    ROUTE_SCOPES,
    InsecureBind,
    InvalidKeys,
    KeyRing,
    Scope,
    check_startup,
    is_loopback,
    key_lines,
    parse_keys,
    template_of,
)
from chroma.api.docs import DOCS_PATHS
from chroma.errors import InvalidInput
from chroma.operations.kinds import validate_params
from chroma.settings import Settings

READ = "r" * 40
WRITE = "w" * 40
ADMIN = "a" * 40


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _served(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, template) the app answers but FastAPI's own documentation: schema
    routes, routes left out of the schema, and mounts (as ``<prefix>/{path:path}``)."""
    own_docs = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url,
                *DOCS_PATHS}
    served = set()
    for context in iter_route_contexts(app.routes):
        if context.path in own_docs:
            continue
        if isinstance(context.route, Mount):
            served.add(("GET", f"{context.path}/{{path:path}}"))
            continue
        served |= {(method, context.path) for method in context.methods or ()}
    return served


def test_every_route_of_the_app_has_a_scope_in_the_table() -> None:
    app = create_app()
    documented = {(method.upper(), path) for path, item in app.openapi()["paths"].items()
                  for method in item}
    assert documented <= _served(app)
    assert _served(app) == set(ROUTE_SCOPES), "add the route to chroma.api.auth.ROUTE_SCOPES"


def test_only_probes_and_the_web_apps_files_are_open() -> None:
    open_routes = {route for route, scope in ROUTE_SCOPES.items() if scope is None}
    assert open_routes == {("GET", "/health"), ("GET", "/ready"), ("GET", "/"),
                           ("GET", "/ui/{path:path}")}


@pytest.mark.parametrize(("method", "path", "template"), [
    ("POST", "/api/v1/datasets/d1/records/delete", "/api/v1/datasets/{name}/records/delete"),
    ("DELETE", "/api/v1/datasets/d1/records/delete", "/api/v1/datasets/{name}/records/{record_id}"),
    ("GET", "/api/v1/datasets/d1", "/api/v1/datasets/{name}"),
    ("GET", "/api/v1/datasets/d1/records", "/api/v1/datasets/{name}/records"),
    ("GET", "/api/v1/datasets/d1/other", None),
    ("GET", "/metrics", "/metrics"),
])
def test_request_paths_find_their_template(method: str, path: str, template: str | None) -> None:
    assert template_of(method, path) == template


def test_lines_comments_and_commas() -> None:
    keys = parse_keys(f"# ops team\n\nread {READ}\nwrite {WRITE}  # ci\n", source="f")
    assert len(keys) == 2
    assert keys.scope_of(READ) is Scope.read and keys.scope_of(WRITE) is Scope.write
    assert keys.scope_of(ADMIN) is None and keys.scope_of("") is None
    inline = parse_keys(f"read {READ}, admin {ADMIN}", source="env", commas=True)
    assert inline.scope_of(ADMIN) is Scope.admin


def test_keys_are_kept_as_digests_only() -> None:
    keys = parse_keys(f"admin {ADMIN}", source="f")
    assert ADMIN not in repr(keys) and ADMIN.encode() not in b"".join(d for d, _ in keys.digests)


@pytest.mark.parametrize(("text", "says"), [
    ("read short-key-123", "at least 32 characters (this one has 13)"),
    (f"reed {READ}", "the scope must be read, write or admin"),
    (READ, "expected '<scope> <key>' (2 words), got 1"),
    (f"read {READ} extra", "got 3"),
])
def test_a_bad_line_is_named_by_number_never_by_its_text(text: str, says: str) -> None:
    with pytest.raises(InvalidKeys) as info:
        parse_keys(f"# header\n{text}\n", source="keys.txt")
    message = str(info.value)
    assert message.startswith("keys.txt, line 2: ") and says in message
    assert "short-key-123" not in message and READ not in message


def test_settings_never_show_inline_keys() -> None:
    settings = Settings(api_keys=f"admin {ADMIN}")
    assert ADMIN not in repr(settings) and ADMIN not in str(settings.model_dump())


def test_a_changed_file_applies_after_the_recheck_interval(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"read {READ}\n")
    clock = Clock()
    ring = KeyRing(None, path, clock=clock)
    assert ring.enabled and ring.current().scope_of(READ) is Scope.read
    path.write_text(f"admin {ADMIN}\n")
    os.utime(path, ns=(1, 1))  # a different stamp even on a coarse clock
    assert ring.current().scope_of(READ) is Scope.read  # not looked at yet
    clock.now += 1.0
    assert ring.current().scope_of(READ) is None
    assert ring.current().scope_of(ADMIN) is Scope.admin


def test_a_broken_file_keeps_the_last_good_keys_and_warns_without_the_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys"
    path.write_text(f"write {WRITE}\n")
    clock = Clock()
    ring = KeyRing(None, path, clock=clock)
    path.write_text(f"write {WRITE}\nadmin tooshort-secret\n")
    clock.now += 5
    with caplog.at_level(logging.WARNING, logger="chroma.api.auth"):
        assert ring.current().scope_of(WRITE) is Scope.write
    assert "line 2" in caplog.text and "tooshort-secret" not in caplog.text
    path.unlink()
    clock.now += 5
    assert ring.current().scope_of(WRITE) is Scope.write  # a deleted file locks no one out


def test_inline_and_file_keys_add_up(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"read {READ}\n")
    ring = KeyRing(f"admin {ADMIN}", path)
    assert ring.current().scope_of(READ) is Scope.read
    assert ring.current().scope_of(ADMIN) is Scope.admin


def test_no_keys_means_open_only_when_nothing_is_configured(tmp_path: Path) -> None:
    assert not KeyRing(None, None).enabled
    assert not KeyRing("  ", None).enabled
    empty = tmp_path / "keys"
    empty.write_text("# all revoked\n")
    assert KeyRing(None, empty).enabled  # an empty file refuses everyone, never opens up


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("10.1.2.3", False),
    ("chroma.example", False),
])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_reachable_address_without_keys_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(InsecureBind) as info:
        check_startup(Settings(host="0.0.0.0"))
    assert "--insecure" in str(info.value) and "CHROMA_API_KEYS_FILE" in str(info.value)
    check_startup(Settings(host="0.0.0.0", insecure=True))
    check_startup(Settings(host="127.0.0.1"))
    check_startup(Settings(host="0.0.0.0", api_keys=f"read {READ}"))
    with pytest.raises(InvalidKeys):
        check_startup(Settings(host="127.0.0.1", api_keys="read tooshort"))
    with pytest.raises(InvalidKeys, match="cannot read the API keys file"):
        check_startup(Settings(api_keys_file=tmp_path / "missing"))


def test_new_keys_are_long_random_lines() -> None:
    first, second = key_lines([Scope.write, Scope.write])
    assert first.startswith("write ") and first != second
    assert parse_keys(first, source="new").scope_of(first.split()[1]) is Scope.write


@pytest.mark.parametrize(("kind", "params"), [
    ("compact", {"grace_s": 0}),
    ("compact", {"grace_s": 59.9}),
    ("sleep", {"seconds": 3601}),
    ("sleep", {"seconds": -1}),
])
def test_operation_params_out_of_range_are_refused(kind: str, params: dict) -> None:
    with pytest.raises(InvalidInput):
        validate_params(kind, params)


def test_operation_params_in_range_pass() -> None:
    validate_params("compact", {"grace_s": 60})
    validate_params("sleep", {"seconds": 3600})


def test_a_proxy_prefix_is_not_part_of_the_route_path() -> None:
    from starlette.requests import Request

    from chroma.api.auth import _route_path

    behind = Request({"type": "http", "path": "/chroma/api/v1/status", "root_path": "/chroma"})
    assert _route_path(behind) == "/api/v1/status"
    direct = Request({"type": "http", "path": "/api/v1/status", "root_path": ""})
    assert _route_path(direct) == "/api/v1/status"
