"""Pieces every builder shares: labels, owner references, metadata, pod hardening.

Owns: the label set of a child, the owner reference to its custom resource, and the
security context every pod gets (non-root, read-only root filesystem, no privilege
escalation, all capabilities dropped). Pure functions; called by ``cluster.py`` and
``indexjob.py``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from chroma.indexjob import label_value
from chroma_operator import constants as c

Body = dict[str, Any]

__all__ = [
    "Body",
    "container_security_context",
    "label_value",
    "labels",
    "metadata",
    "owner_reference",
    "pod_security_context",
    "resources",
    "selector_labels",
    "short_hash",
    "tmp_volume",
]

RUN_AS_USER = 10001


def selector_labels(cluster: str, component: str) -> dict[str, str]:
    """Labels that select a component's pods. They never change for a given child."""
    return {
        c.LABEL_NAME: "chroma",
        c.LABEL_INSTANCE: cluster,
        c.LABEL_COMPONENT: component,
    }


def labels(cluster: str, component: str, version: str | None = None) -> dict[str, str]:
    """All labels of a child of ``cluster``."""
    out = {
        **selector_labels(cluster, component),
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_PART_OF: "chroma",
        c.LABEL_CLUSTER: cluster,
    }
    if version:
        out[c.LABEL_VERSION] = label_value(version)
    return out


def short_hash(value: Any, length: int = 10) -> str:
    """SHA-1 prefix of ``value`` (JSON of it, keys sorted, when it is not a string)."""
    data = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return hashlib.sha1(data.encode()).hexdigest()[:length]


def owner_reference(owner: Body) -> Body:
    """Controller owner reference to ``owner`` (a custom resource body)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner.get("apiVersion", c.API_VERSION),
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(name: str, owner: Body, component: str, *, version: str | None = None) -> Body:
    """Metadata of a child of ``owner`` (a ChromaCluster) in the owner's namespace."""
    cluster = owner["metadata"]["name"]
    return {
        "name": name,
        "namespace": owner["metadata"]["namespace"],
        "labels": labels(cluster, component, version),
        "ownerReferences": [owner_reference(owner)],
    }


def pod_security_context() -> Body:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> Body:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def tmp_volume() -> tuple[Body, Body]:
    """An emptyDir for /tmp: the root filesystem is read-only."""
    return {"name": "tmp", "emptyDir": {}}, {"name": "tmp", "mountPath": "/tmp"}


def resources(value: dict[str, Any]) -> Body:
    """Only requests/limits, so a stray key never reaches the pod spec."""
    return {k: dict(v) for k, v in value.items() if k in ("requests", "limits") and v}
