"""Per-class covariances in O(C d r) memory: tied + isotropic + low rank, scored via Woodbury.

The MHB model's per-class covariance of class ``k`` (``n_k`` records, dimension ``d``) is
the blend of its own shrunk estimate with the tied (shared) covariance ``T``::

    Sigma_k = lam_k S_k + (1 - lam_k) T,        lam_k = (n_k - 1) / (n_k - 1 + prior)
    S_k     = (1 - s_k) E_k + s_k mu_k I        (Ledoit-Wolf/OAS, E_k empirical, mu_k = tr E_k / d)

Stored densely that is ``C x d x d`` float64 whatever ``n_k``: 25 classes of 2 records at
``d = 1024`` made a 217 MB model (and >1 GB once inverted for scoring). But ``E_k`` has
rank at most ``n_k - 1``, so with its ``r_k`` leading eigenpairs ``E_k ~ V e V^T`` and
the left-out trace ``delta_k`` spread evenly (trace preserved, as in probabilistic PCA)::

    Sigma_k = a_k T + rho_k I + F_k^T F_k
    a_k   = 1 - lam_k
    rho_k = lam_k (s_k mu_k + (1 - s_k) delta_k / d)
    F_k   = sqrt(lam_k (1 - s_k) e) V^T                          (r_k x d)

which is exact when ``r_k = rank(E_k)`` (always when ``n_k - 1 <= r_k``). The model keeps
``a``, ``rho`` (C each) and the stacked ``F`` (sum r_k x d): O(C d r), and never more
rows than training records. ``r_k = min(n_k - 1, d, rank cap)``; the cap is
:attr:`MHBLimits.class_rank`, lowered further until the model fits
:attr:`MHBLimits.max_model_bytes`.

Scoring (:class:`ClassWhitening`): with the tied eigendecomposition ``T = Q diag(t) Q^T``
(computed once, shared by every class), ``A_k = a_k T + rho'_k I = Q diag(D_k) Q^T`` with
``D_k = a_k t + rho'_k`` (``rho'_k`` = ``rho_k`` + the model's relative ridge on
``tr Sigma_k``, as the dense path adds it). Woodbury with ``G_k = F_k Q D_k^{-1/2}``::

    Sigma_k^{-1} = Q D^{-1/2} (I - G^T (I_r + G G^T)^{-1} G) D^{-1/2} Q^T
    MD_k^2(x)    = ||y||^2 - ||H_k y||^2,   y = D_k^{-1/2} Q^T (x - mu_k),
                   H_k = L_k^{-1} G_k,      L_k L_k^T = I_r + G_k G_k^T

``I_r + G G^T`` has eigenvalues >= 1, so its Cholesky factor is well conditioned. Per
record: one ``d x d`` product with ``Q`` shared by all classes, then ``O(d r_k)`` per
class. Memory of the scoring factors: ``d^2 + 2 C d + d sum r_k`` float32.

Called by :mod:`chroma.scoring.mahalanobis` only.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from chroma.errors import InvalidInput
from chroma.scoring.covariance import ShrinkageMethod, shrunk_eigen

__all__ = ["ClassCovariances", "ClassWhitening", "MHBLimits", "fit_class_covariances"]

FLOAT_BYTES = 8


@dataclass(frozen=True)
class MHBLimits:
    """Bounds on what an MHB fit may build; exceeding one is refused or degraded as said.

    The defaults are ``chroma.settings.Settings``' ``mhb_*`` fields."""

    max_dimension: int = 4096
    """Largest embedding dimension fitted; above it the fit refuses (``InvalidInput``): the
    tied and background covariances stay dense (2 d^2 float64: 256 MiB at 4096)."""
    max_classes: int = 2000
    """Most classes per embedding set. Above it the largest ``max_classes`` keep their
    own Gaussian; records of the others count as unlabelled (background only, like
    records with no class) and a prediction of such a class has no predicted distance."""
    class_rank: int = 1024
    """Most eigen-directions of its own kept per class covariance (exact below it). High
    by default: a class with more records than this keeps its leading directions and the
    rest of its variance spread evenly, which loses ranking quality when the cut is deep
    (``bench/quality.py`` synthetic, d=64: AUROC of mhb_predicted 0.986 exact, 0.81 at
    rank 8). Memory is bounded by ``max_model_bytes`` in any case."""
    max_model_bytes: int = 512 * 2**20
    """Largest model (its float64 arrays). Class ranks are lowered to fit; when even rank
    0 does not fit (dense tied/background + means), the fit refuses."""

    def as_params(self) -> dict[str, int]:
        """The limits as fit parameters (they change the model: part of its fingerprint)."""
        return {f"limit_{f.name}": int(getattr(self, f.name)) for f in fields(self)}


