"""IndexJob reconciler: create the IndexJob's Job once, then mirror the Job into status.

Owns: when a Job may be created (valid params, the cluster exists and is not suspended,
no unfinished sibling Job for the same cluster, kind and embedding set), creating it at
most once (its name is fixed by the IndexJob, so a restarted operator finds it), and
the status while waiting and while it runs. Uses ``Kube`` for I/O, the pure builders
of ``chroma_operator.manifests`` and ``chroma_operator.status``; called by
``chroma_operator.handlers``.
"""

from __future__ import annotations

from chroma_operator import constants as c
from chroma_operator import status as st
from chroma_operator.kube import Kube
from chroma_operator.manifests import IndexJobSpec, build_job, params_problem
from chroma_operator.manifests.common import label_value
from chroma_operator.manifests.indexjob import job_name
from chroma_operator.reconcile.outcome import Body, Outcome, lock_for, record
from chroma_operator.status_types import FINISHED_PHASES, IndexJobPhase, IndexJobReason

__all__ = ["owner_indexjob_name", "reconcile_indexjob"]

RETRY_CLUSTER_NOT_FOUND_S = 15.0
"""Seconds before looking again for a ChromaCluster that does not exist (yet)."""
RETRY_CLUSTER_SUSPENDED_S = 30.0
"""Seconds before looking again whether a suspended cluster was resumed."""
RETRY_SIBLING_ACTIVE_S = 10.0
"""Seconds before looking again whether the sibling Job in the way has finished."""


def reconcile_indexjob(kube: Kube, body: Body, out: Outcome | None = None) -> Outcome:
    """Create the IndexJob's Job once (at most one active per kind and embedding set),
    then mirror the Job into status. Like the cluster, re-read under a per-object lock;
    ``out`` (given by the caller) keeps the Events of work done before a failure."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    out = out if out is not None else Outcome()
    with lock_for("indexjob", ns, name):
        fresh = kube.get(c.API_VERSION, c.INDEXJOB_KIND, ns, name)
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return out
        return _reconcile(kube, fresh, out)


def _reconcile(kube: Kube, body: Body, out: Outcome) -> Outcome:
    ns = body["metadata"]["namespace"]
    spec = IndexJobSpec.from_dict(body["spec"])
    previous = body.get("status") or {}
    job = kube.get("batch/v1", "Job", ns, previous.get("jobName") or job_name(body))
    if job is None and previous.get("phase") in FINISHED_PHASES:
        return out  # finished and the Job's TTL removed it: history stays in status
    if job is None:
        job = _create_job(kube, body, spec, out)
        if job is None:
            return out  # waiting or refused: already recorded
    status = st.indexjob_status(body, job, st.now_rfc3339())
    status["image"] = previous.get("image") or _job_image(job)
    if previous.get("phase") != status["phase"]:
        out.note(
            status["phase"],
            f"{spec.operation} on {spec.embedding_set}: {status['message']}",
            "Warning" if status["phase"] == IndexJobPhase.FAILED else "Normal",
        )
    return record(kube, body, out, status)


def _create_job(kube: Kube, body: Body, spec: IndexJobSpec, out: Outcome) -> Body | None:
    """The Job, created now (or found); None when it cannot be yet (status recorded)."""
    if problem := params_problem(spec.params):
        # The CRD cannot check params keys; the spec is immutable, so this is final.
        out.note(IndexJobReason.INVALID_PARAMS, problem, "Warning")
        status = st.indexjob_refused(body, IndexJobReason.INVALID_PARAMS, problem, _now())
        record(kube, body, out, status)
        return None
    ns = body["metadata"]["namespace"]
    cluster = kube.get(c.API_VERSION, c.CLUSTER_KIND, ns, spec.cluster)
    if cluster is None:
        message = f"ChromaCluster {spec.cluster} not found in {ns}"
        _wait(kube, body, out, IndexJobReason.CLUSTER_NOT_FOUND, message,
              RETRY_CLUSTER_NOT_FOUND_S)
        return None
    if (cluster.get("spec") or {}).get("suspend"):
        message = f"ChromaCluster {spec.cluster} is suspended; the Job starts on resume"
        _wait(kube, body, out, IndexJobReason.CLUSTER_SUSPENDED, message,
              RETRY_CLUSTER_SUSPENDED_S)
        return None
    with lock_for("indexjob-slot", ns, spec.cluster, spec.operation, spec.embedding_set):
        blocker = _active_sibling_job(kube, body, spec)
        if blocker:
            message = (
                f"Job {blocker} already runs {spec.operation} on {spec.embedding_set}; "
                "this one starts after it"
            )
            _wait(kube, body, out, IndexJobReason.WAITING_FOR_ACTIVE_JOB, message,
                  RETRY_SIBLING_ACTIVE_S)
            return None
        job, created = kube.create(build_job(body, cluster))
        if created:
            out.note(IndexJobReason.JOB_CREATED, f"created Job {job['metadata']['name']}")
        return job


def _wait(
    kube: Kube, body: Body, out: Outcome, reason: IndexJobReason, message: str, after: float
) -> None:
    """Pending for ``reason``: record it and try again ``after`` seconds from now."""
    record(kube, body, out, st.indexjob_waiting(body, reason, message, _now()),
           retry_after=after)


def _now() -> str:
    return st.now_rfc3339()


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
        if st.job_phase(job) not in FINISHED_PHASES:
            return str(job["metadata"]["name"])
    return None


def owner_indexjob_name(job: Body) -> str | None:
    """The IndexJob a Job belongs to (its owner reference)."""
    for ref in job["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == c.INDEXJOB_KIND:
            return str(ref["name"])
    return None
