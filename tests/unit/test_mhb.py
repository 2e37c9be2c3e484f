"""MHB maths against independent computations (scikit-learn, scipy) and its edge cases."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis
from sklearn.covariance import OAS, EmpiricalCovariance, LedoitWolf, ledoit_wolf

from chroma.errors import InvalidInput
from chroma.scoring import (
    GLOBAL_CLASS,
    ArtifactError,
    class_indices,
    dump_model,
    fit_mhb,
    load_model,
    read_header,
    resolve_labels,
    score_mhb,
    shrunk_covariance,
    training_fingerprint,
)
from chroma.scoring import mahalanobis as mhb_model


def _blobs(seed: int = 0, n: int = 240, d: int = 6, offset: float = 0.0):
    rng = np.random.default_rng(seed)
    labels = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    centres = {"a": np.zeros(d), "b": np.full(d, 4.0), "c": np.r_[8.0, np.zeros(d - 1)]}
    mixing = rng.normal(size=(d, d)) / np.sqrt(d) + np.eye(d)
    data = np.array([centres[label] for label in labels]) + rng.normal(size=(n, d)) @ mixing
    return (data + offset).astype(np.float32), labels


def _regularised(covariance: np.ndarray) -> np.ndarray:
    """The ridge the model adds before inverting (1e-6 x mean variance)."""
    return covariance + mhb_model.RIDGE * np.trace(covariance) / len(covariance) * np.eye(
        len(covariance)
    )


# --- shrinkage estimators -------------------------------------------------------------


@pytest.mark.parametrize("shape", [(200, 5), (7, 12), (3, 40)])
def test_ledoit_wolf_matches_sklearn(shape: tuple[int, int]) -> None:
    data = np.random.default_rng(1).normal(size=shape) * np.arange(1, shape[1] + 1)
    covariance, shrinkage = shrunk_covariance(data, method="ledoit_wolf")
    reference = LedoitWolf().fit(data)
    np.testing.assert_allclose(covariance, reference.covariance_, rtol=1e-10, atol=1e-12)
    assert shrinkage == pytest.approx(reference.shrinkage_)


@pytest.mark.parametrize("shape", [(200, 5), (7, 12)])
def test_oas_matches_sklearn(shape: tuple[int, int]) -> None:
    data = np.random.default_rng(2).normal(size=shape) * np.arange(1, shape[1] + 1)
    covariance, shrinkage = shrunk_covariance(data, method="oas")
    reference = OAS().fit(data)
    np.testing.assert_allclose(covariance, reference.covariance_, rtol=1e-10, atol=1e-12)
    assert shrinkage == pytest.approx(reference.shrinkage_)


def test_one_sample_has_no_spread() -> None:
    covariance, shrinkage = shrunk_covariance(np.ones((1, 4)))
    assert shrinkage == 1.0
    assert not covariance.any()


# --- fit --------------------------------------------------------------------------------


def test_fit_matches_independent_estimates() -> None:
    data, labels = _blobs()
    model = fit_mhb(data, labels)
    assert model.classes == ("a", "b", "c")
    as64 = data.astype(np.float64)
    for k, name in enumerate(model.classes):
        np.testing.assert_allclose(model.class_means[k], as64[labels == name].mean(axis=0))
        assert model.class_counts[k] == (labels == name).sum()
    residuals = as64 - model.class_means[[model.classes.index(lbl) for lbl in labels]]
    tied, _ = ledoit_wolf(residuals, assume_centered=True)
    np.testing.assert_allclose(model.tied_covariance, tied, rtol=1e-9)
    np.testing.assert_allclose(
        model.background_covariance, LedoitWolf().fit(as64).covariance_, rtol=1e-9
    )
    # Per-class: the documented blend of the class's own LW estimate with the tied one.
    d = data.shape[1]
    for k, name in enumerate(model.classes):
        members = as64[labels == name]
        blend = (len(members) - 1) / (len(members) - 1 + d)
        expected = blend * LedoitWolf().fit(members).covariance_ + (1 - blend) * tied
        np.testing.assert_allclose(model.class_covariances[k], expected, rtol=1e-9)


def test_resolve_labels_falls_back_to_inference_class() -> None:
    resolved = resolve_labels(["cat", None, "", None], ["dog", "dog", "cow", None])
    assert resolved.tolist() == ["cat", "dog", "cow", None]
    assert resolve_labels(None, ["x"]).tolist() == ["x"]
    with pytest.raises(InvalidInput):
        resolve_labels(["a"], ["a", "b"])


def test_unlabelled_records_shape_only_the_background() -> None:
    data, labels = _blobs()
    partly = labels.astype(object)
    partly[:40] = None
    model = fit_mhb(data, partly)
    assert model.info.n_unlabelled == 40
    np.testing.assert_allclose(model.background_mean, data.astype(np.float64).mean(axis=0))
    assert model.class_counts.sum() == len(data) - 40


# --- scoring against scipy ----------------------------------------------------------------


@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_tied_distances_match_scipy(offset: float) -> None:
    data, labels = _blobs(offset=offset)
    model = fit_mhb(data, labels)
    production, predicted = _blobs(seed=7, n=50, offset=offset)
    scores = score_mhb(model, production, predicted, predicted_covariance="tied")
    tied_precision = np.linalg.inv(_regularised(model.tied_covariance))
    background_precision = np.linalg.inv(_regularised(model.background_covariance))
    for i, row in enumerate(production.astype(np.float64)):
        per_class = [mahalanobis(row, mean, tied_precision) for mean in model.class_means]
        expected_predicted = per_class[model.classes.index(predicted[i])]
        background = mahalanobis(row, model.background_mean, background_precision)
        assert scores.predicted_distance[i] == pytest.approx(expected_predicted, rel=1e-3)
        assert scores.nearest_distance[i] == pytest.approx(min(per_class), rel=1e-3)
        assert scores.nearest_class[i] == int(np.argmin(per_class))
        assert scores.background_distance[i] == pytest.approx(background, rel=1e-3)
        assert scores.relative_distance[i] == pytest.approx(
            min(per_class) ** 2 - background**2, rel=1e-3, abs=1e-2
        )


def test_class_covariance_distances_match_scipy() -> None:
    data, labels = _blobs(seed=3)
    model = fit_mhb(data, labels)
    production, predicted = _blobs(seed=8, n=30)
    scores = score_mhb(model, production, predicted, covariance="class")
    precisions = [np.linalg.inv(_regularised(c)) for c in model.class_covariances]
    for i, row in enumerate(production.astype(np.float64)):
        per_class = [
            mahalanobis(row, mean, precision)
            for mean, precision in zip(model.class_means, precisions, strict=True)
        ]
        assert scores.predicted_distance[i] == pytest.approx(
            per_class[model.classes.index(predicted[i])], rel=1e-3
        )
        assert scores.nearest_distance[i] == pytest.approx(min(per_class), rel=1e-3)
    # Default: the predicted class under its own covariance, the rest under the tied one.
    default = score_mhb(model, production, predicted)
    np.testing.assert_allclose(default.predicted_distance, scores.predicted_distance, rtol=1e-4)
    tied = score_mhb(model, production, predicted, predicted_covariance="tied")
    np.testing.assert_allclose(default.nearest_distance, tied.nearest_distance)


def test_unshrunk_limit_is_the_empirical_mahalanobis() -> None:
    """Many samples in few dimensions: shrinkage ~ 0, so the plain estimate must agree."""
    rng = np.random.default_rng(4)
    data = rng.normal(size=(20_000, 3)) @ np.array([[2.0, 0, 0], [0.5, 1.0, 0], [0, 0, 0.2]])
    model = fit_mhb(data.astype(np.float32))
    precision = EmpiricalCovariance().fit(data).get_precision()
    point = np.array([[1.0, -2.0, 0.3]])
    expected = mahalanobis(point[0], data.mean(axis=0), precision)
    assert score_mhb(model, point).nearest_distance[0] == pytest.approx(expected, rel=1e-2)


def test_chunked_scoring_equals_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    data, labels = _blobs()
    model = fit_mhb(data, labels)
    whole = score_mhb(model, data, labels)
    monkeypatch.setattr(mhb_model, "SCORING_CHUNK_ROWS", 7)
    chunked = score_mhb(model, data, labels)
    np.testing.assert_allclose(chunked.predicted_distance, whole.predicted_distance, rtol=1e-5)
    np.testing.assert_array_equal(chunked.nearest_class, whole.nearest_class)


def test_predicted_class_by_name_or_index_and_unknown_is_nan() -> None:
    data, labels = _blobs()
    model = fit_mhb(data, labels)
    names = ["b", "zebra", None, "a"]
    by_name = score_mhb(model, data[:4], names)
    by_index = score_mhb(model, data[:4], class_indices(model, names))
    np.testing.assert_array_equal(class_indices(model, names), [1, -1, -1, 0])
    np.testing.assert_allclose(by_name.predicted_distance, by_index.predicted_distance)
    assert np.isnan(by_name.predicted_distance[1:3]).all()
    assert np.isfinite(by_name.predicted_distance[[0, 3]]).all()
    assert np.isnan(score_mhb(model, data[:4]).predicted_distance).all()


# --- invariances ----------------------------------------------------------------------------


def test_training_order_does_not_matter() -> None:
    data, labels = _blobs()
    order = np.random.default_rng(5).permutation(len(data))
    model, shuffled = fit_mhb(data, labels), fit_mhb(data[order], labels[order])
    np.testing.assert_allclose(shuffled.class_means, model.class_means, rtol=1e-6)
    np.testing.assert_allclose(shuffled.tied_covariance, model.tied_covariance, rtol=1e-6)
    np.testing.assert_allclose(shuffled.class_covariances, model.class_covariances, rtol=1e-6)


def test_production_order_permutes_scores() -> None:
    data, labels = _blobs()
    model = fit_mhb(data, labels)
    order = np.random.default_rng(6).permutation(len(data))
    straight = score_mhb(model, data, labels)
    permuted = score_mhb(model, data[order], labels[order])
    np.testing.assert_allclose(permuted.relative_distance, straight.relative_distance[order],
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(permuted.nearest_class, straight.nearest_class[order])


def test_far_points_score_higher() -> None:
    data, labels = _blobs()
    model = fit_mhb(data, labels)
    near = score_mhb(model, model.class_means[:1].astype(np.float32))
    far = score_mhb(model, (model.class_means[:1] + 50.0).astype(np.float32))
    assert far.nearest_distance[0] > 10 * near.nearest_distance[0]
    assert far.relative_distance[0] > near.relative_distance[0]


# --- degenerate data ------------------------------------------------------------------------


def test_one_sample_class_uses_the_tied_covariance() -> None:
    data, labels = _blobs()
    labels = labels.astype(object)
    labels[0] = "lonely"
    model = fit_mhb(data, labels)
    k = model.classes.index("lonely")
    assert model.class_counts[k] == 1
    np.testing.assert_allclose(model.class_covariances[k], model.tied_covariance)
    scores = score_mhb(model, data[:5], ["lonely"] * 5, covariance="class")
    assert np.isfinite(scores.predicted_distance).all()
    assert scores.predicted_distance[0] == pytest.approx(0.0, abs=1e-2)


def test_fewer_samples_than_dimensions_and_duplicates_stay_finite() -> None:
    rng = np.random.default_rng(9)
    d = 64
    wide = rng.normal(size=(10, d)).astype(np.float32)
    duplicates = np.repeat(rng.normal(size=(1, d)), 5, axis=0).astype(np.float32)
    data = np.vstack([wide, duplicates])
    labels = ["wide"] * 10 + ["dup"] * 5
    model = fit_mhb(data, labels)
    for covariance in ("tied", "class"):
        production = rng.normal(size=(20, d)).astype(np.float32)
        scores = score_mhb(model, production, covariance=covariance)
        assert np.isfinite(scores.nearest_distance).all()
        assert np.isfinite(scores.relative_distance).all()
    assert np.all(np.linalg.eigvalsh(model.class_covariances) > 0)


def test_constant_feature_is_tolerated_and_deviation_on_it_is_far() -> None:
    data, labels = _blobs()
    data[:, 2] = 3.0
    model = fit_mhb(data, labels)
    typical = data[:10].copy()
    shifted = typical.copy()
    shifted[:, 2] += 1.0
    typical_scores, shifted_scores = score_mhb(model, typical), score_mhb(model, shifted)
    assert np.isfinite(shifted_scores.nearest_distance).all()
    assert (shifted_scores.nearest_distance > typical_scores.nearest_distance).all()


def test_identical_training_points() -> None:
    model = fit_mhb(np.ones((5, 3), dtype=np.float32), ["a"] * 5)
    scores = score_mhb(model, np.array([[1, 1, 1], [2, 1, 1]], dtype=np.float32))
    assert scores.nearest_distance[0] == pytest.approx(0.0, abs=1e-6)
    assert scores.nearest_distance[1] > 0


def test_no_labels_fits_one_global_gaussian() -> None:
    data, _ = _blobs()
    model = fit_mhb(data, [None] * len(data))
    assert model.is_global and model.classes == (GLOBAL_CLASS,)
    scores = score_mhb(model, data[:8], ["whatever"] * 8)
    np.testing.assert_allclose(scores.predicted_distance, scores.nearest_distance)
    assert np.isnan(scores.relative_distance).all()
    np.testing.assert_allclose(scores.nearest_distance, scores.background_distance, rtol=1e-4)


def test_bad_inputs_are_refused() -> None:
    data, labels = _blobs()
    model = fit_mhb(data, labels)
    with pytest.raises(InvalidInput, match="dimension 3"):
        score_mhb(model, np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(InvalidInput, match="NaN"):
        fit_mhb(np.full((3, 2), np.nan), None)
    with pytest.raises(InvalidInput):
        fit_mhb(data, labels[:-1])
    with pytest.raises(InvalidInput):
        score_mhb(fit_mhb(data, labels, per_class=False), data, covariance="class")


# --- artifact and fingerprint ---------------------------------------------------------------


def test_artifact_round_trip_scores_identically() -> None:
    data, labels = _blobs()
    model = fit_mhb(data, labels, fingerprint="abc")
    blob = dump_model(model, metadata={"embedding_set_key": "k1"})
    loaded = load_model(blob)
    assert loaded.classes == model.classes and loaded.info == model.info
    for covariance in ("tied", "class"):
        before = score_mhb(model, data, labels, covariance=covariance)
        after = score_mhb(loaded, data, labels, covariance=covariance)
        np.testing.assert_array_equal(after.predicted_distance, before.predicted_distance)
    header = read_header(blob)
    assert header["format"] == "chroma-mhb" and header["version"] == 1
    assert header["metadata"] == {"embedding_set_key": "k1"}
    assert header["fit"]["fingerprint"] == "abc"
    no_per_class = load_model(dump_model(fit_mhb(data, labels, per_class=False)))
    assert no_per_class.class_covariances is None


def test_artifact_refuses_garbage_and_future_versions() -> None:
    with pytest.raises(ArtifactError):
        load_model(b"not a zip")
    data, labels = _blobs()
    archive = dict(np.load(io.BytesIO(dump_model(fit_mhb(data, labels)))))
    header = json.loads(str(archive["header"][()]))
    header["version"] = 99
    archive["header"] = np.array(json.dumps(header))
    buffer = io.BytesIO()
    np.savez(buffer, **archive)
    with pytest.raises(ArtifactError, match="newer"):
        load_model(buffer.getvalue())


def test_fingerprint_tracks_content_not_order() -> None:
    files = {"f1": 100, "f2": 50}
    base = training_fingerprint(files)
    assert base == training_fingerprint([("f2", 50), ("f1", 100)])
    assert base != training_fingerprint({"f1": 100, "f2": 49})
    assert base != training_fingerprint({"f1": 100})
    assert base != training_fingerprint(files, params={"method": "oas"})
    assert len(base) == 64
