"""deploy/rbac/operator.yaml is enough: the operator runs under a ServiceAccount bound
only to it (a TokenRequest token, RBAC authorization on) and does its whole job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from .envtest import (
    REPO,
    Api,
    ApiError,
    ControlPlane,
    OperatorProcess,
    cluster_body,
    wait_for,
)
from .fakes import FakeChromaApi

pytestmark = pytest.mark.controlplane

RBAC = REPO / "deploy" / "rbac" / "operator.yaml"


def test_operator_works_under_its_least_privilege_service_account(
    control_plane: ControlPlane,
    api: Api,
    namespace: str,
    tmp_path: Path,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    try:
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "chroma-system"}})
    except ApiError as exc:
        if exc.status != 409:
            raise
    api.apply_manifest(RBAC)
    kubeconfig = control_plane.service_account_kubeconfig(
        "chroma-system", "chroma-operator", tmp_path / "sa.kubeconfig"
    )
    token = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]
    sa_api = Api(control_plane.url, token)
    # Least privilege: no reading Secrets (get or list), no deleting Jobs.
    with pytest.raises(ApiError) as info:
        sa_api.get("Secret", namespace, "chroma-pg")
    assert info.value.status == 403
    with pytest.raises(ApiError) as info:
        sa_api.list("Secret", namespace)
    assert info.value.status == 403
    with pytest.raises(ApiError) as info:
        sa_api.request("DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs/x")
    assert info.value.status == 403

    fake = FakeChromaApi()
    try:
        op = operator_factory(kubeconfig=kubeconfig, env={"CHROMA_OPERATOR_API_URL": fake.url})
        api.create(cluster_body("c1", namespace))
        for kind, name in (
            ("ConfigMap", "c1-config"),
            ("Role", "c1-indexjob-creator"),
            ("RoleBinding", "c1-indexjob-creator"),
            ("Deployment", "c1-api"),
            ("Deployment", "c1-worker"),
            ("StatefulSet", "c1-qdrant"),
            ("Service", "c1-qdrant"),
            ("Service", "c1-api"),
            ("ServiceAccount", "c1-api"),
            ("NetworkPolicy", "c1-chroma"),
            ("NetworkPolicy", "c1-qdrant"),
            # generated with "create" alone: the operator never reads them
            ("Secret", "c1-api-keys"),
            ("Secret", "c1-qdrant-api-key"),
        ):
            wait_for(lambda k=kind, n=name: api.get(k, namespace, n), what=f"{kind} {name}")
        for kind, name, ready in (
            ("Deployment", "c1-api", 2),
            ("Deployment", "c1-worker", 1),
            ("StatefulSet", "c1-qdrant", 1),
        ):
            api.patch(
                kind,
                namespace,
                name,
                {"status": {"replicas": ready, "readyReplicas": ready}},
                "status",
            )
        wait_for(
            lambda: (
                (api.get("ChromaCluster", namespace, "c1").get("status") or {}).get("phase")
                == "Ready"
            ),
            what="phase Ready",
        )
        # drift repair, an annotation-requested operation, its Job, Events, a Dataset
        api.delete("Service", namespace, "c1-api")
        wait_for(lambda: api.get("Service", namespace, "c1-api"), what="Service restored")
        api.patch(
            "ChromaCluster",
            namespace,
            "c1",
            {"metadata": {"annotations": {"chroma.dev/operation": "index/" + "a" * 40}}},
        )
        (ij,) = wait_for(lambda: api.list("IndexJob", namespace), what="IndexJob")
        wait_for(lambda: api.get("Job", namespace, ij["metadata"]["name"]), what="Job")
        api.create(
            {
                "apiVersion": "chroma.dev/v1alpha1",
                "kind": "Dataset",
                "metadata": {"name": "train", "namespace": namespace},
                "spec": {"cluster": "c1", "split": "training"},
            }
        )
        wait_for(
            lambda: (api.get("Dataset", namespace, "train").get("status") or {}).get("registered"),
            what="Dataset registered",
        )
        wait_for(lambda: api.events_for(namespace, "c1"), what="Events on c1")
        api.delete("ChromaCluster", namespace, "c1")
        wait_for(lambda: api.get("ChromaCluster", namespace, "c1") is None, what="c1 deleted")
        log = op.log()
        assert "Forbidden" not in log and " 403" not in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
    finally:
        fake.close()
