"""Fit class-conditional Gaussians on training embeddings and score production embeddings.

The model (``MHBModel``) holds, for one embedding set:

* one mean per class, from ``label_class`` falling back to ``inference_class``
  (:func:`resolve_labels`); records with neither count only towards the background;
* a **tied** covariance: Ledoit-Wolf/OAS shrinkage of the pooled within-class residuals
  (Lee et al. 2018 use one shared covariance; it is the robust default);
* **per-class** covariances: each class's own shrunk estimate blended with the tied one,
  ``lam * S_c + (1 - lam) * S_tied`` with ``lam = (n_c - 1) / (n_c - 1 + prior)``
  (``prior`` pseudo-samples, default ``d``), so a one-sample or ``n < d`` class falls
  back to the tied covariance instead of blowing up;
* a **background** Gaussian over all training records, for the relative Mahalanobis
  distance of Ren et al. 2021 (``min_k MD_k^2 - MD_0^2``), which cancels directions in
  which every class is spread alike.

No classes at all gives one global Gaussian (class ``GLOBAL_CLASS``). Every covariance
gets a tiny ridge (``RIDGE`` x mean variance) so Cholesky succeeds on constant features.

Scoring whitens with inverse Cholesky factors in float32, in chunks, with one GEMM per
chunk for the tied covariance and the background together: the distance to all class
means then costs one small (N x d) @ (d x C) product.

Called by the ``fit-mhb`` and ``recommend`` operations (through the package root).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
from scipy.linalg import solve_triangular

from chroma.errors import InvalidInput
from chroma.scoring.covariance import ShrinkageMethod, shrunk_covariance

__all__ = [
    "GLOBAL_CLASS",
    "CovarianceKind",
    "FitInfo",
    "MHBModel",
    "MHBScores",
    "class_indices",
    "fit_mhb",
    "resolve_labels",
    "score_mhb",
]

GLOBAL_CLASS = "*"
"""Name of the single class of a model fitted without any label."""

RIDGE = 1e-6
"""Relative ridge added to every covariance diagonal (x its mean variance)."""

SCORING_CHUNK_ROWS = 8_192
"""Rows whitened per GEMM: large enough for BLAS efficiency, small enough for cache."""

CovarianceKind = Literal["tied", "class"]
LabelLike = str | None


def resolve_labels(
    label_class: Sequence[LabelLike] | None,
    inference_class: Sequence[LabelLike] | None = None,
) -> np.ndarray:
    """Training label per record: ``label_class`` if set, else ``inference_class``, else None.

    Empty strings count as missing. Returns an object array of ``str | None``.
    """
    if label_class is None and inference_class is None:
        raise InvalidInput("give label_class or inference_class (or both)")
    size = len(label_class) if label_class is not None else len(inference_class or ())
    if label_class is not None and inference_class is not None and len(inference_class) != size:
        raise InvalidInput(
            f"label_class has {size} entries but inference_class has {len(inference_class)}"
        )
    resolved = np.empty(size, dtype=object)
    for i in range(size):
        label = label_class[i] if label_class is not None else None
        if label is None or label == "":
            label = inference_class[i] if inference_class is not None else None
        resolved[i] = None if label is None or label == "" else str(label)
    return resolved


@dataclass(frozen=True)
class FitInfo:
    """What a fit saw and decided; stored in the artifact header for audit."""

    n_records: int
    """Training records used (labelled or not)."""
    n_unlabelled: int
    """Records without any class: they shape only the background Gaussian."""
    dimension: int
    """Embedding dimension d."""
    shrinkage_method: ShrinkageMethod
    """'ledoit_wolf' (default) or 'oas'."""
    tied_shrinkage: float
    """Shrinkage coefficient of the tied covariance, in [0, 1]."""
    background_shrinkage: float
    """Shrinkage coefficient of the background covariance, in [0, 1]."""
    class_shrinkage: tuple[float, ...] = ()
    """Shrinkage of each class's own covariance (1.0 for one-sample classes)."""
    class_blend: tuple[float, ...] = ()
    """Weight ``lam`` of each class's own covariance against the tied one."""
    fingerprint: str | None = None
    """Training-data fingerprint given by the caller (see ``training_fingerprint``)."""


