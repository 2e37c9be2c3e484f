"""kopf handlers: which event runs which reconciler. Nothing else lives here.

Owns: the registrations (create/update/resume, child events, timers) and the mapping of
reconcile outcomes to Kubernetes Events and kopf retry errors. Imported by
``chroma_operator.main`` (importing registers the handlers with kopf's default registry).
The work itself is in ``chroma_operator.reconcile``.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
import kubernetes
import urllib3

from chroma_operator import constants as c
from chroma_operator import reconcile
from chroma_operator.config import OperatorSettings
from chroma_operator.kube import Kube, KubeError

SETTINGS = OperatorSettings.from_env()
_kube: Kube | None = None

CHILD_LABELS = {c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_CLUSTER: kopf.PRESENT}
JOB_LABELS = {c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_COMPONENT: c.COMPONENT_OPERATION}
CHILD_KINDS = (
    ("apps", "v1", "deployments"),
    ("apps", "v1", "statefulsets"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("", "v1", "serviceaccounts"),
    ("networking.k8s.io", "v1", "ingresses"),
    ("rbac.authorization.k8s.io", "v1", "roles"),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"),
)


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


def load_kubernetes_config() -> None:
    """In-cluster credentials when running in a pod, else the kubeconfig."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    config = kubernetes.client.Configuration.get_default_copy()
    if not config.verify_ssl:
        logging.getLogger(__name__).warning("TLS verification is off (kubeconfig says so)")
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    load_kubernetes_config()
    # kopf's bookkeeping goes to annotations, so the status schema stays ours alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{c.GROUP}/finalizer"
    # Only the Events we post on purpose, not one per handler run.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = c.MANAGED_BY
    # No cluster-wide CRD/namespace scanning: the RBAC does not need to grant it.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    settings.execution.max_workers = 8


def _post(body: Any, outcome: reconcile.Outcome) -> None:
    for type_, reason, message in outcome.events:
        kopf.event(body, type=type_, reason=reason, message=message)


def _finish(body: Any, outcome: reconcile.Outcome) -> None:
    _post(body, outcome)
    if outcome.retry_after is not None:
        raise kopf.TemporaryError(outcome.retry_reason, delay=outcome.retry_after)


def _temporary(exc: KubeError) -> kopf.TemporaryError:
    return kopf.TemporaryError(f"API server: {exc}", delay=5)


# -- ChromaCluster ------------------------------------------------------------------------


@kopf.on.resume(c.GROUP, c.VERSION, c.CLUSTER_PLURAL)
@kopf.on.create(c.GROUP, c.VERSION, c.CLUSTER_PLURAL)
@kopf.on.update(c.GROUP, c.VERSION, c.CLUSTER_PLURAL)
def cluster_changed(body: kopf.Body, **_: Any) -> None:
    out = reconcile.Outcome()
    try:
        reconcile.reconcile_cluster(kube(), dict(body), out)
    except KubeError as exc:
        _post(body, out)  # children created before the failure exist: say so
        raise _temporary(exc) from exc
    _finish(body, out)


@kopf.timer(c.GROUP, c.VERSION, c.CLUSTER_PLURAL, interval=SETTINGS.resync_seconds, idle=5)
def cluster_resync(body: kopf.Body, **_: Any) -> None:
    """Safety net for drift that no event reported (e.g. missed while the operator was down)."""
    try:
        _finish(body, reconcile.reconcile_cluster(kube(), dict(body)))
    except KubeError as exc:
        raise _temporary(exc) from exc


def _child_changed(body: kopf.Body, namespace: str, logger: logging.Logger, **_: Any) -> None:
    """A child was edited, deleted or changed status: re-apply its cluster and refresh status."""
    name = reconcile.owner_cluster_name(dict(body))
    if not name:
        return
    try:
        cluster = kube().get(c.API_VERSION, c.CLUSTER_KIND, namespace, name)
        if cluster is None or cluster["metadata"].get("deletionTimestamp"):
            return
        _post(cluster, reconcile.reconcile_cluster(kube(), cluster))
    except KubeError as exc:  # the timer retries; event handlers are fire-and-forget
        logger.warning("reconcile of ChromaCluster %s after a child event failed: %s", name, exc)


for _group, _version, _plural in CHILD_KINDS:
    kopf.on.event(_group, _version, _plural, labels=CHILD_LABELS, id=f"child-{_plural}")(
        _child_changed
    )


# -- IndexJob -----------------------------------------------------------------------------


def _unfinished(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in ("Succeeded", "Failed")


@kopf.on.resume(c.GROUP, c.VERSION, c.INDEXJOB_PLURAL)
@kopf.on.create(c.GROUP, c.VERSION, c.INDEXJOB_PLURAL)
def indexjob_created(body: kopf.Body, **_: Any) -> None:
    try:
        _finish(body, reconcile.reconcile_indexjob(kube(), dict(body), SETTINGS))
    except KubeError as exc:
        raise _temporary(exc) from exc


@kopf.timer(
    c.GROUP, c.VERSION, c.INDEXJOB_PLURAL, interval=SETTINGS.resync_seconds, when=_unfinished
)
def indexjob_resync(body: kopf.Body, **_: Any) -> None:
    try:
        _finish(body, reconcile.reconcile_indexjob(kube(), dict(body), SETTINGS))
    except KubeError as exc:
        raise _temporary(exc) from exc


@kopf.on.event("batch", "v1", "jobs", labels=JOB_LABELS)
def job_changed(body: kopf.Body, namespace: str, logger: logging.Logger, **_: Any) -> None:
    """Mirror a Job's progress into its IndexJob as soon as the Job changes."""
    name = reconcile.owner_indexjob_name(dict(body))
    if not name:
        return
    try:
        indexjob = kube().get(c.API_VERSION, c.INDEXJOB_KIND, namespace, name)
        if indexjob is None or indexjob["metadata"].get("deletionTimestamp"):
            return
        _post(indexjob, reconcile.reconcile_indexjob(kube(), indexjob, SETTINGS))
    except KubeError as exc:
        logger.warning("mirroring Job %s into IndexJob %s failed: %s", body.meta.name, name, exc)


# -- Dataset ------------------------------------------------------------------------------


@kopf.on.resume(c.GROUP, c.VERSION, c.DATASET_PLURAL)
@kopf.on.create(c.GROUP, c.VERSION, c.DATASET_PLURAL)
@kopf.on.update(c.GROUP, c.VERSION, c.DATASET_PLURAL, field="spec")
def dataset_changed(body: kopf.Body, **_: Any) -> None:
    try:
        _finish(body, reconcile.reconcile_dataset(kube(), dict(body), SETTINGS))
    except KubeError as exc:
        raise _temporary(exc) from exc


@kopf.timer(c.GROUP, c.VERSION, c.DATASET_PLURAL, interval=SETTINGS.dataset_sync_seconds)
def dataset_resync(body: kopf.Body, **_: Any) -> None:
    try:
        _post(body, reconcile.reconcile_dataset(kube(), dict(body), SETTINGS))
    except KubeError as exc:
        raise _temporary(exc) from exc
