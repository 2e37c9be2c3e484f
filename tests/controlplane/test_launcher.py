"""The API's IndexJob launcher on a real API server, under the cluster's own API
ServiceAccount (created by the operator with a Role that allows creating IndexJobs only):
one operation submitted again and again, from two API replicas, is exactly one IndexJob,
which the operator runs as exactly one Job."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from chroma.catalog import Operation
from chroma.control.launchers import IndexJobLauncher, indexjob_name, make_launcher
from chroma.settings import Settings

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
