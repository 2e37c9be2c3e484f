"""The exact k-nearest search of the recommender (``chroma.scoring.nearest``): its
two-pass top-k selection answers what one partition over every column answers, and the
search answers what sorting every distance answers, for each of the index's distances."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

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


@pytest.mark.parametrize(("columns", "k", "group"), [
    (632, 8, 8),    # the inverted file's probes: ~2 sqrt(100k) lists, 8 probed
    (635, 8, 8),    # a ragged tail
    (8 * 17, 8, 8),  # at the size where the grouping stops paying: one partition
    (158, 10, 2),
])
def test_the_two_pass_top_k_with_other_group_sizes_equals_a_full_sort(
    columns: int, k: int, group: int,
) -> None:
    rng = np.random.default_rng(columns * group)
    closeness = rng.normal(size=(500, columns)).astype(np.float32)
    closeness[:7] += np.linspace(0, 50, columns, dtype=np.float32)
    rows, values = nearest._top_k(closeness, k, group=group)
    want_rows, want_values = _full_sort(closeness, k)
    np.testing.assert_array_equal(values, want_values)
    np.testing.assert_array_equal(rows, want_rows)


def test_the_two_pass_top_k_finds_every_best_value_among_many_equal_ones() -> None:
    rng = np.random.default_rng(3)
    closeness = rng.integers(0, 6, size=(200, 4_000)).astype(np.float32)  # ties everywhere
    closeness[:, rng.choice(4_000, 3, replace=False)] = 9.0  # a few shared winners
    rows, values = nearest._top_k(closeness, 10)
    _, want_values = _full_sort(closeness, 10)
    np.testing.assert_array_equal(values, want_values)
    np.testing.assert_array_equal(np.take_along_axis(closeness, rows, axis=1), values)
    assert all(len(set(row)) == 10 for row in rows.tolist())  # ten distinct columns


@pytest.mark.parametrize("blocks", ["one block", "blocks in threads"])
@pytest.mark.parametrize("distance", ["cosine", "dot", "euclid"])
def test_exact_nearest_answers_what_sorting_every_distance_answers(
    distance: str, blocks: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    if blocks != "one block":
        monkeypatch.setattr(nearest, "_CHUNK_ELEMENTS", 3_001 * 17)  # 9 blocks of 17 rows
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


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_blocks_run_with_one_blas_thread_each_and_the_setting_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nearest, "_CHUNK_ELEMENTS", 2_000 * 10)  # 10 rows a block
    before = _blas_threads()
    assert before  # numpy's BLAS is seen
    during: list[list[int]] = []
    real = ExactNearest._closeness

    def watched(self: ExactNearest, queries: np.ndarray) -> np.ndarray:
        during.append(_blas_threads())
        return real(self, queries)

    monkeypatch.setattr(ExactNearest, "_closeness", watched)
    rng = np.random.default_rng(5)
    search = ExactNearest(rng.normal(size=(2_000, 8)).astype(np.float32), "euclid")
    queries = [rng.normal(size=(95, 8)).astype(np.float32) for _ in range(4)]
    alone = [search.nearest(q, 5) for q in queries]
    assert during and all(threads == [1] * len(before) for threads in during)
    assert _blas_threads() == before

    with ThreadPoolExecutor(4) as pool:  # overlapping searches: the last one out restores
        together = list(pool.map(lambda q: search.nearest(q, 5), queries))
    assert _blas_threads() == before
    for (rows, distances), (want_rows, want_distances) in zip(together, alone, strict=True):
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_array_equal(distances, want_distances)

    during.clear()
    search.nearest(queries[0][:3], 5)  # one block: BLAS left as configured
    assert during == [before]


def test_no_queries_answer_empty_arrays() -> None:
    rows, distances = ExactNearest(np.eye(4, dtype=np.float32), "cosine").nearest(
        np.empty((0, 4), np.float32), 3)
    assert rows.shape == distances.shape == (0, 3)


def test_one_blas_thread_nests_and_the_outermost_restores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nearest, "_CHUNK_ELEMENTS", 500 * 10)
    before = _blas_threads()
    rng = np.random.default_rng(6)
    search = ExactNearest(rng.normal(size=(500, 4)).astype(np.float32), "dot")
    with nearest.one_blas_thread():
        assert _blas_threads() == [1] * len(before)
        search.nearest(rng.normal(size=(50, 4)).astype(np.float32), 3)  # blocks: nested
        assert _blas_threads() == [1] * len(before)  # the outer one still holds it
    assert _blas_threads() == before
