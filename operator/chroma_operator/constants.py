"""Names shared by the CRDs, the manifest builders and the handlers.

Owns: the API group and version, label and annotation keys, the field manager and the
component names. Every other module of the operator imports these; nothing here does I/O.
The CRDs under ``crds/`` and ``docs/operator.md`` use the same strings.

The IndexJob contract (group and version, kinds of operation, ``spec.params`` rules,
IndexJob labels) is not written here but re-exported from ``chroma.indexjob``, which
the API's launcher shares: that module is the one home of those facts.
"""

from __future__ import annotations

from typing import Final

from chroma import indexjob as ij

GROUP: Final = ij.GROUP
VERSION: Final = ij.VERSION
API_VERSION: Final = ij.API_VERSION

CLUSTER_KIND: Final = "ChromaCluster"
CLUSTER_PLURAL: Final = "chromaclusters"
DATASET_KIND: Final = "Dataset"
DATASET_PLURAL: Final = "datasets"
INDEXJOB_KIND: Final = ij.KIND
INDEXJOB_PLURAL: Final = ij.PLURAL

FIELD_MANAGER: Final = "chroma-operator"
"""Server-side apply field manager for every object the operator writes."""

MANAGED_BY: Final = "chroma-operator"

# Labels put on every child (selectors use the first three only: they never change).
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_VERSION: Final = "app.kubernetes.io/version"
LABEL_CLUSTER: Final = ij.LABEL_CLUSTER
LABEL_INDEXJOB: Final = f"{GROUP}/indexjob"
LABEL_OPERATION: Final = ij.LABEL_OPERATION
LABEL_EMBEDDING_SET: Final = ij.LABEL_EMBEDDING_SET

# Annotations a user sets on a ChromaCluster (documented in docs/operator.md).
ANNOTATION_OPERATION: Final = f"{GROUP}/operation"
"""``KIND/EMBEDDING_SET_KEY[/REQUEST_ID]``: run one operation as an IndexJob."""

# Annotations the operator writes.
ANNOTATION_CONFIG_HASH: Final = f"{GROUP}/config-hash"
"""On pod templates: a hash of the ConfigMap data, so a config change rolls the pods."""
ANNOTATION_REQUESTED_BY: Final = ij.ANNOTATION_REQUESTED_BY
"""On IndexJobs made from an annotation: the annotation value that requested it."""

# Component names (values of LABEL_COMPONENT).
COMPONENT_API: Final = "api"
COMPONENT_WORKERS: Final = "worker"
COMPONENT_QDRANT: Final = "qdrant"
COMPONENT_CONFIG: Final = "config"
COMPONENT_OPERATION: Final = "operation"

OPERATIONS: Final = ij.OPERATIONS
"""Operation kinds an IndexJob may run (``chroma op run KIND``)."""
PARAM_KEY_PATTERN: Final = ij.PARAM_KEY_PATTERN
"""Keys of an IndexJob's ``spec.params`` (the CRD cannot check them; the operator does)."""
MAX_PARAMS: Final = ij.MAX_PARAMS
"""``spec.params`` ``maxProperties`` in the CRD."""
MAX_PARAM_STRING: Final = ij.MAX_PARAM_STRING
"""``maxLength`` of a string value of ``spec.params`` in the CRD."""

# Secrets: entries the operator writes into the Secrets it generates (and reads by
# reference from the ones a spec names).
API_KEYS_KEY: Final = "keys"
"""Entry of the API keys Secret: the keys file (``<scope> <key>`` lines, DESIGN §11)."""
API_KEYS_MOUNT: Final = "/etc/chroma/api-keys"
"""Directory where API pods mount the keys Secret (read-only); the file is ``keys``."""
QDRANT_API_KEY_KEY: Final = "api-key"
"""Entry of the Qdrant API key Secret (generated or named in the spec, default key)."""

API_PORT: Final = 8000
QDRANT_HTTP_PORT: Final = 6333
QDRANT_GRPC_PORT: Final = 6334

DEFAULT_IMAGE: Final = "chroma-service:0.1.0"
DEFAULT_QDRANT_IMAGE: Final = "qdrant/qdrant:v1.19.0"
