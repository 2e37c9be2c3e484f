"""``chroma run`` for a benchmark: started in a work folder, returned once every component
is up (the benches that time a whole system share this)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from chroma.control.embedded import WORKERS


def start_chroma_run(
    workdir: Path, port: int, *, chroma: Path | None = None,
    env: Mapping[str, str] | None = None, timeout_s: float = 180,
) -> subprocess.Popen[bytes]:
    """``chroma run`` on ``workdir/data`` (log in ``workdir/run.log``), of this interpreter's
    installation unless ``chroma`` names another, workers polling every 0.2 s, ``env`` on
    top; ``RuntimeError`` with the log's tail if it exits or is not up in ``timeout_s``."""
    chroma = chroma or Path(sys.executable).parent / "chroma"
    log = open(workdir / "run.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [str(chroma), "run", "--port", str(port), "--data-dir", str(workdir / "data")],
        env={**os.environ, "CHROMA_WORKER_POLL_S": "0.2", **(env or {})}, stdout=log,
        stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((workdir / "run.log").read_text()[-3000:])
        try:
            status = httpx.get(f"http://127.0.0.1:{port}/api/v1/status", timeout=5).json()
            up = {c["name"] for c in status["components"] if c["state"] == "up"}
            if up >= {"api", *WORKERS}:
                return proc
        except (httpx.TransportError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    raise RuntimeError("chroma run did not come up")
