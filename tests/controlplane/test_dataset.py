"""Dataset on a real API server, against a stand-in of the cluster's Chroma API
(``GET/PUT /api/v1/datasets/{name}`` over real HTTP on loopback)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .envtest import Api, ApiError, OperatorProcess, cluster_body, wait_for
from .fakes import FakeChromaApi

pytestmark = pytest.mark.controlplane


@pytest.fixture()
def fake_api() -> Iterator[FakeChromaApi]:
    fake = FakeChromaApi()
    yield fake
    fake.close()


def dataset_body(name: str, ns: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "chroma.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"cluster": "c1", **spec},
    }


def status_of(api: Api, ns: str, name: str) -> dict[str, Any]:
    got = api.get("Dataset", ns, name)
    assert got is not None
    return got.get("status") or {}


def test_dataset_is_registered_and_reports_counts(
    api: Api,
    namespace: str,
    fake_api: FakeChromaApi,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    api.create(cluster_body("c1", namespace))
    operator_factory(env={"CHROMA_OPERATOR_API_URL": fake_api.url})
    api.create(
        dataset_body(
            "prod-traffic",
            namespace,
            split="production",
            embeddingSet={"model": "resnet50", "version": "3", "layer": "avgpool"},
            retention={"maxAgeDays": 30},
        )
    )
    wait_for(lambda: status_of(api, namespace, "prod-traffic").get("registered"), what="registered")
    name, body = fake_api.puts[0]
    assert name == "prod-traffic"
    assert body["split"] == "production"
    assert body["retention_days"] == 30
    assert body["embedding_set"] == {"model": "resnet50", "version": "3", "layer": "avgpool"}
    status = status_of(api, namespace, "prod-traffic")
    assert status["phase"] == "Ready"
    assert status["recordCount"] == 0
    assert status["retentionDays"] == 30

    fake_api.datasets["prod-traffic"].update(record_count=42, last_log="2026-01-02T03:04:05Z")
    status = wait_for(
        lambda: (s := status_of(api, namespace, "prod-traffic")).get("recordCount") == 42 and s,
        what="recordCount 42 after a resync",
    )
    assert status["lastLog"] == "2026-01-02T03:04:05Z"
    assert status["embeddingSetKey"] == "e" * 40
    table = api.table("Dataset", namespace)
    columns = [c["name"] for c in table["columnDefinitions"]]
    cells = dict(zip(columns, table["rows"][0]["cells"], strict=True))
    assert (cells["Split"], cells["Phase"], cells["Records"]) == ("production", "Ready", 42)

    fake_api.close()
    status = wait_for(
        lambda: (
            (s := status_of(api, namespace, "prod-traffic")).get("phase") == "Unavailable" and s
        ),
        what="Unavailable when the API is down",
    )
    assert "unreachable" in status["message"]
    conds = {c["type"]: c["status"] for c in status["conditions"]}
    assert conds["Synced"] == "False"


def test_dataset_without_registration_endpoint_waits_for_first_log(
    api: Api, namespace: str, operator_factory: Callable[..., OperatorProcess]
) -> None:
    fake = FakeChromaApi(allow_put=False)
    try:
        api.create(cluster_body("c1", namespace))
        operator_factory(env={"CHROMA_OPERATOR_API_URL": fake.url})
        api.create(dataset_body("train", namespace, split="training"))
        status = wait_for(
            lambda: (s := status_of(api, namespace, "train")).get("phase") and s, what="a phase"
        )
        assert status["phase"] == "Pending"
        assert status["registered"] is False
        fake.datasets["train"] = {"name": "train", "record_count": 7, "embedding_set_key": "k"}
        wait_for(
            lambda: status_of(api, namespace, "train").get("recordCount") == 7,
            what="counts once the first record was logged",
        )
    finally:
        fake.close()


def test_dataset_schema_rules(api: Api, namespace: str) -> None:
    with pytest.raises(ApiError) as info:
        api.create(dataset_body("bad", namespace, split="validation"))
    assert "spec.split" in info.value.body["message"]
    with pytest.raises(ApiError) as info:
        api.create(dataset_body("bad2", namespace, split="training", retention={"maxAgeDays": 3}))
    assert "retention applies to production datasets only" in info.value.body["message"]
    api.create(dataset_body("ok", namespace, split="training"))
    with pytest.raises(ApiError) as info:
        api.patch("Dataset", namespace, "ok", {"spec": {"split": "production"}})
    assert "spec.split is immutable" in info.value.body["message"]
