"""The map's maths: PCA on a sample recovers the data's leading plane, deterministically
and without mirror flips; the randomized SVD agrees with the exact one; degenerate
samples give finite maps; the subsample of a large map is stable."""

from __future__ import annotations

import numpy as np
import pytest

from chroma.scoring.projection import (
    EXACT_SVD_MAX_DIMENSION,
    fit_projection,
    sample_positions,
    smallest_ranks,
    stable_rank,
)


def _plane_data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points spread along two known orthogonal directions (+ small noise), and those."""
    rng = np.random.default_rng(seed)
    directions, _ = np.linalg.qr(rng.normal(size=(d, 2)))
    coefficients = rng.normal(size=(n, 2)) * [10.0, 4.0]
    return coefficients @ directions.T + rng.normal(size=(n, d)) * 0.05 + 3.0, directions.T


@pytest.mark.parametrize("d", [16, EXACT_SVD_MAX_DIMENSION + 200])
def test_the_leading_axes_are_the_datas_plane(d: int) -> None:
    data, directions = _plane_data(3000, d)
    projection = fit_projection(data, distance="euclid")
    # Each fitted axis lies in the true plane, in order of variance.
    for axis, truth in zip(projection.axes, directions, strict=True):
        assert abs(float(axis @ truth)) == pytest.approx(1.0, abs=1e-3)
    xy = projection.apply(data)
    assert xy.dtype == np.float32 and xy.shape == (3000, 2)
    assert np.std(xy[:, 0]) > np.std(xy[:, 1]) > 1.0


def test_fits_are_deterministic_and_never_mirrored() -> None:
    data, _ = _plane_data(2000, 1500)
    first = fit_projection(data, distance="euclid")
    again = fit_projection(data, distance="euclid")
    assert np.array_equal(first.apply(data), again.apply(data))
    # The same data in another order: the same picture (no sign flip).
    shuffled = data[np.random.default_rng(1).permutation(len(data))]
    other = fit_projection(shuffled, distance="euclid")
    assert np.allclose(other.apply(data), first.apply(data), atol=1e-3)
    for axis in first.axes:
        assert axis[np.argmax(np.abs(axis))] > 0


def test_randomized_and_exact_svd_agree() -> None:
    data, _ = _plane_data(1500, 300, seed=4)
    exact = fit_projection(data, distance="euclid")
    import chroma.scoring.projection as projection_module

    randomized_axes = projection_module._fixed_signs(np.vstack(
        projection_module._randomized_axes(data - data.mean(axis=0), seed=0)[:2]))
    assert np.allclose(np.abs(randomized_axes @ exact.axes.T), np.eye(2), atol=1e-6)


def test_cosine_sets_ignore_the_norm() -> None:
    data, _ = _plane_data(500, 8)
    scaled = data * np.random.default_rng(2).uniform(0.5, 20, size=(500, 1))
    a = fit_projection(data, distance="cosine")
    b = fit_projection(scaled, distance="cosine")
    assert np.allclose(a.apply(data), b.apply(scaled), atol=1e-4)


@pytest.mark.parametrize("sample", [np.zeros((0, 4)), np.ones((1, 4)), np.ones((50, 4)),
                                    np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])])
def test_degenerate_samples_give_finite_maps(sample: np.ndarray) -> None:
    projection = fit_projection(sample, distance="euclid")
    xy = projection.apply(np.vstack([sample, np.full((3, sample.shape[1]), 7.0)]))
    assert np.isfinite(xy).all()


def test_zero_vectors_of_a_cosine_set_stay_finite() -> None:
    sample = np.vstack([np.zeros((3, 5)), np.eye(5)])
    assert np.isfinite(fit_projection(sample).apply(sample)).all()


def test_samples_are_uniform_sorted_and_seeded() -> None:
    assert list(sample_positions(5, 10)) == [0, 1, 2, 3, 4]
    picked = sample_positions(1_000_000, 1000)
    assert len(set(picked.tolist())) == 1000 and (np.diff(picked) > 0).all()
    assert np.array_equal(picked, sample_positions(1_000_000, 1000))
    assert 400_000 < np.median(picked) < 600_000


def test_the_subsample_of_a_map_is_stable() -> None:
    keys = [f"ds\x00{i}" for i in range(10_000)]
    rank = stable_rank(keys)
    assert rank.dtype == np.uint64 and np.array_equal(rank, stable_rank(keys))
    kept = smallest_ranks(rank, 100)
    assert len(kept) == 100 and (np.diff(kept) > 0).all()
    assert rank[kept].max() < np.sort(rank)[100]
    # A record added later does not reshuffle who else is shown.
    grown = stable_rank([*keys, "ds\x00new"])
    kept_after = set(smallest_ranks(grown, 100).tolist()) - {10_000}
    assert len(kept_after & set(kept.tolist())) >= 99
    assert list(smallest_ranks(rank[:7], 100)) == list(range(7))
