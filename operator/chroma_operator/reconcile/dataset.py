"""Dataset reconciler: register the dataset through its cluster's API, report the catalog.

Owns: the two HTTP calls to a cluster's Chroma API (``PUT`` to register when the spec
is new, ``GET`` to read counts and freshness), with the operator's derived key for that
cluster, and the Dataset's status from their answers. An API that answers 404/405 to
the ``PUT`` creates datasets on their first logged record instead. Uses ``Kube`` to
find the cluster and write status, httpx for the API; called by
``chroma_operator.handlers``. Must not touch the catalog directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from chroma_operator import constants as c
from chroma_operator import status as st
from chroma_operator.config import OperatorSettings
from chroma_operator.kube import Kube
from chroma_operator.manifests import ClusterSpec, DatasetSpec, operator_api_key
from chroma_operator.manifests.cluster import api_url
from chroma_operator.reconcile.outcome import Body, Outcome, record

__all__ = ["reconcile_dataset"]

RETRY_S = 30.0
"""Seconds before trying again when the cluster is missing or its API failed."""


@dataclass
class _Answer:
    """What the cluster's API said about the dataset."""

    registered: bool
    info: Body | None = None
    error: str | None = None


def reconcile_dataset(
    kube: Kube,
    body: Body,
    settings: OperatorSettings,
    http: httpx.Client | None = None,
    out: Outcome | None = None,
) -> Outcome:
    """Register the dataset through the cluster's API and report what the catalog says."""
    meta = body["metadata"]
    ns = meta["namespace"]
    spec = DatasetSpec.from_dict(body["spec"], meta["name"])
    out = out if out is not None else Outcome()
    cluster = kube.get(c.API_VERSION, c.CLUSTER_KIND, ns, spec.cluster)
    now = st.now_rfc3339()
    if cluster is None:
        missing = f"ChromaCluster {spec.cluster} not found in {ns}"
        status = st.dataset_status(body, False, None, missing, now)
        return record(kube, body, out, status, retry_after=RETRY_S)
    base = (settings.api_url or api_url(cluster)).rstrip("/")
    client = http or httpx.Client(timeout=settings.http_timeout_seconds)
    client.headers.update(_auth_headers(cluster, settings))
    try:
        answer = _ask(client, base, body, spec, out)
    finally:
        if http is None:
            client.close()
    status = st.dataset_status(body, answer.registered, answer.info, answer.error, now)
    status["registered"] = answer.registered
    status["apiUrl"] = base
    if spec.retention_days is not None:
        status["retentionDays"] = spec.retention_days
    return record(kube, body, out, status, retry_after=RETRY_S if answer.error else None)


def _auth_headers(cluster: Body, settings: OperatorSettings) -> dict[str, str]:
    """The operator's key for this cluster (see ``operator_api_key``), when it has a seed
    and the cluster asks for keys. A key file without the operator's line (a Secret the
    user named) answers 401, which the Dataset's status then reports."""
    if not settings.api_key_seed or not ClusterSpec.from_dict(cluster.get("spec")).auth.enabled:
        return {}
    return {"Authorization": f"Bearer {operator_api_key(settings.api_key_seed, cluster)}"}


def _ask(client: httpx.Client, base: str, body: Body, spec: DatasetSpec, out: Outcome) -> _Answer:
    """Register when the spec is new (or never registered), then read the dataset."""
    previous = body.get("status") or {}
    answer = _Answer(registered=bool(previous.get("registered")))
    new_spec = previous.get("observedGeneration") != body["metadata"].get("generation")
    try:
        if not answer.registered or new_spec:
            _register(client, base, spec, answer, out)
        resp = client.get(f"{base}/api/v1/datasets/{spec.name}")
        if resp.status_code == 200:
            answer.info = resp.json()
        elif resp.status_code != 404 and answer.error is None:
            answer.error = f"reading {spec.name}: HTTP {resp.status_code} {resp.text[:200]}"
    except httpx.HTTPError as exc:
        answer.error = f"Chroma API at {base} unreachable: {exc}"
    return answer


def _register(
    client: httpx.Client, base: str, spec: DatasetSpec, answer: _Answer, out: Outcome
) -> None:
    payload = {
        "split": spec.split,
        "embedding_set": spec.embedding_set or None,
        "retention_days": spec.retention_days,
        "description": spec.description,
    }
    resp = client.put(f"{base}/api/v1/datasets/{spec.name}", json=payload)
    if resp.status_code < 300:
        if not answer.registered:
            out.note("Registered", f"registered dataset {spec.name} at {base}")
        answer.registered = True
    elif resp.status_code not in (404, 405):
        answer.error = f"registering {spec.name}: HTTP {resp.status_code} {resp.text[:200]}"
