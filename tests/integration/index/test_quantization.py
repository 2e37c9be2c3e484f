"""Int8 scalar quantization of Edge versions (``IndexConfig.quantization``).

A version records the quantization it was built with in Edge's own ``edge_config.json``
and keeps it whatever the engine opening it is configured with: versions built before
the setting changed keep opening and searching, and the next build takes the new one.
Searches on a quantized version are rescored on the original vectors, so the distances
they return are exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from index_data import exact_distances, gaussian_mixture, make_records

import chroma.index.edge as edge_engine
from chroma.index import IndexConfig, QueryEngine, open_query_engine

pytestmark = pytest.mark.integration

KEY = "quantized"
N, DIM, K = 6_000, 32, 10


@pytest.fixture(autouse=True)
def _small_graphs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge_engine, "INDEXING_THRESHOLD_KB", 1)  # graphs for tiny shards


def _config(root: Path, quantization: str, **fields: object) -> IndexConfig:
    # A set this small is scanned exactly unless the full-scan threshold is lowered too.
    return IndexConfig(backend="edge", path=root, quantization=quantization,  # type: ignore[arg-type]
                       full_scan_threshold_kb=1, **fields)  # type: ignore[arg-type]


def _built_quantization(root: Path) -> object:
    """What the live version of ``KEY`` was built with, from Edge's own config file."""
    version = (root / KEY / "CURRENT").read_text().strip()
    return json.loads((root / KEY / version / "edge_config.json").read_text()).get(
        "quantization_config")


def _data() -> tuple[list, np.ndarray, np.ndarray]:
    vectors = gaussian_mixture(N, DIM, seed=21, clusters=20, spread=1.0)
    queries = gaussian_mixture(100, DIM, seed=22, clusters=20, spread=1.0)
    return make_records(N, seed=21), vectors, queries


def _recall_and_distance_error(engine: QueryEngine, records: list, vectors: np.ndarray,
                               queries: np.ndarray) -> tuple[float, float]:
    """recall@10 against brute force, and the largest gap between a returned distance and
    the exact distance of the record it names."""
    position = {r.record_id: i for i, r in enumerate(records)}
    hits = hit_total = 0
    worst = 0.0
    for query, row in zip(queries, engine.search(KEY, queries, K), strict=True):
        exact = exact_distances("cosine", vectors, query)
        truth = {records[i].record_id for i in np.argsort(exact)[:K]}
        hits += len(truth & {n.record_id for n in row})
        hit_total += K
        worst = max(worst, *(abs(n.distance - exact[position[n.record_id]]) for n in row))
    return hits / hit_total, worst


def test_an_int8_version_is_quantized_and_answers_with_rescored_exact_distances(
    tmp_path: Path,
) -> None:
    records, vectors, queries = _data()
    with open_query_engine(_config(tmp_path, "int8")) as engine:
        info = engine.reindex(KEY, DIM, "cosine", [(records, vectors)])
        assert info.indexed_points == N, "no graph: the search would scan exactly"
        assert _built_quantization(tmp_path) == {
            "scalar": {"type": "int8", "quantile": 0.99, "memory": "pinned"}}
        segments = list((tmp_path / KEY).glob("v*/segments/*/vector_storage/quantized.data"))
        assert segments, "no quantized vectors were written"
        recall, error = _recall_and_distance_error(engine, records, vectors, queries)
    assert recall >= 0.95, recall
    # Rescored on the float32 originals: int8 codes alone are off by ~1e-2 here.
    assert error < 1e-4, error


def test_a_version_built_without_quantization_keeps_answering_until_the_next_build(
    tmp_path: Path,
) -> None:
    """The setting changes between two runs of the service: the old version opens and
    answers as before; the next build is quantized; and back again."""
    records, vectors, queries = _data()
    with open_query_engine(_config(tmp_path, "none")) as engine:
        engine.reindex(KEY, DIM, "cosine", [(records, vectors)])
        before = engine.search(KEY, queries, K)
    assert _built_quantization(tmp_path) is None

    with open_query_engine(_config(tmp_path, "int8")) as engine:
        assert engine.search(KEY, queries, K) == before  # same version, same answers
        assert _built_quantization(tmp_path) is None
        engine.reindex(KEY, DIM, "cosine", [(records, vectors)])
        assert _built_quantization(tmp_path) is not None
        recall, error = _recall_and_distance_error(engine, records, vectors, queries)
        assert recall >= 0.95 and error < 1e-4, (recall, error)

    with open_query_engine(_config(tmp_path, "none")) as engine:  # an int8 version, opened
        recall, error = _recall_and_distance_error(engine, records, vectors, queries)
        assert recall >= 0.95 and error < 1e-4, (recall, error)
        engine.reindex(KEY, DIM, "cosine", [(records, vectors)])
        assert _built_quantization(tmp_path) is None
