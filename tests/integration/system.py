"""A whole ``chroma run`` (API + workers) as a subprocess, for tests of the running system."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from chroma.control.embedded import WORKERS
from tests.conftest import CHROMA_BIN

ALL_COMPONENTS = ("api", *WORKERS)


@dataclass
class System:
    """``chroma run`` as a subprocess with its own database and data directory."""

    data_dir: Path
    env: dict[str, str]
    log_path: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    api_key: str | None = None
    """Sent by the helpers below when the system has API keys on."""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, components: Sequence[str] = ALL_COMPONENTS, timeout: float = 180) -> None:
        """Start ``chroma run``; return once ``components`` report ``up`` in /status."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [CHROMA_BIN, "run", "--port", str(self.port), "--data-dir", str(self.data_dir)],
            env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal gives it
        )
        try:
            wait_for(lambda: self._up(components), timeout, f"{', '.join(components)} up")
        except BaseException:
            self.stop()  # a fixture that fails here never reaches its teardown
            raise

    def _up(self, names: Sequence[str]) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(self.log_path.read_text()[-3000:])
        try:
            components = {c["name"]: c for c in self.status()["components"]}
        except (httpx.TransportError, ValueError, KeyError):
            return False
        return all(components.get(n, {}).get("state") == "up" for n in names)

    def get(self, path: str, **params: Any) -> Any:
        return httpx.get(f"{self.url}{path}", params=params, headers=self.headers,
                         timeout=30).json()

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, headers=self.headers, timeout=30)

    def status(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/api/v1/status", headers=self.headers, timeout=10).json()

    def component(self, name: str) -> dict[str, Any]:
        return next(c for c in self.status()["components"] if c["name"] == name)

    def operation(self, op_id: int) -> dict[str, Any]:
        return httpx.get(f"{self.url}/api/v1/operations/{op_id}", headers=self.headers,
                         timeout=10).json()

    def start_operation(self, kind: str, **params: Any) -> dict[str, Any]:
        answer = httpx.post(f"{self.url}/api/v1/operations", timeout=10, headers=self.headers,
                            json={"kind": kind, "params": params})
        assert answer.status_code in (200, 201), answer.text
        return answer.json()

    def index_status(self, key: str) -> dict[str, Any] | None:
        sets = self.status()["embedding_sets"]
        return next((s for s in sets if s["embedding_set_key"] == key), None)

    def wait_indexed(self, key: str, timeout: float = 60) -> dict[str, Any]:
        """Until ``/status`` says the index holds every change of ``key``."""
        wait_for(lambda: (s := self.index_status(key)) is not None and not s["stale"]
                 and s["index_version"] is not None, timeout, f"index of {key} fresh")
        status = self.index_status(key)
        assert status is not None
        return status

    def run_operation(self, kind: str, key: str, timeout: float = 90) -> dict[str, Any]:
        """Start ``kind`` for ``key`` and wait until it succeeded."""
        answer = self.post("/api/v1/operations", {"kind": kind, "embedding_set_key": key})
        assert answer.status_code in (200, 201), answer.text
        op_id = answer.json()["id"]
        wait_for(lambda: self.operation(op_id)["state"]
                 in ("succeeded", "failed", "cancelled"), timeout, f"{kind} #{op_id}")
        op = self.operation(op_id)
        assert op["state"] == "succeeded", op
        return op

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


def postmasters_of(data_dir: Path) -> list[int]:
    """Pids of PostgreSQL postmasters serving a data directory under ``data_dir`` (/proc)."""
    root = os.fsencode(data_dir.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if Path(os.fsdecode(argv[0])).name == "postgres" and any(
                arg.startswith(root) for arg in argv[1:]):
            found.append(int(entry.name))
    return found


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


