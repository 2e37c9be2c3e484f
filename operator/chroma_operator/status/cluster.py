"""ChromaCluster status: components' readiness, the overall phase, conditions, endpoints.

Owns: reading readiness and failure from the observed Deployments / StatefulSet, naming
the Secrets that hold the cluster's keys (``status.auth``), and
deciding the phase (Suspended beats Degraded beats Progressing beats Ready) with the
Ready / Progressing / Degraded conditions that go with it. Pure; called by
``chroma_operator.reconcile.cluster``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from chroma_operator.manifests.cluster import (
    api_keys_secret,
    api_url,
    qdrant_api_key_ref,
    qdrant_url,
)
from chroma_operator.manifests.spec import ClusterSpec
from chroma_operator.status.common import Body, condition, merge_conditions
from chroma_operator.status_types import (
    ClusterAuth,
    ClusterCondition,
    ClusterEndpoints,
    ClusterPhase,
    ClusterStatus,
    ComponentCounts,
    Condition,
)

__all__ = ["ComponentState", "cluster_status", "component_state"]


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


def _auth(body: Body, spec: ClusterSpec) -> ClusterAuth:
    cluster = body["metadata"]["name"]
    auth: ClusterAuth = {"enabled": spec.auth.enabled}
    keys = api_keys_secret(cluster, spec)
    if keys:
        auth["secretName"] = keys
    qdrant_key = qdrant_api_key_ref(cluster, spec)
    if qdrant_key:
        auth["qdrantApiKeySecret"] = qdrant_key[0]
    return auth


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
        "auth": _auth(body, spec),
        "conditions": merge_conditions(
            previous.get("conditions"),
            [summary.ready, *observed.parts, summary.progressing, summary.degraded],
            now,
        ),
    }
