"""Writes charts/chroma/values.schema.json: the chart's values, described field by field.

The ``cluster.spec`` part is generated from the ChromaCluster CRD (crds/), so a value
the API server would refuse is refused by ``helm lint/template/install`` first, with the
CRD's own descriptions. Run after changing the CRD or the chart's values:

    .venv/bin/python charts/chroma/hack/values_schema.py

``tests/unit/test_chart.py`` fails when the file is not what this script writes.
Not packaged (see .helmignore).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1]
REPO = CHART.parents[1]
CRD = REPO / "crds" / "chroma.dev_chromaclusters.yaml"
OUT = CHART / "values.schema.json"

Schema = dict[str, Any]


def from_crd(node: Any) -> Any:
    """An OpenAPI v3 (structural) CRD schema as JSON Schema: drop the ``x-kubernetes-*``
    extensions and forbid unknown keys where the CRD lists properties (the API server
    would prune them silently; a typo in values should fail instead)."""
    if isinstance(node, list):
        return [from_crd(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: from_crd(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if out.get("type") == "object" and "properties" in out:
        out.setdefault("additionalProperties", False)
    return out


def obj(description: str, properties: Schema, **extra: Any) -> Schema:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "properties": properties,
        **extra,
    }


def string(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def integer(description: str, **extra: Any) -> Schema:
    return {"type": "integer", "description": description, **extra}


def free_object(description: str) -> Schema:
    return {"type": "object", "description": description}


def string_map(description: str) -> Schema:
    return {"type": "object", "description": description,
            "additionalProperties": {"type": "string"}}


def build() -> Schema:
    crd = yaml.safe_load(CRD.read_text())
    spec = from_crd(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])
    required_when_enabled = spec.pop("required", [])
    spec["description"] = (
        "The ChromaCluster spec, as in crds/chroma.dev_chromaclusters.yaml (generated from "
        "it). image defaults to the chart's image. Required when enabled: "
        + ", ".join(required_when_enabled) + "."
    )
    resources = {
        "type": "object",
        "description": "Container resources (requests and limits), as in a Pod.",
        "additionalProperties": False,
        "properties": {
            "requests": {"type": "object"},
            "limits": {"type": "object"},
            "claims": {"type": "array"},
        },
    }
    dns_label = {"pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
    return {
        "$schema": "https://json-schema.org/draft-07/schema#",
        "title": "Values of the chroma chart",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "global": free_object("Values shared with subcharts (unused)."),
            "nameOverride": string("Replaces the chart name in object names and labels."),
            "fullnameOverride": string(
                "Replaces the full name (default: the release name, plus -chroma unless it "
                "contains it).", maxLength=54),
            "image": obj("The one Chroma image (operator, and the ChromaCluster's default).", {
                "repository": string("Image repository. Default chroma-service.", minLength=1),
                "tag": string("Image tag. Default: the chart's appVersion."),
                "pullPolicy": string("Pull policy. Default IfNotPresent.",
                                     enum=["Always", "IfNotPresent", "Never"]),
            }, required=["repository"]),
            "imagePullSecrets": {
                "type": "array",
                "description": "Secrets for pulling the image, as in a Pod ([{name: ...}]).",
                "items": obj("A pull Secret.", {"name": string("Secret name.", minLength=1)},
                             required=["name"]),
            },
            "operator": obj("The chroma-operator Deployment (one replica, standalone).", {
                "watchNamespaces": {
                    "type": "array",
                    "description": (
                        "Namespaces served. Empty (default): every namespace, with a "
                        "ClusterRoleBinding. Otherwise only these (they must exist), each "
                        "with a RoleBinding to the operator's ClusterRole."),
                    "uniqueItems": True,
                    "items": {"type": "string", **dns_label},
                },
                "resyncSeconds": integer(
                    "Seconds between safety-net reconciles (CHROMA_OPERATOR_RESYNC_SECONDS). "
                    "Default 60.", minimum=1),
                "datasetSyncSeconds": integer(
                    "Seconds between Dataset count refreshes "
                    "(CHROMA_OPERATOR_DATASET_SYNC_SECONDS). Default 60.", minimum=1),
                "httpTimeoutSeconds": integer(
                    "Timeout of calls to a cluster's API (CHROMA_OPERATOR_HTTP_TIMEOUT). "
                    "Default 10.", minimum=1),
                "verbose": {"type": "boolean", "description": "Debug logging. Default false."},
                "healthPort": integer("Port of the liveness endpoint /healthz. Default 8080.",
                                      minimum=1024, maximum=65535),
                "resources": resources,
                "podAnnotations": string_map("Annotations of the operator pod."),
                "podLabels": string_map("Extra labels of the operator pod."),
                "nodeSelector": string_map("nodeSelector of the operator pod."),
                "tolerations": {"type": "array", "description": "Tolerations, as in a Pod.",
                                "items": {"type": "object"}},
                "affinity": free_object("Affinity, as in a Pod."),
                "priorityClassName": string("priorityClassName of the operator pod."),
                "extraEnv": {
                    "type": "array",
                    "description": "Extra environment variables (name + value or valueFrom).",
                    "items": {"type": "object", "required": ["name"],
                              "properties": {"name": {"type": "string", "minLength": 1}}},
                },
                "podSecurityContext": obj(
                    "Pod securityContext. Default: non-root uid/gid 10001, seccomp "
                    "RuntimeDefault. runAsNonRoot cannot be turned off.", {
                        "runAsNonRoot": {"const": True, "description": "Always true."},
                        "runAsUser": integer("Default 10001 (the image's user).", minimum=1),
                        "runAsGroup": integer("Default 10001.", minimum=1),
                        "fsGroup": integer("Default 10001.", minimum=1),
                        "seccompProfile": free_object("Default {type: RuntimeDefault}."),
                        "supplementalGroups": {"type": "array", "items": {"type": "integer"}},
                    }),
                "securityContext": obj(
                    "Container securityContext. Default: read-only root filesystem, no "
                    "privilege escalation, every capability dropped.", {
                        "allowPrivilegeEscalation": {"const": False},
                        "readOnlyRootFilesystem": {"type": "boolean"},
                        "runAsNonRoot": {"const": True},
                        "capabilities": free_object("Default {drop: [ALL]}."),
                        "seccompProfile": free_object("As in a container."),
                    }),
            }),
            "serviceAccount": obj("The operator's ServiceAccount.", {
                "create": {"type": "boolean", "description": "Create it. Default true."},
                "name": string("Its name. Default <fullname>-operator; required when "
                               "create is false.", maxLength=63),
                "annotations": string_map("Annotations (e.g. cloud IAM bindings)."),
            }),
            "rbac": obj("Least-privilege RBAC of the operator.", {
                "create": {"type": "boolean",
                           "description": "Create the ClusterRole and binding(s). Default true."},
            }),
            "cluster": obj(
                "An optional ChromaCluster in the release namespace.", {
                    "enabled": {"type": "boolean", "description": "Create it. Default false."},
                    "name": string("Its name. Default chroma.", **dns_label),
                    "labels": string_map("Extra labels of the ChromaCluster."),
                    "annotations": string_map(
                        "Annotations (e.g. chroma.dev/operation to request an IndexJob)."),
                    "spec": spec,
                    "apiDisruptionBudget": obj(
                        "PodDisruptionBudget of the cluster's API pods (when api.replicas "
                        "> 1).", {
                            "enabled": {"type": "boolean", "description": "Default true."},
                            "maxUnavailable": {
                                "description": "Default 1 (an integer or a percentage).",
                                "anyOf": [{"type": "integer", "minimum": 1},
                                          {"type": "string", "pattern": "^[0-9]+%$"}],
                            },
                        }),
                },
                required=["name"],
                **{"if": {"properties": {"enabled": {"const": True}}, "required": ["enabled"]},
                   "then": {"required": ["spec"],
                            "properties": {"spec": {"required": required_when_enabled}}}},
            ),
            "uninstall": obj(
                "The pre-delete hook that deletes chroma.dev resources while the operator "
                "still runs.", {
                    "deleteResources": {"type": "boolean",
                                        "description": "Run the hook. Default true."},
                    "timeoutSeconds": integer(
                        "Seconds to wait for each kind to be finalised. Default 300.",
                        minimum=10),
                }),
            "tests": obj("The helm test Pod.", {
                "enabled": {"type": "boolean", "description": "Render it. Default true."},
            }),
        },
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
