"""End to end with real Pods (tests/e2e/conftest.py picks the cluster: the local one-node
cluster, an existing one, or kind): the chart installed with the image built from this
checkout, its operator Pod reconciling a ChromaCluster on S3 + PostgreSQL Pods and a
managed Qdrant (the stand-in). Log training and production embeddings through the API
Service, the implicit index runs (also as IndexJobs the API submits), the labelling queue
ranks the outliers first, /query answers; a re-index through the annotation; a Dataset
resource; scale and suspend through the custom resource; an API Pod and the operator Pod
deleted under load; ``helm upgrade`` to an External Qdrant rolls the Pods; ``helm test``;
``helm uninstall`` leaves nothing stuck. The tests share one deployment and run in order."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from chroma.client import Client
from chroma.keys import embedding_set_key

from .conftest import CLUSTER, NAMESPACE, RELEASE, Deployed, wait_for

# The first test pays for the cluster and the deployment (cold: the whole local build).
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]

ES = {"model": "kind-e2e", "version": "1"}
DIM = 16
CLASSES = ("cat", "dog", "fox")


def cluster_status(deployed: Deployed) -> dict:
    return deployed.status()


def test_helm_test_and_printer_columns(deployed: Deployed) -> None:
    out = deployed.helm("test", RELEASE, "-n", NAMESPACE, "--logs")  # fails if the pod does
    assert "healthz 200" in out, out
    table = deployed.kubectl("get", "chromacluster")
    assert table.split()[:4] == ["NAME", "PHASE", "READY", "API"], table
    assert "Ready" in table


def test_log_index_and_recommend(deployed: Deployed, api_url: str) -> None:
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(3, DIM)) * 6
    labels = rng.integers(0, 3, size=600)
    train = centres[labels] + rng.normal(size=(600, DIM))
    normal_labels = rng.integers(0, 3, size=200)
    normal = centres[normal_labels] + rng.normal(size=(200, DIM))
    outliers = rng.normal(size=(10, DIM)) * 1.5 + 15.0
    with Client(api_url, progress=False) as client:
        client.log_many(train, embedding_set=ES, dataset="kind-train", split="training",
                        label_classes=[CLASSES[c] for c in labels])
        ids = [f"n{i}" for i in range(200)] + [f"ood{i}" for i in range(10)]
        client.log_many(np.vstack([normal, outliers]), embedding_set=ES, dataset="kind-prod",
                        split="production", ids=ids,
                        inference_classes=[CLASSES[c] for c in normal_labels] + ["cat"] * 10)

        def recommended() -> bool:
            ops = httpx.get(f"{api_url}/api/v1/operations", params={"kind": "recommend"},
                            timeout=10).json()["data"]
            return bool(ops) and ops[0]["state"] == "succeeded"

        wait_for(recommended, 600, "the implicit index and recommend operations")
        page = client.recommendations(ES, limit=10)
        top = [item["id"] for item in page["items"]]
        assert sum(i.startswith("ood") for i in top) >= 8, top
        neighbours = client.query(ES, outliers[0], k=3)[0]
        assert neighbours and neighbours[0]["dataset"] == "kind-prod"

    # The API submitted IndexJobs for its queued operations (CHROMA_OPERATION_LAUNCHER).
    jobs = json.loads(deployed.kubectl(
        "get", "indexjobs", "-l", "app.kubernetes.io/managed-by=chroma-api", "-o", "json"))
    assert jobs["items"], "the API created no IndexJob"
    wait_for(lambda: any((ij.get("status") or {}).get("phase") == "Succeeded"
                         for ij in json.loads(deployed.kubectl(
                             "get", "indexjobs", "-o", "json"))["items"]),
             600, "an IndexJob Succeeded")


def test_reindex_through_the_annotation(deployed: Deployed, api_url: str) -> None:
    key = embedding_set_key(ES)
    wait_for(lambda: httpx.get(f"{api_url}/api/v1/embeddingsets", timeout=10).json(), 60,
             "embedding sets")
    deployed.kubectl("annotate", "chromacluster", CLUSTER, f"chroma.dev/operation=reindex/{key}")
    name = wait_for(lambda: (cluster_status(deployed).get("lastOperation") or {})
                    .get("indexJob"), 120, "status.lastOperation.indexJob")
    wait_for(lambda: deployed.jsonpath("indexjob", name, ".status.phase") == "Succeeded",
             600, f"IndexJob {name} Succeeded")


def test_scale_and_suspend_through_the_custom_resource(deployed: Deployed) -> None:
    def patch(spec: dict) -> None:
        deployed.kubectl("patch", "chromacluster", CLUSTER, "--type", "merge",
                         "-p", json.dumps({"spec": spec}))

    patch({"api": {"replicas": 2}})
    wait_for(lambda: deployed.jsonpath("deployment", f"{CLUSTER}-api",
                                       ".status.readyReplicas") == "2", 300, "2 API pods ready")
    wait_for(lambda: cluster_status(deployed)["components"]["api"]["ready"] == 2, 120,
             "status.components.api.ready == 2")

    patch({"suspend": True})
    wait_for(lambda: cluster_status(deployed)["phase"] == "Suspended", 120, "Suspended")
    wait_for(lambda: deployed.jsonpath("deployment", f"{CLUSTER}-api", ".spec.replicas") == "0",
             120, "API scaled to zero")

    patch({"suspend": False, "api": {"replicas": 1}})
    wait_for(lambda: cluster_status(deployed)["phase"] == "Ready", 600, "Ready again")
