"""The approximate (IVF) nearest rows against the exact ones: recall, metrics, edges."""

from __future__ import annotations

import numpy as np
import pytest

from chroma.scoring import ExactNearest, IvfNearest, IvfParams

METRICS = ["cosine", "dot", "euclid"]


def clustered(n: int, seed: int, *, dim: int = 32, clusters: int = 40) -> np.ndarray:
    """Clusters spread over low-dimensional subspaces (as model embeddings are), with
    varied norms so that dot and cosine rank differently."""
    shape = np.random.default_rng(100)
    centres = shape.normal(size=(clusters, dim)) * 3
    bases = shape.normal(size=(clusters, 4, dim)) / 2
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, clusters, n)
    spread = np.einsum("nk,nkd->nd", rng.normal(size=(n, 4)), bases[labels])
    scale = rng.uniform(0.5, 2.0, size=(n, 1))
    return ((centres[labels] + spread + 0.05 * rng.normal(size=(n, dim))) * scale).astype(
        np.float32)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(a, b)) / truth.shape[1]
                          for a, b in zip(found, truth, strict=True)]))


def direct_distance(stored: np.ndarray, queries: np.ndarray, rows: np.ndarray,
                    metric: str) -> np.ndarray:
    """The index's distance of each chosen row, computed one pair at a time in float64."""
    q = queries.astype(np.float64)[:, np.newaxis, :]
    x = stored.astype(np.float64)[rows]
    if metric == "cosine":
        cos = (q * x).sum(axis=2) / (np.linalg.norm(q, axis=2) * np.linalg.norm(x, axis=2))
        return 1.0 - cos
    if metric == "dot":
        return -(q * x).sum(axis=2)
    return np.linalg.norm(q - x, axis=2)


@pytest.mark.parametrize("metric", METRICS)
def test_recall_at_10_against_the_exact_search_is_at_least_095_on_clustered_data(metric):
    stored, queries = clustered(20_000, 1), clustered(500, 2)
    rows, _ = IvfNearest(stored, metric).nearest(queries, 10)
    truth, _ = ExactNearest(stored, metric).nearest(queries, 10)
    assert recall(rows, truth) >= 0.95


@pytest.mark.parametrize("metric", METRICS)
def test_the_distances_are_the_exact_searchs_distances_of_the_rows_found(metric):
    stored, queries = clustered(5_000, 3), clustered(200, 4)
    rows, distances = IvfNearest(stored, metric).nearest(queries, 10)
    np.testing.assert_allclose(distances, direct_distance(stored, queries, rows, metric),
                               rtol=1e-4, atol=1e-4)
    assert (np.diff(distances, axis=1) >= -1e-6).all()  # nearest first


@pytest.mark.parametrize("metric", METRICS)
def test_probing_every_list_gives_the_exact_answer(metric):
    stored, queries = clustered(3_000, 5), clustered(300, 6)
    ivf = IvfNearest(stored, metric, IvfParams(probes=10_000))
    rows, distances = ivf.nearest(queries, 10)
    truth, true_distances = ExactNearest(stored, metric).nearest(queries, 10)
    assert ivf.lists > 1
    assert recall(rows, truth) == 1.0
    np.testing.assert_allclose(distances, true_distances, rtol=1e-4, atol=1e-4)


def test_dot_finds_the_largest_inner_products_not_the_nearest_points():
    rng = np.random.default_rng(7)
    stored = rng.normal(size=(4_000, 16)).astype(np.float32)
    stored[:50] *= 20  # long rows win inner products from everywhere
    queries = rng.normal(size=(200, 16)).astype(np.float32)
    rows, distances = IvfNearest(stored, "dot").nearest(queries, 5)
    truth, _ = ExactNearest(stored, "dot").nearest(queries, 5)
    nearest_points, _ = ExactNearest(stored, "euclid").nearest(queries, 5)
    assert (nearest_points >= 50).mean() > 0.9  # Euclid would pick the short rows
    assert (rows < 50).mean() > 0.95
    # Few long rows scattered in all directions are the reduction's hardest case (0.76
    # when written); clustered data is held to 0.95 above.
    assert recall(rows, truth) >= 0.7
    np.testing.assert_allclose(distances, direct_distance(stored, queries, rows, "dot"),
                               rtol=1e-4)


