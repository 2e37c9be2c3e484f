"""Operator settings, read once from the environment.

Owns: the knobs of the operator process itself (not of the clusters it manages: those
are CRD fields). Each field says its unit, default and why. Read by ``main`` and the
handlers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass(frozen=True)
class OperatorSettings:
    resync_seconds: float = 60.0
    """CHROMA_OPERATOR_RESYNC_SECONDS: period of the safety-net reconcile of every
    ChromaCluster and IndexJob (child events already trigger one at once). Default 60 s."""

    dataset_sync_seconds: float = 60.0
    """CHROMA_OPERATOR_DATASET_SYNC_SECONDS: how often a Dataset's counts and freshness
    are read from the cluster's API. Default 60 s."""

    api_url: str | None = None
    """CHROMA_OPERATOR_API_URL: base URL of the Chroma API for every cluster, instead of
    the in-cluster Service address (for an operator run outside the cluster)."""

    http_timeout_seconds: float = 10.0
    """CHROMA_OPERATOR_HTTP_TIMEOUT: timeout of calls to a cluster's API. Default 10 s."""

    api_key_seed: str | None = field(default=None, repr=False)
    """CHROMA_OPERATOR_API_KEY_SEED: a secret of the operator's own (the chart keeps one in
    a Secret it mounts as this variable). From it and a cluster's uid the operator derives
    that cluster's operator key, writes it into the keys Secret it generates and sends it
    when registering Datasets, so it never needs to read a Secret. Unset: the generated
    keys Secret holds the user's admin key only and Dataset calls carry no key."""

    namespace: str | None = None
    """CHROMA_OPERATOR_NAMESPACE (else the namespace of the pod's service account, when
    in a cluster): where the operator runs. Each cluster's NetworkPolicy lets this
    namespace reach the API, because the operator registers Datasets through it."""

    @classmethod
    def from_env(cls) -> OperatorSettings:
        return cls(
            resync_seconds=_float("CHROMA_OPERATOR_RESYNC_SECONDS", 60.0),
            dataset_sync_seconds=_float("CHROMA_OPERATOR_DATASET_SYNC_SECONDS", 60.0),
            api_url=os.environ.get("CHROMA_OPERATOR_API_URL") or None,
            http_timeout_seconds=_float("CHROMA_OPERATOR_HTTP_TIMEOUT", 10.0),
            api_key_seed=os.environ.get("CHROMA_OPERATOR_API_KEY_SEED") or None,
            namespace=os.environ.get("CHROMA_OPERATOR_NAMESPACE") or _pod_namespace(),
        )


_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _pod_namespace() -> str | None:
    try:
        return _SA_NAMESPACE.read_text().strip() or None
    except OSError:
        return None
