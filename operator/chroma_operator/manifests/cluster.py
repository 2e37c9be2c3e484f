"""Builders for the children of a ChromaCluster.

Owns: the exact ConfigMap, ServiceAccount/Role/RoleBinding, API Deployment + Service
(+ Ingress), worker Deployment and Qdrant StatefulSet + headless Service that a
ChromaCluster spec stands for. Pure: a cluster body in, plain dicts out, ready for
server-side apply. Called by ``chroma_operator.reconcile``; unit-tested in
``tests/unit/test_operator_manifests.py``.
"""

from __future__ import annotations

from typing import Any

from chroma_operator import constants as c
from chroma_operator.manifests.common import (
    Body,
    container_security_context,
    metadata,
    pod_security_context,
    resources,
    selector_labels,
    short_hash,
    tmp_volume,
)
from chroma_operator.manifests.spec import ClusterSpec


def names(cluster: str) -> dict[str, str]:
    """Child names by role; one place so builders, status and tests agree."""
    return {
        "config": f"{cluster}-config",
        "serviceAccount": f"{cluster}-api",
        "role": f"{cluster}-indexjob-creator",
        "api": f"{cluster}-api",
        "workers": f"{cluster}-worker",
        "qdrant": f"{cluster}-qdrant",
    }


def qdrant_url(body: Body, spec: ClusterSpec) -> str:
    if not spec.qdrant.managed:
        return spec.qdrant.url or ""
    return f"http://{names(body['metadata']['name'])['qdrant']}:{c.QDRANT_HTTP_PORT}"


def api_url(body: Body) -> str:
    meta = body["metadata"]
    return f"http://{names(meta['name'])['api']}.{meta['namespace']}.svc:{c.API_PORT}"


def config_data(body: Body, spec: ClusterSpec) -> dict[str, str]:
    """Non-secret settings for every Chroma container (pydantic-settings, prefix CHROMA_)."""
    meta = body["metadata"]
    data = {
        "CHROMA_MODE": "cluster",
        "CHROMA_STORAGE_URL": spec.storage.url,
        "CHROMA_INDEX_BACKEND": "remote",
        "CHROMA_QDRANT_URL": qdrant_url(body, spec),
        "CHROMA_CLUSTER_NAME": meta["name"],
        "CHROMA_NAMESPACE": meta["namespace"],
        "CHROMA_OPERATION_LAUNCHER": "indexjob",
    }
    if spec.storage.endpoint_url:
        data["CHROMA_S3_ENDPOINT_URL"] = spec.storage.endpoint_url
    return data


def secret_env(spec: ClusterSpec) -> list[Body]:
    """Credentials come from referenced Secrets only, never inlined."""

    def ref(name: str, secret: str, key: str) -> Body:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}

    return [
        ref("CHROMA_DATABASE_URL", spec.database.secret_name, spec.database.key),
        ref("AWS_ACCESS_KEY_ID", spec.storage.credentials_secret, spec.storage.access_key_id_key),
        ref(
            "AWS_SECRET_ACCESS_KEY",
            spec.storage.credentials_secret,
            spec.storage.secret_access_key_key,
        ),
    ]


def chroma_container(
    body: Body, spec: ClusterSpec, name: str, args: list[str], res: dict[str, Any]
) -> Body:
    """A container of the Chroma image with the cluster's configuration."""
    _, mount = tmp_volume()
    return {
        "name": name,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["chroma"],
        "args": args,
        "envFrom": [{"configMapRef": {"name": names(body["metadata"]["name"])["config"]}}],
        "env": secret_env(spec),
        "resources": resources(res),
        "securityContext": container_security_context(),
        "volumeMounts": [mount],
    }


def build_config_map(body: Body, spec: ClusterSpec) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(names(body["metadata"]["name"])["config"], body, c.COMPONENT_CONFIG),
        "data": config_data(body, spec),
    }


def build_service_account(body: Body, spec: ClusterSpec) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(
            names(body["metadata"]["name"])["serviceAccount"], body, c.COMPONENT_API
        ),
        "automountServiceAccountToken": True,
    }


