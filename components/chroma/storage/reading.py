"""Reading stored rows back: embeddings (and columns) by (file, row), grouped per file."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from chroma.storage.files import FileStore

__all__ = ["EmbeddingReader", "RecentTables", "read_columns", "read_embeddings"]


class RecentTables:
    """Reads files' tables through a store, keeping the last ``keep`` it read: a caller
    reading pages of rows in the order they were stored (a ``recommend`` run) reads each
    file once, not once per page (a 50k-row file was read ten times by pages of 5k)."""

    def __init__(self, store: FileStore, keep: int = 1) -> None:
        self.store, self.keep = store, keep
        self._tables: dict[tuple[str, tuple[str, ...]], pa.Table] = {}

    def read_table(self, path: str, columns: list[str]) -> pa.Table:
        where = (path, tuple(columns))
        table = self._tables.pop(where, None)
        if table is None:
            table = self.store.read_table(path, columns=columns)
        self._tables[where] = table  # the most recent last
        while len(self._tables) > self.keep:
            self._tables.pop(next(iter(self._tables)))
        return table


def read_embeddings(store: FileStore, locations: Sequence[tuple[str, int]]) -> np.ndarray:
    """float32 (n, d) embeddings of the rows at ``locations`` = [(file path, row), ...]."""
    columns = read_columns(store, locations, ["embedding"])
    return columns["embedding"]


def read_columns(
    store: FileStore | RecentTables, locations: Sequence[tuple[str, int]],
    columns: Sequence[str],
) -> dict[str, np.ndarray | list[object]]:
    """Columns of the rows at ``locations``, in the order given; embeddings as a matrix.
    ``store`` may be a :class:`RecentTables` over one (files read once for many calls)."""
    by_file: dict[str, list[int]] = defaultdict(list)
    for position, (path, _) in enumerate(locations):
        by_file[path].append(position)
    out: dict[str, list[object] | np.ndarray] = {}
    pieces: dict[str, list[tuple[list[int], object]]] = {c: [] for c in columns}
    for path, positions in by_file.items():
        table = store.read_table(path, columns=list(columns))
        rows = pa.array([locations[p][1] for p in positions], pa.int64())
        taken = table.take(rows)
        for name in columns:
            column = taken.column(name).combine_chunks()
            if name == "embedding":
                dimension = column.type.list_size
                values = column.flatten().to_numpy(zero_copy_only=False)
                pieces[name].append((positions, values.reshape(len(positions), dimension)))
            else:
                pieces[name].append((positions, column.to_pylist()))
    for name in columns:
        if name == "embedding":
            parts = pieces[name]
            dimension = parts[0][1].shape[1] if parts else 0  # type: ignore[union-attr]
            matrix = np.empty((len(locations), dimension), dtype=np.float32)
            for positions, values in parts:
                matrix[positions] = values
            out[name] = matrix
        else:
            ordered: list[object] = [None] * len(locations)
            for positions, values in pieces[name]:
                for position, value in zip(positions, values, strict=True):  # type: ignore[arg-type]
                    ordered[position] = value
            out[name] = ordered
    return out


class EmbeddingReader:
    """Embeddings by (file, row) for a reader walking the change feed page by page.

    A commit's rows are one file and consecutive change numbers, so a bulk load's file
    spans many pages: :func:`read_embeddings` would read (and decode) the whole file
    again for every page. This keeps the embedding column of the last ``keep`` files
    read (a :class:`RecentTables`). Stored files are never rewritten (compaction writes
    new ones), so a kept column stays true. One reader per thread."""

    def __init__(self, store: FileStore, keep: int = 2) -> None:
        self._tables = RecentTables(store, keep)

    def __call__(self, locations: Sequence[tuple[str, int]]) -> np.ndarray:
        """float32 (n, d) embeddings of the rows at ``locations``, in the order given."""
        by_file: dict[str, list[int]] = defaultdict(list)
        for position, (path, _) in enumerate(locations):
            by_file[path].append(position)
        out: np.ndarray | None = None
        for path, positions in by_file.items():
            matrix = self._file(path)
            if out is None:
                out = np.empty((len(locations), matrix.shape[1]), dtype=np.float32)
            out[positions] = matrix[[locations[p][1] for p in positions]]
        return out if out is not None else np.empty((0, 0), dtype=np.float32)

    def _file(self, path: str) -> np.ndarray:
        # A single-chunk float32 column converts without a copy: keeping the table is
        # keeping the matrix.
        column = self._tables.read_table(path, ["embedding"]).column("embedding")
        column = column.combine_chunks()
        values = column.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(len(column), column.type.list_size)
