"""The API's IndexJob launcher on a real API server, under the cluster's own API
ServiceAccount (created by the operator with a Role that allows creating IndexJobs only):
one operation submitted again and again, from two API replicas, is exactly one IndexJob,
which the operator runs as exactly one Job; and a real ``chroma serve`` (real PostgreSQL)
configured like the operator's ConfigMap submits one IndexJob per new operation."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from chroma.api.services import IMPLICIT_OPERATIONS
from chroma.catalog import Operation
from chroma.keys import embedding_set_key
from chroma.operations.launchers import IndexJobLauncher, indexjob_name, make_launcher
from chroma.settings import Settings
from tests.conftest import ServerProcess

from .envtest import Api, ControlPlane, OperatorProcess, cluster_body, wait_for

pytestmark = pytest.mark.controlplane

KEY = "5e" * 20


def queued(op_id: int, kind: str = "index", key: str | None = KEY) -> Operation:
    now = datetime.now(UTC)
    return Operation(
        id=op_id, kind=kind, embedding_set_key=key, params={}, state="queued", progress=0.0,
        message=None, attempts=0, max_attempts=3, requested_by="trigger",
        cancel_requested=False, lease_owner=None, lease_expires_at=None, retry_at=None,
        created_at=now, started_at=None, finished_at=None, result=None, error=None,
    )


def test_launcher_creates_exactly_one_indexjob_under_the_api_service_account(
    control_plane: ControlPlane,
    api: Api,
    namespace: str,
    operator: OperatorProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api.create(cluster_body("c1", namespace))
    for kind, name in (
        ("ServiceAccount", "c1-api"),
        ("Role", "c1-indexjob-creator"),
        ("RoleBinding", "c1-indexjob-creator"),
    ):
        wait_for(lambda k=kind, n=name: api.get(k, namespace, n), timeout=90,
                 what=f"{kind} {name}")
    kubeconfig = control_plane.service_account_kubeconfig(
        namespace, "c1-api", tmp_path / "api-sa.kubeconfig"
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    # As the API process builds it: from the settings the operator's ConfigMap sets.
    settings = Settings(operation_launcher="indexjob", cluster_name="c1", namespace=namespace)
    first, second = make_launcher(settings), make_launcher(settings)
    assert isinstance(first, IndexJobLauncher)

    op = queued(41)
    expected = indexjob_name("c1", "index", KEY, 41)
    # The RoleBinding may take a moment to be honoured by the authorizer's cache.
    wait_for(lambda: first.submit(op), timeout=90, what="first submit accepted")
    assert second.submit(op) == expected  # another replica: 409, counted as done
    assert first.submit(op) == expected
    assert first.submit(queued(42, kind="sleep")) is None  # not an IndexJob kind

    (ij,) = api.list("IndexJob", namespace)
    assert ij["metadata"]["name"] == expected
    assert ij["spec"] == {
        "cluster": "c1",
        "operation": "index",
        "embeddingSet": KEY,
        "backoffLimit": 3,  # CRD defaults applied by the API server
        "ttlSecondsAfterFinished": 86400,
    }
    assert ij["metadata"]["labels"]["chroma.dev/operation-id"] == "41"
    assert "chroma-api" in {m["manager"] for m in ij["metadata"]["managedFields"]}

    # The operator runs it: one Job, running the operation in-process.
    job = wait_for(lambda: api.get("Job", namespace, expected), timeout=90,
                   what="the IndexJob's Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][-5:] == ["run", "index", "--embedding-set", KEY, "--local"]
    assert len(api.list("Job", namespace)) == 1

    # Another operation of the same set later: a second IndexJob (distinct name).
    assert first.submit(queued(43)) not in (None, expected)
    assert len(api.list("IndexJob", namespace)) == 2


def test_chroma_serve_in_indexjob_mode_submits_its_new_operations(
    control_plane: ControlPlane,
    api: Api,
    namespace: str,
    operator: OperatorProcess,
    own_database_url: str,
    tmp_path: Path,
) -> None:
    """The wiring: a real ``chroma serve`` configured as the operator's ConfigMap does
    (CHROMA_OPERATION_LAUNCHER=indexjob, CHROMA_CLUSTER_NAME, CHROMA_NAMESPACE) and
    authenticated as the cluster's API ServiceAccount turns the implicit trigger of a
    log and a POST /api/v1/operations into IndexJobs, one per new operation."""
    api.create(cluster_body("c1", namespace))
    wait_for(lambda: api.get("RoleBinding", namespace, "c1-indexjob-creator"), timeout=90,
             what="the API's RoleBinding")
    kubeconfig = control_plane.service_account_kubeconfig(
        namespace, "c1-api", tmp_path / "api-sa.kubeconfig")
    env = {
        "CHROMA_DATABASE_URL": own_database_url,
        "CHROMA_DATA_DIR": str(tmp_path / "data"),
        "CHROMA_STORAGE_URL": str(tmp_path / "store"),
        "CHROMA_INDEX_TRIGGER_DEBOUNCE_S": "0",
        "CHROMA_OPERATION_LAUNCHER": "indexjob",
        "CHROMA_CLUSTER_NAME": "c1",
        "CHROMA_NAMESPACE": namespace,
        "KUBECONFIG": str(kubeconfig),
        "KUBERNETES_SERVICE_HOST": "",  # not in a pod: the kubeconfig is used
    }
    server = ServerProcess(env=env, log_path=tmp_path / "serve.log")
    server.start()
    try:
        es = {"model": "launcher", "version": "1"}
        answer = httpx.post(f"{server.url}/api/v1/log", timeout=30, json={
            "embedding_set": es, "dataset": "train", "split": "training",
            "records": [{"id": "a", "embedding": [0.1, 0.2, 0.3], "label_class": "cat"}]})
        assert answer.status_code == 201, answer.text
        key = embedding_set_key(es)

        def by_api() -> list[dict]:
            return api.list("IndexJob", namespace, "app.kubernetes.io/managed-by=chroma-api")

        implicit = wait_for(lambda: len(by_api()) >= len(IMPLICIT_OPERATIONS) and by_api(),
                            timeout=60, what="IndexJobs of the implicit trigger")
        assert sorted(ij["spec"]["operation"] for ij in implicit) == sorted(IMPLICIT_OPERATIONS)
        assert {ij["spec"]["embeddingSet"] for ij in implicit} == {key}

        first = httpx.post(f"{server.url}/api/v1/operations", timeout=30,
                           json={"kind": "compact", "embedding_set_key": key})
        assert first.status_code == 201, first.text
        again = httpx.post(f"{server.url}/api/v1/operations", timeout=30,
                           json={"kind": "compact", "embedding_set_key": key})
        assert again.status_code == 200  # joined the active one: nothing new to launch
        op_id = first.json()["id"]
        (compact,) = wait_for(
            lambda: [ij for ij in by_api() if ij["spec"]["operation"] == "compact"],
            timeout=30, what="the compact IndexJob")
        assert compact["metadata"]["name"] == indexjob_name("c1", "compact", key, op_id)
        assert len(by_api()) == len(IMPLICIT_OPERATIONS) + 1
    finally:
        server.stop()
        log = server.log_path.read_text(errors="replace")
        assert "could not create IndexJob" not in log, log[-3000:]
