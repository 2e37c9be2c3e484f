"""Status derivation: phase, conditions and counts from the observed children.

Owns: what ``status`` of a ChromaCluster, an IndexJob and a Dataset says, computed from
the real objects (CloudNativePG style: a phase in plain words + ``phaseReason`` for
people, conditions with type/status/reason/message/lastTransitionTime for automation,
``observedGeneration`` to tell stale from current). The vocabulary (phases, condition
types, reasons, fields) is ``chroma_operator.status_types``; this module only decides
which of it holds. Pure: no I/O, no kopf. Called by ``chroma_operator.reconcile`` and
unit-tested in ``tests/unit/test_operator_status.py``.

ChromaCluster conditions (each documented in ``status_types.ClusterCondition``):
  ApiReady, QueryEngineReady, WorkersReady  one per component: ready >= desired
  Ready        all three hold and the cluster is not suspended
  Progressing  children are being created, rolled out or scaled (not Ready, not Degraded)
  Degraded     a child reports a failure (ProgressDeadlineExceeded, ReplicaFailure)
Phases: Ready, Progressing, Degraded, Suspended.

IndexJob phases mirror the Job: Pending, Running, Succeeded, Failed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chroma_operator.manifests.cluster import api_url, qdrant_url
from chroma_operator.manifests.spec import ClusterSpec
from chroma_operator.status_types import (
    FINISHED_PHASES,
    ClusterCondition,
    ClusterEndpoints,
    ClusterPhase,
    ClusterStatus,
    ComponentCounts,
    Condition,
    DatasetCondition,
    DatasetPhase,
    DatasetReason,
    DatasetStatus,
    IndexJobCondition,
    IndexJobPhase,
    IndexJobReason,
    IndexJobStatus,
)

Body = dict[str, Any]

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


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def condition(type_: str, ok: bool, reason: str, message: str) -> Condition:
    return {
        "type": type_,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
    }


def merge_conditions(
    previous: list[Condition] | None, current: list[Condition], now: str
) -> list[Condition]:
    """``current`` with ``lastTransitionTime`` kept from ``previous`` unless status changed."""
    before = {cond.get("type"): cond for cond in previous or []}
    out: list[Condition] = []
    for cond in current:
        old = before.get(cond["type"])
        stamp = now
        if old and old.get("status") == cond["status"] and old.get("lastTransitionTime"):
            stamp = old["lastTransitionTime"]
        out.append({**cond, "lastTransitionTime": stamp})
    return out


def status_patch(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> Body:
    """A JSON merge patch from ``previous`` to ``current``: keys that disappeared become
    None (deleted), so a stale ``components.qdrant`` does not outlive its StatefulSet."""
    out: Body = dict(current)
    for key, old in (previous or {}).items():
        if key not in current:
            out[key] = None
        elif isinstance(old, dict) and isinstance(current[key], dict):
            out[key] = status_patch(old, current[key])
    return out


# -- ChromaCluster ------------------------------------------------------------------------


@dataclass(frozen=True)
class ComponentState:
    """Observed readiness of one component."""

    name: str
    desired: int
    ready: int
    exists: bool
    failure: str | None = None
    """Why the child reports failure, if it does."""
    rolling: bool = False
    """The child's controller has not observed its latest spec yet."""

    @property
    def ok(self) -> bool:
        return self.exists and self.ready >= self.desired

    def as_status(self) -> ComponentCounts:
        return {"desired": self.desired, "ready": self.ready}


