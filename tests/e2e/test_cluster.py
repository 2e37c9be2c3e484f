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
import time

import httpx
import numpy as np
import pytest

from chroma.client import Client
from chroma.keys import embedding_set_key

from .conftest import CHART, CLUSTER, IMAGE, NAMESPACE, RELEASE, Deployed, wait_for

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


def test_the_service_answers_only_with_the_generated_key(deployed: Deployed,
                                                        api_url: str) -> None:
    """Auth is on by default: through the Service, no key and a wrong key are 401 with
    ``WWW-Authenticate: Bearer``; the key the operator generated reads; /health is open."""
    assert deployed.api_key, "the operator's generated keys Secret holds a key"
    status = f"{api_url}/api/v1/status"
    anonymous = httpx.get(status, timeout=30)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers.get("www-authenticate") == "Bearer"
    wrong = httpx.get(status, headers={"Authorization": "Bearer " + "x" * 40}, timeout=30)
    assert wrong.status_code == 401, wrong.text
    keyed = httpx.get(status, headers=deployed.auth_headers, timeout=30)
    assert keyed.status_code == 200, keyed.text
    assert httpx.get(f"{api_url}/health", timeout=30).status_code == 200


def test_log_index_and_recommend(deployed: Deployed, api_url: str) -> None:
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(3, DIM)) * 6
    labels = rng.integers(0, 3, size=600)
    train = centres[labels] + rng.normal(size=(600, DIM))
    normal_labels = rng.integers(0, 3, size=200)
    normal = centres[normal_labels] + rng.normal(size=(200, DIM))
    outliers = rng.normal(size=(10, DIM)) * 1.5 + 15.0
    with Client(api_url, api_key=deployed.api_key, progress=False) as client:
        client.log_many(train, embedding_set=ES, dataset="kind-train", split="training",
                        label_classes=[CLASSES[c] for c in labels])
        ids = [f"n{i}" for i in range(200)] + [f"ood{i}" for i in range(10)]
        client.log_many(np.vstack([normal, outliers]), embedding_set=ES, dataset="kind-prod",
                        split="production", ids=ids,
                        inference_classes=[CLASSES[c] for c in normal_labels] + ["cat"] * 10)

        def recommended() -> bool:
            ops = httpx.get(f"{api_url}/api/v1/operations", params={"kind": "recommend"},
                            headers=deployed.auth_headers,
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
    wait_for(lambda: httpx.get(f"{api_url}/api/v1/embeddingsets", timeout=10,
                               headers=deployed.auth_headers).json()["data"], 60,
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


def patch_spec(deployed: Deployed, spec: dict) -> None:
    deployed.kubectl("patch", "chromacluster", CLUSTER, "--type", "merge",
                     "-p", json.dumps({"spec": spec}))


def ready_replicas(deployed: Deployed, kind: str, name: str) -> int:
    return int(deployed.jsonpath(kind, name, ".status.readyReplicas") or 0)


def pod_names(deployed: Deployed, component: str) -> set[str]:
    pods = deployed.kube.get("pods", "-l", f"app.kubernetes.io/component={component}")
    return {p["metadata"]["name"] for p in pods["items"]
            if not p["metadata"].get("deletionTimestamp")}


def test_a_dataset_resource_is_registered_in_the_catalog(deployed: Deployed) -> None:
    dataset = {
        "apiVersion": "chroma.dev/v1alpha1", "kind": "Dataset",
        "metadata": {"name": "registered-e2e"},
        "spec": {"cluster": CLUSTER, "split": "production",
                 "embeddingSet": {"model": "kind-e2e", "version": "1"},
                 "description": "registered by the e2e tier"},
    }
    deployed.kubectl("apply", "-f", "-", input=json.dumps(dataset))
    wait_for(lambda: (deployed.kube.get("dataset", "registered-e2e").get("status") or {})
             .get("registered") is True, 300, "Dataset registered-e2e status.registered")
    # The catalog has it: through the API Service, as a client sees it.
    with deployed.kube.port_forward(f"service/{CLUSTER}-api", 8000) as url, \
            Client(url, api_key=deployed.api_key, progress=False) as client:
        info = client.dataset("registered-e2e")
        assert "registered-e2e" in json.dumps(info), info
        assert "production" in json.dumps(info), info


# Runs inside the cluster (the project image): logs small batches through the API Service
# for a while, printing each acknowledged batch; errors are retried with new ids.
STREAM_CLIENT = r"""
import os, sys, time, httpx
url, dataset, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
headers = {"Authorization": f"Bearer {os.environ['CHROMA_API_KEY']}"}
es = {"model": "stream-e2e", "version": "1"}
deadline, n, acked, failed = time.time() + seconds, 0, 0, 0
with httpx.Client(timeout=15, headers=headers) as http:
    while time.time() < deadline:
        ids = [f"b{n}-{k}" for k in range(10)]
        n += 1
        body = {"embedding_set": es, "dataset": dataset, "split": "production",
                "records": [{"id": i, "embedding": [float(k), 1.0, 2.0, float(n % 5)]}
                            for k, i in enumerate(ids)]}
        try:
            status = http.post(url + "/api/v1/log", json=body).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        if isinstance(status, int) and 200 <= status < 300:  # 202: accepted, durable
            acked += 1
            print("ACK", time.time(), ",".join(ids), flush=True)
        else:
            failed += 1
            print("ERR", time.time(), status, flush=True)
            time.sleep(0.2)
        time.sleep(0.05)
print("DONE", acked, failed, flush=True)
"""


def stream_job(image: str, pull_policy: str, dataset: str, seconds: int,
               keys_secret: str) -> dict:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "log-stream"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "client", "image": image, "imagePullPolicy": pull_policy,
                "command": ["python", "-c", STREAM_CLIENT,
                            f"http://{CLUSTER}-api:8000", dataset, str(seconds)],
                "env": [{"name": "CHROMA_API_KEY", "valueFrom": {"secretKeyRef": {
                    "name": keys_secret, "key": "api-key"}}}],
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        }}},
    }


