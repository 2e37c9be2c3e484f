"""A version newer than the live one is a build in progress, or what a dead builder left.

A graph build over 1M points leaves ~1 GiB; with the build in a background thread of the
workers, a restart mid-build left one at each restart, and ``drop_old_versions`` only
removed older versions. Now each version names its builder (``chroma.index._claims``),
and a newer version is removed once that process is gone, never while it lives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from index_data import gaussian_mixture, make_records

from chroma.index import IndexConfig, open_query_engine
from chroma.index._claims import claim_path, orphaned

pytestmark = pytest.mark.integration

KEY = "claims"
DIM = 8

# A builder that writes one batch of a new version, then waits (for a signal) with the
# build unfinished: the new version's directory exists, the pointer is not moved.
_BUILDER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from index_data import gaussian_mixture, make_records
from chroma.index import IndexConfig, open_query_engine

records, vectors = make_records(50, seed=7), gaussian_mixture(50, {dim}, seed=7)

def batches():
    yield records, vectors
    Path({ready!r}).touch()
    time.sleep(600)

with open_query_engine(IndexConfig(backend="edge", path=Path({root!r}))) as engine:
    engine.reindex({key!r}, {dim}, "cosine", batches())
"""


def _start_builder(root: Path, ready: Path) -> subprocess.Popen[bytes]:
    script = _BUILDER.format(tests=str(Path(__file__).parent), dim=DIM, ready=str(ready),
                             root=str(root), key=KEY)
    return subprocess.Popen([sys.executable, "-c", script])


def _wait_for(ready: Path, builder: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert builder.poll() is None, "the builder ended before its build was under way"
        assert time.monotonic() < deadline, "the builder never got its build under way"
        time.sleep(0.02)


def test_a_version_left_by_a_dead_builder_is_dropped_and_one_being_built_is_kept(
    tmp_path: Path,
) -> None:
    root, ready = tmp_path / "index", tmp_path / "ready"
    records, vectors = make_records(40, seed=3), gaussian_mixture(40, DIM, seed=3)
    with open_query_engine(IndexConfig(backend="edge", path=root)) as engine:
        engine.reindex(KEY, DIM, "cosine", [(records, vectors)])
        builder = _start_builder(root, ready)
        try:
            _wait_for(ready, builder)
            building = root / KEY / "v000002"
            assert building.is_dir() and claim_path(building).exists()

            assert engine.drop_old_versions(KEY) == []  # its builder lives: kept
            assert building.is_dir() and not orphaned(building)
        finally:
            builder.send_signal(signal.SIGKILL)
            builder.wait(timeout=30)

        assert orphaned(building)
        assert engine.drop_old_versions(KEY) == [2]
        assert not building.exists() and not claim_path(building).exists()
        info = engine.collection_info(KEY)
        assert (info.version, info.points) == (1, 40)  # the live version untouched
        hits = engine.search(KEY, vectors[:1], 1)
        assert hits[0][0].record_id == records[0].record_id


def test_a_claim_is_the_builders_pid_and_start_time_so_a_reused_pid_is_not_taken_for_it(
    tmp_path: Path,
) -> None:
    version_dir = tmp_path / "v000003"
    version_dir.mkdir()
    assert not orphaned(version_dir)  # no claim: left alone
    claim_path(version_dir).write_text(f"{os.getpid()} 1\n")  # this pid, another start
    assert orphaned(version_dir)
    claim_path(version_dir).write_text("not a claim\n")
    assert not orphaned(version_dir)
