"""The ``status`` contract of ChromaCluster, IndexJob and Dataset: phases, conditions, fields.

Owns: the names a status may hold, as types and constants (CloudNativePG's
``cluster_conditions.go`` and ``*_types.go``): a phase in plain words for people, with
``phaseReason`` and ``message``; conditions (type, status, reason, message,
lastTransitionTime) for automation, each type a named constant documented with when it
holds; ``observedGeneration`` to tell a current status from a stale one. The field names
are the status schemas of ``crds/`` (``tests/unit/test_operator_status.py`` checks them);
``docs/operator.md`` explains them to users.

Types and constants only: no behaviour, no imports from the rest of the operator. The
values are computed by ``chroma_operator.status`` and written by
``chroma_operator.reconcile``. Phases, condition types and reasons are ``StrEnum``s, so
they are plain strings in JSON and compare equal to the strings read back.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, NotRequired, TypedDict

__all__ = [
    "FINISHED_PHASES",
    "ClusterAuth",
    "ClusterCondition",
    "ClusterEndpoints",
    "ClusterPhase",
    "ClusterStatus",
    "ComponentCounts",
    "Condition",
    "ConditionStatus",
    "DatasetCondition",
    "DatasetPhase",
    "DatasetReason",
    "DatasetStatus",
    "IndexJobCondition",
    "IndexJobPhase",
    "IndexJobReason",
    "IndexJobStatus",
    "LastOperation",
]

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(TypedDict):
    """One entry of ``status.conditions`` (the Kubernetes ``metav1.Condition`` shape)."""

    type: str
    status: ConditionStatus
    reason: str
    """CamelCase, machine-readable: why the condition has this status."""
    message: str
    """For people: what is true, in a sentence."""
    lastTransitionTime: NotRequired[str]
    """RFC 3339: when ``status`` last changed (kept while it does not)."""


# -- ChromaCluster ------------------------------------------------------------------------


class ClusterPhase(StrEnum):
    """``status.phase`` of a ChromaCluster; ``phaseReason`` says why."""

    READY = "Ready"
    """Every component runs its desired replicas."""
    PROGRESSING = "Progressing"
    """Children are being created, rolled out or scaled; nothing failed."""
    DEGRADED = "Degraded"
    """A child reports a failure (ProgressDeadlineExceeded, ReplicaFailure)."""
    SUSPENDED = "Suspended"
    """``spec.suspend``: every component scaled (or scaling) to zero, data kept."""


class ClusterCondition(StrEnum):
    """Condition types of a ChromaCluster, in the order they are listed."""

    READY = "Ready"
    """True when ApiReady, QueryEngineReady and WorkersReady hold and it is not suspended."""
    API_READY = "ApiReady"
    """True when the API Deployment has its desired ready replicas (or runs none)."""
    QUERY_ENGINE_READY = "QueryEngineReady"
    """True when the Qdrant StatefulSet is ready, or Qdrant is external (reason External)."""
    WORKERS_READY = "WorkersReady"
    """True when the worker Deployment has its desired ready replicas (or runs none)."""
    PROGRESSING = "Progressing"
    """True while children are created, rolled out or scaled (not Ready, not Degraded)."""
    DEGRADED = "Degraded"
    """True when a child reports a failure."""


class ComponentCounts(TypedDict):
    """``status.components.<name>``: pods one component should run and runs ready."""

    desired: int
    ready: int


class ClusterEndpoints(TypedDict):
    """``status.endpoints``: where the cluster answers."""

    api: str
    """In-cluster URL of the API Service."""
    qdrant: str
    """URL of Qdrant (the managed Service, or ``spec.qdrant.url``)."""
    ingress: NotRequired[str]
    """Host routed to the API, when an Ingress with a host is enabled."""


class ClusterAuth(TypedDict):
    """``status.auth``: where the cluster's secrets are (names only, never the keys)."""

    enabled: bool
    """``spec.auth.enabled``: the API asks for keys."""
    secretName: NotRequired[str]
    """The Secret whose ``keys`` entry the API pods mount (generated
    ``<cluster>-api-keys`` or ``spec.auth.secretName``); absent when auth is off."""
    qdrantApiKeySecret: NotRequired[str]
    """The Secret holding the Qdrant API key, when Qdrant has one."""


class LastOperation(TypedDict):
    """``status.lastOperation``: the last ``chroma.dev/operation`` annotation handled."""

    request: str
    """The annotation value."""
    indexJob: NotRequired[str]
    """The IndexJob made for it."""
    requestedAt: NotRequired[str]
    error: NotRequired[str]
    """Why the annotation was refused (then no IndexJob was made)."""