@dataclass(frozen=True, eq=False)
class MHBModel:
    """Class-conditional Gaussians of one embedding set. Immutable; build with ``fit_mhb``."""

    classes: tuple[str, ...]
    """Class names; row ``k`` of ``class_means`` belongs to ``classes[k]``."""
    class_counts: np.ndarray
    """(C,) training records per class."""
    class_means: np.ndarray
    """(C, d) float64 class means."""
    tied_covariance: np.ndarray
    """(d, d) shrunk pooled within-class covariance."""
    class_covariances: np.ndarray | None
    """(C, d, d) per-class covariances (blended with the tied one), or None if not fitted."""
    background_mean: np.ndarray
    """(d,) mean of all training records."""
    background_covariance: np.ndarray
    """(d, d) shrunk covariance of all training records."""
    info: FitInfo = field(repr=False)
    """Fit statistics and the training fingerprint."""

    @property
    def dimension(self) -> int:
        return int(self.class_means.shape[1])

    @property
    def is_global(self) -> bool:
        """True when fitted without labels: one Gaussian, no relative distance."""
        return self.classes == (GLOBAL_CLASS,)

    @cached_property
    def _whitening(self) -> _Whitening:
        return _Whitening.build(self)


@dataclass(frozen=True)
class MHBScores:
    """Mahalanobis distances of a batch (all arrays have one entry per record)."""

    nearest_class: np.ndarray
    """(N,) int index into ``model.classes`` of the class with the smallest distance."""
    nearest_distance: np.ndarray
    """(N,) Mahalanobis distance (not squared) to the nearest class mean."""
    predicted_distance: np.ndarray
    """(N,) distance to the predicted class; NaN where it is missing or not in training."""
    relative_distance: np.ndarray
    """(N,) relative Mahalanobis ``min_k MD_k^2 - MD_0^2`` (squared units, may be < 0);
    NaN for a global model, where it would be identically 0."""
    background_distance: np.ndarray
    """(N,) Mahalanobis distance to the background Gaussian (all training data)."""


def _regularised(covariance: np.ndarray) -> np.ndarray:
    dimension = covariance.shape[0]
    mean_variance = float(np.trace(covariance)) / dimension
    if not np.isfinite(mean_variance) or mean_variance <= 0.0:
        # All training points identical: any positive scale is as good as another.
        return np.eye(dimension)
    result = covariance.copy()
    result.flat[:: dimension + 1] += RIDGE * mean_variance
    return result


def _inverse_cholesky(covariance: np.ndarray) -> np.ndarray:
    """Lower-triangular W with W @ S @ W.T = I, so MD^2(x) = ||W (x - mu)||^2."""
    factor = np.linalg.cholesky(covariance)
    return solve_triangular(factor, np.eye(covariance.shape[0]), lower=True)


def _check_embeddings(embeddings: np.ndarray, dimension: int | None = None) -> np.ndarray:
    array = np.asarray(embeddings)
    if array.ndim != 2 or array.shape[0] == 0:
        raise InvalidInput(f"embeddings must be a non-empty 2-d array, got shape {array.shape}")
    if dimension is not None and array.shape[1] != dimension:
        raise InvalidInput(
            f"embeddings have dimension {array.shape[1]}, the model has dimension {dimension}"
        )
    if not np.isfinite(array).all():
        raise InvalidInput("embeddings contain NaN or infinite values")
    return array


