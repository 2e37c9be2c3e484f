"""``EmbeddingReader``: the rows asked for, in the order asked, each file read once while
it is among the last files read (the indexer's pages walk a bulk load's file in order)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from chroma.storage import EmbeddingReader, FileStore, read_embeddings


class CountingStore(FileStore):
    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    def read_table(self, relpath: str, columns: list[str] | None = None) -> pa.Table:
        self.reads.append(relpath)
        return super().read_table(relpath, columns)


def _write(store: FileStore, path: str, matrix: np.ndarray) -> None:
    flat = pa.array(matrix.reshape(-1), pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])
    store.write_table(path, pa.table({"embedding": column, "n": np.arange(len(matrix))}))


def test_rows_in_the_order_asked_across_files(tmp_path: Path) -> None:
    store = CountingStore(str(tmp_path))
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 8)).astype(np.float32), rng.normal(size=(30, 8)).astype(np.float32)
    _write(store, "a.parquet", a)
    _write(store, "b.parquet", b)
    locations = [("b.parquet", 29), ("a.parquet", 0), ("a.parquet", 49), ("b.parquet", 3),
                 ("a.parquet", 0)]
    got = EmbeddingReader(store)(locations)
    expected = np.stack([b[29], a[0], a[49], b[3], a[0]])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, read_embeddings(store, locations))


def test_a_file_spanning_pages_is_read_once(tmp_path: Path) -> None:
    store = CountingStore(str(tmp_path))
    matrix = np.arange(100 * 4, dtype=np.float32).reshape(100, 4)
    _write(store, "bulk.parquet", matrix)
    _write(store, "next.parquet", -matrix[:10])
    reader = EmbeddingReader(store)
    pages = [[("bulk.parquet", r) for r in range(s, s + 25)] for s in range(0, 100, 25)]
    pages.append([("bulk.parquet", 99), ("next.parquet", 0)])
    for page in pages:
        np.testing.assert_array_equal(reader(page), read_embeddings(store, page))
    assert store.reads.count("bulk.parquet") == 1 + len(pages)  # read_embeddings: every page
    assert store.reads.count("next.parquet") == 2


def test_only_the_last_files_are_kept(tmp_path: Path) -> None:
    store = CountingStore(str(tmp_path))
    for name in ("x", "y", "z"):
        _write(store, name, np.ones((3, 2), dtype=np.float32))
    reader = EmbeddingReader(store, keep=2)
    for name in ("x", "y", "z", "x"):
        reader([(name, 0)])
    assert store.reads == ["x", "y", "z", "x"]  # x was dropped when z came
    assert reader([]).shape[0] == 0