@pytest.mark.parametrize("metric", METRICS)
def test_k_over_the_stored_rows_returns_every_row_once(metric):
    stored, queries = clustered(30, 8), clustered(7, 9)
    rows, distances = IvfNearest(stored, metric).nearest(queries, 50)
    assert rows.shape == distances.shape == (7, 30)
    for found in rows:
        assert sorted(found) == list(range(30))


def test_probed_lists_shorter_than_k_fall_back_to_the_exact_answer():
    stored, queries = clustered(400, 10), clustered(50, 11)
    ivf = IvfNearest(stored, "euclid", IvfParams(probes=1, lists_per_sqrt=4))
    k = int(np.diff(ivf.offsets).max()) + 1  # more than any one list holds
    assert ivf.lists == 50 and k < 400
    rows, distances = ivf.nearest(queries, k)
    truth, true_distances = ExactNearest(stored, "euclid").nearest(queries, k)
    assert rows.shape == (50, k)
    np.testing.assert_array_equal(rows, truth)
    np.testing.assert_allclose(distances, true_distances, rtol=1e-4, atol=1e-4)


def test_empty_stored_rows_or_queries_give_empty_answers():
    empty = IvfNearest(np.empty((0, 8), dtype=np.float32), "cosine")
    rows, distances = empty.nearest(np.ones((3, 8), dtype=np.float32), 10)
    assert rows.shape == distances.shape == (3, 0)
    ivf = IvfNearest(clustered(100, 12, dim=8), "cosine")
    rows, distances = ivf.nearest(np.empty((0, 8), dtype=np.float32), 10)
    assert rows.shape == distances.shape == (0, 10)


def test_one_stored_row_and_one_dimensional_query():
    ivf = IvfNearest(np.array([[3.0, 4.0]], dtype=np.float32), "euclid")
    rows, distances = ivf.nearest(np.array([0.0, 0.0]), 10)
    assert rows.tolist() == [[0]]
    assert distances[0, 0] == pytest.approx(5.0)


def test_the_same_vectors_give_the_same_index_and_answers():
    stored, queries = clustered(5_000, 13), clustered(100, 14)
    first = IvfNearest(stored, "cosine").nearest(queries, 10)
    second = IvfNearest(stored, "cosine").nearest(queries, 10)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_blocks_of_queries_answer_as_one(monkeypatch):
    from chroma.scoring import ivf as module

    stored, queries = clustered(3_000, 15), clustered(250, 16)
    index = IvfNearest(stored, "euclid")
    whole = index.nearest(queries, 10)
    monkeypatch.setattr(module, "_BLOCK_QUERIES", 64)
    blocked = index.nearest(queries, 10)
    np.testing.assert_array_equal(whole[0], blocked[0])
    np.testing.assert_allclose(whole[1], blocked[1], rtol=1e-4, atol=1e-4)  # float32 sums


def test_zero_rows_under_cosine_are_kept_and_answered():
    stored = clustered(200, 17, dim=8)
    stored[5] = 0.0
    rows, distances = IvfNearest(stored, "cosine").nearest(np.zeros((1, 8)), 3)
    assert rows.shape == (1, 3)
    assert np.isfinite(distances).all()


def test_overlapping_searches_put_the_blas_threads_back_as_they_were():
    from threadpoolctl import threadpool_info, threadpool_limits

    from chroma.scoring.ivf import one_blas_thread

    def blas_threads() -> list[int]:
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    with threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        first, second = one_blas_thread(), one_blas_thread()
        first.__enter__()
        second.__enter__()  # a search in another thread starts before the first ends
        first.__exit__(None, None, None)
        assert set(blas_threads()) == {1}  # the second still runs on one thread
        second.__exit__(None, None, None)
        assert blas_threads() == before


