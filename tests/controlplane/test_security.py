"""Security of what the operator and the chart create, asked of a real API server
(DESIGN §11): PodSecurity admission at ``restricted`` finds nothing in any pod template
of the operator's builders or of the chart; the generated API keys Secret exists, is
mounted by the API pods, reported in status and never overwritten; the NetworkPolicies
are accepted. (The same rules as a pure check: tests/unit/test_pod_security.py.)"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chroma_operator.manifests import build_children, build_generated_secrets, build_job
from tests.unit.test_chart import CI_VALUES, render, values_id

from .envtest import Api, ApiError, OperatorProcess, cluster_body, indexjob_body, wait_for
from .fakes import FakeChromaApi

pytestmark = pytest.mark.controlplane

Body = dict[str, Any]
RESTRICTED = {
    # enforce applies to Pods; warn is what reports on Deployment/StatefulSet/Job templates.
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}


@pytest.fixture()
def restricted(api: Api, namespace: str) -> str:
    """The test namespace, labelled for Pod Security ``restricted``, with the ``default``
    ServiceAccount (kube-controller-manager does not run here)."""
    api.patch("Namespace", None, namespace, {"metadata": {"labels": RESTRICTED}})
    api.create({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": namespace}})
    return namespace


def pod_security_warnings(api: Api, objs: list[Body]) -> dict[str, list[str]]:
    """kind/name -> PodSecurity warnings from a dry-run apply of each object."""
    found = {}
    for obj in objs:
        warnings = api.dry_run_apply(obj)
        if warnings:
            found[f"{obj['kind']}/{obj['metadata']['name']}"] = warnings
    return found


def test_the_api_server_warns_about_a_root_pod_template(api: Api, restricted: str) -> None:
    """The control: the API server does check templates (else no warning proves nothing)."""
    bad = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "root", "namespace": restricted},
        "spec": {
            "selector": {"matchLabels": {"app": "root"}},
            "template": {"metadata": {"labels": {"app": "root"}},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        },
    }
    (warning,) = api.dry_run_apply(bad)
    assert "violate PodSecurity" in warning and "restricted" in warning, warning


SPECS: dict[str, Body] = {
    "defaults": {},
    "auth-off-external-qdrant": {
        "auth": {"enabled": False},
        "qdrant": {"mode": "External", "url": "http://q:6333", "apiKeySecret": {"name": "q"}},
    },
    "ingress-restricted-egress": {
        "api": {"ingress": {"enabled": True, "host": "chroma.example", "tlsSecretName": "tls"}},
        "networkPolicy": {
            "ingressControllerNamespace": "ingress-nginx",
            "apiFrom": [{"namespaceSelector": {"matchLabels": {"team": "ml"}}}],
            "egress": {"restrict": True, "allow": [
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 5432}]},
            ]},
        },
    },
}


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_operator_children_pass_restricted_and_are_accepted(
    api: Api, restricted: str, spec: Body
) -> None:
    body = cluster_body("c1", restricted, **spec)
    created = api.create(body)  # real uid and defaults, as the operator sees it
    ij = api.create(indexjob_body("ij1", restricted, "c1"))
    children, _ = build_children(created, operator_namespace="chroma-system")
    objs = [*build_generated_secrets(created, lambda: "k" * 43), *children, build_job(ij, created)]
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "Job", "NetworkPolicy"} <= kinds
    assert pod_security_warnings(api, objs) == {}


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=values_id)
def test_chart_pods_pass_restricted(api: Api, restricted: str, values: Path | None) -> None:
    docs = render(*(["-f", str(values)] if values else []), namespace=restricted)
    namespaced = [d for d in docs if d["metadata"].get("namespace") == restricted]
    assert any(d["kind"] == "Deployment" for d in namespaced)
    try:
        assert pod_security_warnings(api, namespaced) == {}
    except ApiError as exc:  # a Pod (helm test hook) breaking `enforce` is refused
        pytest.fail(f"refused: {exc}")


def test_generated_keys_secret_is_mounted_reported_and_kept(
    api: Api, restricted: str, operator_factory: Callable[..., OperatorProcess]
) -> None:
    operator_factory()
    ns = restricted
    created = api.create(cluster_body("c1", ns))
    secret = wait_for(lambda: api.get("Secret", ns, "c1-api-keys"), what="Secret c1-api-keys")
    # What the e2e tier does: kubectl get secret c1-api-keys -o jsonpath='{.data.keys}'
    scope, key = base64.b64decode(secret["data"]["keys"]).decode().split()
    assert scope == "admin" and len(key) >= 32
    assert base64.b64decode(secret["data"]["api-key"]).decode() == key
    assert secret["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    qdrant_key = wait_for(lambda: api.get("Secret", ns, "c1-qdrant-api-key"), what="Qdrant key")
    assert len(base64.b64decode(qdrant_key["data"]["api-key"])) >= 32

    dep = wait_for(lambda: api.get("Deployment", ns, "c1-api"), what="Deployment c1-api")
    pod = dep["spec"]["template"]["spec"]
    (vol,) = [v for v in pod["volumes"] if v.get("secret")]
    assert vol["secret"]["secretName"] == "c1-api-keys"
    (ctr,) = pod["containers"]
    env = {e["name"]: e for e in ctr["env"]}
    assert env["CHROMA_API_KEYS_FILE"]["value"] == "/etc/chroma/api-keys/keys"
    assert env["CHROMA_QDRANT_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "c1-qdrant-api-key"
    assert {"name": vol["name"], "mountPath": "/etc/chroma/api-keys", "readOnly": True} in ctr[
        "volumeMounts"]
    sts = wait_for(lambda: api.get("StatefulSet", ns, "c1-qdrant"), what="StatefulSet")
    (qdrant,) = sts["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e for e in qdrant["env"]}["QDRANT__SERVICE__API_KEY"]["valueFrom"][
        "secretKeyRef"] == {"name": "c1-qdrant-api-key", "key": "api-key"}
    for name in ("c1-chroma", "c1-qdrant"):
        wait_for(lambda n=name: api.get("NetworkPolicy", ns, n), what=f"NetworkPolicy {name}")
    wait_for(
        lambda: ((api.get("ChromaCluster", ns, "c1") or {}).get("status") or {}).get("auth"),
        what="status.auth",
    )
    assert api.get("ChromaCluster", ns, "c1")["status"]["auth"] == {  # type: ignore[index]
        "enabled": True, "secretName": "c1-api-keys", "qdrantApiKeySecret": "c1-qdrant-api-key"}

    # Rotated by hand, then a spec change reconciles: the edit stays.
    rotated = "admin " + "r" * 40 + "\n"
    api.patch("Secret", ns, "c1-api-keys", {"stringData": {"keys": rotated}})
    api.patch("ChromaCluster", ns, "c1", {"spec": {"api": {"replicas": 3}}})
    wait_for(
        lambda: (api.get("Deployment", ns, "c1-api") or {}).get("spec", {}).get("replicas") == 3,
        what="replicas 3 applied",
    )
    kept = api.get("Secret", ns, "c1-api-keys")
    assert base64.b64decode(kept["data"]["keys"]).decode() == rotated  # type: ignore[index]

    # Deleted by hand: it comes back (with a new key) on the next reconcile.
    api.delete("Secret", ns, "c1-api-keys")
    again = wait_for(lambda: api.get("Secret", ns, "c1-api-keys"), what="Secret recreated")
    assert base64.b64decode(again["data"]["keys"]).decode() != rotated


def test_auth_off_means_insecure_and_no_generated_keys(
    api: Api, namespace: str, operator: OperatorProcess
) -> None:
    api.create(cluster_body("c1", namespace, auth={"enabled": False}))
    dep = wait_for(lambda: api.get("Deployment", namespace, "c1-api"), what="Deployment c1-api")
    (ctr,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in ctr["env"]}
    assert env["CHROMA_INSECURE"] == {"name": "CHROMA_INSECURE", "value": "true"}
    assert "CHROMA_API_KEYS_FILE" not in env
    wait_for(lambda: api.get("Secret", namespace, "c1-qdrant-api-key"), what="Qdrant key")
    assert api.get("Secret", namespace, "c1-api-keys") is None


def admin_keys(api: Api, ns: str, secret: str) -> set[str]:
    found = wait_for(lambda: api.get("Secret", ns, secret), what=f"Secret {secret}")
    lines = base64.b64decode(found["data"]["keys"]).decode().splitlines()
    return {line.split()[1] for line in lines if line.startswith("admin ")}


@pytest.mark.parametrize("seed", ["s" * 48, None], ids=["seed", "no-seed"])
def test_operator_registers_datasets_with_a_key_from_the_generated_secret(
    api: Api, namespace: str, operator_factory: Callable[..., OperatorProcess],
    seed: str | None,
) -> None:
    """The API checks keys: the operator's calls carry a key that the keys Secret it
    generated lists (without a seed it has none, and the Dataset says 401)."""
    fake = FakeChromaApi()
    try:
        env = {"CHROMA_OPERATOR_API_URL": fake.url}
        if seed:
            env["CHROMA_OPERATOR_API_KEY_SEED"] = seed
        operator_factory(env=env)
        api.create(cluster_body("c1", namespace))
        fake.keys = admin_keys(api, namespace, "c1-api-keys")
        assert len(fake.keys) == (2 if seed else 1)
        api.create({
            "apiVersion": "chroma.dev/v1alpha1", "kind": "Dataset",
            "metadata": {"name": "train", "namespace": namespace},
            "spec": {"cluster": "c1", "split": "training"},
        })

        def status() -> dict[str, Any]:
            return (api.get("Dataset", namespace, "train") or {}).get("status") or {}

        if seed:
            wait_for(lambda: status().get("registered"), what="Dataset registered")
            assert fake.puts and fake.puts[0][0] == "train"
        else:
            wait_for(lambda: "401" in (status().get("message") or ""), what="a 401 reported")
            assert fake.puts == []
    finally:
        fake.close()
