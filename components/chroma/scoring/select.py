"""Diverse selection: a page of high-priority records that is not one cluster.

Greedy max-min with a score trade-off (maximal marginal relevance, Carbonell &
Goldstein 1998, with the max-min distance of Gonzalez's k-centre greedy). Start from
the best-scored candidate; then repeatedly take the candidate maximising::

    (1 - diversity) * score_rank + diversity * d_min / max(d_min)

where ``score_rank`` is the candidate's rank in the pool scaled to [0, 1] (best = 1;
ties share their mean rank) and ``d_min`` its distance to the nearest record already
chosen, normalised by the largest such distance among the remaining candidates. Ranks,
not raw scores: the top of the queue has nearly equal scores (the combination saturates
towards 1 for clear outliers), which would hand every choice to the distance term; with
ranks the trade-off does not depend on the score's scale. Candidates closer than
``min_distance`` to a chosen record are near-duplicates and are skipped outright.
``diversity=0`` returns the plain score order (minus duplicates). The default 0.3 keeps
most of the top of the queue (``bench/quality.py`` prints what a first page holds).

Cost: O(candidates x limit x d); give it a pool of a few times ``limit`` top candidates.
Called by ``GET /recommendations?diverse=true``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from chroma.errors import InvalidInput

__all__ = ["select_diverse"]

Metric = Literal["euclidean", "cosine"]


def _prepare(embeddings: np.ndarray, metric: Metric) -> np.ndarray:
    vectors = np.asarray(embeddings, dtype=np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
    elif metric != "euclidean":
        raise InvalidInput(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    return vectors


def _distances_to(vectors: np.ndarray, index: int, metric: Metric) -> np.ndarray:
    if metric == "cosine":
        return np.clip(1.0 - vectors @ vectors[index], 0.0, 2.0)
    return np.linalg.norm(vectors - vectors[index], axis=1)


def _scaled_ranks(scores: np.ndarray) -> np.ndarray:
    """Mean rank of each score among all, scaled to [0, 1] (highest = 1)."""
    if scores.size == 1:
        return np.ones(1)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    first_rank = np.concatenate([[0], np.cumsum(counts)[:-1]])
    mean_rank = first_rank + (counts - 1) / 2.0
    return mean_rank[inverse] / (scores.size - 1)


def select_diverse(
    embeddings: np.ndarray,
    scores: np.ndarray,
    limit: int,
    *,
    diversity: float = 0.3,
    min_distance: float = 0.0,
    metric: Metric = "euclidean",
) -> np.ndarray:
    """Indices into the candidates of up to ``limit`` diverse, high-scored records, in
    pick order.

    ``embeddings``: (N, d) candidates; ``scores``: (N,) priorities (only their order
    matters; NaN ranks last). ``diversity`` in [0, 1] trades rank for spread;
    ``min_distance`` (in ``metric`` units; cosine distance = 1 - cosine similarity) skips
    near-duplicates.
    Returns fewer than ``limit`` indices only when every remaining candidate is a
    near-duplicate of a chosen one: widen the pool or lower ``min_distance``.
    """
    vectors = _prepare(embeddings, metric)
    priority = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    if vectors.ndim != 2 or priority.shape != (vectors.shape[0],):
        raise InvalidInput(
            f"need (N, d) embeddings and N scores, got {vectors.shape} and {priority.shape}"
        )
    if not 0.0 <= diversity <= 1.0:
        raise InvalidInput(f"diversity must be in [0, 1], got {diversity}")
    if limit <= 0 or vectors.shape[0] == 0:
        return np.empty(0, dtype=np.int64)

    priority = _scaled_ranks(priority)
    available = np.ones(vectors.shape[0], dtype=bool)
    nearest_chosen = np.full(vectors.shape[0], np.inf)
    chosen: list[int] = []
    pick = int(np.argmax(priority))
    while True:
        chosen.append(pick)
        available[pick] = False
        nearest_chosen = np.minimum(nearest_chosen, _distances_to(vectors, pick, metric))
        available &= nearest_chosen >= min_distance
        if len(chosen) >= limit or not available.any():
            break
        spread = nearest_chosen[available]
        largest = spread.max()
        farness = spread / largest if largest > 0 else np.zeros_like(spread)
        value = (1.0 - diversity) * priority[available] + diversity * farness
        pick = int(np.flatnonzero(available)[np.argmax(value)])
    return np.asarray(chosen, dtype=np.int64)