def _failure(child: Body) -> str | None:
    for cond in (child.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("status") == "False":
            return f"{cond.get('reason', 'ProgressFailed')}: {cond.get('message', '')}".strip()
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return f"{cond.get('reason', 'ReplicaFailure')}: {cond.get('message', '')}".strip()
    return None


def component_state(name: str, desired: int, child: Body | None) -> ComponentState:
    """Readiness of a Deployment or StatefulSet ``child`` that should run ``desired`` pods."""
    if child is None:
        return ComponentState(name, desired, 0, exists=False)
    status = child.get("status") or {}
    generation = (child.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    return ComponentState(
        name,
        desired,
        int(status.get("readyReplicas") or 0),
        exists=True,
        failure=_failure(child),
        rolling=observed is not None and generation is not None and observed < generation,
    )


def _component_condition(type_: ClusterCondition, state: ComponentState) -> Condition:
    if not state.exists:
        return condition(type_, False, "Missing", f"{state.name} has not been created yet")
    if state.failure:
        return condition(type_, False, "Failed", f"{state.name}: {state.failure}")
    if state.desired == 0:
        return condition(type_, True, "ScaledToZero", f"{state.name} runs no replicas")
    if state.ok:
        return condition(
            type_, True, "ReplicasReady", f"{state.ready}/{state.desired} replicas ready"
        )
    return condition(
        type_, False, "ReplicasNotReady", f"{state.ready}/{state.desired} replicas ready"
    )


@dataclass(frozen=True)
class _Observed:
    """The components of a cluster and their per-component conditions."""

    components: dict[str, ComponentState]
    parts: list[Condition]
    """ApiReady, QueryEngineReady, WorkersReady (in that order)."""


def _observe(spec: ClusterSpec, children: Mapping[str, Body | None]) -> _Observed:
    scale = 0 if spec.suspend else 1
    api = component_state("api", spec.api.replicas * scale, children.get("api"))
    workers = component_state("workers", spec.workers.replicas * scale, children.get("workers"))
    components = {"api": api, "workers": workers}
    if spec.qdrant.managed:
        qdrant = component_state("qdrant", spec.qdrant.replicas * scale, children.get("qdrant"))
        components["qdrant"] = qdrant
        query = _component_condition(ClusterCondition.QUERY_ENGINE_READY, qdrant)
    else:
        query = condition(
            ClusterCondition.QUERY_ENGINE_READY,
            True,
            "External",
            f"external Qdrant at {spec.qdrant.url}",
        )
    parts = [
        _component_condition(ClusterCondition.API_READY, api),
        query,
        _component_condition(ClusterCondition.WORKERS_READY, workers),
    ]
    return _Observed(components, parts)


@dataclass(frozen=True)
class _Summary:
    """The cluster as a whole: phase and the Ready / Progressing / Degraded conditions."""

    phase: ClusterPhase
    reason: str
    message: str
    ready: Condition
    progressing: Condition
    degraded: Condition


_NO_FAILURE = "no child reports a failure"


def _suspended(observed: _Observed) -> _Summary:
    still = [s.name for s in observed.components.values() if s.exists and s.ready > 0]
    message = (
        "suspended: scaling to zero, still running: " + ", ".join(still)
        if still
        else "suspended: every component scaled to zero, data kept"
    )
    return _Summary(
        ClusterPhase.SUSPENDED,
        "Suspended",
        message,
        ready=condition(ClusterCondition.READY, False, "Suspended", message),
        progressing=condition(
            ClusterCondition.PROGRESSING,
            bool(still),
            "ScalingDown" if still else "Suspended",
            message,
        ),
        degraded=condition(ClusterCondition.DEGRADED, False, "Suspended", "no failure reported"),
    )


def _degraded(failures: list[ComponentState]) -> _Summary:
    message = "; ".join(f"{s.name}: {s.failure}" for s in failures)
    reason = "ChildFailed"
    return _Summary(
        ClusterPhase.DEGRADED,
        reason,
        message,
        ready=condition(ClusterCondition.READY, False, reason, message),
        progressing=condition(ClusterCondition.PROGRESSING, False, reason, message),
        degraded=condition(ClusterCondition.DEGRADED, True, reason, message),
    )


def _progressing(not_ready: list[Condition], rolling: list[str]) -> _Summary:
    message = "; ".join(f"{cond['type']}: {cond['message']}" for cond in not_ready) or (
        "rolling out: " + ", ".join(rolling)
    )
    reason = not_ready[0]["reason"] if not_ready else "RollingOut"
    return _Summary(
        ClusterPhase.PROGRESSING,
        reason,
        message,
        ready=condition(ClusterCondition.READY, False, reason, message),
        progressing=condition(ClusterCondition.PROGRESSING, True, reason, message),
        degraded=condition(ClusterCondition.DEGRADED, False, "NoFailure", _NO_FAILURE),
    )


def _ready() -> _Summary:
    message, reason = "every component is ready", "AllComponentsReady"
    return _Summary(
        ClusterPhase.READY,
        reason,
        message,
        ready=condition(ClusterCondition.READY, True, reason, message),
        progressing=condition(ClusterCondition.PROGRESSING, False, "Stable", "nothing to roll out"),
        degraded=condition(ClusterCondition.DEGRADED, False, "NoFailure", _NO_FAILURE),
    )


def _summarize(spec: ClusterSpec, observed: _Observed) -> _Summary:
    """Suspended beats Degraded beats Progressing beats Ready."""
    if spec.suspend:
        return _suspended(observed)
    failures = [s for s in observed.components.values() if s.failure]
    if failures:
        return _degraded(failures)
    not_ready = [cond for cond in observed.parts if cond["status"] != "True"]
    rolling = [s.name for s in observed.components.values() if s.rolling]
    if not_ready or rolling:
        return _progressing(not_ready, rolling)
    return _ready()


def _endpoints(body: Body, spec: ClusterSpec) -> ClusterEndpoints:
    endpoints: ClusterEndpoints = {"api": api_url(body), "qdrant": qdrant_url(body, spec)}
    if spec.api.ingress.enabled and spec.api.ingress.host:
        endpoints["ingress"] = spec.api.ingress.host
    return endpoints


def cluster_status(body: Body, children: Mapping[str, Body | None], now: str) -> ClusterStatus:
    """The full ``status`` of a ChromaCluster.

    ``children`` maps ``api``, ``workers`` and ``qdrant`` to the observed Deployment /
    StatefulSet (or None when absent); ``ingress`` to the observed Ingress, if any.
    """
    spec = ClusterSpec.from_dict(body.get("spec"))
    observed = _observe(spec, children)
    summary = _summarize(spec, observed)
    states = observed.components.values()
    previous = body.get("status") or {}
    return {
        "phase": summary.phase,
        "phaseReason": summary.reason,
        "message": summary.message,
        "observedGeneration": body["metadata"].get("generation"),
        "ready": f"{sum(s.ready for s in states)}/{sum(s.desired for s in states)}",
        "image": spec.image,
        "components": {name: s.as_status() for name, s in observed.components.items()},
        "endpoints": _endpoints(body, spec),
        "conditions": merge_conditions(
            previous.get("conditions"),
            [summary.ready, *observed.parts, summary.progressing, summary.degraded],
            now,
        ),
    }


# -- IndexJob -----------------------------------------------------------------------------


def _job_condition(job: Body, type_: str) -> Condition | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond  # type: ignore[no-any-return]
    return None


def _job_phase(job: Body) -> tuple[IndexJobPhase, str, str]:
    """(phase, reason, message) of an existing Job, from its counts and conditions."""
    st = job.get("status") or {}
    active = int(st.get("active") or 0)
    succeeded = int(st.get("succeeded") or 0)
    failed = int(st.get("failed") or 0)
    complete = _job_condition(job, "Complete")
    failed_cond = _job_condition(job, "Failed")
    backoff = int((job.get("spec") or {}).get("backoffLimit", 6))
    if complete or succeeded >= 1:
        reason = (complete or {}).get("reason") or IndexJobReason.COMPLETED
        message = (complete or {}).get("message") or "the operation finished successfully"
        return IndexJobPhase.SUCCEEDED, reason, message
    if failed_cond or failed > backoff:
        reason = (failed_cond or {}).get("reason") or IndexJobReason.BACKOFF_LIMIT_EXCEEDED
        message = (failed_cond or {}).get("message") or f"failed {failed} times"
        return IndexJobPhase.FAILED, reason, message
    if active > 0:
        return (
            IndexJobPhase.RUNNING,
            IndexJobReason.JOB_ACTIVE,
            f"attempt {failed + 1} of {backoff + 1} running",
        )
    message = (
        f"waiting to retry after {failed} failed attempt(s)"
        if failed
        else "waiting for the Job's pod to start"
    )
    return IndexJobPhase.PENDING, IndexJobReason.JOB_CREATED, message


def job_phase(job: Body) -> IndexJobPhase:
    """The IndexJob phase a Job stands for (used to find unfinished sibling Jobs)."""
    return _job_phase(job)[0]


def _indexjob_conditions(
    indexjob: Body, phase: IndexJobPhase, reason: str, message: str, now: str
) -> list[Condition]:
    """Finished and Succeeded, derived from the phase."""
    return merge_conditions(
        (indexjob.get("status") or {}).get("conditions"),
        [
            condition(IndexJobCondition.FINISHED, phase in FINISHED_PHASES, reason, message),
            condition(
                IndexJobCondition.SUCCEEDED, phase == IndexJobPhase.SUCCEEDED, reason, message
            ),
        ],
        now,
    )


def _keep_image(indexjob: Body, out: IndexJobStatus) -> IndexJobStatus:
    """The image recorded once stays (the Job, and so its image, may be gone)."""
    image = (indexjob.get("status") or {}).get("image")
    if image:
        out["image"] = image
    return out


def _without_job(
    indexjob: Body, phase: IndexJobPhase, reason: str, message: str, now: str
) -> IndexJobStatus:
    return _keep_image(indexjob, {
        "observedGeneration": indexjob["metadata"].get("generation"),
        "phase": phase,
        "phaseReason": reason,
        "message": message,
        "attempts": 0,
        "conditions": _indexjob_conditions(indexjob, phase, reason, message, now),
    })


def _with_job(indexjob: Body, job: Body, now: str) -> IndexJobStatus:
    st = job.get("status") or {}
    active = int(st.get("active") or 0)
    succeeded = int(st.get("succeeded") or 0)
    failed = int(st.get("failed") or 0)
    phase, reason, message = _job_phase(job)
    out: IndexJobStatus = {
        "observedGeneration": indexjob["metadata"].get("generation"),
        "phase": phase,
        "phaseReason": reason,
        "message": message,
        "jobName": job["metadata"]["name"],
        "attempts": failed + succeeded + active,
        "active": active,
        "succeeded": succeeded,
        "failed": failed,
        "conditions": _indexjob_conditions(indexjob, phase, reason, message, now),
    }
    if st.get("startTime"):
        out["startTime"] = st["startTime"]
    if st.get("completionTime"):
        out["completionTime"] = st["completionTime"]
    return _keep_image(indexjob, out)


def indexjob_status(indexjob: Body, job: Body | None, now: str) -> IndexJobStatus:
    """The ``status`` of an IndexJob mirroring its Job (None: not created yet)."""
    if job is None:
        return indexjob_waiting(
            indexjob, IndexJobReason.JOB_NOT_CREATED, "the Job has not been created yet", now
        )
    return _with_job(indexjob, job, now)


def indexjob_waiting(indexjob: Body, reason: str, message: str, now: str) -> IndexJobStatus:
    """Pending without a Job, for ``reason`` (e.g. the cluster is suspended): it will run."""
    return _without_job(indexjob, IndexJobPhase.PENDING, reason, message, now)


def indexjob_refused(indexjob: Body, reason: str, message: str, now: str) -> IndexJobStatus:
    """Failed without a Job: no Job will ever be made for this spec (it is immutable),
    so the IndexJob is Failed at once rather than Pending forever."""
    return _without_job(indexjob, IndexJobPhase.FAILED, reason, message, now)


# -- Dataset ------------------------------------------------------------------------------

_DATASET_FIELDS = (
    ("record_count", "recordCount"),
    ("last_log", "lastLog"),
    ("embedding_set_key", "embeddingSetKey"),
    ("indexed_at", "indexedAt"),
    ("index_stale", "indexStale"),
)
"""(field of ``GET /api/v1/datasets/{name}``, field of the Dataset's status)."""


def _dataset_phase(
    registered: bool, info: Body | None, error: str | None
) -> tuple[DatasetPhase, DatasetReason, str]:
    if error:
        return DatasetPhase.UNAVAILABLE, DatasetReason.API_UNAVAILABLE, error
    if info is not None:
        return DatasetPhase.READY, DatasetReason.IN_CATALOG, "dataset found in the catalog"
    if registered:
        return (
            DatasetPhase.REGISTERED,
            DatasetReason.REGISTERED,
            "registered; no record logged yet",
        )
    return DatasetPhase.PENDING, DatasetReason.NOT_IN_CATALOG, "not in the catalog yet"


def dataset_status(
    dataset: Body, registered: bool, info: Body | None, error: str | None, now: str
) -> DatasetStatus:
    """The ``status`` of a Dataset from what the cluster's API said about it."""
    previous = dataset.get("status") or {}
    phase, reason, message = _dataset_phase(registered, info, error)
    out: DatasetStatus = {
        "observedGeneration": dataset["metadata"].get("generation"),
        "phase": phase,
        "phaseReason": reason,
        "message": message,
        "conditions": merge_conditions(
            previous.get("conditions"),
            [
                condition(
                    DatasetCondition.REGISTERED, registered or info is not None, reason, message
                ),
                condition(DatasetCondition.SYNCED, error is None, reason, message),
            ],
            now,
        ),
    }
    if not error and info is not None:
        for src, dst in _DATASET_FIELDS:
            if info.get(src) is not None:
                out[dst] = info[src]  # type: ignore[literal-required]
        out["lastSyncTime"] = now
    return out