def test_acknowledged_records_survive_an_api_pod_deleted_while_streaming(
        deployed: Deployed) -> None:
    patch_spec(deployed, {"api": {"replicas": 2}})
    wait_for(lambda: ready_replicas(deployed, "deployment", f"{CLUSTER}-api") == 2, 300,
             "2 API pods ready")
    dataset = "stream-e2e"
    deployed.kubectl("delete", "job", "log-stream", "--ignore-not-found", "--wait=true")
    deployed.kubectl("apply", "-f", "-", input=json.dumps(
        stream_job(IMAGE, deployed.kube.pull_policy, dataset, 45, deployed.keys_secret)))

    def logs() -> str:
        return deployed.kubectl("logs", "job/log-stream")

    wait_for(lambda: logs().count("ACK") >= 10, 180, "the client streaming acknowledged logs")
    victim = sorted(pod_names(deployed, "api"))[0]
    deployed.kubectl("delete", "pod", victim, "--wait=false")
    deleted_at = time.time()
    wait_for(lambda: "DONE" in logs(), 240, "the streaming client to finish")
    lines = logs().splitlines()
    acked = {i for line in lines if line.startswith("ACK") for i in line.split()[2].split(",")}
    acks_after = [line for line in lines
                  if line.startswith("ACK") and float(line.split()[1]) > deleted_at + 2]
    assert acks_after, "the stream did not go on after the API pod was deleted"
    assert victim not in pod_names(deployed, "api")
    # Every acknowledged record is readable, through a fresh forward to a live pod.
    wait_for(lambda: ready_replicas(deployed, "deployment", f"{CLUSTER}-api") == 2, 300,
             "the API back to 2 ready pods")
    with deployed.kube.port_forward(f"service/{CLUSTER}-api", 8000) as url, \
            Client(url, api_key=deployed.api_key, progress=False) as client:
        stored = {r["id"] for r in client.iter_records(dataset)}
    missing = acked - stored
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged records lost: " \
                        f"{sorted(missing)[:10]}"
    patch_spec(deployed, {"api": {"replicas": 1}})


