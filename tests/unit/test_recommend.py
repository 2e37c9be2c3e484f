"""Recommendation maths: signals vs scipy, rank normalisation, combination, selection."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import entropy, percentileofscore

from chroma.errors import InvalidInput
from chroma.scoring import (
    RecommendParams,
    ScoringReference,
    SignalReference,
    assess,
    combine,
    compute_signals,
    fit_mhb,
    fit_reference,
    knn_distance,
    neighbour_disagreement,
    predictive_uncertainty,
    prioritise,
    rank_order,
    score_matrix,
    score_mhb,
    select_diverse,
)

# --- uncertainty ------------------------------------------------------------------------


def test_entropy_and_margin_of_probabilities_match_scipy() -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(5), size=20)
    got_entropy, got_low_margin = predictive_uncertainty(probabilities)
    np.testing.assert_allclose(got_entropy, entropy(probabilities, axis=1), rtol=1e-10)
    ordered = np.sort(probabilities, axis=1)
    np.testing.assert_allclose(got_low_margin, 1 - (ordered[:, -1] - ordered[:, -2]))


def test_logits_go_through_softmax() -> None:
    logits = np.array([[2.0, -1.0, 0.5], [10.0, 10.0, -3.0]])
    got_entropy, got_low_margin = predictive_uncertainty(logits)
    probabilities = softmax(logits, axis=1)
    np.testing.assert_allclose(got_entropy, entropy(probabilities, axis=1), rtol=1e-10)
    assert got_low_margin[1] == pytest.approx(1.0)
    forced, _ = predictive_uncertainty(np.array([[0.2, 0.3]]), kind="logits")
    assert forced[0] == pytest.approx(entropy(softmax([0.2, 0.3])))


def test_partial_probabilities_keep_the_missing_mass_and_missing_rows_are_nan() -> None:
    matrix, classes = score_matrix([{"cat": 0.7}, None, {"cat": 0.5, "dog": 0.5}, {}])
    assert classes == ("cat", "dog")
    got_entropy, got_low_margin = predictive_uncertainty(matrix)
    assert got_entropy[0] == pytest.approx(entropy([0.7, 0.3]))
    assert got_low_margin[0] == pytest.approx(1 - 0.4)
    assert np.isnan(got_entropy[[1, 3]]).all() and np.isnan(got_low_margin[[1, 3]]).all()
    assert got_entropy[2] == pytest.approx(np.log(2))


def test_score_matrix_respects_a_given_class_order() -> None:
    matrix, classes = score_matrix([{"b": 0.1, "a": 0.9, "z": 0.0}], classes=["a", "b"])
    assert classes == ("a", "b")
    np.testing.assert_array_equal(matrix, [[0.9, 0.1]])


# --- neighbour signals -----------------------------------------------------------------


def test_knn_distance_is_the_mean_of_finite_neighbours() -> None:
    distances = np.array([[1.0, 2.0, 3.0], [4.0, np.nan, np.inf], [np.nan, np.nan, np.nan]])
    got = knn_distance(distances)
    np.testing.assert_allclose(got[:2], [2.0, 4.0])
    assert np.isnan(got[2])


def test_disagreement_counts_labelled_neighbours_only() -> None:
    labels = [["a", "a", "b", None], ["b", "b", "b", "b"], [None, None, None, None], ["a"] * 4]
    got = neighbour_disagreement(["a", "a", "a", None], labels)
    np.testing.assert_allclose(got[:2], [1 / 3, 1.0])
    assert np.isnan(got[2]) and np.isnan(got[3])


def test_signals_must_cover_the_same_records() -> None:
    with pytest.raises(InvalidInput, match="different numbers"):
        compute_signals(knn_distances=np.ones((3, 2)), scores=np.ones((4, 2)) / 2)


# --- rank normalisation -------------------------------------------------------------------


def test_levels_are_mid_ranks_of_the_reference() -> None:
    samples = np.random.default_rng(1).integers(0, 20, 500).astype(float)
    reference = SignalReference.fit(samples)
    points = np.unique(samples)
    expected = [percentileofscore(samples, p, kind="mean") / 100 for p in points]
    np.testing.assert_allclose(reference.normalise(points), expected, rtol=1e-12)


def test_normalisation_is_monotone_bounded_and_ordered_in_the_tails() -> None:
    samples = np.random.default_rng(2).gamma(2.0, size=3000)
    reference = SignalReference.fit(samples, max_points=101)
    grid = np.linspace(-5, samples.max() * 4, 5000)
    levels = reference.normalise(grid)
    assert np.all(np.diff(levels) > 0)  # strictly: no ties among distinct inputs
    assert np.all((levels > 0) & (levels < 1))
    far = reference.normalise(np.array([samples.max() + 1, samples.max() + 5]))
    assert far[0] < far[1]


def test_normalisation_keeps_nan_and_shape_and_round_trips() -> None:
    reference = SignalReference.fit(np.array([1.0, 2.0, np.nan, 3.0]))
    assert reference.count == 3
    got = reference.normalise(np.array([[np.nan, 2.0]]))
    assert got.shape == (1, 2) and np.isnan(got[0, 0])
    again = SignalReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    np.testing.assert_array_equal(again.normalise([0.5, 2.5]), reference.normalise([0.5, 2.5]))
    assert np.ndim(reference.normalise(2.0)) == 0
    with pytest.raises(InvalidInput):
        SignalReference.fit(np.array([np.nan]))


# --- combination --------------------------------------------------------------------------


@pytest.mark.parametrize("combination", ["evidence", "mean"])
def test_combination_skips_missing_signals_and_stays_in_unit_interval(combination: str) -> None:
    params = RecommendParams(weights={"x": 2.0, "y": 1.0, "ignored": 0.0},
                             combination=combination)
    x = np.array([0.9, 0.2, np.nan, 0.5])
    y = np.array([0.1, np.nan, np.nan, 0.5])
    score = combine({"x": x, "y": y, "ignored": np.ones(4), "unknown": np.ones(4)}, params)
    alone = combine({"x": x}, params)
    assert score[1] == pytest.approx(alone[1])  # y missing: x alone decides
    assert np.isnan(score[2])
    assert score[3] == pytest.approx(0.5)  # equal levels: any mean gives that level
    if combination == "mean":
        assert score[0] == pytest.approx(np.average([0.9, 0.1], weights=[2, 1]))
    else:
        assert score[0] == pytest.approx(1 - (0.1 ** (2 / 3)) * (0.9 ** (1 / 3)))
    assert np.all((score[~np.isnan(score)] >= 0) & (score[~np.isnan(score)] <= 1))


@pytest.mark.parametrize("combination", ["evidence", "mean"])
def test_combination_is_monotone_in_each_signal(combination: str) -> None:
    rng = np.random.default_rng(3)
    params = RecommendParams(weights={"x": 1.0, "y": 0.5}, combination=combination)
    x, y = rng.uniform(size=200), rng.uniform(size=200)
    base = combine({"x": x, "y": y}, params)
    raised = combine({"x": x + 0.05 * (1 - x), "y": y}, params)
    assert np.all(raised > base)


def test_params_are_validated() -> None:
    with pytest.raises(InvalidInput):
        RecommendParams(weights={"x": -1.0})
    with pytest.raises(InvalidInput):
        RecommendParams(label_percentile=120)


def test_rank_order_puts_nan_last_and_keeps_ties_stable() -> None:
    np.testing.assert_array_equal(rank_order(np.array([0.2, np.nan, 0.9, 0.2])), [2, 0, 3, 1])


# --- end to end on a small mixture -------------------------------------------------------


def _train_and_reference(seed: int = 4):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 8)) * 4
    labels = rng.integers(0, 3, 900)
    data = (centres[labels] + rng.normal(size=(900, 8))).astype(np.float32)
    names = np.array(["a", "b", "c"])[labels]
    model = fit_mhb(data, names)
    reference = fit_reference(compute_signals(score_mhb(model, data, names)))
    return rng, centres, model, reference


def test_out_of_distribution_records_get_the_label_verdict() -> None:
    rng, centres, model, reference = _train_and_reference()
    inside = (centres[rng.integers(0, 3, 200)] + rng.normal(size=(200, 8))).astype(np.float32)
    outside = (rng.normal(size=(10, 8)) + 25).astype(np.float32)
    batch = np.vstack([inside, outside])
    priorities = prioritise(compute_signals(score_mhb(model, batch)), reference)
    top = rank_order(priorities.score)[:10]
    assert set(top.tolist()) == set(range(200, 210))
    verdicts = [a.verdict for a in assess(compute_signals(score_mhb(model, batch)), reference)]
    assert verdicts[200:] == ["label"] * 10
    assert verdicts[:200].count("label") < 40  # about 5 % of in-distribution records
    assert np.all((priorities.percentile >= 0) & (priorities.percentile <= 100))


def test_one_record_alone_scores_as_in_a_batch_and_reference_round_trips() -> None:
    rng, centres, model, reference = _train_and_reference()
    batch = (centres[rng.integers(0, 3, 50)] + rng.normal(size=(50, 8))).astype(np.float32)
    whole = prioritise(compute_signals(score_mhb(model, batch)), reference)
    single = assess(compute_signals(score_mhb(model, batch[7:8])), reference)[0]
    assert single.score == pytest.approx(whole.score[7])
    assert single.percentile == pytest.approx(whole.percentile[7])
    assert set(single.signals) == {"mhb_nearest", "mhb_relative"}  # no class: no predicted
    with_entropy = {**compute_signals(score_mhb(model, batch[7:8])), "entropy": np.array([0.3])}
    unscaled = assess(with_entropy, reference)[0]  # no reference for entropy: shown, not counted
    assert unscaled.raw_signals["entropy"] == 0.3 and "entropy" not in unscaled.signals
    assert unscaled.score == pytest.approx(single.score)
    restored = ScoringReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    again = prioritise(compute_signals(score_mhb(model, batch)), restored)
    np.testing.assert_allclose(again.score, whole.score)


def test_assessments_hold_each_records_finite_signals_as_prioritise_computes_them() -> None:
    rng, centres, model, reference = _train_and_reference()
    batch = (centres[rng.integers(0, 3, 40)] + rng.normal(size=(40, 8))).astype(np.float32)
    predicted = ["c0", "c1", None, "c2"] * 10
    signals = compute_signals(score_mhb(model, batch, predicted))
    signals["entropy"] = rng.uniform(0, 1, 40)
    signals["entropy"][::3] = np.nan  # logged without scores
    signals["knn_distance"] = np.where(np.arange(40) % 5 == 0, np.inf, rng.uniform(0, 1, 40))
    priorities = prioritise(signals, reference)
    assessments = assess(signals, reference)
    assert len(assessments) == 40
    for row, got in enumerate(assessments):
        assert got.score == priorities.score[row] or np.isnan(priorities.score[row])
        assert got.percentile == priorities.percentile[row]
        assert got.verdict == ("label" if got.percentile >= 95.0 else "ok")
        assert got.signals == {name: float(levels[row])
                               for name, levels in priorities.normalised.items()
                               if np.isfinite(levels[row])}
        assert list(got.raw_signals) == [name for name in signals
                                         if np.isfinite(signals[name][row])]
        assert got.raw_signals == {name: float(values[row]) for name, values in signals.items()
                                   if np.isfinite(values[row])}
        assert all(type(v) is float for v in [*got.signals.values(), *got.raw_signals.values()])
    assert "entropy" not in assessments[0].raw_signals and "entropy" in assessments[1].raw_signals
    assert assess({}, reference) == []


# --- diverse selection ----------------------------------------------------------------------


def _clustered(seed: int = 5):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    membership = np.repeat(np.arange(4), [40, 5, 5, 5])
    points = centres[membership] + rng.normal(scale=0.1, size=(55, 2))
    scores = np.where(membership == 0, 0.95, 0.8) + rng.uniform(0, 0.01, 55)
    return points, scores, membership


def test_diverse_page_covers_every_cluster() -> None:
    points, scores, membership = _clustered()
    page = select_diverse(points, scores, 4, diversity=0.7)
    assert sorted(membership[page].tolist()) == [0, 1, 2, 3]
    # Only the order of scores matters: a monotone transform picks the same page.
    np.testing.assert_array_equal(select_diverse(points, scores**8, 4, diversity=0.7), page)
    plain = rank_order(scores)[:4]
    assert set(membership[plain].tolist()) == {0}  # without diversity: one cluster


def test_no_diversity_is_score_order_and_radius_skips_duplicates() -> None:
    points, scores, membership = _clustered()
    np.testing.assert_array_equal(select_diverse(points, scores, 6, diversity=0.0),
                                  rank_order(scores)[:6])
    page = select_diverse(points, scores, 10, diversity=0.0, min_distance=1.0)
    assert len(page) == 4  # one per cluster, then only near-duplicates remain
    assert sorted(membership[page].tolist()) == [0, 1, 2, 3]


def test_selection_does_not_depend_on_candidate_order() -> None:
    points, scores, _ = _clustered()
    order = np.random.default_rng(6).permutation(len(points))
    page = select_diverse(points, scores, 8, diversity=0.7)
    shuffled = select_diverse(points[order], scores[order], 8, diversity=0.7)
    np.testing.assert_array_equal(order[shuffled], page)


def test_cosine_metric_and_bad_arguments() -> None:
    vectors = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    page = select_diverse(vectors, np.array([0.9, 0.8, 0.1]), 2, metric="cosine",
                          min_distance=0.01)
    np.testing.assert_array_equal(page, [0, 2])  # [2, 0] is a duplicate of [1, 0] by angle
    with pytest.raises(InvalidInput):
        select_diverse(vectors, np.ones(2), 2)
    assert select_diverse(vectors, np.ones(3), 0).size == 0
