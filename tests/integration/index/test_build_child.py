"""The child that builds an Edge version's HNSW graph dies with the process that started it.

Stopping or killing a worker mid-build used to leave ``python -m chroma.index._hnsw_build``
running under init, still writing into a shard directory the next start opens again
(seen by the web-app engineer after SIGTERM of ``chroma run``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from children import hnsw_builders

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux")

# Enough points that the graph build runs for seconds on our 2 cores.
PARENT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from chroma.index import open_query_engine
    from chroma.index.config import IndexConfig
    from integration.index.index_data import gaussian_mixture, make_records
    engine = open_query_engine(IndexConfig(backend="edge", path={path!r}))
    n = 60_000
    engine.reindex("k" * 40, 96, "cosine", [(make_records(n, 1), gaussian_mixture(n, 96, 1))])
    print("built", flush=True)
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_parent_takes_its_graph_builder_with_it(tmp_path: Path) -> None:
    tests = str(Path(__file__).resolve().parents[2])
    script = PARENT.format(tests=tests, path=str(tmp_path / "edge"))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        builders: list[int] = []
        while not builders:
            assert parent.poll() is None, "the parent ended before its graph build started"
            assert time.monotonic() < deadline, "no graph builder started in 300 s"
            time.sleep(0.05)
            builders = hnsw_builders(parent.pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in builders) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = [pid for pid in builders if _alive(pid)]
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
        assert not survivors, f"graph builder(s) {survivors} outlived their parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