def test_the_operator_pod_deleted_mid_reconcile_converges(deployed: Deployed) -> None:
    operator_pods = "app.kubernetes.io/component=operator"
    before = {p["metadata"]["name"] for p in
              deployed.kube.get("pods", "-l", operator_pods)["items"]}
    patch_spec(deployed, {"workers": {"replicas": 2}})
    deployed.kubectl("delete", "pod", "-l", operator_pods, "--wait=false")
    wait_for(lambda: ready_replicas(deployed, "deployment", f"{CLUSTER}-worker") == 2, 300,
             "2 worker pods ready after the operator restart")
    new = wait_for(lambda: {p["metadata"]["name"] for p in
                            deployed.kube.get("pods", "-l", operator_pods)["items"]
                            if p["status"].get("phase") == "Running"} - before,
                   300, "a new operator pod")
    assert new

    def converged() -> bool:
        body = deployed.kube.get("chromacluster", CLUSTER)
        status = body.get("status") or {}
        return (status.get("phase") == "Ready"
                and status.get("observedGeneration") == body["metadata"]["generation"]
                and status["components"]["workers"]["ready"] == 2)

    wait_for(converged, 300, "status converged on the new spec")
    patch_spec(deployed, {"workers": {"replicas": 1}})
    wait_for(lambda: deployed.jsonpath("deployment", f"{CLUSTER}-worker", ".spec.replicas")
             == "1", 120, "workers back to 1")


def test_helm_upgrade_to_an_external_qdrant_rolls_the_pods(deployed: Deployed) -> None:
    """The second Qdrant mode: External (the stand-in Deployment of backing.yaml)."""
    before = pod_names(deployed, "api")
    external = "http://qdrant-standin:6333"
    deployed.helm("upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(deployed.values),
                  "--set", "cluster.spec.qdrant.mode=External",
                  "--set", f"cluster.spec.qdrant.url={external}", "--wait", "--timeout", "10m",
                  # Earlier tests patched the spec with kubectl; on upgrade the values rule.
                  "--force-conflicts")
    wait_for(lambda: deployed.jsonpath("configmap", f"{CLUSTER}-config",
                                       ".data.CHROMA_QDRANT_URL") == external, 120,
             "the ConfigMap pointing at the external Qdrant")
    wait_for(lambda: not deployed.kube.get("statefulsets")["items"], 180,
             "the managed Qdrant StatefulSet removed")
    wait_for(lambda: (now := pod_names(deployed, "api")) and not now & before
             and ready_replicas(deployed, "deployment", f"{CLUSTER}-api") >= 1, 300,
             "new API pods (rolled by the configuration change)")
    deployed.wait_ready()
    es = {"model": "external-e2e", "version": "1"}
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(60, DIM))
    with deployed.kube.port_forward(f"service/{CLUSTER}-api", 8000) as url, \
            Client(url, api_key=deployed.api_key, progress=False) as client:
        client.log_many(vectors, embedding_set=es, dataset="external-prod", split="production",
                        ids=[f"x{i}" for i in range(60)])

        def answered() -> list:
            try:
                return client.query(es, vectors[7], k=3)[0]
            except Exception as exc:  # 503 until the new Qdrant has this set's index
                raise AssertionError(f"query: {exc}") from exc

        neighbours = wait_for(answered, 600, "the index on the external Qdrant answering")
        assert neighbours[0]["dataset"] == "external-prod"
        assert neighbours[0]["id"] == "x7", neighbours
    with deployed.kube.port_forward("service/qdrant-standin", 6333) as qdrant:
        names = [c["name"] for c in
                 httpx.get(f"{qdrant}/collections", timeout=10).json()["result"]["collections"]]
    assert any(name.startswith(f"chroma_{embedding_set_key(es)}") for name in names), names


def test_helm_uninstall_leaves_nothing_stuck(deployed: Deployed) -> None:
    """Last: the pre-delete hook deletes the ChromaCluster and Datasets while the operator
    still runs, so nothing keeps a finalizer and the namespace goes away."""
    assert deployed.kube.get("chromaclusters")["items"]
    deployed.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "10m")
    for kind in ("chromaclusters", "datasets", "indexjobs"):
        assert not deployed.kube.get(kind)["items"], f"{kind} left after uninstall"
    # The cluster's children go with their owner (garbage collection).
    wait_for(lambda: not pod_names(deployed, "api") and not pod_names(deployed, "worker"), 300,
             "the cluster's API and worker pods gone")
    deployed.kubectl("delete", "namespace", NAMESPACE, "--wait=false", namespace=None)
    wait_for(lambda: NAMESPACE not in deployed.kubectl("get", "namespaces", "-o", "name",
                                                       namespace=None), 300,
             f"namespace {NAMESPACE} deleted (nothing stuck Terminating)")
