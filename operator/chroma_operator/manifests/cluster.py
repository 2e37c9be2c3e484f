"""Builders for the children of a ChromaCluster.

Owns: the exact ConfigMap, ServiceAccount/Role/RoleBinding, API Deployment + Service
(+ Ingress), worker Deployment, Qdrant StatefulSet + headless Service and the
NetworkPolicies that a ChromaCluster spec stands for, and the Secrets the operator
generates once (API keys, Qdrant API key: see ``build_generated_secrets``). Pure: a
cluster body in, plain dicts out, ready for server-side apply (the generated Secrets take
their random key from the caller). Called by ``chroma_operator.reconcile``; unit-tested
in ``tests/unit/test_operator_manifests.py`` and ``tests/unit/test_pod_security.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
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
        "apiKeys": f"{cluster}-api-keys",
        "qdrantApiKey": f"{cluster}-qdrant-api-key",
        "chromaPolicy": f"{cluster}-chroma",
        "qdrantPolicy": f"{cluster}-qdrant",
    }


def api_keys_secret(cluster: str, spec: ClusterSpec) -> str | None:
    """The Secret whose ``keys`` entry the API pods mount; None when auth is off."""
    if not spec.auth.enabled:
        return None
    return spec.auth.secret_name or names(cluster)["apiKeys"]


def qdrant_api_key_ref(cluster: str, spec: ClusterSpec) -> tuple[str, str] | None:
    """(Secret, key) of the Qdrant API key: named in the spec, else generated for a
    Managed Qdrant; None for an External Qdrant without one."""
    if spec.qdrant.api_key_secret:
        return spec.qdrant.api_key_secret, spec.qdrant.api_key_key
    if spec.qdrant.managed:
        return names(cluster)["qdrantApiKey"], c.QDRANT_API_KEY_KEY
    return None


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


def _secret_ref(name: str, secret: str, key: str) -> Body:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def secret_env(cluster: str, spec: ClusterSpec) -> list[Body]:
    """Credentials come from referenced Secrets only, never inlined: PostgreSQL, S3 and
    the Qdrant API key (every Chroma pod talks to all three)."""
    ref = _secret_ref
    qdrant_key = qdrant_api_key_ref(cluster, spec)
    extra = [ref("CHROMA_QDRANT_API_KEY", *qdrant_key)] if qdrant_key else []
    return [
        ref("CHROMA_DATABASE_URL", spec.database.secret_name, spec.database.key),
        ref("AWS_ACCESS_KEY_ID", spec.storage.credentials_secret, spec.storage.access_key_id_key),
        ref(
            "AWS_SECRET_ACCESS_KEY",
            spec.storage.credentials_secret,
            spec.storage.secret_access_key_key,
        ),
        *extra,
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
        "env": secret_env(body["metadata"]["name"], spec),
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
    volumes: list[Body] | None = None,
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
                    "volumes": [volume, *(volumes or [])],
                },
            },
        },
    }


def _api_auth(cluster: str, spec: ClusterSpec, container: Body) -> list[Body]:
    """Wire the API container to its keys (or mark it insecure); the volumes it needs.

    The Secret is mounted as a directory (not ``subPath``) so an edited key file reaches
    the pod without a restart (the API re-reads it, DESIGN §11)."""
    secret = api_keys_secret(cluster, spec)
    if secret is None:
        container["env"].append({"name": "CHROMA_INSECURE", "value": "true"})
        return []
    container["env"].append(
        {"name": "CHROMA_API_KEYS_FILE", "value": f"{c.API_KEYS_MOUNT}/{c.API_KEYS_KEY}"}
    )
    container["volumeMounts"].append(
        {"name": "api-keys", "mountPath": c.API_KEYS_MOUNT, "readOnly": True}
    )
    return [
        {
            "name": "api-keys",
            "secret": {
                "secretName": secret,
                "items": [{"key": c.API_KEYS_KEY, "path": c.API_KEYS_KEY}],
                "defaultMode": 0o440,
            },
        }
    ]


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
    volumes = _api_auth(body["metadata"]["name"], spec, container)
    return _deployment(
        body,
        spec,
        name=names(body["metadata"]["name"])["api"],
        component=c.COMPONENT_API,
        replicas=spec.api.replicas,
        container=container,
        volumes=volumes,
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


def _managed_qdrant_key(cluster: str, spec: ClusterSpec) -> tuple[str, str]:
    ref = qdrant_api_key_ref(cluster, spec)
    assert ref is not None  # a Managed Qdrant always has a key (named or generated)
    return ref


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
        "env": [
            {"name": "QDRANT__STORAGE__STORAGE_PATH", "value": "/qdrant/storage"},
            # The root filesystem is read-only: snapshots go to the PVC too.
            {"name": "QDRANT__STORAGE__SNAPSHOTS_PATH", "value": "/qdrant/storage/snapshots"},
            # No calls home: a restricted egress policy would block them anyway.
            {"name": "QDRANT__TELEMETRY_DISABLED", "value": "true"},
            _secret_ref("QDRANT__SERVICE__API_KEY", *_managed_qdrant_key(cluster, spec)),
        ],
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


def operator_api_key(seed: str, body: Body) -> str:
    """The operator's admin key for the cluster ``body``: HMAC-SHA256 of the cluster's
    namespace, name and uid under the operator's ``seed``, 43 URL-safe characters.
    Derived, not stored: the operator recomputes it instead of reading a Secret; a
    recreated cluster (new uid) gets a new one; it opens no other cluster."""
    meta = body["metadata"]
    message = f"{meta['namespace']}/{meta['name']}/{meta['uid']}".encode()
    digest = hmac.new(seed.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def keys_file(user_key: str, operator_key: str | None) -> str:
    """The keys file the operator generates: the user's admin key on the first line."""
    lines = [f"admin {user_key}"]
    if operator_key:
        lines += ["# chroma-operator: registers Datasets (docs/operator.md, Security)",
                  f"admin {operator_key}"]
    return "\n".join(lines) + "\n"


