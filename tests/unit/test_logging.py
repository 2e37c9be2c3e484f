"""Logging: one line per event with the request id; a 500 logged once, a 422 not at all.

The app under test is our error handling (``RequestIdMiddleware`` and the handlers of
``chroma.api.errors``) around two routes of its own, served by a real uvicorn in a thread
with ``chroma.logs``' configuration, as ``chroma serve`` runs it: uvicorn's own error
logging is part of what is checked.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from chroma.api.errors import RequestIdMiddleware, install_error_handlers
from chroma.logs import configure_logging, logging_config
from tests.conftest import free_port


def failing_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/items/{n}")
    def item(n: int) -> dict[str, int]:
        return {"n": n}

    return app


def log_into(buffer: io.StringIO) -> None:
    """Point the configured root handler (the one chroma.logs made) at ``buffer``."""
    [handler] = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)
                 and h.filters]
    handler.setStream(buffer)


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    """These tests install chroma's logging configuration on the root logger; it is taken
    off again, with the httpx level. Left behind, its handler wrote to pytest's captured
    stderr, closed at the session's end, so every line logged at exit (the test
    PostgreSQL's stop) printed a "--- Logging error ---" traceback."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    httpx_level = logging.getLogger("httpx").level
    yield
    for handler in list(root.handlers):
        # pytest's own capture handlers come and go with each phase of a test.
        if handler not in handlers and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(httpx_level)


@pytest.fixture
def log() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def server(log: io.StringIO) -> Iterator[str]:
    """A uvicorn serving :func:`failing_app`, logging with chroma.logs' configuration."""
    port = free_port()
    config = uvicorn.Config(failing_app(), host="127.0.0.1", port=port,
                            log_config=logging_config(), access_log=False)
    log_into(log)  # uvicorn applied the configuration just now
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    while not served.started:  # a start-up wait, not a timing assertion
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    served.should_exit = True
    thread.join(30)


def lines_with(text: str, err: str) -> list[str]:
    return [line for line in err.splitlines() if text in line]


def test_a_500_is_logged_once_with_its_traceback_and_request_id(
        server: str, log: io.StringIO) -> None:
    answer = httpx.get(f"{server}/boom", headers={"X-Request-ID": "req-500"}, timeout=30)
    assert answer.status_code == 500
    assert answer.headers["X-Request-ID"] == "req-500"
    assert answer.json() == {"error": "internal_error", "request_id": "req-500",
                             "message": "internal error; see the server log"}
    err = log.getvalue()
    assert err.count("Traceback") == 1, err
    [line] = lines_with("req-500", err)
    assert " ERROR " in line and "RuntimeError: boom" in line and "Traceback" in line


def test_a_422_logs_no_traceback_and_names_its_request(server: str, log: io.StringIO) -> None:
    answer = httpx.get(f"{server}/items/abc", timeout=30)
    assert answer.status_code == 422
    rid = answer.headers["X-Request-ID"]
    assert answer.json()["request_id"] == rid and answer.json()["error"] == "invalid_input"
    assert "Traceback" not in log.getvalue() and rid not in log.getvalue()


def test_an_insane_client_request_id_is_replaced(server: str) -> None:
    answer = httpx.get(f"{server}/items/1", headers={"X-Request-ID": "a b\tc"}, timeout=30)
    assert answer.status_code == 200
    assert answer.headers["X-Request-ID"] != "a b\tc"


def test_json_lines_carry_the_same_fields(log: io.StringIO) -> None:
    configure_logging(fmt="json")
    log_into(log)
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("chroma.test").exception("failed\nover two lines")
    [line] = log.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "chroma.test"
    assert entry["request_id"] == "-" and "ValueError: bad" in entry["exc_info"]
    configure_logging()
