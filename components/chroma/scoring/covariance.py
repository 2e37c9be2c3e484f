"""Shrinkage covariance estimators (Ledoit-Wolf, OAS) in plain numpy.

Both shrink the empirical covariance ``S`` towards the scaled identity ``mu * I``
(``mu = trace(S) / d``) with a data-driven coefficient, which keeps the estimate
well conditioned when a class has fewer samples than dimensions. The formulas follow
scikit-learn's ``ledoit_wolf_shrinkage`` and ``oas`` (so the unit tests can compare),
computed in float64 without sklearn's blocking.

Both coefficients depend on the data only through ``n``, ``d``, the eigenvalues ``e`` of
the empirical covariance ``E = R^T R / n`` (``R`` the centred samples) and the row norms
``||r_i||``: ``trace(E) = sum e``, ``||E||_F^2 = sum e^2`` and, for Ledoit-Wolf,
``sum((R*R)^T (R*R)) = sum_i ||r_i||^4``. So :func:`shrunk_eigen` gets them, and the
leading eigenvectors, from the ``n x n`` Gram matrix when ``n <= d``: a class of a few
records at ``d = 1024`` then costs O(n^2 d), never a ``d x d`` matrix.

Called by :mod:`chroma.scoring.mahalanobis` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["ShrinkageMethod", "ShrunkEigen", "shrunk_covariance", "shrunk_eigen"]

ShrinkageMethod = Literal["ledoit_wolf", "oas"]


def _ledoit_wolf_coefficient(
    n_samples: int, n_features: int, trace: float, frobenius_sq: float, fourth: float
) -> float:
    """Ledoit & Wolf (2004) optimal shrinkage towards ``mu * I`` for centred data.

    ``trace`` and ``frobenius_sq`` are those of the empirical covariance, ``fourth`` is
    ``sum_i ||r_i||^4`` (scikit-learn's ``sum((X**2).T @ X**2)``)."""
    mu = trace / n_features
    beta = (fourth / n_samples - frobenius_sq) / (n_features * n_samples)
    delta = (frobenius_sq - 2.0 * mu * trace + n_features * mu**2) / n_features
    beta = min(beta, delta)
    return 0.0 if beta == 0 else float(beta / delta)


def _oas_coefficient(n_samples: int, n_features: int, trace: float, frobenius_sq: float) -> float:
    """Chen et al. (2010) oracle approximating shrinkage, as scikit-learn computes it."""
    alpha = frobenius_sq / n_features**2
    mu_squared = (trace / n_features) ** 2
    numerator = alpha + mu_squared
    denominator = (n_samples + 1) * (alpha - mu_squared / n_features)
    return 1.0 if denominator == 0 else min(numerator / denominator, 1.0)


def _coefficient(
    method: ShrinkageMethod, centered: np.ndarray, trace: float, frobenius_sq: float
) -> float:
    n_samples, n_features = centered.shape
    if method == "ledoit_wolf":
        fourth = float(np.sum(np.einsum("ij,ij->i", centered, centered) ** 2))
        return _ledoit_wolf_coefficient(n_samples, n_features, trace, frobenius_sq, fourth)
    if method == "oas":
        return _oas_coefficient(n_samples, n_features, trace, frobenius_sq)
    raise ValueError(f"unknown shrinkage method {method!r}; use 'ledoit_wolf' or 'oas'")


def shrunk_covariance(
    samples: np.ndarray,
    *,
    method: ShrinkageMethod = "ledoit_wolf",
    assume_centered: bool = False,
) -> tuple[np.ndarray, float]:
    """Return ``(covariance, shrinkage)`` of ``samples`` (n x d), shrunk towards ``mu * I``.

    ``assume_centered=True`` is for data already centred (e.g. pooled within-class
    residuals). The empirical covariance divides by ``n`` (maximum likelihood), like
    scikit-learn. One sample (or none) has no spread to estimate: the result is the
    zero matrix with shrinkage 1; callers replace it by a pooled estimate.
    """
    data = np.asarray(samples, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"samples must be a 2-d array, got shape {data.shape}")
    n_samples, n_features = data.shape
    if n_samples < 2:
        return np.zeros((n_features, n_features)), 1.0
    centered = data if assume_centered else data - data.mean(axis=0)
    emp_cov = centered.T @ centered / n_samples
    if n_features == 1:
        return emp_cov, 0.0
    trace = float(np.trace(emp_cov))
    shrinkage = _coefficient(method, centered, trace, float(np.sum(emp_cov**2)))
    mu = trace / n_features
    covariance = (1.0 - shrinkage) * emp_cov
    covariance.flat[:: n_features + 1] += shrinkage * mu
    return covariance, shrinkage


@dataclass(frozen=True)
class ShrunkEigen:
    """A shrunk covariance ``(1 - shrinkage) * E + shrinkage * mu * I`` kept as the leading
    eigenpairs of the empirical ``E`` (``E ~ sum_j values[j] vectors[j] vectors[j]^T``)."""

    shrinkage: float
    mu: float
    """``trace(E) / d``."""
    values: np.ndarray
    """(r,) the largest eigenvalues of ``E``, descending, all > 0."""
    vectors: np.ndarray
    """(r, d) their orthonormal eigenvectors, one per row."""
    dropped: float
    """Sum of the eigenvalues of ``E`` left out (its trace not in ``values``)."""


def shrunk_eigen(
    samples: np.ndarray, *, rank: int, method: ShrinkageMethod = "ledoit_wolf"
) -> ShrunkEigen:
    """The shrinkage of ``samples`` (n x d) exactly as :func:`shrunk_covariance` computes
    it, with at most ``rank`` leading eigenpairs of the empirical covariance.

    Peak memory is O(n d + min(n, d)^2): through the n x n Gram matrix when n <= d.
    Fewer than two samples: shrinkage 1 and nothing else (no spread to estimate)."""
    data = np.asarray(samples, dtype=np.float64)
    n_samples, n_features = data.shape
    empty = np.empty((0, n_features))
    if n_samples < 2:
        return ShrunkEigen(1.0, 0.0, np.empty(0), empty, 0.0)
    centered = data - data.mean(axis=0)
    if n_samples <= n_features:
        values, left = np.linalg.eigh(centered @ centered.T / n_samples)
    else:
        values, right = np.linalg.eigh(centered.T @ centered / n_samples)
    values = np.clip(values, 0.0, None)  # eigh's rounding can give tiny negatives
    trace, frobenius_sq = float(values.sum()), float(np.sum(values**2))
    shrinkage = (0.0 if n_features == 1
                 else _coefficient(method, centered, trace, frobenius_sq))
    order = np.argsort(values)[::-1]
    kept = order[: max(rank, 0)]
    kept = kept[values[kept] > 1e-12 * max(trace, 1e-300)]
    if n_samples <= n_features:
        # Right singular vectors from the left ones: v = R^T u / sqrt(n e).
        vectors = (centered.T @ left[:, kept] / np.sqrt(n_samples * values[kept])).T
    else:
        vectors = right[:, kept].T
    return ShrunkEigen(float(shrinkage), trace / n_features, values[kept],
                       np.ascontiguousarray(vectors) if kept.size else empty,
                       float(trace - values[kept].sum()))