def fit_mhb(
    embeddings: np.ndarray,
    labels: Sequence[LabelLike] | np.ndarray | None = None,
    *,
    method: ShrinkageMethod = "ledoit_wolf",
    per_class: bool = True,
    prior_strength: float | None = None,
    fingerprint: str | None = None,
) -> MHBModel:
    """Fit the class-conditional Gaussians on training ``embeddings`` (n x d).

    ``labels``: one class name (or None) per record, e.g. from :func:`resolve_labels`;
    None or all-missing fits one global Gaussian. ``per_class=False`` skips the per-class
    covariances (C x d x d; skip them for thousands of classes). ``prior_strength`` is
    the pseudo-sample count pulling each class covariance to the tied one (default d).
    ``fingerprint`` is stored as given (see ``training_fingerprint``).
    """
    data = _check_embeddings(embeddings).astype(np.float64, copy=False)
    n_records, dimension = data.shape
    label_array = np.full(n_records, None, dtype=object) if labels is None else np.asarray(
        labels, dtype=object
    )
    if label_array.shape != (n_records,):
        raise InvalidInput(f"{label_array.shape[0]} labels given for {n_records} embeddings")
    labelled = np.array([lbl is not None and lbl != "" for lbl in label_array], dtype=bool)

    background_covariance, background_shrinkage = shrunk_covariance(data, method=method)
    background_mean = data.mean(axis=0)

    if not labelled.any():
        classes: tuple[str, ...] = (GLOBAL_CLASS,)
        inverse = np.zeros(n_records, dtype=np.int64)
        class_data = data
    else:
        names = np.array([str(lbl) for lbl in label_array[labelled]], dtype=object)
        unique, inverse = np.unique(names.astype(str), return_inverse=True)
        classes = tuple(str(name) for name in unique)
        class_data = data[labelled]

    n_classes = len(classes)
    counts = np.bincount(inverse, minlength=n_classes)
    sums = np.zeros((n_classes, dimension))
    np.add.at(sums, inverse, class_data)
    means = sums / counts[:, None]

    residuals = class_data - means[inverse]
    tied_covariance, tied_shrinkage = shrunk_covariance(
        residuals, method=method, assume_centered=True
    )

    class_covariances: np.ndarray | None = None
    class_shrinkage: list[float] = []
    class_blend: list[float] = []
    if per_class:
        prior = float(dimension if prior_strength is None else prior_strength)
        order = np.argsort(inverse, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(counts)])
        class_covariances = np.empty((n_classes, dimension, dimension))
        for k in range(n_classes):
            members = class_data[order[bounds[k] : bounds[k + 1]]]
            own, shrinkage = shrunk_covariance(members, method=method)
            blend = (counts[k] - 1) / (counts[k] - 1 + prior) if counts[k] > 1 else 0.0
            class_covariances[k] = blend * own + (1.0 - blend) * tied_covariance
            class_shrinkage.append(float(shrinkage))
            class_blend.append(float(blend))

    info = FitInfo(
        n_records=n_records,
        n_unlabelled=int(n_records - labelled.sum()) if labelled.any() else n_records,
        dimension=dimension,
        shrinkage_method=method,
        tied_shrinkage=float(tied_shrinkage),
        background_shrinkage=float(background_shrinkage),
        class_shrinkage=tuple(class_shrinkage),
        class_blend=tuple(class_blend),
        fingerprint=fingerprint,
    )
    return MHBModel(
        classes=classes,
        class_counts=counts.astype(np.int64),
        class_means=means,
        tied_covariance=tied_covariance,
        class_covariances=class_covariances,
        background_mean=background_mean,
        background_covariance=background_covariance,
        info=info,
    )


