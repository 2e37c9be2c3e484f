"""MHB: the custom indexer of class-conditional Gaussians (Mahalanobis distances).

Owns the maths of fitting per-class means with a tied and per-class shrunk covariance
plus a background Gaussian on *training* embeddings, scoring production embeddings
(distance to the predicted class, to the nearest class, relative Mahalanobis), the
artifact bytes and the training fingerprint. Pure numpy/scipy functions.

Must not touch: HTTP, the catalog, storage or the index. The ``fit-mhb`` operation
reads the training records, calls :func:`fit_mhb` and stores :func:`dump_model`'s bytes;
the recommender loads them with :func:`load_model` and calls :func:`score_mhb`.

Typical use::

    labels = resolve_labels(label_class, inference_class)
    fingerprint = training_fingerprint({file_id: count, ...}, params={"method": "ledoit_wolf"})
    model = fit_mhb(train_embeddings, labels, fingerprint=fingerprint)
    blob = dump_model(model, metadata={"embedding_set_key": key})
    scores = score_mhb(load_model(blob), production_embeddings, inference_class)
"""

from chroma.mhb._artifact import (
    ArtifactError,
    dump_model,
    load_model,
    read_header,
    training_fingerprint,
)
from chroma.mhb._covariance import shrunk_covariance
from chroma.mhb._model import (
    GLOBAL_CLASS,
    FitInfo,
    MHBModel,
    MHBScores,
    class_indices,
    fit_mhb,
    resolve_labels,
    score_mhb,
)

__all__ = [
    "GLOBAL_CLASS",
    "ArtifactError",
    "FitInfo",
    "MHBModel",
    "MHBScores",
    "class_indices",
    "dump_model",
    "fit_mhb",
    "load_model",
    "read_header",
    "resolve_labels",
    "score_mhb",
    "shrunk_covariance",
    "training_fingerprint",
]
