"""``CHROMA_QDRANT_API_KEY`` is read as a secret and reaches the server on every request.

The "server" is a loopback HTTP stub that records request headers and answers only the
version probe (``GET /``); every other path is 404.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from pydantic import SecretStr

from chroma.errors import NotFound
from chroma.index import IndexConfig, open_query_engine
from chroma.settings import Settings

KEY = "qdrant-key-0123456789abcdef0123456789abcdef"
# qdrant-client warns that a key over plain http is readable on the wire; loopback here.
pytestmark = pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")


class RecordingQdrant(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str | None]] = []

    def _answer(self) -> None:
        self.seen.append((self.command, self.path, self.headers.get("api-key")))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path == "/":
            status, body = 200, {"title": "qdrant - vector search engine", "version": "1.19.0"}
        else:
            status, body = 404, {"status": {"error": "Not found: Collection doesn't exist"}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *_: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def qdrant_stub() -> Iterator[str]:
    RecordingQdrant.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordingQdrant)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_setting_is_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHROMA_QDRANT_API_KEY", KEY)
    settings = Settings()
    assert isinstance(settings.qdrant_api_key, SecretStr)
    assert settings.qdrant_api_key.get_secret_value() == KEY
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    assert Settings.model_fields["qdrant_api_key"].default is None


def test_the_key_is_sent_with_every_request_and_never_logged(
    qdrant_stub: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = IndexConfig(backend="remote", url=qdrant_stub, api_key=KEY, timeout_s=5)
    assert KEY not in repr(config)
    with caplog.at_level(logging.DEBUG), open_query_engine(config) as engine:
        with pytest.raises(NotFound):
            engine.count("some-key")
        with pytest.raises(NotFound):
            engine.search("some-key", np.zeros(4, np.float32), 3)
    methods_paths = [(method, path) for method, path, _ in RecordingQdrant.seen]
    assert methods_paths[0] == ("GET", "/")  # the version probe comes first
    assert len(methods_paths) >= 3
    assert {key for _, _, key in RecordingQdrant.seen} == {KEY}
    assert KEY not in caplog.text


def test_the_setting_reaches_the_index_config_and_not_its_repr() -> None:
    from chroma.index.hosting import index_config

    config = index_config(Settings(index_backend="remote", qdrant_url="http://127.0.0.1:1",
                                   qdrant_api_key=SecretStr(KEY)))
    assert config.api_key == KEY
    assert KEY not in repr(config)
    assert index_config(Settings(index_backend="remote",
                                 qdrant_url="http://127.0.0.1:1")).api_key is None
