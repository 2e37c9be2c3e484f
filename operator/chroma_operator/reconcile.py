"""Reconcilers: make the cluster match a custom resource, then record what is true.

Owns: the order of work for each kind (apply children, delete what the spec turned off,
observe, write status; create a Job at most once; register a Dataset). Every step is
idempotent, so a rerun after a crash, a restart or a re-list finds the objects and
patches them. Uses ``Kube`` for I/O and the pure builders / status functions; returns
``Outcome`` (what was done, as Event-ready lines) to the kopf handlers, which stay thin.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

from chroma_operator import constants as c
from chroma_operator import status as st
from chroma_operator.config import OperatorSettings
from chroma_operator.kube import Conflict, Kube
from chroma_operator.manifests import (
    DatasetSpec,
    IndexJobSpec,
    InvalidOperationRequest,
    OperationRequest,
    build_children,
    build_job,
    build_requested_indexjob,
    names,
    params_problem,
)
from chroma_operator.manifests.cluster import api_url
from chroma_operator.manifests.common import label_value
from chroma_operator.manifests.indexjob import job_name

Body = dict[str, Any]

_locks: defaultdict[tuple[str, ...], threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()


def lock_for(*key: str) -> threading.Lock:
    """One lock per key: kopf may run a resource's handlers and child events at once."""
    with _locks_guard:
        return _locks[key]


@dataclass
class Outcome:
    """What a reconcile did and found; handlers turn ``events`` into Kubernetes Events."""

    status: Body = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    """(type, reason, message) with type ``Normal`` or ``Warning``."""
    retry_after: float | None = None
    """Set when the work is not finished and should be retried (seconds)."""
    retry_reason: str = ""

    def note(self, reason: str, message: str, type_: str = "Normal") -> None:
        self.events.append((type_, reason, message))


def _ref(obj: Body) -> str:
    return f"{obj['kind']} {obj['metadata']['name']}"


def _owned_by(obj: Body, owner_uid: str) -> bool:
    return any(ref.get("uid") == owner_uid for ref in obj["metadata"].get("ownerReferences") or [])


# -- ChromaCluster ------------------------------------------------------------------------


def reconcile_cluster(kube: Kube, body: Body, out: Outcome | None = None) -> Outcome:
    """Apply every child, remove switched-off ones, derive and write status.

    ``body`` only names the cluster: the current object is read again under a per-cluster
    lock, so concurrent triggers (kopf handlers, child events, the timer) run one at a
    time and each sees the status the previous one wrote. ``out`` (given by the caller)
    keeps what was done so far even when a later API call fails, so its Events are
    still posted.
    """
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    out = out if out is not None else Outcome()
    with lock_for("cluster", ns, name):
        # Re-read under the lock: a body that waited here may predate the last status write.
        fresh = kube.get(c.API_VERSION, c.CLUSTER_KIND, ns, name)
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return out
        body = fresh
        meta = body["metadata"]
        wanted, unwanted = build_children(body)
        applied: dict[tuple[str, str], Body] = {}
        # Spec already handled once: any change to a child now is drift being repaired.
        seen_spec = (body.get("status") or {}).get("observedGeneration") == meta.get("generation")
        for obj in wanted:
            before, after = _apply_observed(kube, obj)
            applied[(obj["kind"], obj["metadata"]["name"])] = after
            if before is None:
                if seen_spec:
                    out.note("Recreated", f"recreated deleted {_ref(obj)}", "Warning")
                else:
                    out.note("Created", f"created {_ref(obj)}")
            elif before["metadata"].get("resourceVersion") != after["metadata"].get(
                "resourceVersion"
            ) and _spec_like(before) != _spec_like(after):
                if seen_spec:
                    out.note("DriftRepaired", f"restored {_ref(obj)} to the spec", "Warning")
                else:
                    out.note("Updated", f"applied spec to {_ref(obj)}")
        for api_version, kind, child in unwanted:
            existing = kube.get(api_version, kind, ns, child)
            if existing is not None and _owned_by(existing, meta["uid"]):
                kube.delete(api_version, kind, ns, child)
                out.note("Deleted", f"deleted {kind} {child}: no longer in the spec")

        n = names(name)
        children = {
            "api": applied.get(("Deployment", n["api"])),
            "workers": applied.get(("Deployment", n["workers"])),
            "qdrant": applied.get(("StatefulSet", n["qdrant"])),
        }
        out.status = st.cluster_status(body, children, st.now_rfc3339())
        _handle_operation_annotation(kube, body, out)
        previous = body.get("status") or {}
        if previous.get("phase") != out.status["phase"]:
            out.note(
                "PhaseChanged",
                f"phase {previous.get('phase') or 'None'} -> {out.status['phase']}: "
                f"{out.status['message']}",
                "Warning" if out.status["phase"] == st.PHASE_DEGRADED else "Normal",
            )
        kube.patch_status(body, st.status_patch(previous, out.status))
    return out