def build_role(body: Body, spec: ClusterSpec) -> Body:
    """The API's implicit index trigger may create IndexJobs, and nothing more."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(names(body["metadata"]["name"])["role"], body, c.COMPONENT_API),
        "rules": [{"apiGroups": [c.GROUP], "resources": [c.INDEXJOB_PLURAL], "verbs": ["create"]}],
    }


def build_role_binding(body: Body, spec: ClusterSpec) -> Body:
    n = names(body["metadata"]["name"])
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(n["role"], body, c.COMPONENT_API),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": n["role"]},
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": n["serviceAccount"],
                "namespace": body["metadata"]["namespace"],
            }
        ],
    }


def _deployment(
    body: Body,
    spec: ClusterSpec,
    *,
    name: str,
    component: str,
    replicas: int,
    container: Body,
) -> Body:
    cluster = body["metadata"]["name"]
    volume, _ = tmp_volume()
    meta = metadata(name, body, component, version=spec.image.rpartition(":")[2] or None)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 0 if spec.suspend else replicas,
            "selector": {"matchLabels": selector_labels(cluster, component)},
            "template": {
                "metadata": {
                    "labels": meta["labels"],
                    "annotations": {
                        c.ANNOTATION_CONFIG_HASH: short_hash(config_data(body, spec), 16)
                    },
                },
                "spec": {
                    "serviceAccountName": names(cluster)["serviceAccount"],
                    "securityContext": pod_security_context(),
                    "containers": [container],
                    "volumes": [volume],
                },
            },
        },
    }


def build_api_deployment(body: Body, spec: ClusterSpec) -> Body:
    probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10}
    container = chroma_container(
        body,
        spec,
        "api",
        ["serve", "--host", "0.0.0.0", "--port", str(c.API_PORT)],
        spec.api.resources,
    )
    container["ports"] = [{"name": "http", "containerPort": c.API_PORT, "protocol": "TCP"}]
    container["livenessProbe"] = probe
    container["readinessProbe"] = {
        "httpGet": {"path": "/ready", "port": "http"},
        "periodSeconds": 5,
    }
    return _deployment(
        body,
        spec,
        name=names(body["metadata"]["name"])["api"],
        component=c.COMPONENT_API,
        replicas=spec.api.replicas,
        container=container,
    )


def build_api_service(body: Body, spec: ClusterSpec) -> Body:
    cluster = body["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(names(cluster)["api"], body, c.COMPONENT_API),
        "spec": {
            "type": spec.api.service_type,
            "selector": selector_labels(cluster, c.COMPONENT_API),
            "ports": [
                {"name": "http", "port": c.API_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def build_ingress(body: Body, spec: ClusterSpec) -> Body:
    cluster = body["metadata"]["name"]
    ing = spec.api.ingress
    rule: Body = {
        "http": {
            "paths": [
                {
                    "path": ing.path,
                    "pathType": "Prefix",
                    "backend": {
                        "service": {"name": names(cluster)["api"], "port": {"name": "http"}}
                    },
                }
            ]
        }
    }
    if ing.host:
        rule["host"] = ing.host
    ingress_spec: Body = {"rules": [rule]}
    if ing.class_name:
        ingress_spec["ingressClassName"] = ing.class_name
    if ing.tls_secret_name:
        ingress_spec["tls"] = [
            {"hosts": [ing.host] if ing.host else [], "secretName": ing.tls_secret_name}
        ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(names(cluster)["api"], body, c.COMPONENT_API),
        "spec": ingress_spec,
    }


def build_worker_deployment(body: Body, spec: ClusterSpec) -> Body:
    container = chroma_container(body, spec, "worker", ["worker"], spec.workers.resources)
    return _deployment(
        body,
        spec,
        name=names(body["metadata"]["name"])["workers"],
        component=c.COMPONENT_WORKERS,
        replicas=spec.workers.replicas,
        container=container,
    )


def build_qdrant_service(body: Body, spec: ClusterSpec) -> Body:
    """Headless Service: the StatefulSet's governing service and the clients' address."""
    cluster = body["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(names(cluster)["qdrant"], body, c.COMPONENT_QDRANT),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector_labels(cluster, c.COMPONENT_QDRANT),
            "ports": [
                {"name": "http", "port": c.QDRANT_HTTP_PORT, "targetPort": "http"},
                {"name": "grpc", "port": c.QDRANT_GRPC_PORT, "targetPort": "grpc"},
            ],
        },
    }


def build_qdrant_statefulset(body: Body, spec: ClusterSpec) -> Body:
    cluster = body["metadata"]["name"]
    q = spec.qdrant
    meta = metadata(names(cluster)["qdrant"], body, c.COMPONENT_QDRANT)
    volume, tmp_mount = tmp_volume()
    pvc_spec: Body = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": q.storage_size}},
    }
    if q.storage_class_name:
        pvc_spec["storageClassName"] = q.storage_class_name
    container = {
        "name": "qdrant",
        "image": q.image,
        "imagePullPolicy": spec.image_pull_policy,
        "ports": [
            {"name": "http", "containerPort": c.QDRANT_HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": c.QDRANT_GRPC_PORT, "protocol": "TCP"},
        ],
        "env": [{"name": "QDRANT__STORAGE__STORAGE_PATH", "value": "/qdrant/storage"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 10},
        "resources": resources(q.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "storage", "mountPath": "/qdrant/storage"}, tmp_mount],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta,
        "spec": {
            "replicas": 0 if spec.suspend else q.replicas,
            "serviceName": names(cluster)["qdrant"],
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector_labels(cluster, c.COMPONENT_QDRANT)},
            "template": {
                "metadata": {"labels": meta["labels"]},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(),
                    "containers": [container],
                    "volumes": [volume],
                },
            },
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Retain",
                "whenScaled": "Retain",
            },
            "volumeClaimTemplates": [
                {"metadata": {"name": "storage", "labels": meta["labels"]}, "spec": pvc_spec}
            ],
        },
    }


def build_children(body: Body) -> tuple[list[Body], list[tuple[str, str, str]]]:
    """Every child the cluster should have, and the (apiVersion, kind, name) it must not.

    The second list names optional children that the spec turned off (an Ingress no
    longer asked for, a managed Qdrant replaced by an external URL); the reconciler
    deletes them if they exist.
    """
    spec = ClusterSpec.from_dict(body.get("spec"))
    n = names(body["metadata"]["name"])
    wanted = [
        build_config_map(body, spec),
        build_service_account(body, spec),
        build_role(body, spec),
        build_role_binding(body, spec),
        build_api_deployment(body, spec),
        build_api_service(body, spec),
        build_worker_deployment(body, spec),
    ]
    unwanted: list[tuple[str, str, str]] = []
    if spec.api.ingress.enabled:
        wanted.append(build_ingress(body, spec))
    else:
        unwanted.append(("networking.k8s.io/v1", "Ingress", n["api"]))
    if spec.qdrant.managed:
        wanted += [build_qdrant_service(body, spec), build_qdrant_statefulset(body, spec)]
    else:
        unwanted += [("apps/v1", "StatefulSet", n["qdrant"]), ("v1", "Service", n["qdrant"])]
    return wanted, unwanted
