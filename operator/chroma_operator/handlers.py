"""kopf handlers: which event runs which reconciler. Nothing else lives here.

Owns: the registrations (create/update/resume, child events, timers) and the mapping of
reconcile outcomes to Kubernetes Events and kopf retry errors, in one place (``_run``).
Imported by ``chroma_operator.main`` (importing registers the handlers with kopf's
default registry).
The work itself is in ``chroma_operator.reconcile``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kopf
import kubernetes
import urllib3

from chroma_operator import constants as c
from chroma_operator import reconcile
from chroma_operator.config import OperatorSettings
from chroma_operator.kube import Kube, KubeError
from chroma_operator.status_types import FINISHED_PHASES

Body = dict[str, Any]

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
    ("networking.k8s.io", "v1", "networkpolicies"),
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


API_RETRY_S = 5.0
"""Seconds before kopf retries a handler whose call to the API server failed."""

Reconciler = Callable[[Body, reconcile.Outcome], object]
"""Runs one reconcile of a custom resource body, filling the given ``Outcome``."""


def _post(body: Any, outcome: reconcile.Outcome) -> None:
    for type_, reason, message in outcome.events:
        kopf.event(body, type=type_, reason=reason, message=message)


def _run(body: kopf.Body, reconciler: Reconciler, *, retry: bool = True) -> None:
    """Run ``reconciler`` on ``body`` and post its Events, also those of work done
    before a failure. A failed API call, or (with ``retry``) work that waits for
    something, becomes a ``kopf.TemporaryError``: kopf calls the handler again later."""
    out = reconcile.Outcome()
    try:
        reconciler(dict(body), out)
    except KubeError as exc:
        _post(body, out)  # children created before the failure exist: say so
        raise kopf.TemporaryError(f"API server: {exc}", delay=API_RETRY_S) from exc
    _post(body, out)
    if retry and out.retry_after is not None:
        raise kopf.TemporaryError(out.retry_reason, delay=out.retry_after)


def _run_for_owner(
    kind: str, namespace: str, name: str | None, reconciler: Reconciler,
    logger: logging.Logger, trigger: str,
) -> None:
    """Reconcile the custom resource ``name`` because ``trigger`` (one of its children)
    changed. Fire-and-forget: a failure is logged, the resource's timer retries."""
    if not name:
        return
    try:
        owner = kube().get(c.API_VERSION, kind, namespace, name)
        if owner is None or owner["metadata"].get("deletionTimestamp"):
            return
        out = reconcile.Outcome()
        reconciler(owner, out)
        _post(owner, out)
    except KubeError as exc:
        logger.warning("reconcile of %s %s after a change of %s failed: %s",
                       kind, name, trigger, exc)


def _cluster(body: Body, out: reconcile.Outcome) -> None:
    reconcile.reconcile_cluster(
        kube(),
        body,
        out,
        operator_namespace=SETTINGS.namespace,
        operator_key_seed=SETTINGS.api_key_seed,
    )


def _indexjob(body: Body, out: reconcile.Outcome) -> None:
    reconcile.reconcile_indexjob(kube(), body, out)


def _dataset(body: Body, out: reconcile.Outcome) -> None:
    reconcile.reconcile_dataset(kube(), body, SETTINGS, out=out)


# -- ChromaCluster ------------------------------------------------------------------------


@kopf.on.resume(c.GROUP, c.VERSION, c.CLUSTER_PLURAL)
@kopf.on.create(c.GROUP, c.VERSION, c.CLUSTER_PLURAL)
@kopf.on.update(c.GROUP, c.VERSION, c.CLUSTER_PLURAL)
def cluster_changed(body: kopf.Body, **_: Any) -> None:
    _run(body, _cluster)


@kopf.timer(c.GROUP, c.VERSION, c.CLUSTER_PLURAL, interval=SETTINGS.resync_seconds, idle=5)
def cluster_resync(body: kopf.Body, **_: Any) -> None:
    """Safety net for drift that no event reported (e.g. missed while the operator was down)."""
    _run(body, _cluster)


def _child_changed(body: kopf.Body, namespace: str, logger: logging.Logger, **_: Any) -> None:
    """A child was edited, deleted or changed status: re-apply its cluster and refresh status."""
    name = reconcile.owner_cluster_name(dict(body))
    _run_for_owner(c.CLUSTER_KIND, namespace, name, _cluster, logger,
                   f"{body.get('kind')} {body.meta.name}")


for _group, _version, _plural in CHILD_KINDS:
    kopf.on.event(_group, _version, _plural, labels=CHILD_LABELS, id=f"child-{_plural}")(
        _child_changed
    )


# -- IndexJob -----------------------------------------------------------------------------


def _unfinished(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in FINISHED_PHASES


@kopf.on.resume(c.GROUP, c.VERSION, c.INDEXJOB_PLURAL)
@kopf.on.create(c.GROUP, c.VERSION, c.INDEXJOB_PLURAL)
def indexjob_created(body: kopf.Body, **_: Any) -> None:
    _run(body, _indexjob)


@kopf.timer(
    c.GROUP, c.VERSION, c.INDEXJOB_PLURAL, interval=SETTINGS.resync_seconds, when=_unfinished
)
def indexjob_resync(body: kopf.Body, **_: Any) -> None:
    _run(body, _indexjob)


@kopf.on.event("batch", "v1", "jobs", labels=JOB_LABELS)
def job_changed(body: kopf.Body, namespace: str, logger: logging.Logger, **_: Any) -> None:
    """Mirror a Job's progress into its IndexJob as soon as the Job changes."""
    name = reconcile.owner_indexjob_name(dict(body))
    _run_for_owner(c.INDEXJOB_KIND, namespace, name, _indexjob, logger, f"Job {body.meta.name}")


# -- Dataset ------------------------------------------------------------------------------


@kopf.on.resume(c.GROUP, c.VERSION, c.DATASET_PLURAL)
@kopf.on.create(c.GROUP, c.VERSION, c.DATASET_PLURAL)
@kopf.on.update(c.GROUP, c.VERSION, c.DATASET_PLURAL, field="spec")
def dataset_changed(body: kopf.Body, **_: Any) -> None:
    _run(body, _dataset)


@kopf.timer(c.GROUP, c.VERSION, c.DATASET_PLURAL, interval=SETTINGS.dataset_sync_seconds)
def dataset_resync(body: kopf.Body, **_: Any) -> None:
    """Refresh counts; an unreachable API is reported in status, not retried sooner."""
    _run(body, _dataset, retry=False)
