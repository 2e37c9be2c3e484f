"""Raw signals of production records: each one larger = more worth labelling.

=================  ==========================================================  ===========
name               meaning                                                      needs
=================  ==========================================================  ===========
``mhb_predicted``  Mahalanobis distance to the predicted class's Gaussian      MHB, class
``mhb_nearest``    Mahalanobis distance to the nearest class                    MHB
``mhb_relative``   relative Mahalanobis (nearest class minus background)        MHB
``knn_distance``   mean distance to the k nearest training records              query engine
``entropy``        entropy (nats) of the logged class probabilities             scores
``low_margin``     ``1 - (p_top1 - p_top2)`` of the logged probabilities        scores
``disagreement``   share of the k training neighbours whose label differs       neighbours,
                   from the predicted class                                     class
=================  ==========================================================  ===========

A signal that cannot be computed for a record (no scores logged, no predicted class, no
neighbours) is NaN for that record; the combination skips it. Pure numpy; called by the
``recommend`` operation and the ``/log`` assessment through the package root.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from chroma.errors import InvalidInput
from chroma.scoring.mahalanobis import MHBScores

__all__ = [
    "SIGNAL_NAMES",
    "compute_signals",
    "knn_distance",
    "neighbour_disagreement",
    "predictive_uncertainty",
    "score_matrix",
]

SIGNAL_NAMES = (
    "mhb_predicted",
    "mhb_nearest",
    "mhb_relative",
    "knn_distance",
    "entropy",
    "low_margin",
    "disagreement",
)

ScoreKind = Literal["auto", "probabilities", "logits"]

_PROBABILITY_TOLERANCE = 1e-3
"""Slack on [0, 1] bounds and on sum <= 1 when deciding that scores are probabilities."""


def score_matrix(
    scores: Sequence[Mapping[str, float] | None],
    classes: Sequence[str] | None = None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Logged ``scores`` dicts (class -> value) as an (N, K) float64 matrix, NaN = absent.

    ``classes`` fixes the column order (unknown keys are dropped); by default it is the
    sorted union of all keys. A record without scores is a row of NaN.
    """
    if classes is None:
        classes = sorted({key for entry in scores if entry for key in entry})
    columns = {name: index for index, name in enumerate(classes)}
    matrix = np.full((len(scores), len(columns)), np.nan)
    for row, entry in enumerate(scores):
        for key, value in (entry or {}).items():
            column = columns.get(key)
            if column is not None and value is not None:
                matrix[row, column] = float(value)
    return matrix, tuple(classes)


def _as_probabilities(scores: np.ndarray, kind: ScoreKind) -> np.ndarray:
    """Rows of class probabilities (zeros where absent), plus a residual column.

    Probability rows that sum to less than one (a top-k log) get the missing mass as one
    extra 'other' bucket rather than being renormalised, which would understate the
    uncertainty. Logit rows (anything that is not a probability vector) go through a
    softmax over the present entries.
    """
    present = ~np.isnan(scores)
    filled = np.where(present, scores, 0.0)
    total = filled.sum(axis=1)
    in_unit = np.where(present, (scores >= -_PROBABILITY_TOLERANCE)
                       & (scores <= 1.0 + _PROBABILITY_TOLERANCE), True).all(axis=1)
    if kind == "auto":
        is_probability = in_unit & (total <= 1.0 + _PROBABILITY_TOLERANCE)
    else:
        is_probability = np.full(scores.shape[0], kind == "probabilities")

    probabilities = np.clip(filled, 0.0, None)
    residual = np.clip(1.0 - probabilities.sum(axis=1), 0.0, None)
    residual[residual <= _PROBABILITY_TOLERANCE] = 0.0
    with_residual = np.concatenate([probabilities, residual[:, None]], axis=1)

    logits = np.where(present, scores, -np.inf)
    row_max = np.max(logits, axis=1, initial=-np.inf, keepdims=True)
    row_max[~np.isfinite(row_max)] = 0.0
    exponentials = np.exp(logits - row_max)
    softmax = np.concatenate([exponentials, np.zeros((scores.shape[0], 1))], axis=1)

    chosen = np.where(is_probability[:, None], with_residual, softmax)
    sums = chosen.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return chosen / sums  # rows summing to 0 (nothing usable) become NaN


