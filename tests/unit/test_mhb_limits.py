"""MHB memory and limits: low-rank per-class covariances (Woodbury) against the dense maths,
model bytes bounded for many small classes at high dimension, and the documented limits."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis
from sklearn.covariance import LedoitWolf, ledoit_wolf

from chroma.errors import InvalidInput
from chroma.scoring import ArtifactError, MHBLimits, dump_model, fit_mhb, load_model, score_mhb
from chroma.scoring import mahalanobis as mhb_model
from chroma.scoring.covariance import shrunk_covariance, shrunk_eigen


def _classes(sizes: dict[str, int], dimension: int, seed: int = 0):
    """Gaussian classes with their own random covariance, sizes as given."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for name, size in sizes.items():
        mixing = rng.normal(size=(dimension, dimension)) / np.sqrt(dimension)
        centre = rng.normal(size=dimension) * 3.0
        rows.append(centre + rng.normal(size=(size, dimension)) @ mixing)
        labels += [name] * size
    return np.vstack(rows).astype(np.float32), np.array(labels, dtype=object)


def _regularised(covariance: np.ndarray) -> np.ndarray:
    """The ridge the model adds before inverting (1e-6 x mean variance)."""
    ridge = mhb_model.RIDGE * np.trace(covariance) / len(covariance)
    return covariance + ridge * np.eye(len(covariance))


def _expected_class_covariance(data, labels, name, tied, prior):
    """The documented blend, computed densely with scikit-learn."""
    members = data[labels == name].astype(np.float64)
    if len(members) < 2:
        return tied
    blend = (len(members) - 1) / (len(members) - 1 + prior)
    return blend * LedoitWolf().fit(members).covariance_ + (1 - blend) * tied


def _array_bytes(value: object) -> int:
    """Bytes of every numpy array reachable through dataclass fields (model, factors)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if dataclasses.is_dataclass(value):
        return sum(_array_bytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 0


# --- the maths: low rank + Woodbury equals the dense path ---------------------------------


@pytest.mark.parametrize("method", ["ledoit_wolf", "oas"])
@pytest.mark.parametrize("shape", [(200, 5), (7, 12), (3, 40), (2, 64)])
def test_shrunk_eigen_is_the_dense_shrunk_covariance(shape, method) -> None:
    data = np.random.default_rng(1).normal(size=shape) * np.arange(1, shape[1] + 1)
    dense, shrinkage = shrunk_covariance(data, method=method)
    own = shrunk_eigen(data, rank=shape[1], method=method)
    assert own.shrinkage == pytest.approx(shrinkage, abs=1e-12)
    assert len(own.values) <= min(shape[0] - 1, shape[1])
    rebuilt = (1 - own.shrinkage) * (own.vectors.T * own.values) @ own.vectors
    rebuilt += own.shrinkage * own.mu * np.eye(shape[1])
    np.testing.assert_allclose(rebuilt, dense, rtol=1e-9, atol=1e-9 * np.abs(dense).max())


def test_woodbury_distances_equal_the_dense_path() -> None:
    """Classes with fewer and more records than dimensions; no rank cap reached: the
    low-rank form is exact, so distances equal scipy's on the dense blended covariance."""
    dimension = 24
    data, labels = _classes({"few": 3, "some": 15, "many": 120, "one": 1}, dimension)
    model = fit_mhb(data, labels)
    residuals = data.astype(np.float64) - model.class_means[
        [model.classes.index(lbl) for lbl in labels]]
    tied, _ = ledoit_wolf(residuals, assume_centered=True)
    production, predicted = _classes({"few": 5, "some": 5, "many": 5, "one": 5}, dimension,
                                     seed=3)
    scores = score_mhb(model, production, predicted, covariance="class")
    precisions = {
        name: np.linalg.inv(_regularised(_expected_class_covariance(
            data, labels, name, tied, prior=dimension)))
        for name in model.classes
    }
    for k, name in enumerate(model.classes):
        np.testing.assert_allclose(model.class_covariances.dense(k, model.tied_covariance),
                                   _expected_class_covariance(data, labels, name, tied,
                                                              prior=dimension), rtol=1e-8)
    for i, row in enumerate(production.astype(np.float64)):
        expected = {name: mahalanobis(row, model.class_means[k], precisions[name])
                    for k, name in enumerate(model.classes)}
        assert scores.predicted_distance[i] == pytest.approx(expected[predicted[i]], rel=1e-3)
        assert scores.nearest_distance[i] == pytest.approx(min(expected.values()), rel=1e-3)
    default = score_mhb(model, production, predicted)  # grouped by predicted class
    np.testing.assert_allclose(default.predicted_distance, scores.predicted_distance, rtol=1e-4)


def test_capped_rank_keeps_the_trace_and_scores_its_own_covariance() -> None:
    dimension = 16
    data, labels = _classes({"a": 200, "b": 150}, dimension, seed=4)
    exact = fit_mhb(data, labels)
    capped = fit_mhb(data, labels, limits=MHBLimits(class_rank=3))
    assert capped.info.class_rank == (3, 3) and exact.info.class_rank == (16, 16)
    production, predicted = _classes({"a": 6, "b": 6}, dimension, seed=5)
    scores = score_mhb(capped, production, predicted, covariance="class")
    for k in range(2):
        dense = capped.class_covariances.dense(k, capped.tied_covariance)
        truth = exact.class_covariances.dense(k, exact.tied_covariance)
        assert np.trace(dense) == pytest.approx(np.trace(truth), rel=1e-9)
        precision = np.linalg.inv(_regularised(dense))
        for i in np.flatnonzero(predicted == capped.classes[k]):
            expected = mahalanobis(production[i].astype(np.float64), capped.class_means[k],
                                   precision)
            assert scores.predicted_distance[i] == pytest.approx(expected, rel=1e-3)