def _secret(body: Body, name: str, data: dict[str, str]) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(name, body, c.COMPONENT_CONFIG),
        "type": "Opaque",
        "stringData": data,
    }


def build_generated_secrets(
    body: Body, new_key: Callable[[], str], operator_key: str | None = None
) -> list[Body]:
    """The Secrets the operator generates for ``body``, to be created once and never
    overwritten (the reconciler creates them only when absent).

    ``<cluster>-api-keys`` (auth on, no Secret named): ``keys`` is the keys file with one
    admin key (plus ``operator_key``, the operator's own, when given); ``api-key`` is the
    user's key alone, for clients (``CHROMA_API_KEY``).
    ``<cluster>-qdrant-api-key`` (Managed Qdrant, no Secret named): ``api-key``.
    ``new_key`` makes a random key (``secrets.token_urlsafe(32)`` in the reconciler)."""
    spec = ClusterSpec.from_dict(body.get("spec"))
    n = names(body["metadata"]["name"])
    out = []
    if spec.auth.enabled and not spec.auth.secret_name:
        key = new_key()
        data = {c.API_KEYS_KEY: keys_file(key, operator_key), "api-key": key}
        out.append(_secret(body, n["apiKeys"], data))
    if spec.qdrant.managed and not spec.qdrant.api_key_secret:
        out.append(_secret(body, n["qdrantApiKey"], {c.QDRANT_API_KEY_KEY: new_key()}))
    return out


def _port(number: int) -> Body:
    return {"port": number, "protocol": "TCP"}


def _chroma_pods(cluster: str) -> Body:
    """Selects every Chroma pod of ``cluster``: API, workers and IndexJob pods."""
    return {
        "matchLabels": {c.LABEL_NAME: "chroma", c.LABEL_INSTANCE: cluster},
        "matchExpressions": [
            {
                "key": c.LABEL_COMPONENT,
                "operator": "In",
                "values": [c.COMPONENT_API, c.COMPONENT_WORKERS, c.COMPONENT_OPERATION],
            }
        ],
    }


def _namespace_peer(namespace: str) -> Body:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}


