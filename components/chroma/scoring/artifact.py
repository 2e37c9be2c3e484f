"""The MHB model as bytes (a versioned artifact) and the training-data fingerprint.

Format: an uncompressed ``.npz`` (numpy's zip of ``.npy`` arrays, read with
``allow_pickle=False`` so a stored artifact can never execute code) holding the model
arrays plus ``header``, a JSON document::

    {"format": "chroma-mhb", "version": 1, "classes": [...], "fit": {FitInfo fields},
     "arrays": [names], "metadata": {free caller data, e.g. embedding_set_key}}

A reader refuses another ``format`` or a newer ``version`` (:class:`ArtifactError`).

The fingerprint lets the ``fit-mhb`` operation skip a re-fit: it hashes what identifies
the training content (manifest file ids with their record counts, which are immutable
files in this design) plus the fit parameters and this format's version.

Called by the ``fit-mhb`` operation (write) and the recommender (read).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from chroma.errors import ChromaError
from chroma.scoring.mahalanobis import FitInfo, MHBModel

__all__ = [
    "ARTIFACT_FORMAT",
    "ARTIFACT_VERSION",
    "ArtifactError",
    "dump_model",
    "load_model",
    "read_header",
    "training_fingerprint",
]

ARTIFACT_FORMAT = "chroma-mhb"
ARTIFACT_VERSION = 1

_ARRAYS = (
    "class_counts",
    "class_means",
    "tied_covariance",
    "class_covariances",
    "background_mean",
    "background_covariance",
)


class ArtifactError(ChromaError):
    """Stored MHB bytes are unreadable or of an unknown format/version: re-fit the model."""

    status_code = 500
    code = "mhb_artifact_invalid"


def dump_model(model: MHBModel, *, metadata: Mapping[str, Any] | None = None) -> bytes:
    """Serialise ``model`` (float64 arrays, lossless) with a JSON header.

    ``metadata``: JSON-serialisable facts the caller wants beside the model (e.g. the
    embedding set key, the created-at time); returned by :func:`read_header`.
    """
    arrays = {
        name: getattr(model, name) for name in _ARRAYS if getattr(model, name) is not None
    }
    header = {
        "format": ARTIFACT_FORMAT,
        "version": ARTIFACT_VERSION,
        "classes": list(model.classes),
        "fit": asdict(model.info),
        "arrays": sorted(arrays),
        "metadata": dict(metadata or {}),
    }
    buffer = io.BytesIO()
    np.savez(buffer, header=np.array(json.dumps(header, sort_keys=True)), **arrays)
    return buffer.getvalue()


def _open(data: bytes) -> tuple[dict[str, Any], Any]:
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
        header = json.loads(str(archive["header"][()]))
    except Exception as exc:  # zip, npy and JSON errors all mean "not an artifact"
        raise ArtifactError(f"not a readable MHB artifact: {exc}") from exc
    if header.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"artifact format is {header.get('format')!r}, not {ARTIFACT_FORMAT!r}")
    if not isinstance(header.get("version"), int) or header["version"] > ARTIFACT_VERSION:
        raise ArtifactError(
            f"artifact version {header.get('version')!r} is newer than this reader "
            f"({ARTIFACT_VERSION}); upgrade or re-fit"
        )
    return header, archive


def read_header(data: bytes) -> dict[str, Any]:
    """The JSON header (format, version, classes, fit info, metadata) without the arrays."""
    return _open(data)[0]


def load_model(data: bytes) -> MHBModel:
    """Rebuild the model written by :func:`dump_model`; raises :class:`ArtifactError`."""
    header, archive = _open(data)
    try:
        arrays = {name: archive[name] for name in header["arrays"]}
        fit = dict(header["fit"])
        fit["class_shrinkage"] = tuple(fit.get("class_shrinkage", ()))
        fit["class_blend"] = tuple(fit.get("class_blend", ()))
        return MHBModel(
            classes=tuple(header["classes"]),
            class_counts=arrays["class_counts"],
            class_means=arrays["class_means"],
            tied_covariance=arrays["tied_covariance"],
            class_covariances=arrays.get("class_covariances"),
            background_mean=arrays["background_mean"],
            background_covariance=arrays["background_covariance"],
            info=FitInfo(**fit),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"MHB artifact is incomplete: {exc}") from exc


def training_fingerprint(
    files: Mapping[str, int] | Iterable[tuple[str, int]],
    *,
    params: Mapping[str, Any] | None = None,
) -> str:
    """SHA-256 hex identifying the training content a model is fitted on.

    ``files``: (manifest file id, record count) pairs of the training datasets (order
    does not matter). ``params``: fit parameters that change the result (shrinkage
    method, per_class, ...). Equal fingerprints mean the stored model is still valid;
    anything that adds, removes or replaces a file (or deletes records, which changes a
    count) gives a new one. Include deletion tombstones in ``files`` if deletes are
    recorded outside the file list.
    """
    pairs = files.items() if isinstance(files, Mapping) else files
    canonical = {
        "format": ARTIFACT_FORMAT,
        "version": ARTIFACT_VERSION,
        "files": sorted([str(file_id), int(count)] for file_id, count in pairs),
        "params": dict(params or {}),
    }
    payload = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