def fixed_model_bytes(dimension: int, n_classes: int) -> int:
    """float64 bytes of a model without per-class factors: tied and background covariance
    (d x d each), background mean, class means, and the per-class scalars."""
    return FLOAT_BYTES * (2 * dimension * dimension + dimension + n_classes * dimension
                          + 4 * n_classes + 1)


def plan_ranks(counts: np.ndarray, dimension: int, limits: MHBLimits) -> np.ndarray:
    """Eigen-directions to keep per class: ``min(n_k - 1, d, cap)`` with the largest cap
    <= ``limits.class_rank`` that keeps the model within ``limits.max_model_bytes``."""
    fixed = fixed_model_bytes(dimension, len(counts))
    if fixed > limits.max_model_bytes:
        raise InvalidInput(
            f"an MHB model of {len(counts)} classes at dimension {dimension} needs at least "
            f"{fixed / 2**20:.0f} MiB, over the limit of {limits.max_model_bytes / 2**20:.0f} "
            "MiB (CHROMA_MHB_MAX_MODEL_BYTES)")
    spread = np.maximum(np.asarray(counts, dtype=np.int64) - 1, 0)
    budget_rows = (limits.max_model_bytes - fixed) // (FLOAT_BYTES * dimension)

    def ranks(cap: int) -> np.ndarray:
        return np.minimum(spread, min(cap, dimension))

    low, high = 0, max(limits.class_rank, 0)
    while low < high:  # largest cap whose total rows fit the budget
        middle = (low + high + 1) // 2
        if ranks(middle).sum() <= budget_rows:
            low = middle
        else:
            high = middle - 1
    return ranks(low)


@dataclass(frozen=True, eq=False)
class ClassCovariances:
    """``Sigma_k = tied_weight[k] T + isotropic[k] I + F_k^T F_k`` for every class ``k``,
    ``F_k = factors[bounds[k]:bounds[k + 1]]`` (see the module docstring)."""

    tied_weight: np.ndarray
    """(C,) ``a_k = 1 - lam_k``, the weight of the tied covariance."""
    isotropic: np.ndarray
    """(C,) ``rho_k``, the isotropic part (shrinkage target plus left-out trace)."""
    factors: np.ndarray
    """(sum r_k, d) float64 rows of every ``F_k``, class after class."""
    bounds: np.ndarray
    """(C + 1,) int64 row offsets of each class in ``factors``."""

    def factor(self, k: int) -> np.ndarray:
        return self.factors[self.bounds[k] : self.bounds[k + 1]]

    def dense(self, k: int, tied: np.ndarray) -> np.ndarray:
        """Class ``k``'s covariance as a d x d matrix (for tests and inspection)."""
        factor = self.factor(k)
        covariance = self.tied_weight[k] * tied + factor.T @ factor
        covariance.flat[:: tied.shape[0] + 1] += self.isotropic[k]
        return covariance

    @property
    def nbytes(self) -> int:
        return int(self.tied_weight.nbytes + self.isotropic.nbytes + self.factors.nbytes
                   + self.bounds.nbytes)


@dataclass(frozen=True)
class ClassFit:
    covariances: ClassCovariances
    shrinkage: tuple[float, ...]
    blend: tuple[float, ...]
    ranks: tuple[int, ...]