def api_peers(spec: ClusterSpec, namespace: str, operator_namespace: str | None) -> list[Body]:
    """Who may reach the API port: ``apiFrom`` (default: pods of the cluster's namespace),
    the ingress controller's namespace, and the operator's (it registers Datasets)."""
    peers = [dict(p) for p in spec.network_policy.api_from] or [{"podSelector": {}}]
    for ns in (spec.network_policy.ingress_controller_namespace, operator_namespace):
        if ns and ns != namespace and _namespace_peer(ns) not in peers:
            peers.append(_namespace_peer(ns))
    return peers


_DNS: Body = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
"""Egress to DNS, wherever the resolver is (a pod, a node-local cache, the host)."""


def _policy(body: Body, name: str, component: str, selector: Body, ingress: list[Body],
            egress: list[Body] | None) -> Body:
    policy_spec: Body = {
        "podSelector": selector,
        "policyTypes": ["Ingress"] if egress is None else ["Ingress", "Egress"],
        "ingress": ingress,
    }
    if egress is not None:
        policy_spec["egress"] = egress
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, body, component),
        "spec": policy_spec,
    }


def build_network_policies(
    body: Body, spec: ClusterSpec, operator_namespace: str | None = None
) -> list[Body]:
    """``<cluster>-chroma``: Chroma pods accept only the API port, from ``api_peers``;
    ``<cluster>-qdrant``: a Managed Qdrant accepts only this cluster's Chroma pods.
    Egress is open unless ``networkPolicy.egress.restrict`` (then DNS, this cluster's
    Qdrant and the ``allow`` rules for Chroma pods; DNS alone for Qdrant)."""
    meta = body["metadata"]
    cluster, n = meta["name"], names(meta["name"])
    restrict = spec.network_policy.egress.restrict
    chroma_egress = None
    if restrict:
        chroma_egress = [_DNS, *(dict(r) for r in spec.network_policy.egress.allow)]
        if spec.qdrant.managed:
            qdrant_pods = {"matchLabels": selector_labels(cluster, c.COMPONENT_QDRANT)}
            chroma_egress.append({
                "to": [{"podSelector": qdrant_pods}],
                "ports": [_port(c.QDRANT_HTTP_PORT), _port(c.QDRANT_GRPC_PORT)],
            })
    from_peers = api_peers(spec, meta["namespace"], operator_namespace)
    out = [
        _policy(body, n["chromaPolicy"], c.COMPONENT_API, _chroma_pods(cluster),
                [{"from": from_peers, "ports": [_port(c.API_PORT)]}], chroma_egress),
    ]
    if spec.qdrant.managed:
        out.append(_policy(
            body, n["qdrantPolicy"], c.COMPONENT_QDRANT,
            {"matchLabels": selector_labels(cluster, c.COMPONENT_QDRANT)},
            [{"from": [{"podSelector": _chroma_pods(cluster)}],
              "ports": [_port(c.QDRANT_HTTP_PORT), _port(c.QDRANT_GRPC_PORT)]}],
            [_DNS] if restrict else None,
        ))
    return out


def build_children(
    body: Body, operator_namespace: str | None = None
) -> tuple[list[Body], list[tuple[str, str, str]]]:
    """Every child the cluster should have, and the (apiVersion, kind, name) it must not.

    The second list names optional children that the spec turned off (an Ingress no
    longer asked for, a managed Qdrant replaced by an external URL, NetworkPolicies
    switched off); the reconciler deletes them if they exist. ``operator_namespace``
    (where the operator runs) is let through to the API: it registers Datasets.
    Generated Secrets are not here: see ``build_generated_secrets``.
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
    policies = build_network_policies(body, spec, operator_namespace)
    if not spec.network_policy.enabled:
        policies = []
    wanted += policies
    policy_names = {p["metadata"]["name"] for p in policies}
    unwanted += [
        ("networking.k8s.io/v1", "NetworkPolicy", name)
        for name in (n["chromaPolicy"], n["qdrantPolicy"])
        if name not in policy_names
    ]
    return wanted, unwanted