def _apply_observed(kube: Kube, obj: Body) -> tuple[Body | None, Body]:
    """Apply ``obj``; return the child as it was just before the apply, and after.

    The apply carries the resourceVersion the child was read at, so a hand edit landing
    between the read and the apply fails it (409) and it is read again: the edit is then
    seen and reported (DriftRepaired), not silently undone by an apply that compared
    against the older read."""
    meta = obj["metadata"]
    for _ in range(_APPLY_ATTEMPTS):
        before = kube.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        if before is None:
            return None, kube.apply(obj)
        pinned = {**obj, "metadata": {**meta,
                                      "resourceVersion": before["metadata"]["resourceVersion"]}}
        try:
            return before, kube.apply(pinned)
        except Conflict:
            continue
    return before, kube.apply(obj)  # changing under us on every try: apply regardless


_APPLY_ATTEMPTS = 5


def _spec_like(obj: Body) -> Any:
    """The part of an object whose change means "the operator changed something"."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")} | {
        "labels": obj["metadata"].get("labels"),
    }


def _handle_operation_annotation(kube: Kube, cluster: Body, out: Outcome) -> None:
    """``chroma.dev/operation`` -> exactly one IndexJob, then the annotation is removed.

    The IndexJob's name is a hash of the cluster uid and the annotation value, so a crash
    between creating it and removing the annotation re-finds it instead of adding one.
    """
    meta = cluster["metadata"]
    value = (meta.get("annotations") or {}).get(c.ANNOTATION_OPERATION)
    if not value:
        if (cluster.get("status") or {}).get("lastOperation"):
            out.status["lastOperation"] = cluster["status"]["lastOperation"]
        return
    try:
        request = OperationRequest.parse(value)
    except InvalidOperationRequest as exc:
        out.note("InvalidOperation", str(exc), "Warning")
        out.status["lastOperation"] = {"request": value, "error": str(exc)}
    else:
        indexjob, created = kube.create(build_requested_indexjob(cluster, request))
        job_name = indexjob["metadata"]["name"]
        if created:
            out.note("OperationRequested", f"created IndexJob {job_name} for {value}")
        out.status["lastOperation"] = {
            "request": value,
            "indexJob": job_name,
            "requestedAt": st.now_rfc3339(),
        }
    kube.patch(
        c.API_VERSION,
        c.CLUSTER_KIND,
        meta["namespace"],
        meta["name"],
        {"metadata": {"annotations": {c.ANNOTATION_OPERATION: None}}},
    )


def owner_cluster_name(child: Body) -> str | None:
    """The ChromaCluster a child belongs to (label first, owner reference second)."""
    label = (child["metadata"].get("labels") or {}).get(c.LABEL_CLUSTER)
    for ref in child["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == c.CLUSTER_KIND and ref.get("apiVersion", "").startswith(c.GROUP):
            return str(ref["name"])
    return label


# -- IndexJob -----------------------------------------------------------------------------


def reconcile_indexjob(kube: Kube, body: Body, settings: OperatorSettings) -> Outcome:
    """Create the IndexJob's Job once (at most one active per kind and embedding set),
    then mirror the Job into status. Like the cluster, re-read under a per-object lock."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    with lock_for("indexjob", ns, name):
        fresh = kube.get(c.API_VERSION, c.INDEXJOB_KIND, ns, name)
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return Outcome()
        return _reconcile_indexjob(kube, fresh, settings)


def _reconcile_indexjob(kube: Kube, body: Body, settings: OperatorSettings) -> Outcome:
    meta = body["metadata"]
    ns = meta["namespace"]
    spec = IndexJobSpec.from_dict(body["spec"])
    out = Outcome()
    previous = body.get("status") or {}
    job = kube.get("batch/v1", "Job", ns, previous.get("jobName") or job_name(body))

    if job is None and previous.get("phase") in st.JOB_FINISHED:
        return out  # finished and the Job's TTL removed it: history stays in status
    if job is None and (problem := params_problem(spec.params)):
        # The CRD cannot check params keys; the spec is immutable, so this is final.
        out.status = st.indexjob_status(body, None, st.now_rfc3339(), ("InvalidParams", problem))
        out.note("InvalidParams", problem, "Warning")
        kube.patch_status(body, out.status)
        return out
    if job is None:
        cluster = kube.get(c.API_VERSION, c.CLUSTER_KIND, ns, spec.cluster)
        if cluster is None:
            out.status = st.indexjob_status(body, None, st.now_rfc3339())
            out.status.update(
                phaseReason="ClusterNotFound",
                message=f"ChromaCluster {spec.cluster} not found in {ns}",
            )
            out.retry_after, out.retry_reason = 15, out.status["message"]
            kube.patch_status(body, out.status)
            return out
        if (cluster.get("spec") or {}).get("suspend"):
            out.status = st.indexjob_status(body, None, st.now_rfc3339())
            out.status.update(
                phaseReason="ClusterSuspended",
                message=f"ChromaCluster {spec.cluster} is suspended; the Job starts on resume",
            )
            out.retry_after, out.retry_reason = 30, out.status["message"]
            kube.patch_status(body, out.status)
            return out
        key = ("indexjob-slot", ns, spec.cluster, spec.operation, spec.embedding_set)
        with lock_for(*key):
            blocker = _active_sibling_job(kube, body, spec)
            if blocker:
                out.status = st.indexjob_status(body, None, st.now_rfc3339())
                out.status.update(
                    phaseReason="WaitingForActiveJob",
                    message=f"Job {blocker} already runs {spec.operation} on "
                    f"{spec.embedding_set}; this one starts after it",
                )
                out.retry_after, out.retry_reason = 10, out.status["message"]
                kube.patch_status(body, out.status)
                return out
            job, created = kube.create(build_job(body, cluster))
            if created:
                out.note("JobCreated", f"created Job {job['metadata']['name']}")
    out.status = st.indexjob_status(body, job, st.now_rfc3339())
    out.status["image"] = previous.get("image") or _job_image(job)
    if previous.get("phase") != out.status["phase"]:
        out.note(
            out.status["phase"],
            f"{spec.operation} on {spec.embedding_set}: {out.status['message']}",
            "Warning" if out.status["phase"] == st.JOB_FAILED else "Normal",
        )
    kube.patch_status(body, out.status)
    return out


