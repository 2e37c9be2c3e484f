"""One priority score per record from its normalised signals, and the assessment verdict.

Combination (``RecommendParams.combination``), over the signals a record has (NaN ones
are skipped, and their weight with them), with normalised levels ``p_s`` in (0, 1):

* ``"evidence"`` (default): ``1 - prod_s (1 - p_s) ** (w_s / sum w)``, i.e. the weighted
  mean of the tail evidences ``-log(1 - p_s)`` (as in Fisher's method) mapped back to
  [0, 1]. One signal far in its tail lifts the score more than several mildly high ones,
  which is what out-of-distribution records look like; the tails of
  :class:`SignalReference` keep it ordered past the training range.
* ``"mean"``: the weighted arithmetic mean of ``p_s``.

Both are in [0, 1] and non-decreasing in every signal. The **percentile** of a score
is its level (x 100) among the scores of the reference records themselves, and the
**verdict** is ``"label"`` when that percentile is at least ``label_percentile``
(default 95: a record more unusual than 95 % of the training data), else ``"ok"``.

Called by the ``recommend`` operation (batches) and the ``/log`` assessment (one record).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from chroma.errors import InvalidInput
from chroma.scoring.normalise import SignalReference

__all__ = [
    "DEFAULT_WEIGHTS",
    "AssessedColumns",
    "Assessment",
    "Priorities",
    "RecommendParams",
    "ScoringReference",
    "assess",
    "assess_columns",
    "combine",
    "fit_reference",
    "prioritise",
    "rank_order",
]

Combination = Literal["evidence", "mean"]
Verdict = Literal["label", "ok"]

DEFAULT_WEIGHTS: Mapping[str, float] = {
    "mhb_predicted": 2.0,
    "mhb_nearest": 0.5,
    "mhb_relative": 0.0,
    "knn_distance": 0.5,
    "entropy": 0.5,
    "low_margin": 0.0,
    "disagreement": 0.0,
}
"""Default signal weights, chosen with ``bench/quality.py --tune`` (held-out classes on
synthetic, digits and wine data): the distance to the predicted class's own Gaussian
carries most of the evidence, the kNN distance and the entropy add to it, and
``mhb_nearest`` keeps a score for records logged without a predicted class. Zero
weights are still computed and shown: ``mhb_relative`` ranked well on the synthetic
mixture but inverted on 3-class wine (AUROC 0.3), ``low_margin`` duplicates ``entropy``
and ``disagreement`` did not add over the rest in the grid."""

_MAX_LEVEL = 1.0 - 1e-15
"""Levels are clipped below 1 so that ``log(1 - p)`` stays finite."""


@dataclass(frozen=True)
class RecommendParams:
    """How normalised signals become a priority score and a verdict."""

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    """Weight per signal name (>= 0); a signal not listed, or weighted 0, is ignored."""
    combination: Combination = "evidence"
    """'evidence' (tail-evidence mean, default) or 'mean' (arithmetic mean of levels)."""
    label_percentile: float = 95.0
    """Verdict threshold in [0, 100]: 'label' at or above this percentile, else 'ok'."""

    def __post_init__(self) -> None:
        if any(weight < 0 or not np.isfinite(weight) for weight in self.weights.values()):
            raise InvalidInput(f"signal weights must be finite and >= 0, got {self.weights}")
        if self.combination not in ("evidence", "mean"):
            raise InvalidInput(f"combination must be 'evidence' or 'mean': {self.combination!r}")
        if not 0.0 <= self.label_percentile <= 100.0:
            raise InvalidInput(f"label_percentile must be in [0, 100]: {self.label_percentile}")


def combine(normalised: Mapping[str, np.ndarray], params: RecommendParams) -> np.ndarray:
    """Priority in [0, 1] per record from normalised signals; NaN if it has none weighted."""
    used = {
        name: np.asarray(levels, dtype=np.float64)
        for name, levels in normalised.items()
        if params.weights.get(name, 0.0) > 0
    }
    if not used:
        size = len(next(iter(normalised.values()))) if normalised else 0
        return np.full(size, np.nan)
    stacked = np.stack(list(used.values()))  # (S, N)
    weights = np.array([params.weights[name] for name in used])[:, None]
    available = ~np.isnan(stacked)
    total_weight = np.where(available, weights, 0.0).sum(axis=0)
    levels = np.clip(np.where(available, stacked, 0.0), 0.0, _MAX_LEVEL)
    with np.errstate(invalid="ignore", divide="ignore"):
        if params.combination == "mean":
            return (weights * levels).sum(axis=0) / total_weight
        evidence = -(weights * np.log1p(-levels)).sum(axis=0) / total_weight
        return -np.expm1(-evidence)


@dataclass(frozen=True, eq=False)
class ScoringReference:
    """Everything needed to score records alone: per-signal references, the score
    distribution of the reference records, and the parameters. Build with
    :func:`fit_reference`; store with :meth:`to_dict` (JSON)."""

    signals: Mapping[str, SignalReference]
    """Reference distribution per signal name."""
    scores: SignalReference
    """Distribution of the combined score of the reference records (for percentiles)."""
    params: RecommendParams
    """Weights, combination and verdict threshold used for ``scores``."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "signals": {name: ref.to_dict() for name, ref in self.signals.items()},
            "scores": self.scores.to_dict(),
            "params": {**asdict(self.params), "weights": dict(self.params.weights)},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoringReference:
        return cls(
            signals={
                name: SignalReference.from_dict(ref) for name, ref in data["signals"].items()
            },
            scores=SignalReference.from_dict(data["scores"]),
            params=RecommendParams(**data["params"]),
        )


