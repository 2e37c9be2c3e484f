"""Reconcilers: make the cluster match a custom resource, then record what is true.

Owns: the order of work for each kind, one module each: ``cluster`` (apply children,
delete what the spec turned off, observe, write status, the operation annotation),
``indexjob`` (create a Job at most once, mirror it), ``dataset`` (register through the
cluster's API, report the catalog); ``outcome`` holds what they share (``Outcome``,
per-object locks, ``record``: write status and, when waiting, ask for a retry). Every
step is idempotent, so a rerun after a crash, a restart or a re-list finds the objects
and patches them. Uses ``Kube`` for I/O and the pure builders / status functions;
returns ``Outcome`` (what was done, as Event-ready lines) to ``chroma_operator.handlers``,
which stay thin. Must not import kopf.
"""

from chroma_operator.reconcile.cluster import owner_cluster_name, reconcile_cluster
from chroma_operator.reconcile.dataset import reconcile_dataset
from chroma_operator.reconcile.indexjob import owner_indexjob_name, reconcile_indexjob
from chroma_operator.reconcile.outcome import Outcome, lock_for, record

__all__ = [
    "Outcome",
    "lock_for",
    "owner_cluster_name",
    "owner_indexjob_name",
    "reconcile_cluster",
    "reconcile_dataset",
    "reconcile_indexjob",
    "record",
]
