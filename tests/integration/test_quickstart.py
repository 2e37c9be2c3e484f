"""The README's quickstart runs against a whole ``chroma run``, twice, with the same result."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.system import System

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    """Its own embedded PostgreSQL and data directory: the counts are the quickstart's only.

    Not under pytest's tmp dirs: as root the server runs as its own OS user, and pytest
    makes its directory private to root again whenever any pytest starts.
    """
    root = Path(tempfile.mkdtemp(prefix="chroma-quickstart-"))
    root.chmod(0o755)
    chroma = System(root / "data", {"CHROMA_WORKER_POLL_S": "0.2"}, tmp_path / "run.log",
                    free_port())
    chroma.start()
    yield chroma
    chroma.stop()
    shutil.rmtree(root, ignore_errors=True)


def run_quickstart(url: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, str(QUICKSTART), url],
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_quickstart_twice_keeps_its_counts_and_shows_the_queue(system: System) -> None:
    first = run_quickstart(system.url)
    second = run_quickstart(system.url)  # fixed ids: the same records again, an upsert
    for done in (first, second):
        assert "dataset quickstart-train     training   3000 records" in done.stdout
        assert "dataset quickstart-prod      production 500 records" in done.stdout
        assert "training=3000 production=500" in done.stdout
        # The queue's best are the 50 records logged "from somewhere new" (req-450 on).
        top = re.findall(r"^  req-(\d+) +score=", done.stdout, re.M)
        assert len(top) == 5 and all(int(i) >= 450 for i in top), done.stdout
        assert re.search(rf"^nearest to req-{top[0]}: train-\d+ ", done.stdout, re.M)
    # The README promises a progress bar for the training upload (three batches).
    assert "log quickstart-train: 100%" in first.stderr and "3000/3000" in first.stderr
    counts = system.get("/api/v1/embeddingsets")["data"][0]["counts"]
    assert counts == {"training": 3000, "production": 500}
