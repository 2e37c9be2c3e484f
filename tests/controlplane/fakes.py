"""A stand-in for a cluster's Chroma API: the dataset calls the operator makes, over
real HTTP on loopback. Used by test_dataset.py and test_rbac.py."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .envtest import free_port


class FakeChromaApi:
    """Answers the two dataset calls the operator makes, and records them."""

    def __init__(self, allow_put: bool = True) -> None:
        self.allow_put = allow_put
        self.keys: set[str] | None = None
        """Bearer keys accepted; None (default) accepts calls without any (auth off)."""
        self.datasets: dict[str, dict[str, Any]] = {}
        self.puts: list[tuple[str, dict[str, Any]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _refused(self) -> bool:
                """401 as the real API answers a missing or unknown key (DESIGN §11)."""
                if fake.keys is None:
                    return False
                given = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                if given in fake.keys:
                    return False
                self._send(401, {"detail": "missing or unknown API key"})
                return True

            def do_GET(self) -> None:
                if self._refused():
                    return
                name = self.path.rsplit("/", 1)[-1]
                if self.path.startswith("/api/v1/datasets/") and name in fake.datasets:
                    self._send(200, fake.datasets[name])
                else:
                    self._send(404, {"detail": "no such dataset"})

            def do_PUT(self) -> None:
                if self._refused():
                    return
                if not fake.allow_put:
                    self._send(405, {"detail": "Method Not Allowed"})
                    return
                name = self.path.rsplit("/", 1)[-1]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.puts.append((name, body))
                fake.datasets.setdefault(
                    name,
                    {
                        "name": name,
                        "split": body["split"],
                        "embedding_set_key": "e" * 40,
                        "record_count": 0,
                        "retention_days": body.get("retention_days"),
                        "last_log": None,
                    },
                )
                self._send(200, fake.datasets[name])

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