def predictive_uncertainty(
    scores: np.ndarray, *, kind: ScoreKind = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """``(entropy, low_margin)`` per row of an (N, K) score matrix (NaN = absent).

    ``kind='auto'`` treats a row as probabilities when every present value is in [0, 1]
    and they sum to at most 1, else as logits; force ``'logits'`` for models whose
    logits could pass for probabilities. Entropy is in nats (``scipy.stats.entropy``);
    ``low_margin = 1 - (p1 - p2)`` (1 = a tie, 0 = certain). Rows without any usable
    score give NaN.
    """
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim != 2:
        raise InvalidInput(f"scores must be an (N, K) matrix, got shape {matrix.shape}")
    if kind not in ("auto", "probabilities", "logits"):
        raise InvalidInput(f"kind must be auto, probabilities or logits, got {kind!r}")
    n_rows = matrix.shape[0]
    if matrix.shape[1] == 0:
        return np.full(n_rows, np.nan), np.full(n_rows, np.nan)
    probabilities = _as_probabilities(matrix, kind)
    usable = (~np.isnan(matrix)).any(axis=1) & np.isfinite(probabilities).all(axis=1)
    safe = np.where(usable[:, None], probabilities, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(safe > 0.0, -safe * np.log(safe), 0.0)
    entropy = terms.sum(axis=1)
    top_two = -np.partition(-safe, 1, axis=1)[:, :2] if safe.shape[1] > 1 else safe
    low_margin = 1.0 - (top_two[:, 0] - top_two[:, 1])
    entropy[~usable] = np.nan
    low_margin[~usable] = np.nan
    return entropy, low_margin


def knn_distance(neighbour_distances: np.ndarray) -> np.ndarray:
    """Mean distance to the k nearest training records, per row of an (N, k) array.

    Larger must mean farther: pass ``1 - cosine similarity`` when the engine answers
    similarities. NaN or inf pad rows with fewer than k neighbours; a row without any
    gives NaN.
    """
    distances = np.asarray(neighbour_distances, dtype=np.float64)
    if distances.ndim != 2:
        raise InvalidInput(f"neighbour distances must be (N, k), got shape {distances.shape}")
    finite = np.isfinite(distances)
    counts = finite.sum(axis=1)
    sums = np.where(finite, distances, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def neighbour_disagreement(
    predicted_class: Sequence[str | None] | np.ndarray,
    neighbour_labels: Sequence[Sequence[str | None]] | np.ndarray,
) -> np.ndarray:
    """Share of a record's training neighbours whose label is not its predicted class.

    ``neighbour_labels``: (N, k) labels of the k nearest training records (None pads a
    missing neighbour or an unlabelled one). NaN where the prediction is missing or no
    neighbour has a label. High values: the model's answer contradicts what it was
    trained on around this point.
    """
    labels = np.asarray(neighbour_labels, dtype=object)
    predicted = np.asarray(predicted_class, dtype=object)
    if labels.ndim != 2 or labels.shape[0] != predicted.shape[0]:
        raise InvalidInput(
            f"neighbour labels must be (N, k) for N={predicted.shape[0]} predictions, "
            f"got shape {labels.shape}"
        )
    present = np.not_equal(labels, None)
    agree = np.equal(labels, predicted[:, None]) & present
    counts = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        disagreement = 1.0 - agree.sum(axis=1) / counts
    disagreement[(counts == 0) | np.equal(predicted, None)] = np.nan
    return disagreement.astype(np.float64)


def compute_signals(
    mhb: MHBScores | None = None,
    *,
    knn_distances: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    predicted_class: Sequence[str | None] | np.ndarray | None = None,
    neighbour_labels: Sequence[Sequence[str | None]] | np.ndarray | None = None,
    score_kind: ScoreKind = "auto",
) -> dict[str, np.ndarray]:
    """Every raw signal the inputs allow, keyed by name (see the table above), float64.

    ``mhb``: :func:`chroma.scoring.score_mhb` of the batch; ``knn_distances``: (N, k) from the
    query engine; ``scores``: (N, K) from :func:`score_matrix`; ``predicted_class`` with
    ``neighbour_labels`` gives ``disagreement``. Missing inputs leave signals out.
    """
    signals: dict[str, np.ndarray] = {}
    if mhb is not None:
        signals["mhb_predicted"] = mhb.predicted_distance.astype(np.float64)
        signals["mhb_nearest"] = mhb.nearest_distance.astype(np.float64)
        signals["mhb_relative"] = mhb.relative_distance.astype(np.float64)
    if knn_distances is not None:
        signals["knn_distance"] = knn_distance(knn_distances)
    if scores is not None:
        signals["entropy"], signals["low_margin"] = predictive_uncertainty(scores, kind=score_kind)
    if predicted_class is not None and neighbour_labels is not None:
        signals["disagreement"] = neighbour_disagreement(predicted_class, neighbour_labels)
    lengths = {name: values.shape[0] for name, values in signals.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidInput(f"signals cover different numbers of records: {lengths}")
    return signals
