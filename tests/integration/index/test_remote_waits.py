"""The remote backend's waits on the server's optimizers: grey is woken, every wait bounded.

The faults come from ``qdrant_faults`` (test doubles of a server's faults around the
server ``conftest.remote_server`` picks).
"""

from __future__ import annotations

import time

import pytest
from conftest import RemoteServer
from index_data import gaussian_mixture, make_records
from qdrant_faults import NeverGreen, RestartMidBuild

from chroma.errors import Unavailable

pytestmark = pytest.mark.integration

KEY = "waits"
DIMENSION = 8


def test_optimize_after_a_restart_triggers_the_pending_optimizations(
    qdrant_server: RemoteServer,
) -> None:
    faulty = RestartMidBuild(qdrant_server.connect(), lock=qdrant_server.lock, shared=True)
    engine = qdrant_server.open(wrap=lambda *_, **__: faulty, optimize_timeout_s=20)
    engine.ensure_collection(KEY, DIMENSION)
    engine.upsert(KEY, make_records(50, seed=1), gaussian_mixture(50, DIMENSION, seed=2))
    faulty.restart()
    started = time.monotonic()
    engine.optimize(KEY)
    assert faulty.triggers == 1
    assert time.monotonic() - started < 10  # yellow for a few polls, then green


def test_optimize_gives_up_after_its_bound_and_says_why(qdrant_server: RemoteServer) -> None:
    engine = qdrant_server.open(wrap=NeverGreen, optimize_timeout_s=1.0)
    engine.ensure_collection(KEY, DIMENSION)
    started = time.monotonic()
    with pytest.raises(Unavailable, match=r"still yellow .*optimize_timeout_s=1\b"):
        engine.optimize(KEY)
    assert time.monotonic() - started <= 1.5


def test_a_reindex_that_cannot_finish_is_dropped_and_the_old_version_stays(
    qdrant_server: RemoteServer,
) -> None:
    engine = qdrant_server.open(wrap=NeverGreen, optimize_timeout_s=0.5)
    first = engine.ensure_collection(KEY, DIMENSION)
    batch = (make_records(20, seed=1), gaussian_mixture(20, DIMENSION, seed=2))
    with pytest.raises(Unavailable, match="still yellow"):
        engine.reindex(KEY, DIMENSION, "cosine", [batch])
    assert engine.collection_info(KEY).version == first.version
