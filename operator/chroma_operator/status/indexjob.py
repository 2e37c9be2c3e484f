"""IndexJob status: the Job mirrored (Pending, Running, Succeeded, Failed), or why there
is no Job (waiting, or refused for good).

Owns: the phase a Job stands for (its counts and conditions against its backoff limit),
the counts and times shown, and the Finished / Succeeded conditions. Pure; called by
``chroma_operator.reconcile.indexjob``.
"""

from __future__ import annotations

from chroma_operator.status.common import Body, condition, merge_conditions
from chroma_operator.status_types import (
    FINISHED_PHASES,
    Condition,
    IndexJobCondition,
    IndexJobPhase,
    IndexJobReason,
    IndexJobStatus,
)

__all__ = ["indexjob_refused", "indexjob_status", "indexjob_waiting", "job_phase"]


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
