"""Unit tests of the operator's pure manifest builders (no servers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from chroma_operator import constants as c
from chroma_operator.manifests import (
    ClusterSpec,
    IndexJobSpec,
    InvalidOperationRequest,
    InvalidParams,
    OperationRequest,
    build_children,
    build_generated_secrets,
    build_job,
    build_requested_indexjob,
    params_problem,
)
from chroma_operator.manifests.indexjob import requested_indexjob_name

CRDS = Path(__file__).resolve().parents[2] / "crds"


def cluster(**spec: Any) -> dict[str, Any]:
    base = {
        "storage": {"url": "s3://b/p", "credentialsSecret": {"name": "s3"}},
        "database": {"secret": {"name": "pg", "key": "dsn"}},
    }
    base.update(spec)
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.CLUSTER_KIND,
        "metadata": {"name": "demo", "namespace": "ml", "uid": "uid-1", "generation": 1},
        "spec": base,
    }


def by_kind(objs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def test_every_child_is_owned_labelled_and_namespaced() -> None:
    wanted, _ = build_children(cluster())
    assert {(o["kind"], o["metadata"]["name"]) for o in wanted} == {
        ("ConfigMap", "demo-config"),
        ("ServiceAccount", "demo-api"),
        ("Role", "demo-indexjob-creator"),
        ("RoleBinding", "demo-indexjob-creator"),
        ("Deployment", "demo-api"),
        ("Service", "demo-api"),
        ("Deployment", "demo-worker"),
        ("Service", "demo-qdrant"),
        ("StatefulSet", "demo-qdrant"),
        ("NetworkPolicy", "demo-chroma"),
        ("NetworkPolicy", "demo-qdrant"),
    }
    for obj in wanted:
        meta = obj["metadata"]
        assert meta["namespace"] == "ml"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": c.API_VERSION,
                "kind": c.CLUSTER_KIND,
                "name": "demo",
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"][c.LABEL_MANAGED_BY] == c.MANAGED_BY
        assert meta["labels"][c.LABEL_CLUSTER] == "demo"


def test_api_deployment_runs_chroma_serve_with_secrets_by_reference() -> None:
    objs = by_kind(build_children(cluster(image="chroma-service:9.9"))[0])
    dep = objs[("Deployment", "demo-api")]
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]
    assert ctr["image"] == "chroma-service:9.9"
    assert ctr["command"] == ["chroma"]
    assert ctr["args"] == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/health"
    env = {e["name"]: e for e in ctr["env"]}
    assert env["CHROMA_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "dsn"}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "s3"
    inline = {e["name"] for e in ctr["env"] if "value" in e}
    assert inline == {"CHROMA_API_KEYS_FILE"}, "credentials must never be inlined"
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (
        dep["spec"]["selector"]["matchLabels"].items()
        <= dep["spec"]["template"]["metadata"]["labels"].items()
    )


def test_config_map_carries_cluster_mode_settings() -> None:
    data = by_kind(build_children(cluster())[0])[("ConfigMap", "demo-config")]["data"]
    assert data["CHROMA_MODE"] == "cluster"
    assert data["CHROMA_INDEX_BACKEND"] == "remote"
    assert data["CHROMA_STORAGE_URL"] == "s3://b/p"
    assert data["CHROMA_QDRANT_URL"] == "http://demo-qdrant:6333"
    assert "CHROMA_S3_ENDPOINT_URL" not in data


def test_suspend_scales_everything_to_zero_and_keeps_pvcs() -> None:
    objs = by_kind(build_children(cluster(suspend=True))[0])
    assert objs[("Deployment", "demo-api")]["spec"]["replicas"] == 0
    assert objs[("Deployment", "demo-worker")]["spec"]["replicas"] == 0
    sts = objs[("StatefulSet", "demo-qdrant")]["spec"]
    assert sts["replicas"] == 0
    assert sts["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"


def test_external_qdrant_and_ingress_toggle_children() -> None:
    wanted, unwanted = build_children(
        cluster(
            qdrant={"mode": "External", "url": "http://q.db:6333"},
            api={"ingress": {"enabled": True, "host": "chroma.example"}},
        )
    )
    objs = by_kind(wanted)
    assert ("StatefulSet", "demo-qdrant") not in objs
    assert ("apps/v1", "StatefulSet", "demo-qdrant") in unwanted
    assert objs[("ConfigMap", "demo-config")]["data"]["CHROMA_QDRANT_URL"] == "http://q.db:6333"
    rule = objs[("Ingress", "demo-api")]["spec"]["rules"][0]
    assert rule["host"] == "chroma.example"
    assert ("networking.k8s.io/v1", "Ingress", "demo-api") not in unwanted


def test_config_change_changes_pod_template_hash() -> None:
    a = by_kind(build_children(cluster())[0])[("Deployment", "demo-api")]
    b = by_kind(
        build_children(
            cluster(storage={"url": "s3://other/p", "credentialsSecret": {"name": "s3"}})
        )[0]
    )[("Deployment", "demo-api")]
    key = c.ANNOTATION_CONFIG_HASH
    assert (
        a["spec"]["template"]["metadata"]["annotations"][key]
        != b["spec"]["template"]["metadata"]["annotations"][key]
    )


def test_api_role_may_create_indexjobs_and_nothing_more() -> None:
    role = by_kind(build_children(cluster())[0])[("Role", "demo-indexjob-creator")]
    assert role["rules"] == [
        {"apiGroups": [c.GROUP], "resources": ["indexjobs"], "verbs": ["create"]}
    ]


def test_operation_annotation_parsing() -> None:
    req = OperationRequest.parse("reindex/abc123")
    assert (req.operation, req.embedding_set, req.request_id) == ("reindex", "abc123", "")
    assert OperationRequest.parse("compact/abc/2").request_id == "2"
    for bad in ("explode/abc", "reindex", "reindex//x", ""):
        with pytest.raises(InvalidOperationRequest):
            OperationRequest.parse(bad)


def test_requested_indexjob_name_is_deterministic_and_valid() -> None:
    body = cluster()
    req = OperationRequest.parse("reindex/" + "f" * 40)
    name = requested_indexjob_name(body, req)
    assert name == requested_indexjob_name(body, OperationRequest.parse("reindex/" + "f" * 40))
    assert name != requested_indexjob_name(
        body, OperationRequest.parse("reindex/" + "f" * 40 + "/2")
    )
    assert len(name) <= 63 and name.startswith("demo-reindex-")
    ij = build_requested_indexjob(body, req)
    assert ij["spec"] == {"cluster": "demo", "operation": "reindex", "embeddingSet": "f" * 40}
    assert ij["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_job_runs_the_operation_with_cluster_image_and_config() -> None:
    ij = {
        "apiVersion": c.API_VERSION,
        "kind": c.INDEXJOB_KIND,
        "metadata": {"name": "ij1", "namespace": "ml", "uid": "ij-uid"},
        "spec": {
            "cluster": "demo",
            "operation": "fit-mhb",
            "embeddingSet": "k" * 40,
            "backoffLimit": 1,
            "ttlSecondsAfterFinished": 60,
        },
    }
    job = build_job(ij, cluster(image="chroma-service:2.0"))
    assert job["metadata"]["name"] == "ij1"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "ij-uid"
    assert job["spec"]["backoffLimit"] == 1
    assert job["spec"]["ttlSecondsAfterFinished"] == 60
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (ctr,) = pod["containers"]
    assert ctr["image"] == "chroma-service:2.0"
    assert ctr["args"] == ["op", "run", "fit-mhb", "--embedding-set", "k" * 40, "--local"]
    assert ctr["envFrom"] == [{"configMapRef": {"name": "demo-config"}}]
    # Only what the operation uses: catalog, S3 and Qdrant keys; no API keys, no token.
    assert {e["name"] for e in ctr["env"]} == {
        "CHROMA_DATABASE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
        "CHROMA_QDRANT_API_KEY",
    }
    assert [m["mountPath"] for m in ctr["volumeMounts"]] == ["/tmp"]
    assert all("secret" not in v for v in pod["volumes"])
    assert pod["automountServiceAccountToken"] is False


def indexjob(**spec: Any) -> dict[str, Any]:
    base = {"cluster": "demo", "operation": "compact", "embeddingSet": "k" * 40}
    base.update(spec)
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.INDEXJOB_KIND,
        "metadata": {"name": "ij1", "namespace": "ml", "uid": "ij-uid"},
        "spec": base,
    }


def test_job_passes_params_sorted_before_local() -> None:
    params = {"small_file_rows": 5000, "grace_s": 0.5, "dry_run": False, "note": "nightly"}
    (ctr,) = build_job(indexjob(params=params), cluster())["spec"]["template"]["spec"][
        "containers"
    ]
    assert ctr["args"] == [
        "op", "run", "compact", "--embedding-set", "k" * 40,
        "--param", "dry_run=false",
        "--param", "grace_s=0.5",
        "--param", "note=nightly",
        "--param", "small_file_rows=5000",
        "--local",
    ]  # fmt: skip
    assert IndexJobSpec.from_dict(indexjob(params=params)["spec"]).params == params
    assert IndexJobSpec.from_dict(indexjob()["spec"]).params == {}


def test_params_keys_the_cli_cannot_split_are_refused() -> None:
    assert params_problem({"grace_s": 1, "Mixed.Key-2": "x", "_x": 1, "k" * 63: 1}) is None
    for bad in ("a=b", "", "1st", "-flag", ".hidden", "sp ace", "k" * 64, "ключ", "ok\n"):
        problem = params_problem({"ok": 1, bad: 1})
        assert problem is not None and repr(bad) in problem and "'ok'" not in problem
        with pytest.raises(InvalidParams):
            build_job(indexjob(params={bad: 1}), cluster())


def test_params_limits_agree_with_the_crd() -> None:
    crd = yaml.safe_load((CRDS / "chroma.dev_indexjobs.yaml").read_text())
    version = crd["spec"]["versions"][0]
    params = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["params"]
    assert params["maxProperties"] == c.MAX_PARAMS
    values = params["additionalProperties"]
    assert values["maxLength"] == c.MAX_PARAM_STRING
    assert values["x-kubernetes-preserve-unknown-fields"] is True
    # Objects and lists can satisfy neither pair: only scalars are accepted.
    assert values["minProperties"] > values["maxProperties"]
    assert values["minItems"] > values["maxItems"]
    columns = {col["name"]: col for col in version["additionalPrinterColumns"]}
    assert columns["Params"]["jsonPath"] == ".spec.params"
    assert columns["Params"]["priority"] == 1


def _crd_defaults(schema: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}.{key}" if prefix else key
        if "default" in sub and sub["default"] != {}:
            out[path] = sub["default"]
        out.update(_crd_defaults(sub, path))
    return out


def test_builder_defaults_agree_with_crd_defaults() -> None:
    crd = yaml.safe_load((CRDS / "chroma.dev_chromaclusters.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    defaults = _crd_defaults(schema)
    spec = ClusterSpec.from_dict({})
    mapping = {
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "suspend": spec.suspend,
        "api.replicas": spec.api.replicas,
        "api.serviceType": spec.api.service_type,
        "api.ingress.enabled": spec.api.ingress.enabled,
        "api.ingress.path": spec.api.ingress.path,
        "workers.replicas": spec.workers.replicas,
        "qdrant.mode": spec.qdrant.mode,
        "qdrant.image": spec.qdrant.image,
        "qdrant.replicas": spec.qdrant.replicas,
        "qdrant.storage.size": spec.qdrant.storage_size,
        "storage.credentialsSecret.accessKeyIdKey": spec.storage.access_key_id_key,
        "storage.credentialsSecret.secretAccessKeyKey": spec.storage.secret_access_key_key,
        "database.secret.key": spec.database.key,
        "qdrant.apiKeySecret.key": spec.qdrant.api_key_key,
        "auth.enabled": spec.auth.enabled,
        "networkPolicy.enabled": spec.network_policy.enabled,
        "networkPolicy.egress.restrict": spec.network_policy.egress.restrict,
    }
    assert defaults == mapping


# -- Security (DESIGN §11): keys, Qdrant key, NetworkPolicies ------------------------------


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def test_api_pods_mount_the_generated_keys_read_only() -> None:
    objs = by_kind(build_children(cluster())[0])
    pod = objs[("Deployment", "demo-api")]["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]
    assert env_of(ctr)["CHROMA_API_KEYS_FILE"]["value"] == "/etc/chroma/api-keys/keys"
    assert "CHROMA_INSECURE" not in env_of(ctr)
    (mount,) = [m for m in ctr["volumeMounts"] if m["name"] == "api-keys"]
    assert mount == {"name": "api-keys", "mountPath": "/etc/chroma/api-keys", "readOnly": True}
    assert "subPath" not in mount  # a subPath mount would never see an edited key file
    (vol,) = [v for v in pod["volumes"] if v["name"] == "api-keys"]
    assert vol["secret"]["secretName"] == "demo-api-keys"
    assert vol["secret"]["items"] == [{"key": "keys", "path": "keys"}]
    worker = objs[("Deployment", "demo-worker")]["spec"]["template"]["spec"]
    assert "CHROMA_API_KEYS_FILE" not in env_of(worker["containers"][0])
    assert all("secret" not in v for v in worker["volumes"])


def test_named_keys_secret_and_auth_off() -> None:
    named = by_kind(build_children(cluster(auth={"secretName": "mine"}))[0])
    pod = named[("Deployment", "demo-api")]["spec"]["template"]["spec"]
    (vol,) = [v for v in pod["volumes"] if v["name"] == "api-keys"]
    assert vol["secret"]["secretName"] == "mine"
    off = by_kind(build_children(cluster(auth={"enabled": False}))[0])
    (ctr,) = off[("Deployment", "demo-api")]["spec"]["template"]["spec"]["containers"]
    assert env_of(ctr)["CHROMA_INSECURE"]["value"] == "true"
    assert "CHROMA_API_KEYS_FILE" not in env_of(ctr)
    assert [m["name"] for m in ctr["volumeMounts"]] == ["tmp"]


def test_generated_secrets_hold_one_admin_key_and_the_qdrant_key() -> None:
    keys = iter(["k" * 43, "q" * 43])
    secrets = {s["metadata"]["name"]: s for s in build_generated_secrets(cluster(), keys.__next__)}
    assert set(secrets) == {"demo-api-keys", "demo-qdrant-api-key"}
    api_keys = secrets["demo-api-keys"]
    assert api_keys["stringData"] == {"keys": "admin " + "k" * 43 + "\n", "api-key": "k" * 43}
    assert api_keys["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert secrets["demo-qdrant-api-key"]["stringData"] == {"api-key": "q" * 43}
    # A named Secret, auth off, or an External Qdrant without a key: nothing generated.
    assert build_generated_secrets(
        cluster(auth={"secretName": "mine"}, qdrant={"apiKeySecret": {"name": "qk"}}), str
    ) == []
    assert build_generated_secrets(
        cluster(auth={"enabled": False}, qdrant={"mode": "External", "url": "http://q:6333"}),
        str,
    ) == []


def test_generated_key_is_long_enough_and_random() -> None:
    from chroma_operator.reconcile.cluster import new_key

    a, b = new_key(), new_key()
    assert len(a) >= 32 and a != b


def test_qdrant_key_reaches_qdrant_and_every_chroma_pod() -> None:
    objs = by_kind(build_children(cluster())[0])
    ref = {"secretKeyRef": {"name": "demo-qdrant-api-key", "key": "api-key"}}
    (qdrant,) = objs[("StatefulSet", "demo-qdrant")]["spec"]["template"]["spec"]["containers"]
    assert env_of(qdrant)["QDRANT__SERVICE__API_KEY"]["valueFrom"] == ref
    for name in ("demo-api", "demo-worker"):
        (ctr,) = objs[("Deployment", name)]["spec"]["template"]["spec"]["containers"]
        assert env_of(ctr)["CHROMA_QDRANT_API_KEY"]["valueFrom"] == ref
    external = by_kind(build_children(cluster(qdrant={
        "mode": "External", "url": "http://q:6333", "apiKeySecret": {"name": "qk", "key": "k"},
    }))[0])
    (ctr,) = external[("Deployment", "demo-api")]["spec"]["template"]["spec"]["containers"]
    assert env_of(ctr)["CHROMA_QDRANT_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "qk", "key": "k"}}
    keyless = by_kind(build_children(cluster(qdrant={"mode": "External", "url": "http://q"}))[0])
    (ctr,) = keyless[("Deployment", "demo-api")]["spec"]["template"]["spec"]["containers"]
    assert "CHROMA_QDRANT_API_KEY" not in env_of(ctr)


def test_network_policies_default_to_the_namespace_and_chroma_pods() -> None:
    wanted, unwanted = build_children(cluster(), operator_namespace="chroma-system")
    objs = by_kind(wanted)
    chroma = objs[("NetworkPolicy", "demo-chroma")]["spec"]
    assert chroma["policyTypes"] == ["Ingress"]  # egress open by default
    (rule,) = chroma["ingress"]
    assert rule["ports"] == [{"port": 8000, "protocol": "TCP"}]
    assert rule["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "chroma-system"}}},
    ]
    qdrant = objs[("NetworkPolicy", "demo-qdrant")]["spec"]
    assert qdrant["podSelector"]["matchLabels"][c.LABEL_COMPONENT] == "qdrant"
    (rule,) = qdrant["ingress"]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"] == {c.LABEL_NAME: "chroma", c.LABEL_INSTANCE: "demo"}
    assert peer["podSelector"]["matchExpressions"][0]["values"] == ["api", "worker", "operation"]
    assert {p["port"] for p in rule["ports"]} == {6333, 6334}
    # Chroma pods of the cluster carry the labels the policies select on.
    for kind, name in (("Deployment", "demo-api"), ("Deployment", "demo-worker")):
        labels = objs[(kind, name)]["spec"]["template"]["metadata"]["labels"]
        assert peer["podSelector"]["matchLabels"].items() <= labels.items()
    assert not [u for u in unwanted if u[1] == "NetworkPolicy"]


def test_network_policy_options() -> None:
    peers = [{"namespaceSelector": {"matchLabels": {"team": "ml"}}}]
    wanted, _ = build_children(cluster(networkPolicy={
        "apiFrom": peers,
        "ingressControllerNamespace": "ingress-nginx",
        "egress": {"restrict": True, "allow": [{"ports": [{"port": 5432}]}]},
    }))
    objs = by_kind(wanted)
    chroma = objs[("NetworkPolicy", "demo-chroma")]["spec"]
    assert chroma["ingress"][0]["from"] == [
        *peers,
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
    ]
    assert chroma["policyTypes"] == ["Ingress", "Egress"]
    egress_ports = [p["port"] for r in chroma["egress"] for p in r["ports"]]
    assert egress_ports == [53, 53, 5432, 6333, 6334]
    assert objs[("NetworkPolicy", "demo-qdrant")]["spec"]["egress"][0]["ports"][0]["port"] == 53
    wanted, unwanted = build_children(cluster(networkPolicy={"enabled": False}))
    assert not [o for o in wanted if o["kind"] == "NetworkPolicy"]
    assert ("networking.k8s.io/v1", "NetworkPolicy", "demo-chroma") in unwanted
    assert ("networking.k8s.io/v1", "NetworkPolicy", "demo-qdrant") in unwanted


def test_operator_key_is_derived_per_cluster_and_listed_after_the_users() -> None:
    from chroma_operator.manifests import operator_api_key

    body = cluster()
    key = operator_api_key("seed-1", body)
    assert len(key) >= 32 and key == operator_api_key("seed-1", body)
    other_uid = {**body, "metadata": {**body["metadata"], "uid": "uid-2"}}
    assert key != operator_api_key("seed-2", body)
    assert key != operator_api_key("seed-1", other_uid)  # a recreated cluster: a new key
    (api_keys, _) = build_generated_secrets(body, lambda: "u" * 43, operator_key=key)
    lines = api_keys["stringData"]["keys"].splitlines()
    assert lines[0] == "admin " + "u" * 43  # the user's key first; `api-key` is it alone
    assert lines[1].startswith("# ") and lines[2] == f"admin {key}"
    assert api_keys["stringData"]["api-key"] == "u" * 43
