"""The exact k-nearest search of the recommender (``chroma.scoring.nearest``): its
two-pass top-k selection answers what one partition over every column answers, and the
search answers what sorting every distance answers, for each of the index's distances."""

from __future__ import annotations

import numpy as np
import pytest

from chroma.scoring import nearest
from chroma.scoring.nearest import ExactNearest


def _full_sort(closeness: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-closeness, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(closeness, order, axis=1)


@pytest.mark.parametrize(("columns", "k"), [
    (20_000, 10),   # a multiple of the group size
    (20_007, 10),   # a ragged tail of columns outside every group
    (20_007, 11),
    (5_003, 1),
    (16 * 21, 10),  # just above the size where the grouping pays
    (16 * 20, 10),  # at it: one partition over every column
    (37, 10),
    (10, 10),
])
def test_the_two_pass_top_k_equals_a_full_sort(columns: int, k: int) -> None:
    rng = np.random.default_rng(columns + k)
    closeness = rng.normal(size=(300, columns)).astype(np.float32)
    closeness[:7] += np.linspace(0, 50, columns, dtype=np.float32)  # best at the end
    closeness[7:14] -= np.linspace(0, 50, columns, dtype=np.float32)  # best at the start
    rows, values = nearest._top_k(closeness, k)
    want_rows, want_values = _full_sort(closeness, k)
    np.testing.assert_array_equal(values, want_values)
    np.testing.assert_array_equal(rows, want_rows)  # no ties in continuous data


def test_the_two_pass_top_k_finds_every_best_value_among_many_equal_ones() -> None:
    rng = np.random.default_rng(3)
    closeness = rng.integers(0, 6, size=(200, 4_000)).astype(np.float32)  # ties everywhere
    closeness[:, rng.choice(4_000, 3, replace=False)] = 9.0  # a few shared winners
    rows, values = nearest._top_k(closeness, 10)
    _, want_values = _full_sort(closeness, 10)
    np.testing.assert_array_equal(values, want_values)
    np.testing.assert_array_equal(np.take_along_axis(closeness, rows, axis=1), values)
    assert all(len(set(row)) == 10 for row in rows.tolist())  # ten distinct columns


@pytest.mark.parametrize("distance", ["cosine", "dot", "euclid"])
def test_exact_nearest_answers_what_sorting_every_distance_answers(distance: str) -> None:
    rng = np.random.default_rng(7)
    stored = rng.normal(size=(3_001, 24)).astype(np.float32)
    queries = rng.normal(size=(150, 24)).astype(np.float32)
    rows, distances = ExactNearest(stored, distance).nearest(queries, 10)

    q, x = queries.astype(np.float64), stored.astype(np.float64)
    if distance == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        every = 1.0 - q @ x.T
    elif distance == "dot":
        every = -(q @ x.T)
    else:
        every = np.sqrt(((q[:, np.newaxis, :] - x[np.newaxis, :, :]) ** 2).sum(axis=2))
    want = np.argsort(every, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(rows, want)
    np.testing.assert_allclose(distances, np.take_along_axis(every, want, axis=1),
                               rtol=1e-4, atol=1e-4)


def test_k_beyond_the_stored_rows_answers_every_row() -> None:
    stored = np.eye(3, dtype=np.float32)
    rows, distances = ExactNearest(stored, "euclid").nearest(np.ones((2, 3), np.float32), 5)
    assert rows.shape == distances.shape == (2, 3)
    assert sorted(rows[0].tolist()) == [0, 1, 2]