@dataclass(frozen=True)
class _Whitening:
    """float32 factors derived once per model for fast scoring."""

    center: np.ndarray  # (d,) background mean: every product is taken around it
    stacked: np.ndarray  # (d, 2d + C) [W_t.T | W_bg.T | W_t.T m_k.T]: one GEMM per chunk
    tied_mean_norms: np.ndarray  # (C,) ||m_k||^2, m_k = W_t (mu_k - center)
    class_stacked: np.ndarray | None  # (d, C*d) per-class W_k.T side by side
    class_offsets: np.ndarray | None  # (C*d,) W_k (mu_k - center)
    class_factors: np.ndarray | None  # (C, d, d) contiguous W_k.T (a strided slice of
    # class_stacked makes numpy skip BLAS: 8x slower)

    @classmethod
    def build(cls, model: MHBModel) -> _Whitening:
        center = model.background_mean
        tied = _inverse_cholesky(_regularised(model.tied_covariance))
        background = _inverse_cholesky(_regularised(model.background_covariance))
        tied_means = (model.class_means - center) @ tied.T
        class_stacked = class_offsets = None
        if model.class_covariances is not None:
            factors = [_inverse_cholesky(_regularised(c)) for c in model.class_covariances]
            class_stacked = np.concatenate([w.T for w in factors], axis=1)
            class_offsets = np.concatenate(
                [w @ (mean - center) for w, mean in zip(factors, model.class_means, strict=True)]
            )
        as32 = np.float32
        return cls(
            center=center.astype(as32),
            stacked=np.concatenate([tied.T, background.T, tied.T @ tied_means.T], axis=1).astype(
                as32
            ),
            tied_mean_norms=np.einsum("ij,ij->i", tied_means, tied_means).astype(as32),
            class_stacked=None if class_stacked is None else class_stacked.astype(as32),
            class_factors=None
            if class_stacked is None
            else np.ascontiguousarray(
                class_stacked.reshape(len(center), -1, len(center)).transpose(1, 0, 2)
            ).astype(as32),
            class_offsets=None if class_offsets is None else class_offsets.astype(as32),
        )


def class_indices(model: MHBModel, names: Sequence[LabelLike] | np.ndarray) -> np.ndarray:
    """Map class names to row indices of ``model.classes``; -1 for None or unknown names."""
    lookup = {name: index for index, name in enumerate(model.classes)}
    return np.fromiter(
        (lookup.get(name, -1) if name is not None else -1 for name in names),
        dtype=np.int64,
        count=len(names),
    )


def _squared_class_distances(
    whitening: _Whitening, centered: np.ndarray, products: np.ndarray, kind: CovarianceKind
) -> np.ndarray:
    """(n, C) squared distances of a centred chunk, given its product with ``stacked``."""
    dimension = centered.shape[1]
    if kind == "tied":
        # ||z - m_k||^2 = ||z||^2 - 2 z.m_k + ||m_k||^2, with z centred on the background
        # mean so the expansion does not lose float32 precision to large norms.
        tied_part = products[:, :dimension]
        squared = products[:, 2 * dimension :] * np.float32(-2.0)
        squared += np.einsum("ij,ij->i", tied_part, tied_part)[:, None]
        squared += whitening.tied_mean_norms[None, :]
        return np.maximum(squared, 0.0, out=squared)
    assert whitening.class_stacked is not None and whitening.class_offsets is not None
    projected = centered @ whitening.class_stacked
    projected -= whitening.class_offsets
    n_classes = whitening.tied_mean_norms.shape[0]
    projected = projected.reshape(centered.shape[0], n_classes, dimension)
    return np.einsum("ikd,ikd->ik", projected, projected)


def _squared_own_class_distances(
    whitening: _Whitening, data: np.ndarray, predicted: np.ndarray, chunk_rows: int
) -> np.ndarray:
    """Squared distance of each row to its predicted class under that class's covariance
    (NaN where unknown). Rows are grouped by class first: one large GEMM per group chunk
    (small per-class GEMMs inside a mixed chunk are several times slower in OpenBLAS)."""
    assert whitening.class_factors is not None and whitening.class_offsets is not None
    dimension = data.shape[1]
    squared = np.full(data.shape[0], np.nan, dtype=np.float32)
    order = np.argsort(predicted, kind="stable")
    bounds = np.searchsorted(predicted[order], np.arange(len(whitening.class_factors) + 1))
    for k in range(len(whitening.class_factors)):
        members_of_class = order[bounds[k] : bounds[k + 1]]
        offset_k = whitening.class_offsets[k * dimension : (k + 1) * dimension]
        for start in range(0, members_of_class.size, chunk_rows):
            members = members_of_class[start : start + chunk_rows]
            rows = data[members].astype(np.float32, copy=False) - whitening.center
            projected = rows @ whitening.class_factors[k]
            projected -= offset_k
            squared[members] = np.einsum("ij,ij->i", projected, projected)
    return squared


