"""Scoring: the pure maths that ranks production records worth labelling.

Owns two things, both pure numpy/scipy functions with no I/O:

* **MHB**, the model of class-conditional Gaussians fitted on *training* embeddings
  (per-class means, a tied and per-class shrunk covariance, a background Gaussian; the
  per-class ones low rank, ``class_covariances.py``; bounded by ``MHBLimits``) and
  the **Mahalanobis** distances it scores production embeddings with (to the predicted
  class, to the nearest class, relative Mahalanobis): ``mahalanobis.py``,
  ``covariance.py``; the model's artifact bytes and training fingerprint:
  ``artifact.py``.
* the **signals** of each production record (MHB distances, kNN distance to training,
  predictive uncertainty from logged scores, disagreement with training neighbours,
  ``signals.py``), their rank normalisation against a stored reference
  (``normalise.py``), the documented combination into one priority in [0, 1], the
  single-record assessment (score, percentile, verdict) (``combine.py``), diverse page
  selection (``select.py``), exact k-nearest rows by matrix product (``nearest.py``) and
  approximate ones by an inverted file for large training sets (``ivf.py``).
* the **map**: a 2-D PCA projection fitted on a sample and applied in blocks, and the
  stable per-record ranks that subsample it (``projection.py``).

Must not touch: HTTP, the catalog, storage, the index (an import-linter contract checks
it). ``chroma.labelling`` gathers the inputs (training vectors, kNN answers, logged scores)
and stores or returns what these functions compute.

Typical use::

    labels = resolve_labels(label_class, inference_class)
    fingerprint = training_fingerprint({file_id: count, ...}, params={"method": "ledoit_wolf"})
    model = fit_mhb(train_embeddings, labels, fingerprint=fingerprint)
    blob = dump_model(model, metadata={"embedding_set_key": key})
    signals = compute_signals(score_mhb(load_model(blob), emb, predicted),
                              knn_distances=dists, scores=score_matrix(logged)[0],
                              predicted_class=predicted, neighbour_labels=labels)
    reference = fit_reference(training_signals)       # once per MHB/index version
    priorities = prioritise(signals, reference)       # batch: sort by priorities.score
    verdicts = assess(signals, reference)             # one record per entry
    page = select_diverse(candidate_embeddings, candidate_scores, limit=50)
"""

from chroma.scoring.artifact import (
    ArtifactError,
    dump_model,
    load_model,
    read_header,
    training_fingerprint,
)
from chroma.scoring.combine import (
    DEFAULT_WEIGHTS,
    AssessedColumns,
    Assessment,
    Priorities,
    RecommendParams,
    ScoringReference,
    assess,
    assess_columns,
    combine,
    fit_reference,
    prioritise,
    rank_order,
)
from chroma.scoring.covariance import shrunk_covariance
from chroma.scoring.ivf import IvfNearest, IvfParams
from chroma.scoring.mahalanobis import (
    GLOBAL_CLASS,
    FitInfo,
    MHBLimits,
    MHBModel,
    MHBScores,
    class_indices,
    fit_mhb,
    resolve_labels,
    score_mhb,
)
from chroma.scoring.nearest import ExactNearest, unit_rows
from chroma.scoring.normalise import SignalReference
from chroma.scoring.projection import (
    Projection,
    fit_projection,
    sample_positions,
    smallest_ranks,
    stable_rank,
)
from chroma.scoring.select import select_diverse
from chroma.scoring.signals import (
    SIGNAL_NAMES,
    compute_signals,
    knn_distance,
    neighbour_disagreement,
    predictive_uncertainty,
    score_matrix,
)

__all__ = [
    "DEFAULT_WEIGHTS",
    "GLOBAL_CLASS",
    "SIGNAL_NAMES",
    "ArtifactError",
    "AssessedColumns",
    "Assessment",
    "ExactNearest",
    "FitInfo",
    "IvfNearest",
    "IvfParams",
    "MHBLimits",
    "MHBModel",
    "MHBScores",
    "Priorities",
    "Projection",
    "RecommendParams",
    "ScoringReference",
    "SignalReference",
    "assess",
    "assess_columns",
    "class_indices",
    "combine",
    "compute_signals",
    "dump_model",
    "fit_mhb",
    "fit_projection",
    "fit_reference",
    "knn_distance",
    "load_model",
    "neighbour_disagreement",
    "predictive_uncertainty",
    "prioritise",
    "rank_order",
    "read_header",
    "resolve_labels",
    "sample_positions",
    "score_matrix",
    "score_mhb",
    "select_diverse",
    "shrunk_covariance",
    "smallest_ranks",
    "stable_rank",
    "training_fingerprint",
    "unit_rows",
]
