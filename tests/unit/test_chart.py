"""The Helm chart (charts/chroma) rendered by the real ``helm`` binary, no cluster needed:
lint, template over the default and the ci/ values files, values refused by the schema,
CRDs identical to crds/, RBAC equal to deploy/rbac/operator.yaml, labels, security
contexts, probes, the PDB and the ``helm test`` hook.

``helm`` comes from KUBEBUILDER_ASSETS (scripts/envtest-assets.sh puts it there) or PATH;
without it these tests are skipped with the reason. The same helpers render the chart
for tests/controlplane/test_chart.py.
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "chroma"
CI_VALUES = [*sorted((CHART / "ci").glob("*-values.yaml")),
             REPO / "tests" / "e2e" / "values.yaml"]
"""Realistic values files: charts/chroma/ci/ (chart-testing's convention) and the kind e2e's."""
RBAC = REPO / "deploy" / "rbac" / "operator.yaml"
Body = dict[str, Any]


def values_id(values: Path | None) -> str:
    """Test id of a values file: ``ci/cluster-values.yaml``, or ``default``."""
    return f"{values.parent.name}/{values.name}" if values else "default"


def helm_binary() -> str | None:
    """``helm`` from KUBEBUILDER_ASSETS, else PATH, else the cache scripts/envtest-assets.sh
    fills (so ``pytest tests/unit`` finds it after one ``make test``), else None."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and os.access(Path(assets) / "helm", os.X_OK):
        return str(Path(assets) / "helm")
    if found := shutil.which("helm"):
        return found
    cache = Path(os.environ.get("CHROMA_ENVTEST_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chroma-envtest")
    cached = sorted(p for p in cache.glob("*/bin/helm") if os.access(p, os.X_OK))
    return str(cached[-1]) if cached else None


def helm(*args: str, check: bool = True, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run helm (skipping the test when there is none); stdout/stderr as text."""
    binary = helm_binary()
    if binary is None:
        pytest.skip("helm not found: set KUBEBUILDER_ASSETS (scripts/envtest-assets.sh "
                    "provides helm) or put helm on PATH")
    proc = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def render(*args: str, release: str = "chroma", namespace: str = "chroma-system") -> list[Body]:
    """``helm template`` -> the list of manifests (hooks included, CRDs with --include-crds)."""
    out = helm("template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(docs: list[Body], kind: str, name: str | None = None) -> list[Body]:
    return [d for d in docs if d["kind"] == kind and (name is None or
                                                      d["metadata"]["name"] == name)]


def the(docs: list[Body], kind: str, name: str | None = None) -> Body:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def pod_specs(docs: list[Body]) -> Iterator[tuple[str, Body]]:
    for doc in docs:
        if doc["kind"] == "Pod":
            yield doc["metadata"]["name"], doc["spec"]
        elif doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def default_docs() -> list[Body]:
    return render()


# -- lint, template, schema ------------------------------------------------------------


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=values_id)
def test_helm_lint_is_clean(values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)] + (["-f", str(values)] if values else [])
    proc = helm(*args)
    assert "0 chart(s) failed" in proc.stdout
    assert "[ERROR]" not in proc.stdout and "[WARNING]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=values_id)
def test_every_values_file_renders_valid_objects(values: Path | None) -> None:
    docs = render(*(["-f", str(values)] if values else []), "--include-crds")
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "CustomResourceDefinition"} <= kinds
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), doc
        assert doc["metadata"].get("name"), doc


def test_values_schema_is_generated_from_the_crd() -> None:
    script = runpy.run_path(str(CHART / "hack" / "values_schema.py"))
    on_disk = (CHART / "values.schema.json").read_text()
    assert on_disk == script["render"](), (
        "values.schema.json is stale: run .venv/bin/python charts/chroma/hack/values_schema.py")


BAD_VALUES = {
    "unknown top-level key": (["--set", "replicaCount=2"], "replicaCount"),
    "typo in operator": (["--set", "operator.resyncSecond=5"], "resyncSecond"),
    "negative resync": (["--set", "operator.resyncSeconds=-1"], "resyncSeconds"),
    "pull policy enum": (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
    "root operator": (["--set", "operator.podSecurityContext.runAsNonRoot=false"],
                      "runAsNonRoot"),
    "bad namespace name": (["--set", "operator.watchNamespaces[0]=Team_A"], "watchNamespaces"),
    "cluster without spec": (["--set", "cluster.enabled=true"], "storage"),
    "cluster negative replicas": (
        ["-f", "ci/cluster-values.yaml", "--set", "cluster.spec.api.replicas=-1"], "replicas"),
    "cluster qdrant mode enum": (
        ["-f", "ci/cluster-values.yaml", "--set", "cluster.spec.qdrant.mode=Embedded"], "mode"),
    "cluster storage not s3": (
        ["-f", "ci/cluster-values.yaml", "--set", "cluster.spec.storage.url=/data"], "url"),
    "cluster spec typo": (
        ["-f", "ci/cluster-values.yaml", "--set", "cluster.spec.api.replica=2"], "replica"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_fail_at_template_time(case: str) -> None:
    args, word = BAD_VALUES[case]
    args = [a if not a.startswith("ci/") else str(CHART / a) for a in args]
    proc = helm("template", "chroma", str(CHART), *args, check=False)
    assert proc.returncode != 0, f"{case}: accepted\n{proc.stdout[:500]}"
    assert "schema" in proc.stderr and word in proc.stderr, proc.stderr


# -- CRDs and RBAC ----------------------------------------------------------------------


def test_chart_crds_are_identical_to_the_top_level_crds() -> None:
    top = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert top.keys() == chart.keys()
    for name, content in top.items():
        assert chart[name] == content, f"charts/chroma/crds/{name} differs from crds/{name}"


def test_cluster_role_rules_equal_deploy_rbac(default_docs: list[Body]) -> None:
    reference = the(list(yaml.safe_load_all(RBAC.read_text())), "ClusterRole")
    role = the(default_docs, "ClusterRole", "chroma-operator")
    assert role["rules"] == reference["rules"]
    binding = the(default_docs, "ClusterRoleBinding", "chroma-operator")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "chroma-operator",
                                    "namespace": "chroma-system"}]
    assert not find(default_docs, "RoleBinding")
    assert all("secrets" not in rule["resources"] for rule in role["rules"])


def test_watch_namespaces_bind_the_role_per_namespace() -> None:
    docs = render("-f", str(CHART / "ci" / "namespaced-values.yaml"))
    assert not find(docs, "ClusterRoleBinding")
    bindings = [b for b in find(docs, "RoleBinding")
                if b["metadata"]["labels"].get("app.kubernetes.io/component") != "uninstall"]
    hook_bindings = [b for b in find(docs, "RoleBinding") if b not in bindings]
    assert sorted(b["metadata"]["namespace"] for b in hook_bindings) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for b in bindings:
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                "kind": "ClusterRole", "name": "chroma-operator"}
        assert b["subjects"][0]["name"] == "chroma-operator-teams"
    (container,) = the(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "--namespace=team-a" in container["args"] and "--namespace=team-b" in container["args"]
    assert "--all-namespaces" not in container["args"]
    assert the(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == (
        "chroma-operator-teams")


def test_rbac_and_service_account_can_be_left_to_the_user() -> None:
    docs = render("--set", "rbac.create=false", "--set", "serviceAccount.create=false",
                  "--set", "serviceAccount.name=existing")
    assert not find(docs, "ClusterRole") and not find(docs, "ServiceAccount")
    assert the(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing"
    proc = helm("template", "chroma", str(CHART), "--set", "serviceAccount.create=false",
                check=False)
    assert proc.returncode != 0 and "serviceAccount.name is required" in proc.stderr


# -- the operator Deployment -------------------------------------------------------------


def test_operator_deployment_runs_the_operator_as_documented(default_docs: list[Body]) -> None:
    deployment = the(default_docs, "Deployment", "chroma-operator")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "chroma-service:0.1.0"  # appVersion
    assert container["command"] == ["chroma-operator"]
    assert container["args"] == ["--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["ports"] == [{"name": "health", "containerPort": 8080, "protocol": "TCP"}]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CHROMA_OPERATOR_RESYNC_SECONDS"] == "60"
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= spec["template"]["metadata"]["labels"].items()
    service = the(default_docs, "Service", "chroma-operator")
    assert service["spec"]["selector"] == selector


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=values_id)
def test_every_pod_is_non_root_with_a_read_only_root(values: Path | None) -> None:
    docs = render(*(["-f", str(values)] if values else []))
    specs = list(pod_specs(docs))
    assert specs
    for name, pod in specs:
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 10001, name
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["limits"]["memory"], name


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=values_id)
def test_recommended_labels_on_every_object(values: Path | None) -> None:
    docs = render(*(["-f", str(values)] if values else []), release="lab")
    for doc in docs:
        labels = doc["metadata"].get("labels") or {}
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                    "app.kubernetes.io/version", "app.kubernetes.io/managed-by",
                    "app.kubernetes.io/part-of", "helm.sh/chart"):
            assert key in labels, f"{doc['kind']} {doc['metadata']['name']} lacks {key}"
        assert labels["app.kubernetes.io/instance"] == "lab"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


# -- the optional ChromaCluster, PDB, helm test, NOTES ------------------------------------


def test_cluster_from_values() -> None:
    docs = render("-f", str(CHART / "ci" / "cluster-values.yaml"))
    cluster = the(docs, "ChromaCluster", "prod")
    assert cluster["metadata"]["namespace"] == "chroma-system"
    spec = cluster["spec"]
    assert spec["image"] == "registry.example.com/ml/chroma-service:0.1.0"
    assert spec["api"]["replicas"] == 3
    assert spec["storage"]["credentialsSecret"] == {"name": "chroma-s3"}
    # uninstall must not delete it while removing the operator that holds its finalizer
    assert cluster["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    pdb = the(docs, "PodDisruptionBudget", "prod-api")
    assert pdb["spec"]["maxUnavailable"] == 1
    # The selector is the operator's own selector of the API pods.
    from chroma_operator.manifests.common import selector_labels

    assert pdb["spec"]["selector"]["matchLabels"] == selector_labels("prod", "api")
    assert not find(render(), "ChromaCluster")


def test_no_pdb_over_a_single_api_pod() -> None:
    docs = render("-f", str(CHART / "ci" / "external-qdrant-values.yaml"))
    assert not find(docs, "PodDisruptionBudget")
    assert the(docs, "ChromaCluster", "staging")["spec"]["qdrant"]["mode"] == "External"
    # Default api.replicas (2, from the CRD) gets a PDB.
    docs = render("-f", str(CHART / "ci" / "cluster-values.yaml"),
                  "--set-json", 'cluster.spec.api={"replicas": 2}')
    assert find(docs, "PodDisruptionBudget")


def test_helm_test_hook(default_docs: list[Body]) -> None:
    (pod,) = [d for d in default_docs if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    args = pod["spec"]["containers"][0]["args"]
    assert "http://chroma-operator:8080/healthz" in args
    docs = render("-f", str(CHART / "ci" / "cluster-values.yaml"))
    (pod,) = [d for d in docs if d["kind"] == "Pod"]
    assert "http://prod-api:8000/health" in pod["spec"]["containers"][0]["args"]
    docs = render("-f", str(CHART / "ci" / "external-qdrant-values.yaml"))
    assert not [d for d in docs if d["kind"] == "Pod"]


def test_notes_tell_what_to_do_next() -> None:
    out = helm("install", "chroma", str(CHART), "-n", "chroma-system", "--dry-run=client",
               "-f", str(CHART / "ci" / "cluster-values.yaml")).stdout
    notes = out.split("NOTES:", 1)[1]
    assert "deployment/chroma-operator" in notes
    assert "get chromacluster prod" in notes and "service/prod-api 8000:8000" in notes
    out = helm("install", "chroma", str(CHART), "-n", "chroma-system",
               "--dry-run=client").stdout
    assert "kind: ChromaCluster" in out.split("NOTES:", 1)[1]


def test_schema_describes_every_field() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: Any, path: str) -> Iterator[str]:
        if not isinstance(node, dict):
            return
        for key, sub in (node.get("properties") or {}).items():
            if isinstance(sub, dict) and "description" not in sub and "const" not in sub:
                yield f"{path}.{key}"
            yield from walk(sub, f"{path}.{key}")

    undocumented = [p for p in walk(schema, "") if not p.startswith(
        (".cluster.spec", ".operator.resources", ".operator.podSecurityContext.supplementalGroups",
         ".operator.securityContext", ".operator.extraEnv"))]
    assert not undocumented, undocumented
