"""Recommendation engine: the maths that ranks production records worth labelling.

Owns: raw signals per production record (MHB distances, kNN distance to training,
predictive uncertainty from logged scores, disagreement with training neighbours),
their rank normalisation against a stored reference, the documented combination into
one priority in [0, 1], the single-record assessment (score, percentile, verdict) and
diverse page selection. Pure numpy; no I/O.

Must not touch: HTTP, the catalog, storage, the index. The ``recommend`` operation and
the ``/log`` assessment gather inputs (MHB model, kNN answers of the query engine,
logged scores) and store or return what these functions compute.

Typical use::

    signals = compute_signals(score_mhb(model, emb, predicted), knn_distances=dists,
                              scores=score_matrix(logged)[0], predicted_class=predicted,
                              neighbour_labels=labels)
    reference = fit_reference(training_signals)       # once per MHB/index version
    priorities = prioritise(signals, reference)       # batch: sort by priorities.score
    verdicts = assess(signals, reference)             # one record per entry
    page = select_diverse(candidate_embeddings, candidate_scores, limit=50)
"""

from chroma.recommend._combine import (
    DEFAULT_WEIGHTS,
    Assessment,
    Priorities,
    RecommendParams,
    ScoringReference,
    assess,
    combine,
    fit_reference,
    prioritise,
    rank_order,
)
from chroma.recommend._normalise import SignalReference
from chroma.recommend._select import select_diverse
from chroma.recommend._signals import (
    SIGNAL_NAMES,
    compute_signals,
    knn_distance,
    neighbour_disagreement,
    predictive_uncertainty,
    score_matrix,
)

__all__ = [
    "DEFAULT_WEIGHTS",
    "SIGNAL_NAMES",
    "Assessment",
    "Priorities",
    "RecommendParams",
    "ScoringReference",
    "SignalReference",
    "assess",
    "combine",
    "compute_signals",
    "fit_reference",
    "knn_distance",
    "neighbour_disagreement",
    "predictive_uncertainty",
    "prioritise",
    "rank_order",
    "score_matrix",
    "select_diverse",
]