@dataclass(frozen=True)
class Priorities:
    """Scores of a batch; arrays in the batch's order."""

    score: np.ndarray
    """(N,) priority in [0, 1]; NaN when a record has no weighted signal."""
    percentile: np.ndarray
    """(N,) percentile of ``score`` among the reference records, in [0, 100]."""
    normalised: dict[str, np.ndarray]
    """Normalised level in (0, 1) of each signal (NaN where missing): the 'why'."""


def _normalise_all(
    signals: Mapping[str, np.ndarray], references: Mapping[str, SignalReference]
) -> dict[str, np.ndarray]:
    """Levels of every signal; NaN for a signal without a reference (it cannot be put
    on the common scale, so it is shown raw but does not count)."""
    normalised: dict[str, np.ndarray] = {}
    for name, values in signals.items():
        array = np.atleast_1d(np.asarray(values, dtype=np.float64))
        reference = references.get(name)
        normalised[name] = (
            reference.normalise(array) if reference is not None else np.full(array.shape, np.nan)
        )
    return normalised


def fit_reference(
    reference_signals: Mapping[str, np.ndarray], params: RecommendParams | None = None
) -> ScoringReference:
    """Build the scoring reference from raw signals of reference records.

    Use the training records scored exactly like production (MHB on the training
    embeddings with their labels as predictions, kNN and neighbour labels *excluding the
    record itself*, their logged scores). A subsample of ~10k records is plenty. A
    signal with no finite value here (e.g. training logged no scores) gets no reference
    and does not count in production scores; to use it anyway, pass a production sample
    of that signal under its name (any mapping of name -> values works).
    """
    params = params or RecommendParams()
    references = {
        name: SignalReference.fit(values)
        for name, values in reference_signals.items()
        if np.isfinite(np.asarray(values, dtype=np.float64)).any()
    }
    if not references:
        raise InvalidInput("no reference signal has a finite value")
    normalised = _normalise_all(
        {name: reference_signals[name] for name in references}, references
    )
    scores = combine(normalised, params)
    if not np.isfinite(scores).any():
        raise InvalidInput(f"no weighted signal among {sorted(references)}")
    return ScoringReference(
        signals=references, scores=SignalReference.fit(scores), params=params
    )