def _job_image(job: Body) -> str:
    containers = job["spec"]["template"]["spec"].get("containers") or [{}]
    return str(containers[0].get("image", ""))


def _active_sibling_job(kube: Kube, body: Body, spec: IndexJobSpec) -> str | None:
    """Name of another unfinished Job for the same (cluster, kind, embedding set), if any."""
    selector = ",".join(
        [
            f"{c.LABEL_CLUSTER}={spec.cluster}",
            f"{c.LABEL_OPERATION}={spec.operation}",
            f"{c.LABEL_EMBEDDING_SET}={label_value(spec.embedding_set)}",
        ]
    )
    mine = job_name(body)
    for job in kube.list("batch/v1", "Job", body["metadata"]["namespace"], selector):
        if job["metadata"]["name"] == mine or job["metadata"].get("deletionTimestamp"):
            continue
        phase = st.indexjob_status({"metadata": {}}, job, "")["phase"]
        if phase not in st.JOB_FINISHED:
            return str(job["metadata"]["name"])
    return None


def owner_indexjob_name(job: Body) -> str | None:
    for ref in job["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == c.INDEXJOB_KIND:
            return str(ref["name"])
    return None


# -- Dataset ------------------------------------------------------------------------------


def reconcile_dataset(
    kube: Kube, body: Body, settings: OperatorSettings, http: httpx.Client | None = None
) -> Outcome:
    """Register the dataset through the cluster's API and report what the catalog says."""
    meta = body["metadata"]
    ns = meta["namespace"]
    spec = DatasetSpec.from_dict(body["spec"], meta["name"])
    out = Outcome()
    cluster = kube.get(c.API_VERSION, c.CLUSTER_KIND, ns, spec.cluster)
    now = st.now_rfc3339()
    if cluster is None:
        out.status = st.dataset_status(
            body, False, None, f"ChromaCluster {spec.cluster} not found in {ns}", now
        )
        out.retry_after, out.retry_reason = 30, out.status["message"]
        kube.patch_status(body, out.status)
        return out
    base = (settings.api_url or api_url(cluster)).rstrip("/")
    client = http or httpx.Client(timeout=settings.http_timeout_seconds)
    registered = bool((body.get("status") or {}).get("registered"))
    info: Body | None = None
    error: str | None = None
    try:
        if not registered or (body.get("status") or {}).get("observedGeneration") != meta.get(
            "generation"
        ):
            payload = {
                "split": spec.split,
                "embedding_set": spec.embedding_set or None,
                "retention_days": spec.retention_days,
                "description": spec.description,
            }
            resp = client.put(f"{base}/api/v1/datasets/{spec.name}", json=payload)
            if resp.status_code < 300:
                if not registered:
                    out.note("Registered", f"registered dataset {spec.name} at {base}")
                registered = True
            elif resp.status_code not in (404, 405):
                error = f"registering {spec.name}: HTTP {resp.status_code} {resp.text[:200]}"
        resp = client.get(f"{base}/api/v1/datasets/{spec.name}")
        if resp.status_code == 200:
            info = resp.json()
        elif resp.status_code != 404 and error is None:
            error = f"reading {spec.name}: HTTP {resp.status_code} {resp.text[:200]}"
    except httpx.HTTPError as exc:
        error = f"Chroma API at {base} unreachable: {exc}"
    finally:
        if http is None:
            client.close()
    out.status = st.dataset_status(body, registered, info, error, now)
    out.status["registered"] = registered
    out.status["apiUrl"] = base
    if spec.retention_days is not None:
        out.status["retentionDays"] = spec.retention_days
    if error:
        out.retry_after, out.retry_reason = 30, error
    kube.patch_status(body, out.status)
    return out
