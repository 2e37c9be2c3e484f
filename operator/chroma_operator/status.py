"""Status derivation: phase, conditions and counts from the observed children.

Owns: what ``status`` of a ChromaCluster, an IndexJob and a Dataset says, computed from
the real objects (CloudNativePG style: a phase in plain words + ``phaseReason`` for
people, conditions with type/status/reason/message/lastTransitionTime for automation,
``observedGeneration`` to tell stale from current). Pure; called by
``chroma_operator.reconcile`` and unit-tested in ``tests/unit/test_operator_status.py``.

ChromaCluster conditions (each documented in docs/operator.md):
  ApiReady, QueryEngineReady, WorkersReady  one per component: ready >= desired
  Ready        all three hold and the cluster is not suspended
  Progressing  children are being created, rolled out or scaled (not Ready, not Degraded)
  Degraded     a child reports a failure (ProgressDeadlineExceeded, ReplicaFailure)
Phases: Ready, Progressing, Degraded, Suspended.

IndexJob phases mirror the Job: Pending, Running, Succeeded, Failed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from chroma_operator.manifests.cluster import api_url, qdrant_url
from chroma_operator.manifests.spec import ClusterSpec

Body = dict[str, Any]
Condition = dict[str, Any]

PHASE_READY = "Ready"
PHASE_PROGRESSING = "Progressing"
PHASE_DEGRADED = "Degraded"
PHASE_SUSPENDED = "Suspended"

JOB_PENDING = "Pending"
JOB_RUNNING = "Running"
JOB_SUCCEEDED = "Succeeded"
JOB_FAILED = "Failed"
JOB_FINISHED = frozenset({JOB_SUCCEEDED, JOB_FAILED})


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
    out = []
    for cond in current:
        old = before.get(cond["type"])
        stamp = now
        if old and old.get("status") == cond["status"] and old.get("lastTransitionTime"):
            stamp = old["lastTransitionTime"]
        out.append({**cond, "lastTransitionTime": stamp})
    return out


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

    def as_status(self) -> Body:
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


def _component_condition(type_: str, state: ComponentState) -> Condition:
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


def cluster_status(body: Body, children: dict[str, Body | None], now: str) -> Body:
    """The full ``status`` of a ChromaCluster.

    ``children`` maps ``api``, ``workers`` and ``qdrant`` to the observed Deployment /
    StatefulSet (or None when absent); ``ingress`` to the observed Ingress, if any.
    """
    spec = ClusterSpec.from_dict(body.get("spec"))
    meta = body["metadata"]
    previous = body.get("status") or {}
    scale = 0 if spec.suspend else 1
    api = component_state("api", spec.api.replicas * scale, children.get("api"))
    workers = component_state("workers", spec.workers.replicas * scale, children.get("workers"))
    components = {"api": api, "workers": workers}
    if spec.qdrant.managed:
        qdrant = component_state("qdrant", spec.qdrant.replicas * scale, children.get("qdrant"))
        components["qdrant"] = qdrant
        query_cond = _component_condition("QueryEngineReady", qdrant)
    else:
        query_cond = condition(
            "QueryEngineReady", True, "External", f"external Qdrant at {spec.qdrant.url}"
        )

    api_cond = _component_condition("ApiReady", api)
    workers_cond = _component_condition("WorkersReady", workers)
    parts = [api_cond, query_cond, workers_cond]
    failures = [s for s in components.values() if s.failure]
    not_ready = [cond for cond in parts if cond["status"] != "True"]
    rolling = [s.name for s in components.values() if s.rolling]

    if spec.suspend:
        still = [s.name for s in components.values() if s.exists and s.ready > 0]
        phase, reason = PHASE_SUSPENDED, "Suspended"
        message = (
            "suspended: scaling to zero, still running: " + ", ".join(still)
            if still
            else "suspended: every component scaled to zero, data kept"
        )
        ready = condition("Ready", False, "Suspended", message)
        progressing = condition(
            "Progressing", bool(still), "ScalingDown" if still else "Suspended", message
        )
        degraded = condition("Degraded", False, "Suspended", "no failure reported")
    elif failures:
        message = "; ".join(f"{s.name}: {s.failure}" for s in failures)
        phase, reason = PHASE_DEGRADED, "ChildFailed"
        ready = condition("Ready", False, "ChildFailed", message)
        progressing = condition("Progressing", False, "ChildFailed", message)
        degraded = condition("Degraded", True, "ChildFailed", message)
    elif not_ready or rolling:
        message = "; ".join(f"{cond['type']}: {cond['message']}" for cond in not_ready) or (
            "rolling out: " + ", ".join(rolling)
        )
        phase, reason = PHASE_PROGRESSING, not_ready[0]["reason"] if not_ready else "RollingOut"
        ready = condition("Ready", False, reason, message)
        progressing = condition("Progressing", True, reason, message)
        degraded = condition("Degraded", False, "NoFailure", "no child reports a failure")
    else:
        message = "every component is ready"
        phase, reason = PHASE_READY, "AllComponentsReady"
        ready = condition("Ready", True, reason, message)
        progressing = condition("Progressing", False, "Stable", "nothing to roll out")
        degraded = condition("Degraded", False, "NoFailure", "no child reports a failure")

    total_ready = sum(s.ready for s in components.values())
    total_desired = sum(s.desired for s in components.values())
    endpoints: Body = {"api": api_url(body), "qdrant": qdrant_url(body, spec)}
    if spec.api.ingress.enabled and spec.api.ingress.host:
        endpoints["ingress"] = spec.api.ingress.host
    return {
        "phase": phase,
        "phaseReason": reason,
        "message": message,
        "observedGeneration": meta.get("generation"),
        "ready": f"{total_ready}/{total_desired}",
        "image": spec.image,
        "components": {name: s.as_status() for name, s in components.items()},
        "endpoints": endpoints,
        "conditions": merge_conditions(
            previous.get("conditions"),
            [ready, *parts, progressing, degraded],
            now,
        ),
    }


def status_patch(previous: Body | None, current: Body) -> Body:
    """A JSON merge patch from ``previous`` to ``current``: keys that disappeared become
    None (deleted), so a stale ``components.qdrant`` does not outlive its StatefulSet."""
    out: Body = dict(current)
    for key, old in (previous or {}).items():
        if key not in current:
            out[key] = None
        elif isinstance(old, dict) and isinstance(current[key], dict):
            out[key] = status_patch(old, current[key])
    return out


def _job_condition(job: Body, type_: str) -> Condition | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return None


def indexjob_status(
    indexjob: Body, job: Body | None, now: str, refused: tuple[str, str] | None = None
) -> Body:
    """The ``status`` of an IndexJob mirroring its Job (None: not created yet).

    ``refused`` (reason, message): no Job will ever be made for this spec (it is
    immutable), so the IndexJob is Failed at once rather than Pending forever."""
    previous = indexjob.get("status") or {}
    base: Body = {"observedGeneration": indexjob["metadata"].get("generation")}
    if job is None and refused is not None:
        reason, message = refused
        out = {**base, "phase": JOB_FAILED, "phaseReason": reason, "message": message}
        out["attempts"] = 0
    elif job is None:
        phase, reason, message = JOB_PENDING, "JobNotCreated", "the Job has not been created yet"
        out = {**base, "phase": phase, "phaseReason": reason, "message": message, "attempts": 0}
    else:
        st = job.get("status") or {}
        active = int(st.get("active") or 0)
        succeeded = int(st.get("succeeded") or 0)
        failed = int(st.get("failed") or 0)
        complete = _job_condition(job, "Complete")
        failed_cond = _job_condition(job, "Failed")
        backoff = int((job.get("spec") or {}).get("backoffLimit", 6))
        if complete or succeeded >= 1:
            phase, reason = JOB_SUCCEEDED, (complete or {}).get("reason") or "Completed"
            message = (complete or {}).get("message") or "the operation finished successfully"
        elif failed_cond or failed > backoff:
            phase = JOB_FAILED
            reason = (failed_cond or {}).get("reason") or "BackoffLimitExceeded"
            message = (failed_cond or {}).get("message") or f"failed {failed} times"
        elif active > 0:
            phase, reason = JOB_RUNNING, "JobActive"
            message = f"attempt {failed + 1} of {backoff + 1} running"
        else:
            phase, reason = JOB_PENDING, "JobCreated"
            message = (
                f"waiting to retry after {failed} failed attempt(s)"
                if failed
                else "waiting for the Job's pod to start"
            )
        out = {
            **base,
            "phase": phase,
            "phaseReason": reason,
            "message": message,
            "jobName": job["metadata"]["name"],
            "attempts": failed + succeeded + active,
            "active": active,
            "succeeded": succeeded,
            "failed": failed,
        }
        for key in ("startTime", "completionTime"):
            if st.get(key):
                out[key] = st[key]
    if previous.get("image"):
        out["image"] = previous["image"]
    out["conditions"] = merge_conditions(
        previous.get("conditions"),
        [
            condition(
                "Finished",
                out["phase"] in JOB_FINISHED,
                out["phaseReason"],
                out["message"],
            ),
            condition(
                "Succeeded", out["phase"] == JOB_SUCCEEDED, out["phaseReason"], out["message"]
            ),
        ],
        now,
    )
    return out


def dataset_status(
    dataset: Body, registered: bool, info: Body | None, error: str | None, now: str
) -> Body:
    """The ``status`` of a Dataset from what the cluster's API said about it."""
    previous = dataset.get("status") or {}
    out: Body = {"observedGeneration": dataset["metadata"].get("generation")}
    if error:
        out.update(phase="Unavailable", phaseReason="ApiUnavailable", message=error)
    elif info is None:
        out.update(
            phase="Pending" if not registered else "Registered",
            phaseReason="NotInCatalog" if not registered else "Registered",
            message="registered; no record logged yet" if registered else "not in the catalog yet",
        )
    else:
        out.update(phase="Ready", phaseReason="InCatalog", message="dataset found in the catalog")
        for src, dst in (
            ("record_count", "recordCount"),
            ("last_log", "lastLog"),
            ("embedding_set_key", "embeddingSetKey"),
            ("indexed_at", "indexedAt"),
            ("index_stale", "indexStale"),
        ):
            if info.get(src) is not None:
                out[dst] = info[src]
        out["lastSyncTime"] = now
    out["conditions"] = merge_conditions(
        previous.get("conditions"),
        [
            condition(
                "Registered", registered or info is not None, out["phaseReason"], out["message"]
            ),
            condition("Synced", error is None, out["phaseReason"], out["message"]),
        ],
        now,
    )
    return out
