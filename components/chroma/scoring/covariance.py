"""Shrinkage covariance estimators (Ledoit-Wolf, OAS) in plain numpy.

Both shrink the empirical covariance ``S`` towards the scaled identity ``mu * I``
(``mu = trace(S) / d``) with a data-driven coefficient, which keeps the estimate
well conditioned when a class has fewer samples than dimensions. The formulas follow
scikit-learn's ``ledoit_wolf_shrinkage`` and ``oas`` (so the unit tests can compare),
computed in float64 without sklearn's blocking.

Called by :mod:`chroma.scoring.mahalanobis` only.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["ShrinkageMethod", "shrunk_covariance"]

ShrinkageMethod = Literal["ledoit_wolf", "oas"]


def _ledoit_wolf_coefficient(centered: np.ndarray, emp_cov: np.ndarray) -> float:
    """Ledoit & Wolf (2004) optimal shrinkage towards ``mu * I`` for centred data."""
    n_samples, n_features = centered.shape
    squared = centered**2
    emp_cov_trace = squared.sum(axis=0) / n_samples
    mu = emp_cov_trace.sum() / n_features
    beta_sum = float(np.sum(squared.T @ squared))
    delta_sum = float(np.sum(emp_cov**2)) # == sum((X^T X)^2) / n^2
    beta = (beta_sum / n_samples - delta_sum) / (n_features * n_samples)
    delta = (delta_sum - 2.0 * mu * emp_cov_trace.sum() + n_features * mu**2) / n_features
    beta = min(beta, delta)
    return 0.0 if beta == 0 else float(beta / delta)


def _oas_coefficient(n_samples: int, emp_cov: np.ndarray) -> float:
    """Chen et al. (2010) oracle approximating shrinkage, as scikit-learn computes it."""
    n_features = emp_cov.shape[0]
    alpha = float(np.mean(emp_cov**2))
    mu_squared = (float(np.trace(emp_cov)) / n_features) ** 2
    numerator = alpha + mu_squared
    denominator = (n_samples + 1) * (alpha - mu_squared / n_features)
    return 1.0 if denominator == 0 else min(numerator / denominator, 1.0)


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
    if method == "ledoit_wolf":
        shrinkage = _ledoit_wolf_coefficient(centered, emp_cov)
    elif method == "oas":
        shrinkage = _oas_coefficient(n_samples, emp_cov)
    else:
        raise ValueError(f"unknown shrinkage method {method!r}; use 'ledoit_wolf' or 'oas'")
    mu = float(np.trace(emp_cov)) / n_features
    covariance = (1.0 - shrinkage) * emp_cov
    covariance.flat[:: n_features + 1] += shrinkage * mu
    return covariance, shrinkage