class ClusterStatus(TypedDict):
    """``status`` of a ChromaCluster."""

    phase: ClusterPhase
    phaseReason: str
    message: str
    observedGeneration: int | None
    ready: str
    """``READY/DESIRED`` pods over every component (a printer column)."""
    image: str
    components: dict[str, ComponentCounts]
    """``api``, ``workers`` and, when managed, ``qdrant``."""
    endpoints: ClusterEndpoints
    auth: ClusterAuth
    conditions: list[Condition]
    lastOperation: NotRequired[LastOperation]


# -- IndexJob -----------------------------------------------------------------------------


class IndexJobPhase(StrEnum):
    """``status.phase`` of an IndexJob: mirrors its Job."""

    PENDING = "Pending"
    """No Job yet (waiting for the cluster or a sibling), or its pod has not started."""
    RUNNING = "Running"
    """The Job has an active pod."""
    SUCCEEDED = "Succeeded"
    """The Job completed."""
    FAILED = "Failed"
    """The Job failed past its backoff limit or deadline, or the spec can never run."""


FINISHED_PHASES = frozenset({IndexJobPhase.SUCCEEDED, IndexJobPhase.FAILED})
"""Phases after which nothing changes any more."""


class IndexJobCondition(StrEnum):
    """Condition types of an IndexJob."""

    FINISHED = "Finished"
    """True when the Job ended, either way."""
    SUCCEEDED = "Succeeded"
    """True when the Job completed successfully."""


class IndexJobReason(StrEnum):
    """``phaseReason`` values the operator sets itself (a Job's own reasons pass through)."""

    JOB_NOT_CREATED = "JobNotCreated"
    CLUSTER_NOT_FOUND = "ClusterNotFound"
    """The ChromaCluster in ``spec.cluster`` does not exist (yet): retried."""
    CLUSTER_SUSPENDED = "ClusterSuspended"
    """The cluster is suspended: the Job starts on resume."""
    WAITING_FOR_ACTIVE_JOB = "WaitingForActiveJob"
    """Another Job runs the same operation on the same embedding set: this one waits."""
    INVALID_PARAMS = "InvalidParams"
    """``spec.params`` has a key ``--param`` cannot carry: Failed, final (immutable spec)."""
    JOB_CREATED = "JobCreated"
    JOB_ACTIVE = "JobActive"
    COMPLETED = "Completed"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"


class IndexJobStatus(TypedDict):
    """``status`` of an IndexJob."""

    phase: IndexJobPhase
    phaseReason: str
    message: str
    observedGeneration: int | None
    attempts: int
    """Pods started: failed + succeeded + active."""
    jobName: NotRequired[str]
    image: NotRequired[str]
    """The image the Job runs (kept after the Job is gone)."""
    active: NotRequired[int]
    succeeded: NotRequired[int]
    failed: NotRequired[int]
    startTime: NotRequired[str]
    completionTime: NotRequired[str]
    conditions: list[Condition]


# -- Dataset ------------------------------------------------------------------------------


class DatasetPhase(StrEnum):
    """``status.phase`` of a Dataset."""

    PENDING = "Pending"
    """Not in the catalog yet."""
    REGISTERED = "Registered"
    """Registered through the API; no record logged yet."""
    READY = "Ready"
    """In the catalog: counts and freshness are shown."""
    UNAVAILABLE = "Unavailable"
    """The cluster's API cannot be reached or refused the call (or the cluster is missing)."""


class DatasetCondition(StrEnum):
    """Condition types of a Dataset."""

    REGISTERED = "Registered"
    """True once the dataset is in the catalog (registered or seen)."""
    SYNCED = "Synced"
    """True when the last read of the catalog through the API succeeded."""


class DatasetReason(StrEnum):
    """``phaseReason`` values of a Dataset."""

    API_UNAVAILABLE = "ApiUnavailable"
    NOT_IN_CATALOG = "NotInCatalog"
    REGISTERED = "Registered"
    IN_CATALOG = "InCatalog"


class DatasetStatus(TypedDict):
    """``status`` of a Dataset."""

    phase: DatasetPhase
    phaseReason: str
    message: str
    observedGeneration: int | None
    registered: NotRequired[bool]
    apiUrl: NotRequired[str]
    """Base URL of the API the operator talks to for this dataset."""
    embeddingSetKey: NotRequired[str]
    recordCount: NotRequired[int]
    lastLog: NotRequired[str]
    indexedAt: NotRequired[str]
    indexStale: NotRequired[bool]
    retentionDays: NotRequired[int]
    lastSyncTime: NotRequired[str]
    conditions: list[Condition]