def fit_class_covariances(
    class_data: np.ndarray, inverse: np.ndarray, counts: np.ndarray, *,
    method: ShrinkageMethod, prior: float, limits: MHBLimits,
) -> ClassFit:
    """Each class's covariance in the low-rank form; ``class_data`` rows belong to class
    ``inverse[i]``. Peak extra memory: one class at a time, O(n_k d + min(n_k, d)^2)."""
    dimension = class_data.shape[1]
    ranks = plan_ranks(counts, dimension, limits)
    order = np.argsort(inverse, kind="stable")
    member_bounds = np.concatenate([[0], np.cumsum(counts)])
    tied_weight, isotropic = np.empty(len(counts)), np.empty(len(counts))
    factors: list[np.ndarray] = []
    shrinkage, blend = [], []
    for k in range(len(counts)):
        members = class_data[order[member_bounds[k] : member_bounds[k + 1]]]
        own = shrunk_eigen(members, rank=int(ranks[k]), method=method)
        lam = (counts[k] - 1) / (counts[k] - 1 + prior) if counts[k] > 1 else 0.0
        tied_weight[k] = 1.0 - lam
        isotropic[k] = lam * (own.shrinkage * own.mu + (1.0 - own.shrinkage) * own.dropped
                              / dimension)
        factors.append(np.sqrt(lam * (1.0 - own.shrinkage) * own.values)[:, None] * own.vectors)
        shrinkage.append(float(own.shrinkage))
        blend.append(float(lam))
    kept = np.array([len(f) for f in factors], dtype=np.int64)
    return ClassFit(
        ClassCovariances(tied_weight, isotropic,
                         np.concatenate(factors) if factors else np.empty((0, dimension)),
                         np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)),
        tuple(shrinkage), tuple(blend), tuple(int(r) for r in kept))


@dataclass(frozen=True)
class ClassWhitening:
    """float32 factors scoring every class under its own covariance (module docstring)."""

    basis: np.ndarray  # (d, d) Q, eigenvectors of the tied covariance, one per column
    offsets: np.ndarray  # (C, d) Q^T (mu_k - center)
    scales: np.ndarray  # (C, d) D_k^{-1/2}
    low_rank: np.ndarray  # (sum r_k, d) rows of every H_k
    bounds: np.ndarray  # (C + 1,) row offsets of H_k in low_rank

    @classmethod
    def build(cls, covariances: ClassCovariances, tied: np.ndarray, means: np.ndarray,
              center: np.ndarray, ridge: float) -> ClassWhitening:
        dimension = tied.shape[0]
        spectrum, basis = np.linalg.eigh(tied)
        spectrum = np.clip(spectrum, 0.0, None)
        scales = np.ones((len(means), dimension))
        low_rank: list[np.ndarray] = []
        for k in range(len(means)):
            factor = covariances.factor(k)
            trace = (covariances.tied_weight[k] * spectrum.sum()
                     + dimension * covariances.isotropic[k] + float(np.sum(factor**2)))
            if not np.isfinite(trace) or trace <= 0.0:
                # All training points identical: the dense path uses the identity too.
                low_rank.append(np.empty((0, dimension)))
                continue
            diagonal = (covariances.tied_weight[k] * spectrum + covariances.isotropic[k]
                        + ridge * trace / dimension)
            scales[k] = 1.0 / np.sqrt(diagonal)
            rotated = (factor @ basis) * scales[k]  # G_k
            inner = np.eye(len(factor)) + rotated @ rotated.T
            # r x r: a general solve costs nothing here (and needs no scipy).
            low_rank.append(np.linalg.solve(np.linalg.cholesky(inner), rotated))
        sizes = [len(h) for h in low_rank]
        as32 = np.float32
        return cls(
            basis=basis.astype(as32),
            offsets=((means - center) @ basis).astype(as32),
            scales=scales.astype(as32),
            low_rank=np.concatenate(low_rank).astype(as32),
            bounds=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        )

    @property
    def nbytes(self) -> int:
        return int(sum(getattr(self, f.name).nbytes for f in fields(self)))

    def squared(self, rotated: np.ndarray, k: int) -> np.ndarray:
        """Squared distances to class ``k`` of rows already rotated: ``(x - center) @ Q``."""
        whitened = (rotated - self.offsets[k]) * self.scales[k]
        squared = np.einsum("ij,ij->i", whitened, whitened)
        h = self.low_rank[self.bounds[k] : self.bounds[k + 1]]
        if len(h):
            projected = whitened @ h.T
            squared -= np.einsum("ij,ij->i", projected, projected)
        return np.maximum(squared, 0.0, out=squared)
