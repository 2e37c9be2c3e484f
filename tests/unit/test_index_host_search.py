"""A search through a real index host on a unix socket: what the reader asks reaches the
engine (``hnsw_ef``, ``k``, the overfetch only while hits must be checked), and the hits
come back as the engine answered them.

The host and the reader are the real ones; the engine is a recorder (this is about the
socket's verbs, not about HNSW: ``tests/integration/index/test_index_edge.py`` checks
that Edge honours ``hnsw_ef``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chroma.index.hosting.host import IndexHost
from chroma.index.hosting.reader import HostedReader, search_checked


class RecordingEngine:
    """Answers every query row with one hit naming the call, and remembers each call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def search_stored(self, key: str, queries: np.ndarray, k: int = 10, filter: Any = None,
                      *, hnsw_ef: int | None = None) -> list[list[tuple[float, dict]]]:
        self.calls.append({"key": key, "rows": len(queries), "k": k, "hnsw_ef": hnsw_ef})
        return [[(0.25, {"dataset": "d", "record_id": f"r{i}", "split": "training"})]
                for i in range(len(queries))]

    def close(self) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RecordingEngine, HostedReader, IndexHost]]:
    engine = RecordingEngine()
    path = Path("/tmp") / f"chroma-test-{tmp_path.name[-20:]}.sock"  # sun_path is short
    host = IndexHost(engine, path, open(tmp_path / "host.lock", "w"))  # type: ignore[arg-type]  # noqa: SIM115
    host.start()
    reader = HostedReader(str(path), timeout_s=10.0, wait_s=1.0)
    yield engine, reader, host
    reader.close()
    host.stop()


def test_the_asked_hnsw_ef_reaches_the_engine(served) -> None:
    engine, reader, _ = served
    queries = np.ones((3, 4), dtype=np.float32)
    rows, _ = search_checked(reader, "es", queries, 5, None, 16, hnsw_ef=40)
    search_checked(reader, "es", queries, 5, None, 16)
    reader.search("es", queries, 5, hnsw_ef=24)
    assert [call["hnsw_ef"] for call in engine.calls] == [40, None, 24]
    assert rows == [[(0.25, {"dataset": "d", "record_id": f"r{i}", "split": "training"})]
                    for i in range(3)]


def test_overfetch_only_while_hits_must_be_checked(served) -> None:
    engine, reader, host = served
    queries = np.ones((2, 4), dtype=np.float32)
    _, verify = search_checked(reader, "es", queries, 5, None, 16)
    assert verify and engine.calls[-1]["k"] == 21  # a new host checks every set first
    host.guard.applied("es", host.guard.now())  # an index run that started now succeeded
    _, verify = search_checked(reader, "es", queries, 5, None, 16)
    assert not verify and engine.calls[-1]["k"] == 5
