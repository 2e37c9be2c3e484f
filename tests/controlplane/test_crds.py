"""The CRD schemas are enforced by a real API server: defaults, enums, minimums,
required fields, CEL rules (IndexJob spec immutable), short names and categories."""

from __future__ import annotations

from typing import Any

import pytest

from .envtest import Api, ApiError, cluster_body, indexjob_body

pytestmark = pytest.mark.controlplane


def rejected(api: Api, obj: dict[str, Any]) -> str:
    with pytest.raises(ApiError) as info:
        api.create(obj)
    assert info.value.status == 422, info.value.body
    return str(info.value.body["message"])


def test_discovery_lists_short_names_and_category(api: Api) -> None:
    resources = {r["name"]: r for r in api.request("GET", "/apis/chroma.dev/v1alpha1")["resources"]}
    assert resources["chromaclusters"]["shortNames"] == ["cc", "chroma"]
    assert resources["indexjobs"]["shortNames"] == ["ij"]
    for name in ("chromaclusters", "indexjobs", "datasets"):
        assert resources[name]["categories"] == ["chroma"]
        assert f"{name}/status" in resources


def test_defaults_are_applied_by_the_server(api: Api, namespace: str) -> None:
    created = api.create(cluster_body("defaults", namespace))
    spec = created["spec"]
    assert spec["image"] == "chroma-service:0.1.0"
    assert spec["suspend"] is False
    assert spec["api"]["replicas"] == 2
    assert spec["workers"]["replicas"] == 1
    assert spec["qdrant"]["mode"] == "Managed"
    assert spec["qdrant"]["storage"]["size"] == "10Gi"
    assert spec["database"]["secret"]["key"] == "uri"
    ij = api.create(indexjob_body("defaults", namespace, "defaults"))
    assert ij["spec"]["backoffLimit"] == 3
    assert ij["spec"]["ttlSecondsAfterFinished"] == 86400


def test_wrong_enum_is_rejected(api: Api, namespace: str) -> None:
    msg = rejected(api, cluster_body("bad-enum", namespace, qdrant={"mode": "Bogus"}))
    assert "spec.qdrant.mode" in msg and 'Unsupported value: "Bogus"' in msg
    msg = rejected(api, indexjob_body("bad-op", namespace, "c", operation="explode"))
    assert "spec.operation" in msg and "reindex" in msg


def test_missing_required_field_is_rejected(api: Api, namespace: str) -> None:
    body = cluster_body("no-storage", namespace)
    del body["spec"]["storage"]
    msg = rejected(api, body)
    assert "spec.storage: Required value" in msg
    body = indexjob_body("no-set", namespace, "c")
    del body["spec"]["embeddingSet"]
    assert "spec.embeddingSet: Required value" in rejected(api, body)


def test_negative_replicas_are_rejected(api: Api, namespace: str) -> None:
    msg = rejected(api, cluster_body("neg", namespace, api={"replicas": -1}))
    assert "spec.api.replicas" in msg and "greater than or equal to 0" in msg
    msg = rejected(api, cluster_body("neg2", namespace, qdrant={"replicas": 0}))
    assert "spec.qdrant.replicas" in msg and "greater than or equal to 1" in msg


def test_pattern_and_cel_rules(api: Api, namespace: str) -> None:
    body = cluster_body("bad-url", namespace)
    body["spec"]["storage"]["url"] = "/local/path"
    assert "spec.storage.url" in rejected(api, body)
    msg = rejected(api, cluster_body("ext", namespace, qdrant={"mode": "External"}))
    assert "spec.qdrant.url is required when spec.qdrant.mode is External" in msg


def test_indexjob_spec_is_immutable(api: Api, namespace: str) -> None:
    api.create(indexjob_body("frozen", namespace, "c"))
    with pytest.raises(ApiError) as info:
        api.patch("IndexJob", namespace, "frozen", {"spec": {"operation": "reindex"}})
    assert info.value.status == 422
    assert "IndexJob spec is immutable" in info.value.body["message"]
    # metadata stays editable (labels, annotations)
    api.patch("IndexJob", namespace, "frozen", {"metadata": {"labels": {"team": "ml"}}})


def test_status_is_a_subresource(api: Api, namespace: str) -> None:
    """Writes to the main resource never change status (only the operator's /status does)."""
    body = cluster_body("sub", namespace)
    body["status"] = {"phase": "Ready"}
    created = api.create(body)
    assert "status" not in created or created["status"].get("phase") != "Ready"
