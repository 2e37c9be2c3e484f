"""The Helm chart against the real API server: every manifest rendered from the default
and the ci/ values files is accepted (server-side apply, dry run: schemas, CRD
validation, RBAC objects), and a real ``helm install`` creates what the operator needs.
The operator, started with the Deployment's own arguments under the chart's
ServiceAccount token, then reconciles the ChromaCluster the chart made from values.

kube-apiserver runs no pods, so the operator runs as a subprocess (as everywhere in this
tier) and the test patches child status to simulate ready pods.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_chart import CHART, CI_VALUES, helm, render, values_id

from .envtest import (
    Api,
    ApiError,
    ControlPlane,
    OperatorProcess,
    wait_for,
    which_kubectl,
)

pytestmark = pytest.mark.controlplane


def ensure_namespace(api: Api, name: str) -> None:
    """The namespace and its ``default`` ServiceAccount (which kube-controller-manager
    would create; pods without a serviceAccountName are refused without it)."""
    for obj in (
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "default", "namespace": name}},
    ):
        try:
            api.create(obj)
        except ApiError as exc:
            if exc.status != 409:
                raise


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=values_id)
def test_rendered_manifests_are_accepted_by_the_api_server(
    control_plane: ControlPlane, api: Api, namespace: str, tmp_path: Path, values: Path | None
) -> None:
    kubectl = which_kubectl()
    if kubectl is None:
        pytest.skip("kubectl not found in KUBEBUILDER_ASSETS or PATH")
    release = f"dry-{uuid.uuid4().hex[:6]}"
    docs = render(*(["-f", str(values)] if values else []), "--include-crds",
                  release=release, namespace=namespace)
    for doc in docs:  # e.g. the namespaces an operator is told to watch
        if doc["metadata"].get("namespace"):
            ensure_namespace(api, doc["metadata"]["namespace"])
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    proc = subprocess.run(
        [kubectl, "--kubeconfig", str(control_plane.admin_kubeconfig), "apply",
         "--server-side", "--dry-run=server", "--field-manager=chart-test",
         "--validate=strict", "-f", str(manifest)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == len(docs), proc.stdout
    assert all("(server dry run)" in line for line in lines), proc.stdout
    # Dry run: nothing was created.
    assert api.get("ServiceAccount", namespace, f"{release}-chroma-operator") is None


def test_schema_violations_stop_helm_install(control_plane: ControlPlane, namespace: str) -> None:
    proc = helm("install", "bad", str(CHART), "-n", namespace,
                "--kubeconfig", str(control_plane.admin_kubeconfig),
                "--set", "cluster.enabled=true", "--set", "cluster.spec.api.replicas=-1",
                check=False)
    assert proc.returncode != 0 and "replicas" in proc.stderr
    assert "bad" not in helm("list", "-n", namespace, "-q",
                             "--kubeconfig", str(control_plane.admin_kubeconfig)).stdout


def resolve_env(api: Api, namespace: str, var: dict[str, Any]) -> str:
    """The value the kubelet would give an environment variable of the chart's pod."""
    if "value" in var:
        return str(var["value"])
    source = var["valueFrom"]
    if "fieldRef" in source:
        assert source["fieldRef"]["fieldPath"] == "metadata.namespace", source
        return namespace
    ref = source["secretKeyRef"]
    secret = api.get("Secret", namespace, ref["name"])
    assert secret is not None, f"Secret {ref['name']} of the chart not installed"
    return base64.b64decode(secret["data"][ref["key"]]).decode()


