"""Operation launchers: what else happens when the API queues a new operation.

Owns: the API side of cluster mode. Every operation lives in the catalog's queue; the
launcher decides whether something must also be *started* for it.

* ``QueueLauncher`` (embedded default, ``CHROMA_OPERATION_LAUNCHER=queue``): nothing;
  local workers pull from the queue.
* ``IndexJobLauncher`` (``CHROMA_OPERATION_LAUNCHER=indexjob``, set by the operator in the
  cluster's ConfigMap together with ``CHROMA_CLUSTER_NAME`` and ``CHROMA_NAMESPACE``):
  submits one ``IndexJob`` custom resource (``chroma.dev/v1alpha1``) for the operation,
  with the pod's ServiceAccount (in-cluster config; a kubeconfig outside a pod). The
  operator turns it into a Job running ``chroma op run KIND --embedding-set KEY --local``,
  which joins the queued operation and runs it (or waits for the worker that claimed it).

The IndexJob shows the operation's ``params`` (``spec.params``) that its CRD can hold:
scalar values under keys the operator accepts. Others are left out and named in the
``chroma.dev/params-omitted`` annotation; the Job still runs with every param, because
it joins the queued operation, which keeps them all.

Submitting is idempotent: the IndexJob's name is derived from the cluster, kind,
embedding set and operation id, and ``409 AlreadyExists`` counts as done. It never fails
the caller: when the API server cannot be reached, the operation stays queued for the
worker Deployment and a warning is logged. The API's ServiceAccount may create IndexJobs
and nothing more (the operator's ``<cluster>-indexjob-creator`` Role), so this module
never reads IndexJobs back.

Must not touch: the queue itself, request handling. Called by ``chroma.api.services``
(implicit index trigger) and ``chroma.api.routers.operations`` (``POST /operations``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from chroma import indexjob as ij
from chroma.operations.kinds import INDEXJOB_KINDS
from chroma.settings import Settings

if TYPE_CHECKING:
    from chroma.catalog import Operation

__all__ = [
    "IndexJobLauncher",
    "LauncherConfigError",
    "OperationLauncher",
    "QueueLauncher",
    "indexjob_body",
    "indexjob_name",
    "indexjob_params",
    "make_launcher",
]

log = logging.getLogger(__name__)

FIELD_MANAGER = "chroma-api"

SERVICEACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class LauncherConfigError(RuntimeError):
    """``CHROMA_OPERATION_LAUNCHER=indexjob`` without what it needs (cluster, credentials)."""


class OperationLauncher(Protocol):
    """Starts whatever runs a newly queued operation, beyond the queue itself."""

    def submit(self, operation: Operation) -> str | None:
        """Launch ``operation``; return what was launched (a name) or None. Never raises."""
        ...


@dataclass
class QueueLauncher:
    """Embedded default: local workers pull from the queue, nothing else to start."""

    def submit(self, operation: Operation) -> str | None:
        return None


def indexjob_name(cluster: str, kind: str, embedding_set_key: str, operation_id: int) -> str:
    """Deterministic name: the same operation always names the same IndexJob (the rule is
    the contract's, ``chroma.indexjob.operation_indexjob_name``)."""
    return ij.operation_indexjob_name(cluster, kind, embedding_set_key, operation_id)


def indexjob_params(params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the params an IndexJob can show, the sorted keys left out): what the CRD would
    refuse is left out, which keeps the IndexJob creatable (a 422 would leave the
    operation to the workers)."""
    return ij.crd_params(params)


def indexjob_body(operation: Operation, cluster: str, namespace: str) -> dict[str, Any]:
    """The IndexJob that runs ``operation`` on ``cluster`` (spec as in crds/), with the
    operation's params in ``spec.params`` when it has any."""
    key = operation.embedding_set_key or ""
    spec: dict[str, Any] = {"cluster": cluster, "operation": operation.kind, "embeddingSet": key}
    annotations = {
        ij.ANNOTATION_REQUESTED_BY: f"api/operation/{operation.id} ({operation.requested_by})",
    }
    params, omitted = indexjob_params(operation.params or {})
    if params:
        spec["params"] = params
    if omitted:
        annotations[ij.ANNOTATION_PARAMS_OMITTED] = ",".join(omitted)[:1024]
    return {
        "apiVersion": ij.API_VERSION,
        "kind": ij.KIND,
        "metadata": {
            "name": indexjob_name(cluster, operation.kind, key, operation.id),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "chroma",
                "app.kubernetes.io/instance": cluster,
                "app.kubernetes.io/component": "operation",
                "app.kubernetes.io/part-of": "chroma",
                "app.kubernetes.io/managed-by": FIELD_MANAGER,
                ij.LABEL_CLUSTER: cluster,
                ij.LABEL_OPERATION: operation.kind,
                ij.LABEL_EMBEDDING_SET: ij.label_value(key),
                f"{ij.GROUP}/operation-id": str(operation.id),
            },
            "annotations": annotations,
        },
        "spec": spec,
    }


