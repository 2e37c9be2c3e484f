"""Pure manifest builders: custom resource bodies in, Kubernetes object dicts out.

Owns: every object the operator writes, as data. No I/O, no kopf: the reconciler
(``chroma_operator.reconcile``) applies what these return. Unit-tested without servers.
"""

from chroma_operator.manifests.cluster import (
    api_keys_secret,
    build_children,
    build_generated_secrets,
    names,
    operator_api_key,
    qdrant_api_key_ref,
)
from chroma_operator.manifests.indexjob import (
    InvalidOperationRequest,
    InvalidParams,
    OperationRequest,
    build_job,
    build_requested_indexjob,
    params_problem,
)
from chroma_operator.manifests.spec import ClusterSpec, DatasetSpec, IndexJobSpec

__all__ = [
    "ClusterSpec",
    "DatasetSpec",
    "IndexJobSpec",
    "InvalidOperationRequest",
    "InvalidParams",
    "OperationRequest",
    "api_keys_secret",
    "build_children",
    "build_generated_secrets",
    "build_job",
    "build_requested_indexjob",
    "names",
    "operator_api_key",
    "params_problem",
    "qdrant_api_key_ref",
]