# --- memory ---------------------------------------------------------------------------------


def test_many_tiny_classes_at_high_dimension_stay_small() -> None:
    """25 classes of 2 records at d=1024 (a ~200 KB request): the model and its scoring
    factors were 25 dense d x d matrices (>200 MB, >1 GB once inverted); now O(d^2 + C d)."""
    classes, dimension = 25, 1024
    rng = np.random.default_rng(0)
    labels = np.repeat([f"c{k}" for k in range(classes)], 2).astype(object)
    data = (rng.normal(size=(classes, dimension)) * 3).repeat(2, axis=0)
    data = (data + rng.normal(size=data.shape)).astype(np.float32)
    model = fit_mhb(data, labels)
    dense_pair = 2 * 8 * dimension**2  # tied + background, float64
    per_class_room = 8 * 8 * classes * dimension  # a few float64 d-vectors per class
    assert _array_bytes(model) <= dense_pair + per_class_room
    assert len(dump_model(model)) <= dense_pair + per_class_room + 64 * 1024
    score_mhb(model, data[:1], labels[:1])  # builds the scoring factors
    assert _array_bytes(model._whitening) <= 4 * (3 * dimension**2 + 8 * classes * dimension)
    assert model.memory_bytes() == model.nbytes + _array_bytes(model._whitening)


# --- limits ---------------------------------------------------------------------------------


def test_dimension_over_the_limit_is_refused() -> None:
    data, labels = _classes({"a": 5, "b": 5}, dimension=9)
    with pytest.raises(InvalidInput, match="dimension 9 is over the MHB limit of 8"):
        fit_mhb(data, labels, limits=MHBLimits(max_dimension=8))


def test_model_size_limit_lowers_ranks_then_refuses() -> None:
    dimension = 16
    data, labels = _classes({"a": 100, "b": 100}, dimension)
    full = fit_mhb(data, labels)
    budget = full.nbytes - 8 * dimension * 20  # 20 rows of factors too many
    smaller = fit_mhb(data, labels, limits=MHBLimits(max_model_bytes=budget))
    assert smaller.nbytes <= budget
    assert 0 < sum(smaller.info.class_rank) < sum(full.info.class_rank)
    def trace(model):
        return np.trace(model.class_covariances.dense(0, model.tied_covariance))

    assert trace(smaller) == pytest.approx(trace(full), rel=1e-9)
    with pytest.raises(InvalidInput, match="CHROMA_MHB_MAX_MODEL_BYTES"):
        fit_mhb(data, labels, limits=MHBLimits(max_model_bytes=2 * 8 * dimension**2))


def test_classes_beyond_the_limit_count_as_unlabelled() -> None:
    data, labels = _classes({"big": 30, "mid": 20, "tie-b": 5, "tie-a": 5, "small": 2}, 6)
    original = labels.copy()
    model = fit_mhb(data, labels, limits=MHBLimits(max_classes=3))
    assert model.classes == ("big", "mid", "tie-a")  # largest first, ties by name
    assert model.info.merged_classes == 2 and model.info.merged_records == 7
    assert model.info.n_unlabelled == 7
    np.testing.assert_array_equal(labels, original)  # the caller's labels are untouched
    scores = score_mhb(model, data[-3:], ["small"] * 3)
    assert np.isnan(scores.predicted_distance).all() and np.isfinite(scores.nearest_distance).all()


def test_limits_are_fit_parameters() -> None:
    params = MHBLimits(max_classes=7).as_params()
    assert params["limit_max_classes"] == 7 and set(params) == {
        "limit_max_dimension", "limit_max_classes", "limit_class_rank", "limit_max_model_bytes"}


def test_artifact_of_the_dense_format_is_refused() -> None:
    data, labels = _classes({"a": 5, "b": 5}, dimension=4)
    archive = dict(np.load(io.BytesIO(dump_model(fit_mhb(data, labels)))))
    header = json.loads(str(archive["header"][()]))
    header["version"] = 1
    archive["header"] = np.array(json.dumps(header))
    buffer = io.BytesIO()
    np.savez(buffer, **archive)
    with pytest.raises(ArtifactError, match="older"):
        load_model(buffer.getvalue())


def test_settings_give_the_limits_and_share_their_defaults(tmp_path) -> None:
    from chroma.labelling.scorer import mhb_limits
    from chroma.settings import Settings

    assert mhb_limits(Settings(data_dir=tmp_path)) == MHBLimits()
    limits = mhb_limits(Settings(data_dir=tmp_path, mhb_max_dimension=10, mhb_max_classes=3,
                                 mhb_class_rank=2, mhb_max_model_bytes=2**21))
    assert limits == MHBLimits(max_dimension=10, max_classes=3, class_rank=2,
                               max_model_bytes=2**21)