def _service_account_namespace() -> str | None:
    try:
        return SERVICEACCOUNT_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


def _load_api_client(kubeconfig: str | None = None) -> Any:
    """An ApiClient for the pod's ServiceAccount, else the kubeconfig (``KUBECONFIG``,
    read now: the kubernetes package reads it once, when first imported)."""
    import kubernetes

    cfg = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=cfg)
    except kubernetes.config.ConfigException:
        config_file = kubeconfig or os.environ.get("KUBECONFIG") or None
        try:
            kubernetes.config.load_kube_config(config_file=config_file, client_configuration=cfg)
        except (kubernetes.config.ConfigException, OSError, TypeError) as exc:
            raise LauncherConfigError(
                "CHROMA_OPERATION_LAUNCHER=indexjob needs Kubernetes credentials: run in a pod "
                "with a ServiceAccount, or set KUBECONFIG"
            ) from exc
    return kubernetes.client.ApiClient(cfg)


@dataclass
class IndexJobLauncher:
    """Submits one IndexJob per new operation, through the Kubernetes API."""

    cluster: str
    namespace: str
    api_client: Any = None
    """A ``kubernetes.client.ApiClient``; None loads in-cluster config or the kubeconfig."""
    timeout_s: float = 5.0
    """Per request; the caller (a commit thread or a request) should not wait long."""
    _api: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        import kubernetes

        if self.api_client is None:
            self.api_client = _load_api_client()
        self._api = kubernetes.client.CustomObjectsApi(self.api_client)

    def submit(self, operation: Operation) -> str | None:
        """Create the operation's IndexJob (409 is fine). Returns its name, or None when
        the kind or a missing embedding set cannot be an IndexJob or the API refused."""
        from kubernetes.client.exceptions import ApiException, OpenApiException

        if operation.kind not in INDEXJOB_KINDS or not operation.embedding_set_key:
            log.debug("operation #%d (%s) stays with the queue's workers: not an IndexJob",
                      operation.id, operation.kind)
            return None
        body = indexjob_body(operation, self.cluster, self.namespace)
        name: str = body["metadata"]["name"]
        try:
            self._api.create_namespaced_custom_object(
                ij.GROUP, ij.VERSION, self.namespace, ij.PLURAL, body,
                field_manager=FIELD_MANAGER, _request_timeout=self.timeout_s,
            )
        except ApiException as exc:
            if exc.status == 409:
                log.debug("IndexJob %s/%s already exists", self.namespace, name)
                return name
            log.warning("could not create IndexJob %s/%s for operation #%d (HTTP %s: %s); "
                        "it stays queued for the workers", self.namespace, name, operation.id,
                        exc.status, exc.reason)
            return None
        except (OpenApiException, OSError, ValueError) as exc:
            log.warning("could not create IndexJob %s/%s for operation #%d (%s); it stays "
                        "queued for the workers", self.namespace, name, operation.id, exc)
            return None
        except Exception as exc:  # urllib3 errors: the API server is unreachable
            log.warning("could not reach the Kubernetes API to create IndexJob %s/%s for "
                        "operation #%d (%s); it stays queued for the workers",
                        self.namespace, name, operation.id, exc)
            return None
        log.info("created IndexJob %s/%s for operation #%d (%s)", self.namespace, name,
                 operation.id, operation.kind)
        return name


def make_launcher(settings: Settings, api_client: Any = None) -> OperationLauncher:
    """The launcher ``settings`` ask for. Fails loudly (``LauncherConfigError``) when
    ``indexjob`` lacks a cluster name, a namespace or Kubernetes credentials."""
    if settings.operation_launcher == "queue":
        return QueueLauncher()
    if not settings.cluster_name:
        raise LauncherConfigError(
            "CHROMA_OPERATION_LAUNCHER=indexjob needs CHROMA_CLUSTER_NAME (the ChromaCluster "
            "this API belongs to; the operator sets it)"
        )
    namespace = settings.namespace or _service_account_namespace()
    if not namespace:
        raise LauncherConfigError(
            "CHROMA_OPERATION_LAUNCHER=indexjob needs CHROMA_NAMESPACE (or a pod's "
            "ServiceAccount namespace file)"
        )
    return IndexJobLauncher(settings.cluster_name, namespace, api_client=api_client)