def score_mhb(
    model: MHBModel,
    embeddings: np.ndarray,
    predicted_class: Sequence[LabelLike] | np.ndarray | None = None,
    *,
    covariance: CovarianceKind = "tied",
    predicted_covariance: CovarianceKind | None = None,
) -> MHBScores:
    """Mahalanobis distances of each row of ``embeddings`` (N x d) under ``model``.

    ``predicted_class``: the model's ``inference_class`` per record (names, or int
    indices from :func:`class_indices`); None leaves ``predicted_distance`` NaN except
    for a global model, where the one class is everyone's prediction.

    ``covariance`` serves the nearest-class and relative distances: 'tied' (default,
    one GEMM per record) or 'class' (C GEMMs per record). ``predicted_covariance`` serves
    the predicted-class distance; it defaults to 'class' when the model has per-class
    covariances (one extra GEMM per record: rows are grouped by predicted class; it
    ranks held-out classes better in ``bench/quality.py``), else 'tied'. Output arrays
    are float32.
    """
    if predicted_covariance is None:
        predicted_covariance = "tied" if model.class_covariances is None else "class"
    for kind in (covariance, predicted_covariance):
        if kind not in ("tied", "class"):
            raise InvalidInput(f"covariance must be 'tied' or 'class', got {kind!r}")
        if kind == "class" and model.class_covariances is None:
            raise InvalidInput("this model was fitted without per-class covariances")
    predicted_own = predicted_covariance == "class" and covariance == "tied"
    data = _check_embeddings(embeddings, model.dimension)
    n_records = data.shape[0]
    if predicted_class is None:
        predicted = np.full(n_records, 0 if model.is_global else -1, dtype=np.int64)
    else:
        predicted_array = np.asarray(predicted_class)
        if predicted_array.dtype.kind in "iu":
            predicted = predicted_array.astype(np.int64)
        else:
            predicted = class_indices(model, list(predicted_class))
        if model.is_global:
            predicted = np.zeros(n_records, dtype=np.int64)
        if predicted.shape != (n_records,):
            raise InvalidInput(f"{predicted.shape[0]} predicted classes for {n_records} records")

    whitening = model._whitening
    dimension = model.dimension
    nearest = np.empty(n_records, dtype=np.int64)
    nearest_sq = np.empty(n_records, dtype=np.float32)
    predicted_sq = np.full(n_records, np.nan, dtype=np.float32)
    background_sq = np.empty(n_records, dtype=np.float32)
    # Reused buffers: fresh multi-MB arrays per chunk cost more in page faults than the maths.
    chunk_rows = min(SCORING_CHUNK_ROWS, n_records)
    centered_buffer = np.empty((chunk_rows, dimension), dtype=np.float32)
    product_buffer = np.empty((chunk_rows, whitening.stacked.shape[1]), dtype=np.float32)
    for start in range(0, n_records, chunk_rows):
        stop = min(start + chunk_rows, n_records)
        rows = np.arange(stop - start)
        centered = np.subtract(data[start:stop], whitening.center, out=centered_buffer[: rows.size])
        products = np.matmul(centered, whitening.stacked, out=product_buffer[: rows.size])
        background_part = products[:, dimension : 2 * dimension]
        background_sq[start:stop] = np.einsum("ij,ij->i", background_part, background_part)
        squared = _squared_class_distances(whitening, centered, products, covariance)
        best = np.argmin(squared, axis=1)
        nearest[start:stop] = best
        nearest_sq[start:stop] = squared[rows, best]
        chunk_predicted = predicted[start:stop]
        if not predicted_own:
            known = (chunk_predicted >= 0) & (chunk_predicted < len(model.classes))
            predicted_sq[start:stop][known] = squared[rows[known], chunk_predicted[known]]
    if predicted_own:
        predicted_sq = _squared_own_class_distances(whitening, data, predicted, chunk_rows)

    relative = (
        np.full(n_records, np.nan, dtype=np.float32)
        if model.is_global
        else nearest_sq - background_sq
    )
    return MHBScores(
        nearest_class=nearest,
        nearest_distance=np.sqrt(nearest_sq),
        predicted_distance=np.sqrt(predicted_sq),
        relative_distance=relative,
        background_distance=np.sqrt(background_sq),
    )
