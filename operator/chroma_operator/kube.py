"""The operator's only door to the Kubernetes API (besides kopf's own watching).

Owns: server-side apply with the ``chroma-operator`` field manager, get / create / delete /
list of any kind the operator writes, create-if-absent without reading (for Secrets: the
operator may create them but never read them), and merge patches of custom resources' ``status``.
Errors are translated at this edge into ``KubeError`` and its subclasses, chaining the
cause. Called by ``chroma_operator.reconcile``; sync (kopf runs sync handlers in threads).

    KubeError           any refused or failed request (``status`` holds the HTTP code)
     +-- NotFound       404
     +-- Conflict       409 (already exists, or an apply conflict)
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes

from chroma_operator import constants as c

Body = dict[str, Any]

# (apiVersion, kind) -> plural; only the kinds this operator touches.
PLURALS: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Service"): "services",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("v1", "Secret"): "secrets",
    ("apps/v1", "Deployment"): "deployments",
    ("apps/v1", "StatefulSet"): "statefulsets",
    ("batch/v1", "Job"): "jobs",
    ("networking.k8s.io/v1", "Ingress"): "ingresses",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("rbac.authorization.k8s.io/v1", "Role"): "roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebindings",
    (c.API_VERSION, c.CLUSTER_KIND): c.CLUSTER_PLURAL,
    (c.API_VERSION, c.DATASET_KIND): c.DATASET_PLURAL,
    (c.API_VERSION, c.INDEXJOB_KIND): c.INDEXJOB_PLURAL,
}

__all__ = ["Conflict", "Kube", "KubeError", "NotFound", "resource_path"]


class KubeError(Exception):
    """The API server refused or failed a request."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotFound(KubeError):
    """404: the object (or its namespace) does not exist."""


class Conflict(KubeError):
    """409: the object already exists, or another field manager owns a field."""


def resource_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    plural = PLURALS[(api_version, kind)]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


class Kube:
    """A small typed-by-dict client over ``kubernetes.client.ApiClient``."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None) -> None:
        self.api = api_client or kubernetes.client.ApiClient()

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Body:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            _method, url, hdrs, req_body, _post = self.api.param_serialize(
                method,
                path,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            resp = self.api.call_api(_method, url, header_params=hdrs, body=req_body)
            resp.read()
        except kubernetes.client.exceptions.ApiException as exc:
            raise KubeError(f"{method} {path}: {exc.reason}", exc.status or 0) from exc
        except Exception as exc:  # urllib3 / socket errors
            raise KubeError(f"{method} {path}: {exc}") from exc
        raw = resp.data or b"{}"
        try:
            data = json.loads(raw)
        except ValueError:
            data = {"message": raw.decode(errors="replace")}
        if resp.status >= 400:
            message = f"{method} {path}: {resp.status} {data.get('message', '')}".strip()
            cls = {404: NotFound, 409: Conflict}.get(resp.status, KubeError)
            raise cls(message, resp.status)
        return data

    def apply(self, obj: Body, *, force: bool = True, subresource: str = "") -> Body:
        """Server-side apply ``obj`` (creates it when absent) as ``chroma-operator``."""
        meta = obj["metadata"]
        path = resource_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        if subresource:
            path = f"{path}/{subresource}"
        query = [("fieldManager", c.FIELD_MANAGER), ("force", "true" if force else "false")]
        return self._request(
            "PATCH", path, query=query, body=obj, content_type="application/apply-patch+yaml"
        )

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Body | None:
        try:
            return self._request("GET", resource_path(api_version, kind, namespace, name))
        except NotFound:
            return None

    def create(self, obj: Body) -> tuple[Body, bool]:
        """Create ``obj``; if it already exists return the existing one. (obj, created)."""
        meta = obj["metadata"]
        path = resource_path(obj["apiVersion"], obj["kind"], meta["namespace"])
        try:
            return self._request(
                "POST", path, query=[("fieldManager", c.FIELD_MANAGER)], body=obj
            ), True
        except Conflict:
            existing = self.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
            if existing is None:  # deleted in between: let the caller retry
                raise
            return existing, False

    def create_if_absent(self, obj: Body) -> bool:
        """Create ``obj`` unless an object of that name exists; True when created.

        Never reads the existing object (409 is the answer), so it works with ``create``
        permission alone: how the operator makes Secrets it must not be able to read."""
        meta = obj["metadata"]
        path = resource_path(obj["apiVersion"], obj["kind"], meta["namespace"])
        try:
            self._request("POST", path, query=[("fieldManager", c.FIELD_MANAGER)], body=obj)
        except Conflict:
            return False
        return True

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete with background propagation; False when it was already gone."""
        try:
            self._request(
                "DELETE",
                resource_path(api_version, kind, namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except NotFound:
            return False
        return True

    def list(
        self, api_version: str, kind: str, namespace: str, label_selector: str = ""
    ) -> list[Body]:
        query = [("labelSelector", label_selector)] if label_selector else []
        data = self._request("GET", resource_path(api_version, kind, namespace), query=query)
        return list(data.get("items") or [])

    def patch_status(self, body: Body, status: Body) -> Body:
        """Merge-patch ``status`` of the custom resource ``body`` through its subresource."""
        meta = body["metadata"]
        path = resource_path(body["apiVersion"], body["kind"], meta["namespace"], meta["name"])
        return self._request(
            "PATCH",
            f"{path}/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    def patch(self, api_version: str, kind: str, namespace: str, name: str, patch: Body) -> Body:
        """JSON merge patch of an object (used to remove a handled annotation)."""
        return self._request(
            "PATCH",
            resource_path(api_version, kind, namespace, name),
            body=patch,
            content_type="application/merge-patch+json",
        )
