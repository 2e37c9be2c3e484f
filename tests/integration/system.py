"""A whole ``chroma run`` (API + workers) as a subprocess, for tests of the running system."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import CHROMA_BIN


@dataclass
class System:
    data_dir: Path
    env: dict[str, str]
    log_path: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [CHROMA_BIN, "run", "--port", str(self.port), "--data-dir", str(self.data_dir)],
            env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
        )
        wait_for(lambda: self._all_up(), 60, "every component up")

    def _all_up(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(self.log_path.read_text()[-3000:])
        try:
            components = self.status()["components"]
        except (httpx.TransportError, ValueError):
            return False
        return len(components) == 5 and all(c["state"] == "up" for c in components)

    def status(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/api/v1/status", timeout=10).json()

    def component(self, name: str) -> dict[str, Any]:
        return next(c for c in self.status()["components"] if c["name"] == name)

    def operation(self, op_id: int) -> dict[str, Any]:
        return httpx.get(f"{self.url}/api/v1/operations/{op_id}", timeout=10).json()

    def start_operation(self, kind: str, **params: Any) -> dict[str, Any]:
        answer = httpx.post(f"{self.url}/api/v1/operations", timeout=10,
                            json={"kind": kind, "params": params})
        assert answer.status_code in (200, 201), answer.text
        return answer.json()

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