def probed_top_k(ivf: IvfNearest, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference for the two-pass search: per query, a full sort of the closeness of
    every row of the lists it probes (picked as the index picks them), one at a time."""
    from chroma.scoring import ivf as module
    from chroma.scoring.nearest import query_matrix

    matrix = query_matrix(queries, ivf.distance) * np.float32(ivf._scale)
    probes, _ = module._top_k(ivf._list_scores(matrix), min(ivf.params.probes, ivf.lists))
    rows, values = [], []
    for query, lists in zip(matrix, probes, strict=True):
        positions = np.concatenate([np.arange(ivf.offsets[lst], ivf.offsets[lst + 1])
                                    for lst in lists])
        closeness = ivf.vectors[positions].astype(np.float64) @ query
        if ivf.distance == "euclid":
            closeness -= ivf._bias[positions]
        best = np.argsort(-closeness, kind="stable")[:k]
        rows.append(ivf.rows[positions[best]])
        values.append(closeness[best])
    return np.array(rows, dtype=object), np.array(values, dtype=object)


@pytest.mark.parametrize("metric", METRICS)
def test_the_two_passes_find_the_k_best_of_every_probed_row(metric):
    # The floor (k-th best in the nearest list) may only drop rows that cannot be among
    # the k best: the answer is a full sort of the probed lists' rows.
    stored, queries = clustered(6_000, 20), clustered(400, 21)
    ivf = IvfNearest(stored, metric, IvfParams(probes=4))
    rows, distances = ivf.nearest(queries, 10)
    truth = np.stack(probed_top_k(ivf, queries, 10)[0]).astype(np.int64)
    assert recall(rows, truth) == 1.0
    expected = direct_distance(stored, queries, truth, metric)
    np.testing.assert_allclose(distances, expected, rtol=1e-4, atol=1e-4)


def test_k_over_the_nearest_lists_size_keeps_every_row_of_the_others():
    # Lists of ~8 rows and k = 20: the nearest list sets no floor (it holds fewer than
    # k), so the other probed lists keep all their rows.
    stored, queries = clustered(800, 22), clustered(100, 23)
    ivf = IvfNearest(stored, "cosine", IvfParams(probes=6, lists_per_sqrt=4))
    assert np.median(np.diff(ivf.offsets)) < 20
    rows, _ = ivf.nearest(queries, 20)
    truth = probed_top_k(ivf, queries, 20)[0]
    full = [i for i, found in enumerate(truth) if len(found) == 20]  # the rest: exact
    assert len(full) > 90
    assert recall(rows[full], np.array([truth[i] for i in full])) == 1.0


def test_ties_give_k_distinct_rows_at_the_exact_distances():
    # Every stored row twice (and four times for some): the floor equals many rows at
    # once; each query still gets k different rows, as near as the exact ones.
    base = clustered(1_500, 24, dim=16)
    stored = np.concatenate([base, base, base[:300], base[:300]])
    queries = clustered(200, 25, dim=16)
    ivf = IvfNearest(stored, "euclid", IvfParams(probes=1_000))  # every list: exact
    rows, distances = ivf.nearest(queries, 10)
    _, true_distances = ExactNearest(stored, "euclid").nearest(queries, 10)
    assert all(len(set(found)) == 10 for found in rows.tolist())
    np.testing.assert_allclose(distances, true_distances, rtol=1e-4, atol=1e-4)


def test_a_query_whose_nearest_list_is_empty_is_answered_from_the_others(monkeypatch):
    # A centre no stored row is assigned to, where the queries are: their nearest list
    # is empty, so it sets no floor, and the other lists give every answer.
    from chroma.scoring import ivf as module

    rng = np.random.default_rng(26)
    stored = np.concatenate([rng.normal(size=(300, 8)) + 10, rng.normal(size=(300, 8)) - 10])
    centres = np.stack([np.zeros(8), np.full(8, 10.0), np.full(8, -10.0)]).astype(np.float32)
    monkeypatch.setattr(module, "_kmeans", lambda space, lists, params: centres)
    queries = rng.normal(size=(50, 8)) * 0.1
    ivf = IvfNearest(stored.astype(np.float32), "euclid", IvfParams(probes=3))
    assert np.diff(ivf.offsets).tolist() == [0, 300, 300]
    # 600 probed rows each: a floor left unset could only show as a needless exact
    # search (too high a floor leaves fewer than k), so there must be none.
    ivf.__dict__["_exact"] = None
    for _ in range(3):  # fresh buffers each time: no floor may come from old memory
        rows, distances = ivf.nearest(queries, 10)
        truth, true_distances = ExactNearest(stored, "euclid").nearest(queries, 10)
        assert recall(rows, truth) == 1.0
        np.testing.assert_allclose(distances, true_distances, rtol=1e-4, atol=1e-4)
