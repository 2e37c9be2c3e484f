"""Processes a benchmark drives: ``chroma run`` started in a work folder and returned once
every component is up (the benches that time a whole system), and :class:`LineChild`, a
helper process spoken to one line at a time (peers in their own virtualenv, a checkout's
code under test)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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


class LineChild:
    """A helper process that answers each command line on its stdin with one JSON line."""

    def __init__(self, name: str, argv: Sequence[str],
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(list(argv), env=None if env is None else dict(env),
                                     text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: the child ended (exit {self.proc.wait()})")
        return dict(json.loads(line))

    def close(self, timeout_s: float = 120) -> None:
        """End of input, then wait for the child to finish."""
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout_s)