def prioritise(
    signals: Mapping[str, np.ndarray], reference: ScoringReference
) -> Priorities:
    """Normalise and combine the raw signals of a batch (from ``compute_signals``)."""
    normalised = _normalise_all(signals, reference.signals)
    score = combine(normalised, reference.params)
    percentile = 100.0 * reference.scores.normalise(score)
    return Priorities(score=score, percentile=percentile, normalised=normalised)


def rank_order(score: np.ndarray) -> np.ndarray:
    """Indices that sort ``score`` best first; NaN last; ties keep input order."""
    array = np.asarray(score, dtype=np.float64)
    return np.argsort(np.where(np.isnan(array), np.inf, -array), kind="stable")


@dataclass(frozen=True)
class Assessment:
    """The answer to 'is this production record worth labelling?'."""

    score: float
    """Priority in [0, 1] (NaN when no signal could be computed)."""
    percentile: float
    """Percentile of ``score`` among the reference (training) records, 0-100."""
    verdict: Verdict
    """'label' when ``percentile >= label_percentile``, else 'ok'."""
    signals: dict[str, float]
    """Normalised level (0-1) of each available signal."""
    raw_signals: dict[str, float]
    """Raw value of each available signal (distances, nats, shares)."""


@dataclass(frozen=True)
class AssessedColumns:
    """The assessments of a batch as columns (what :func:`assess` gives per record)."""

    score: np.ndarray
    """(N,) priority in [0, 1]; NaN when no signal could be computed."""
    percentile: np.ndarray
    """(N,) percentile of ``score`` among the reference records, 0-100 (NaN with it)."""
    label: np.ndarray
    """(N,) bool: verdict 'label' (``percentile >= label_percentile``), else 'ok'."""
    signals: dict[str, np.ndarray]
    """Normalised level per signal name (float64; not finite = not available)."""
    raw_signals: dict[str, np.ndarray]
    """Raw value per signal name (float64; not finite = not available)."""


def assess_columns(signals: Mapping[str, np.ndarray],
                   reference: ScoringReference) -> AssessedColumns:
    """:func:`assess` for a batch, as columns: no Python object per record (the
    ``recommend`` run writes them to the queue as they are)."""
    priorities = prioritise(signals, reference)
    percentile = np.atleast_1d(priorities.percentile)
    with np.errstate(invalid="ignore"):  # NaN is no label
        label = percentile >= reference.params.label_percentile
    return AssessedColumns(
        score=np.atleast_1d(priorities.score), percentile=percentile, label=label,
        signals={name: np.atleast_1d(np.asarray(v, dtype=np.float64))
                 for name, v in priorities.normalised.items()},
        raw_signals={name: np.atleast_1d(np.asarray(v, dtype=np.float64))
                     for name, v in signals.items()},
    )


def assess(signals: Mapping[str, np.ndarray], reference: ScoringReference) -> list[Assessment]:
    """One :class:`Assessment` per record of ``signals`` (raw, as from ``compute_signals``)."""
    columns = assess_columns(signals, reference)
    scores = columns.score.tolist()
    levels = _finite_by_row(columns.signals, len(scores))
    values = _finite_by_row(columns.raw_signals, len(scores))
    return [
        Assessment(score=score, percentile=percentile,
                   verdict="label" if label else "ok", signals=level, raw_signals=value)
        for score, percentile, label, level, value in zip(
            scores, columns.percentile.tolist(), columns.label.tolist(), levels, values,
            strict=True)
    ]


def _finite_by_row(columns: Mapping[str, np.ndarray], rows: int) -> list[dict[str, float]]:
    """Per row, name -> value of its finite values, in the order of ``columns``. Built
    from Python lists: reading numpy scalars one by one was a tenth of a refresh."""
    names = list(columns)
    if not names:
        return [{} for _ in range(rows)]
    matrix = np.column_stack([np.asarray(columns[name], dtype=np.float64) for name in names])
    finite = np.isfinite(matrix)
    if finite.all():
        return [dict(zip(names, row, strict=True)) for row in matrix.tolist()]
    return [{name: value for name, value, keep in zip(names, row, kept, strict=True) if keep}
            for row, kept in zip(matrix.tolist(), finite.tolist(), strict=True)]