def test_helm_install_then_the_operator_reconciles_the_cluster_from_values(
    control_plane: ControlPlane,
    api: Api,
    namespace: str,
    tmp_path: Path,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    kubeconfig = str(control_plane.admin_kubeconfig)
    release = f"it-{uuid.uuid4().hex[:6]}"
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "image": {"repository": "chroma-service", "tag": "e2e"},
        "operator": {"watchNamespaces": [namespace], "resyncSeconds": 3},
        "cluster": {
            "enabled": True,
            "name": "vals",
            "spec": {
                "api": {"replicas": 2},
                "storage": {"url": "s3://chroma-test/vals",
                            "endpointUrl": "http://minio.storage:9000",
                            "credentialsSecret": {"name": "chroma-s3"}},
                "database": {"secret": {"name": "chroma-pg"}},
            },
        },
    }))
    helm("install", release, str(CHART), "-n", namespace, "-f", str(values),
         "--kubeconfig", kubeconfig, timeout=180)
    try:
        operator_name = f"{release}-chroma-operator"
        deployment = api.get("Deployment", namespace, operator_name)
        assert deployment is not None
        for kind, ns, name in (
            ("ServiceAccount", namespace, operator_name),
            ("ClusterRole", None, operator_name),
            ("RoleBinding", namespace, operator_name),
            ("Service", namespace, operator_name),
            ("ChromaCluster", namespace, "vals"),
        ):
            assert api.get(kind, ns, name) is not None, f"{kind} {name} not installed"
        assert api.get("ClusterRoleBinding", None, operator_name) is None
        cluster = api.get("ChromaCluster", namespace, "vals")
        assert cluster["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert api.request(
            "GET", f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/vals-api")

        # Run the operator exactly as the chart's Deployment would: its args, its env,
        # the chart's ServiceAccount (namespace-scoped RoleBinding only).
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["chroma-operator"]
        assert container["args"][0] == f"--namespace={namespace}"
        env = {e["name"]: resolve_env(api, namespace, e) for e in container["env"]}
        assert env["CHROMA_OPERATOR_NAMESPACE"] == namespace
        assert len(env["CHROMA_OPERATOR_API_KEY_SEED"]) == 48  # the chart's seed Secret
        sa_kubeconfig = control_plane.service_account_kubeconfig(
            namespace, operator_name, tmp_path / "chart-sa.kubeconfig")
        op = operator_factory(kubeconfig=sa_kubeconfig, env=env, namespace_=namespace)

        for kind, name in (
            ("ConfigMap", "vals-config"),
            ("ServiceAccount", "vals-api"),
            ("Role", "vals-indexjob-creator"),
            ("RoleBinding", "vals-indexjob-creator"),
            ("Deployment", "vals-api"),
            ("Service", "vals-api"),
            ("Deployment", "vals-worker"),
            ("StatefulSet", "vals-qdrant"),
            ("Secret", "vals-api-keys"),
            ("Secret", "vals-qdrant-api-key"),
            ("NetworkPolicy", "vals-chroma"),
        ):
            wait_for(lambda k=kind, n=name: api.get(k, namespace, n), what=f"{kind} {name}")
        # With the chart's seed, the generated keys file also lists the operator's key.
        keys = base64.b64decode(api.get("Secret", namespace, "vals-api-keys")["data"]["keys"])
        assert [line.split()[0] for line in keys.decode().splitlines()] == [
            "admin", "#", "admin"]
        api_deployment = api.get("Deployment", namespace, "vals-api")
        assert api_deployment["spec"]["replicas"] == 2
        (api_container,) = api_deployment["spec"]["template"]["spec"]["containers"]
        assert api_container["image"] == "chroma-service:e2e"  # the chart's image
        # The chart's PDB selects the pods of the Deployment the operator made.
        pdb = api.request(
            "GET", f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/vals-api")
        pod_labels = api_deployment["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

        for kind, name, ready in (("Deployment", "vals-api", 2),
                                  ("Deployment", "vals-worker", 1),
                                  ("StatefulSet", "vals-qdrant", 1)):
            api.patch(kind, namespace, name,
                      {"status": {"replicas": ready, "readyReplicas": ready}}, "status")
        wait_for(lambda: (api.get("ChromaCluster", namespace, "vals").get("status") or {})
                 .get("phase") == "Ready", what="ChromaCluster from values Ready")

        # A values change through `helm upgrade` reaches the children.
        helm("upgrade", release, str(CHART), "-n", namespace, "--reuse-values",
             "--set", "cluster.spec.api.replicas=3", "--kubeconfig", kubeconfig, timeout=180)
        wait_for(lambda: api.get("Deployment", namespace, "vals-api")["spec"]["replicas"] == 3,
                 what="API replicas 3 after helm upgrade")

        # Uninstall keeps the cluster (resource-policy keep: the operator and its RBAC go
        # at the same time, so it could not release the finalizer). The documented order:
        # delete the cluster while the operator runs, then uninstall.
        api.delete("ChromaCluster", namespace, "vals")
        wait_for(lambda: api.get("ChromaCluster", namespace, "vals") is None,
                 what="ChromaCluster deleted by the chart's operator")
        # --no-hooks: envtest runs no Pods, so the chart's pre-delete hook Job (which does
        # this deletion itself) would never finish; tests/e2e runs the hook for real.
        helm("uninstall", release, "-n", namespace, "--kubeconfig", kubeconfig, "--no-hooks")
        for kind, ns, name in (("ClusterRole", None, operator_name),
                               ("RoleBinding", namespace, operator_name),
                               ("Deployment", namespace, operator_name)):
            wait_for(lambda k=kind, s=ns, n=name: api.get(k, s, n) is None,
                     what=f"{kind} {name} uninstalled")
        # The seed stays (resource-policy keep): a reinstall keeps the keys valid.
        assert api.get("Secret", namespace, f"{operator_name}-api-key-seed") is not None
        log = op.log()
        assert "Forbidden" not in log and " 403" not in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
    finally:
        helm("uninstall", release, "-n", namespace, "--kubeconfig", kubeconfig, "--no-hooks",
             check=False)


def test_default_install_binds_the_operator_cluster_wide_and_nothing_more(
    control_plane: ControlPlane, api: Api, namespace: str, tmp_path: Path
) -> None:
    """Default values: a ClusterRoleBinding, so the chart's ServiceAccount works in every
    namespace, and still reads no Secrets and deletes no Jobs."""
    kubeconfig = str(control_plane.admin_kubeconfig)
    release = f"cw-{uuid.uuid4().hex[:6]}"
    helm("install", release, str(CHART), "-n", namespace, "--kubeconfig", kubeconfig,
         timeout=180)
    try:
        name = f"{release}-chroma-operator"
        binding = api.get("ClusterRoleBinding", None, name)
        assert binding is not None and binding["subjects"][0]["namespace"] == namespace
        sa = control_plane.service_account_kubeconfig(namespace, name, tmp_path / "sa.kubeconfig")
        token = yaml.safe_load(sa.read_text())["users"][0]["user"]["token"]
        as_operator = Api(control_plane.url, token)
        other = f"o-{uuid.uuid4().hex[:6]}"
        ensure_namespace(api, other)
        assert as_operator.list("ChromaCluster", other) == []
        assert as_operator.list("Deployment", other) == []
        for method, path in (
            ("GET", f"/api/v1/namespaces/{other}/secrets"),
            ("DELETE", f"/apis/batch/v1/namespaces/{other}/jobs/x"),
            ("GET", "/api/v1/nodes"),
        ):
            with pytest.raises(ApiError) as info:
                as_operator.request(method, path)
            assert info.value.status == 403, (method, path)
    finally:
        helm("uninstall", release, "-n", namespace, "--kubeconfig", kubeconfig, "--no-hooks",
             check=False)
    assert api.get("ClusterRoleBinding", None, f"{release}-chroma-operator") is None
