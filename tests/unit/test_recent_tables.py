"""``RecentTables``: rows read page by page come from one read of their file, and are
the rows a plain ``read_columns`` gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from chroma.storage import FileStore, RecentTables, read_columns


def _store(tmp_path: Path) -> FileStore:
    store = FileStore(str(tmp_path))
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        vectors = rng.normal(size=(50, 4)).astype(np.float32)
        store.write_table(f"{name}.parquet", pa.table({
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 4),
            "scores": [f'{{"x": {i}}}' if i % 3 else None for i in range(50)],
        }))
    return store


def test_pages_of_one_file_read_it_once_and_give_the_same_rows(tmp_path, monkeypatch):
    store = _store(tmp_path)
    reads: list[str] = []
    plain_read = store.read_table
    monkeypatch.setattr(store, "read_table",
                        lambda path, columns=None: reads.append(path) or plain_read(path,
                                                                                    columns))
    tables = RecentTables(store, keep=1)
    pages = [[("a.parquet", i) for i in range(start, start + 10)] for start in (0, 10, 20)]
    pages.append([("a.parquet", 45), ("b.parquet", 3), ("b.parquet", 1)])
    pages.append([("b.parquet", 40), ("b.parquet", 2)])
    for page in pages:
        cached = read_columns(tables, page, ["embedding", "scores"])
        plain = read_columns(FileStore(str(tmp_path)), page, ["embedding", "scores"])
        assert np.array_equal(cached["embedding"], plain["embedding"])
        assert cached["scores"] == plain["scores"]
    assert reads == ["a.parquet", "b.parquet"]  # each once (plain: six reads)


def test_it_keeps_only_the_last_tables(tmp_path):
    tables = RecentTables(_store(tmp_path), keep=1)
    tables.read_table("a.parquet", ["scores"])
    tables.read_table("b.parquet", ["scores"])
    assert list(tables._tables) == [("b.parquet", ("scores",))]
