"""Opening a built version: its payload indexes are mmap'd, not read into RAM.

qdrant-edge-py 0.9 holds the GIL while it opens a version, and reads in-RAM payload
indexes whole at the open (the ``logged_at`` one rebuilt as a BTree of every point): after
a graph build at 1M the index host stalled ~3.5 s (``bench/edge_load.py`` times it). These
tests read where the indexes live from Edge's own schema of the live version, and check
that filters on every indexed field answer alike before and after an older version's
indexes are moved.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import qdrant_edge as edge
from index_data import gaussian_mixture, make_records

import chroma.index.edge as edge_engine
from chroma.index import IndexConfig, QueryEngine, open_query_engine
from chroma.index.base import SearchFilter

pytestmark = pytest.mark.integration

KEY = "version-open"
DIM = 16
FIELDS = {"dataset", "split", "inference_class", "label_class", "tags", "logged_at"}


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[QueryEngine]:
    monkeypatch.setattr(edge_engine, "INDEXING_THRESHOLD_KB", 1)  # graphs for tiny shards
    with open_query_engine(IndexConfig(backend="edge", path=tmp_path)) as opened:
        yield opened


def _schema(engine: QueryEngine) -> dict[str, Any]:
    """The live version's payload indexes: field -> (memory, filter_graph)."""
    shard = engine._live[KEY].shard  # type: ignore[attr-defined]
    return {name: (info.params.memory, info.params.enable_hnsw)
            for name, info in shard.info().payload_schema.items()}


def _filtered_counts(engine: QueryEngine, records: list[Any]) -> list[int]:
    cls, tag = next(r.inference_class for r in records if r.inference_class), "night"
    filters = [
        SearchFilter(datasets=("prod",)),
        SearchFilter(split="training"),
        SearchFilter(inference_classes=(cls,)),
        SearchFilter(label_classes=(cls,)),
        SearchFilter(tags_any=(tag,)),
        SearchFilter(logged_from=1_700_300_000.0, logged_until=1_700_600_000.0),
    ]
    counts = [engine.count(KEY, f) for f in filters]
    assert all(0 < c < len(records) for c in counts), counts  # each filter selects
    return counts


def test_every_version_built_keeps_its_payload_indexes_mmapped(engine: QueryEngine) -> None:
    records = make_records(2_000, seed=3)
    vectors = gaussian_mixture(2_000, DIM, seed=3)
    engine.ensure_collection(KEY, DIM)
    assert _schema(engine) == dict.fromkeys(FIELDS, (edge.Memory.Cold, False))
    engine.reindex(KEY, DIM, "cosine", [(records, vectors)], graph=False)  # a child's fill
    assert _schema(engine) == dict.fromkeys(FIELDS, (edge.Memory.Cold, False))
    engine.reindex(KEY, DIM, "cosine", [(records, vectors)])  # with its graph
    info = engine.collection_info(KEY)
    assert (info.version, info.points, info.indexed_points) == (3, 2_000, 2_000)
    assert _schema(engine) == dict.fromkeys(FIELDS, (edge.Memory.Cold, False))
    _filtered_counts(engine, records)


@pytest.mark.parametrize("filter_graph", [False, True])
def test_a_graph_build_moves_an_older_version_s_indexes_out_of_ram_and_filters_answer_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filter_graph: bool
) -> None:
    """A version made before the indexes were mmap'd (in RAM: ``memory`` unset) gets
    them moved by the graph build's child, keeping ``filter_graph``; a write made while
    the graph builds is searchable by its filter after the switch."""
    monkeypatch.setattr(edge_engine, "INDEXING_THRESHOLD_KB", 1)
    records = make_records(3_000, seed=4)
    vectors = gaussian_mixture(3_000, DIM, seed=4)
    config = IndexConfig(backend="edge", path=tmp_path, filter_graph=filter_graph)
    with open_query_engine(config) as engine:
        monkeypatch.setattr(edge_engine, "PAYLOAD_INDEX_MEMORY", None)  # as made before
        engine.reindex(KEY, DIM, "cosine", [(records[:2_000], vectors[:2_000])], graph=False)
        monkeypatch.undo()
        monkeypatch.setattr(edge_engine, "INDEXING_THRESHOLD_KB", 1)
        assert _schema(engine) == dict.fromkeys(FIELDS, (None, filter_graph))
        engine.upsert(KEY, records[2_000:], vectors[2_000:])
        before = _filtered_counts(engine, records)
        engine.optimize(KEY)
        info = engine.collection_info(KEY)
        assert (info.version, info.points, info.indexed_points) == (2, 3_000, 3_000)  # graphed
        assert _schema(engine) == dict.fromkeys(FIELDS, (edge.Memory.Cold, filter_graph))
        assert _filtered_counts(engine, records) == before
        hits = engine.search(KEY, vectors[2_500], 1, SearchFilter(datasets=(
            records[2_500].dataset,), logged_from=records[2_500].logged_at))
        assert [n.record_id for n in hits[0]] == [records[2_500].record_id]
