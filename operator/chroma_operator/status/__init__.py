"""Status derivation: phase, conditions and counts from the observed children.

Owns: what ``status`` of a ChromaCluster, an IndexJob and a Dataset says, computed from
the real objects (CloudNativePG style: a phase in plain words + ``phaseReason`` for
people, conditions with type/status/reason/message/lastTransitionTime for automation,
``observedGeneration`` to tell stale from current). The vocabulary (phases, condition
types, reasons, fields) is ``chroma_operator.status_types``; this package only decides
which of it holds, one module per kind (``cluster``, ``indexjob``, ``dataset``) over
``common`` (conditions, merge patch). Pure: no I/O, no kopf. Called by
``chroma_operator.reconcile``; unit-tested in ``tests/unit/test_operator_status.py``.

ChromaCluster conditions (each documented in ``status_types.ClusterCondition``):
  ApiReady, QueryEngineReady, WorkersReady  one per component: ready >= desired
  Ready        all three hold and the cluster is not suspended
  Progressing  children are being created, rolled out or scaled (not Ready, not Degraded)
  Degraded     a child reports a failure (ProgressDeadlineExceeded, ReplicaFailure)
Phases: Ready, Progressing, Degraded, Suspended.

IndexJob phases mirror the Job: Pending, Running, Succeeded, Failed.
"""

from chroma_operator.status.cluster import ComponentState, cluster_status, component_state
from chroma_operator.status.common import (
    condition,
    merge_conditions,
    now_rfc3339,
    status_patch,
)
from chroma_operator.status.dataset import dataset_status
from chroma_operator.status.indexjob import (
    indexjob_refused,
    indexjob_status,
    indexjob_waiting,
    job_phase,
)

__all__ = [
    "ComponentState",
    "cluster_status",
    "component_state",
    "condition",
    "dataset_status",
    "indexjob_refused",
    "indexjob_status",
    "indexjob_waiting",
    "job_phase",
    "merge_conditions",
    "now_rfc3339",
    "status_patch",
]
