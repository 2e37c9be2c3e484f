"""Builders for one-shot operations: the IndexJob an annotation asks for, and its Job.

Owns: parsing the ``chroma.dev/operation`` annotation of a ChromaCluster into the
IndexJob it requests (owned by the cluster), and the ``batch/v1`` Job that runs
``chroma op run KIND`` with the cluster's image and configuration. Names, ``spec.params``
rules and the ``--param key=value`` rendering are the IndexJob contract of
``chroma.indexjob`` (shared with the API's launcher and ``chroma op run``), used here,
not restated. Pure; called by ``chroma_operator.reconcile``.
"""

from __future__ import annotations

from dataclasses import dataclass

from chroma import indexjob as ij
from chroma.indexjob import InvalidParams, param_args, param_problem
from chroma_operator import constants as c
from chroma_operator.manifests.cluster import chroma_container
from chroma_operator.manifests.common import (
    Body,
    label_value,
    labels,
    owner_reference,
    pod_security_context,
    tmp_volume,
)
from chroma_operator.manifests.spec import ClusterSpec, IndexJobSpec

__all__ = [
    "InvalidOperationRequest",
    "InvalidParams",
    "OperationRequest",
    "build_job",
    "build_requested_indexjob",
    "job_name",
    "params_problem",
    "requested_indexjob_name",
]

params_problem = param_problem
"""Why an IndexJob's ``spec.params`` cannot become ``--param`` arguments (or None)."""


class InvalidOperationRequest(ValueError):
    """The ``chroma.dev/operation`` annotation cannot be understood."""


@dataclass(frozen=True)
class OperationRequest:
    """A parsed ``chroma.dev/operation`` annotation: ``KIND/EMBEDDING_SET[/REQUEST_ID]``."""

    operation: str
    embedding_set: str
    request_id: str = ""
    raw: str = ""

    @classmethod
    def parse(cls, value: str) -> OperationRequest:
        parts = [p.strip() for p in value.strip().split("/")]
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidOperationRequest(
                f"annotation {c.ANNOTATION_OPERATION}={value!r}: expected "
                "KIND/EMBEDDING_SET_KEY or KIND/EMBEDDING_SET_KEY/REQUEST_ID"
            )
        if parts[0] not in c.OPERATIONS:
            raise InvalidOperationRequest(
                f"annotation {c.ANNOTATION_OPERATION}={value!r}: unknown operation "
                f"{parts[0]!r}; expected one of {', '.join(c.OPERATIONS)}"
            )
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "", value.strip())


def requested_indexjob_name(cluster: Body, request: OperationRequest) -> str:
    """Deterministic: the same annotation on the same cluster always names the same IndexJob."""
    meta = cluster["metadata"]
    return ij.requested_indexjob_name(meta["name"], meta["uid"], request.operation, request.raw)


def build_requested_indexjob(cluster: Body, request: OperationRequest) -> Body:
    """The IndexJob that ``chroma.dev/operation`` on ``cluster`` asks for (owned by it)."""
    name = cluster["metadata"]["name"]
    meta_labels = labels(name, c.COMPONENT_OPERATION)
    meta_labels[c.LABEL_OPERATION] = request.operation
    meta_labels[c.LABEL_EMBEDDING_SET] = label_value(request.embedding_set)
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.INDEXJOB_KIND,
        "metadata": {
            "name": requested_indexjob_name(cluster, request),
            "namespace": cluster["metadata"]["namespace"],
            "labels": meta_labels,
            "annotations": {c.ANNOTATION_REQUESTED_BY: request.raw},
            "ownerReferences": [owner_reference(cluster)],
        },
        "spec": {
            "cluster": name,
            "operation": request.operation,
            "embeddingSet": request.embedding_set,
        },
    }


def job_name(indexjob: Body) -> str:
    """Name of the Job that runs ``indexjob`` (fixed by the IndexJob: restart-safe)."""
    meta = indexjob["metadata"]
    return ij.job_name(meta["name"], meta["uid"])


def build_job(indexjob: Body, cluster: Body) -> Body:
    """The Job that runs ``indexjob`` with ``cluster``'s image and configuration.

    It gets only what the operation uses: the ConfigMap, the PostgreSQL, S3 and Qdrant
    key Secrets; never the API keys file (it serves nothing) nor a service account token.

    Raises ``InvalidParams`` when ``spec.params`` has a key ``--param`` cannot carry."""
    spec = IndexJobSpec.from_dict(indexjob["spec"])
    cspec = ClusterSpec.from_dict(cluster.get("spec"))
    cluster_name = cluster["metadata"]["name"]
    job_labels = labels(cluster_name, c.COMPONENT_OPERATION)
    job_labels[c.LABEL_INDEXJOB] = label_value(indexjob["metadata"]["name"])
    job_labels[c.LABEL_OPERATION] = spec.operation
    job_labels[c.LABEL_EMBEDDING_SET] = label_value(spec.embedding_set)
    container = chroma_container(
        cluster,
        cspec,
        "operation",
        [
            "op",
            "run",
            spec.operation,
            "--embedding-set",
            spec.embedding_set,
            *param_args(spec.params),
            "--local",
        ],
        spec.resources or cspec.workers.resources,
    )
    volume, _ = tmp_volume()
    job_spec: Body = {
        "backoffLimit": spec.backoff_limit,
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
        "completions": 1,
        "parallelism": 1,
        "template": {
            "metadata": {"labels": job_labels},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": f"{cluster_name}-api",
                # ``op run --local`` never calls the Kubernetes API: no token in the pod.
                "automountServiceAccountToken": False,
                "securityContext": pod_security_context(),
                "containers": [container],
                "volumes": [volume],
            },
        },
    }
    if spec.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(indexjob),
            "namespace": indexjob["metadata"]["namespace"],
            "labels": job_labels,
            "ownerReferences": [owner_reference(indexjob)],
        },
        "spec": job_spec,
    }
