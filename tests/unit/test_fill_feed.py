"""``chroma.index.edge._scanned``: what waits for a first fill's build child."""

from __future__ import annotations

import pickle

import numpy as np

from chroma.index.base import IndexedRecord
from chroma.index.edge import _Pickled, _scanned
from chroma.index.filling import FillScan


def _batch(start: int, n: int) -> tuple[list[IndexedRecord], np.ndarray]:
    records = [IndexedRecord("d", f"r{i}", "training", logged_at=float(i))
               for i in range(start, start + n)]
    return records, np.full((n, 4), start + 1, dtype=np.float32)


def test_batches_wait_for_the_child_pickled_not_as_record_objects() -> None:
    """A whole fill's batches can wait in the queue (the child converts slowly): as one
    buffer each, not thousands of small objects that fragment the worker's arenas."""
    batches = [_batch(0, 3), _batch(3, 2)]
    scan = FillScan(4, "dot")
    fed = list(_scanned(iter(batches), scan, 4))
    assert all(isinstance(item, _Pickled) for item in fed)
    assert [item.points for item in fed] == [3, 2]  # type: ignore[union-attr]
    for item, (records, matrix) in zip(fed, batches, strict=True):
        sent_records, sent_matrix = pickle.loads(item.data)  # type: ignore[union-attr]
        assert sent_records == records
        np.testing.assert_array_equal(sent_matrix, matrix)
    assert len(scan) == 5


def test_a_bad_batch_goes_on_as_it_came_for_the_build_to_refuse() -> None:
    records, _ = _batch(0, 2)
    bad = np.ones((2, 3), dtype=np.float32)  # wrong dimension
    fed = list(_scanned(iter([(records, bad)]), FillScan(4, "dot"), 4))
    assert len(fed) == 1 and not isinstance(fed[0], _Pickled)
    assert fed[0][0] == records
