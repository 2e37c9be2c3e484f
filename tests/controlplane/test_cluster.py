"""ChromaCluster on a real API server: children, status from child status, spec edits,
suspend/resume, drift repair, printer columns, Events."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from .envtest import (
    Api,
    ControlPlane,
    OperatorProcess,
    cluster_body,
    wait_for,
    which_kubectl,
)

pytestmark = [pytest.mark.controlplane, pytest.mark.usefixtures("operator")]

CHILDREN = [
    ("ConfigMap", "c1-config"),
    ("ServiceAccount", "c1-api"),
    ("Role", "c1-indexjob-creator"),
    ("RoleBinding", "c1-indexjob-creator"),
    ("Deployment", "c1-api"),
    ("Service", "c1-api"),
    ("Deployment", "c1-worker"),
    ("StatefulSet", "c1-qdrant"),
    ("Service", "c1-qdrant"),
]


def cluster(api: Api, ns: str, name: str = "c1") -> dict[str, Any]:
    got = api.get("ChromaCluster", ns, name)
    assert got is not None
    return got


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def wait_status(api: Api, ns: str, pred: Any, what: str, name: str = "c1") -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = cluster(api, ns, name)
        return obj if pred(obj) else None

    return wait_for(check, what=what)


def set_ready(api: Api, ns: str, kind: str, name: str, ready: int) -> None:
    api.patch(kind, ns, name, {"status": {"replicas": ready, "readyReplicas": ready}}, "status")


def all_children(api: Api, ns: str) -> dict[tuple[str, str], dict[str, Any]]:
    def check() -> dict[tuple[str, str], dict[str, Any]] | None:
        found = {(k, n): api.get(k, ns, n) for k, n in CHILDREN}
        return found if all(found.values()) else None  # type: ignore[return-value]

    return wait_for(check, what="every child of c1")


def test_children_have_spec_owner_and_labels(api: Api, namespace: str) -> None:
    created = api.create(cluster_body("c1", namespace, image="chroma-service:1.2.3"))
    children = all_children(api, namespace)
    uid = created["metadata"]["uid"]
    for (kind, name), obj in children.items():
        refs = obj["metadata"]["ownerReferences"]
        assert refs == [
            {
                "apiVersion": "chroma.dev/v1alpha1",
                "kind": "ChromaCluster",
                "name": "c1",
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ], f"{kind}/{name}"
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "chroma-operator"
        assert labels["chroma.dev/cluster"] == "c1"
        managers = {m["manager"] for m in obj["metadata"]["managedFields"]}
        assert "chroma-operator" in managers, f"{kind}/{name} not server-side applied"

    api_dep = children[("Deployment", "c1-api")]
    assert api_dep["spec"]["replicas"] == 2
    (ctr,) = api_dep["spec"]["template"]["spec"]["containers"]
    assert ctr["image"] == "chroma-service:1.2.3"
    assert ctr["args"] == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    env = {e["name"]: e for e in ctr["env"]}
    assert env["CHROMA_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "chroma-pg",
        "key": "uri",
    }
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "chroma-s3"
    worker = children[("Deployment", "c1-worker")]
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"] == ["worker"]
    cm = children[("ConfigMap", "c1-config")]["data"]
    assert cm["CHROMA_MODE"] == "cluster"
    assert cm["CHROMA_STORAGE_URL"] == "s3://chroma-test/data"
    assert cm["CHROMA_S3_ENDPOINT_URL"] == "http://minio.storage:9000"
    assert cm["CHROMA_QDRANT_URL"] == "http://c1-qdrant:6333"
    assert children[("Service", "c1-qdrant")]["spec"]["clusterIP"] == "None"
    sts = children[("StatefulSet", "c1-qdrant")]["spec"]
    assert sts["serviceName"] == "c1-qdrant"
    assert sts["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "10Gi"
    svc = children[("Service", "c1-api")]["spec"]
    assert svc["ports"][0]["port"] == 8000
    assert svc["selector"] == api_dep["spec"]["selector"]["matchLabels"]
    role = children[("Role", "c1-indexjob-creator")]
    assert role["rules"] == [
        {"apiGroups": ["chroma.dev"], "resources": ["indexjobs"], "verbs": ["create"]}
    ]

    obj = wait_status(api, namespace, lambda o: o.get("status", {}).get("phase"), "a phase")
    assert obj["status"]["phase"] == "Progressing"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["status"]["endpoints"]["api"] == f"http://c1-api.{namespace}.svc:8000"
    # Events are posted one by one after the children: wait for the one we check.
    events = wait_for(
        lambda: [e for e in api.events_for(namespace, "c1")
                 if e["reason"] == "Created" and "Deployment c1-api" in e["message"]],
        what="a Created event for Deployment c1-api on c1",
    )
    assert events


def test_api_service_account_may_only_create_indexjobs(api: Api, namespace: str) -> None:
    api.create(cluster_body("c1", namespace))
    all_children(api, namespace)
    user = f"system:serviceaccount:{namespace}:c1-api"

    def allowed(verb: str, resource: str, group: str = "chroma.dev") -> bool:
        review = api.request(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            json={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": user,
                    "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
                    "resourceAttributes": {
                        "namespace": namespace,
                        "verb": verb,
                        "group": group,
                        "resource": resource,
                    },
                },
            },
        )
        return bool(review["status"].get("allowed"))

    assert allowed("create", "indexjobs")
    assert not allowed("delete", "indexjobs")
    assert not allowed("patch", "chromaclusters")
    assert not allowed("get", "secrets", "")
    assert not allowed("create", "jobs", "batch")


def test_phase_and_conditions_follow_child_status(api: Api, namespace: str) -> None:
    api.create(cluster_body("c1", namespace))
    all_children(api, namespace)
    obj = wait_status(api, namespace, lambda o: "ApiReady" in conditions(o), "conditions")
    assert conditions(obj)["ApiReady"]["status"] == "False"
    assert conditions(obj)["Ready"]["status"] == "False"

    set_ready(api, namespace, "Deployment", "c1-api", 2)
    obj = wait_status(
        api, namespace, lambda o: conditions(o)["ApiReady"]["status"] == "True", "ApiReady"
    )
    assert obj["status"]["phase"] == "Progressing"
    assert conditions(obj)["WorkersReady"]["status"] == "False"

    set_ready(api, namespace, "Deployment", "c1-worker", 1)
    set_ready(api, namespace, "StatefulSet", "c1-qdrant", 1)
    obj = wait_status(api, namespace, lambda o: o["status"]["phase"] == "Ready", "phase Ready")
    cond = conditions(obj)
    for t in ("Ready", "ApiReady", "QueryEngineReady", "WorkersReady"):
        assert cond[t]["status"] == "True", cond[t]
        assert cond[t]["reason"] and cond[t]["message"] and cond[t]["lastTransitionTime"]
    assert cond["Progressing"]["status"] == "False"
    assert cond["Degraded"]["status"] == "False"
    assert obj["status"]["ready"] == "4/4"
    assert obj["status"]["components"]["api"] == {"desired": 2, "ready": 2}

    # A failed rollout of a child makes the cluster Degraded, with the child's reason.
    api.patch(
        "Deployment",
        namespace,
        "c1-api",
        {
            "status": {
                "readyReplicas": 1,
                "conditions": [
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": 'ReplicaSet "c1-api-1" has timed out progressing.',
                    }
                ],
            }
        },
        "status",
    )
    obj = wait_status(api, namespace, lambda o: o["status"]["phase"] == "Degraded", "Degraded")
    assert conditions(obj)["Degraded"]["status"] == "True"
    assert "ProgressDeadlineExceeded" in conditions(obj)["Degraded"]["message"]
    wait_for(
        lambda: any(
            e["reason"] == "PhaseChanged" and e["type"] == "Warning"
            for e in api.events_for(namespace, "c1")
        ),
        what="PhaseChanged Warning event",
    )


def test_printer_columns(api: Api, namespace: str, control_plane: ControlPlane) -> None:
    api.create(cluster_body("c1", namespace))
    all_children(api, namespace)
    wait_status(api, namespace, lambda o: o.get("status", {}).get("phase"), "a phase")
    table = api.table("ChromaCluster", namespace)
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns[:5] == ["Name", "Phase", "Ready", "API", "Suspended"]
    assert "Age" in columns and "Image" in columns
    (row,) = table["rows"]
    cells = dict(zip(columns, row["cells"], strict=True))
    assert cells["Name"] == "c1"
    assert cells["Phase"] == "Progressing"
    assert cells["Ready"] == "0/4"
    assert cells["Suspended"] is False

    kubectl = which_kubectl()
    if kubectl is None:
        return  # the Table API above is what kubectl renders
    out = subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            str(control_plane.admin_kubeconfig),
            "get",
            "cc",
            "-n",
            namespace,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    header, line = out.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "PHASE", "READY", "API", "SUSPENDED"]
    assert line.split()[:3] == ["c1", "Progressing", "0/4"]
    out = subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            str(control_plane.admin_kubeconfig),
            "get",
            "chroma",
            "-n",
            namespace,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "chromacluster.chroma.dev/c1" in out


def test_spec_edits_reach_children_and_generation_is_tracked(api: Api, namespace: str) -> None:
    api.create(cluster_body("c1", namespace))
    all_children(api, namespace)
    gen1 = wait_status(
        api, namespace, lambda o: o.get("status", {}).get("observedGeneration") == 1, "gen 1"
    )
    assert gen1["metadata"]["generation"] == 1

    api.patch(
        "ChromaCluster",
        namespace,
        "c1",
        {
            "spec": {
                "api": {
                    "replicas": 3,
                    "resources": {
                        "requests": {"cpu": "250m", "memory": "256Mi"},
                        "limits": {"cpu": 1},
                    },
                },
                "workers": {"replicas": 2},
                "image": "chroma-service:0.2.0",
            }
        },
    )
    wait_for(
        lambda: api.get("Deployment", namespace, "c1-api")["spec"]["replicas"] == 3,
        what="api replicas 3",
    )
    for name in ("c1-api", "c1-worker"):
        dep = api.get("Deployment", namespace, name)
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "chroma-service:0.2.0"
    assert api.get("Deployment", namespace, "c1-worker")["spec"]["replicas"] == 2
    api_ctr = api.get("Deployment", namespace, "c1-api")["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert api_ctr["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "1"},
    }
    obj = wait_status(
        api, namespace, lambda o: o["status"]["observedGeneration"] == 2, "observedGeneration 2"
    )
    assert obj["status"]["components"]["api"]["desired"] == 3

    # suspend: everything to zero, data (the StatefulSet and its PVC template) kept
    api.patch("ChromaCluster", namespace, "c1", {"spec": {"suspend": True}})
    wait_for(
        lambda: all(
            api.get(k, namespace, n)["spec"]["replicas"] == 0
            for k, n in [
                ("Deployment", "c1-api"),
                ("Deployment", "c1-worker"),
                ("StatefulSet", "c1-qdrant"),
            ]
        ),
        what="everything scaled to zero",
    )
    obj = wait_status(api, namespace, lambda o: o["status"]["phase"] == "Suspended", "Suspended")
    assert obj["status"]["observedGeneration"] == 3
    assert conditions(obj)["Ready"]["reason"] == "Suspended"
    assert api.get("StatefulSet", namespace, "c1-qdrant")["spec"]["volumeClaimTemplates"]

    # resume
    api.patch("ChromaCluster", namespace, "c1", {"spec": {"suspend": False}})
    wait_for(
        lambda: (
            api.get("Deployment", namespace, "c1-api")["spec"]["replicas"] == 3
            and api.get("StatefulSet", namespace, "c1-qdrant")["spec"]["replicas"] == 1
        ),
        what="resumed replicas",
    )
    wait_status(api, namespace, lambda o: o["status"]["phase"] == "Progressing", "Progressing")


def test_drift_is_repaired(api: Api, namespace: str) -> None:
    api.create(cluster_body("c1", namespace))
    children = all_children(api, namespace)
    wait_status(
        api, namespace, lambda o: o.get("status", {}).get("observedGeneration") == 1, "gen 1"
    )

    old_uid = children[("Service", "c1-api")]["metadata"]["uid"]
    api.delete("Service", namespace, "c1-api")
    recreated = wait_for(
        lambda: (
            (svc := api.get("Service", namespace, "c1-api"))
            and svc["metadata"]["uid"] != old_uid
            and svc
        ),
        what="deleted Service recreated",
    )
    assert recreated["metadata"]["ownerReferences"][0]["name"] == "c1"

    api.delete("Deployment", namespace, "c1-worker")
    wait_for(lambda: api.get("Deployment", namespace, "c1-worker"), what="worker recreated")

    api.patch("Deployment", namespace, "c1-api", {"spec": {"replicas": 7}})
    wait_for(
        lambda: api.get("Deployment", namespace, "c1-api")["spec"]["replicas"] == 2,
        what="hand-edited replicas restored",
    )
    try:
        wait_for(
            lambda: (
                {"Recreated", "DriftRepaired"}
                <= {e["reason"] for e in api.events_for(namespace, "c1")}
            ),
            what="Recreated and DriftRepaired events",
        )
    except AssertionError:
        for e in api.events_for(namespace, "c1"):
            print("EVENT", e["reason"], e["message"], e.get("count"))
        print("CLUSTER", cluster(api, namespace))
        raise
    api.patch("ConfigMap", namespace, "c1-config", {"data": {"CHROMA_MODE": "embedded"}})
    wait_for(
        lambda: api.get("ConfigMap", namespace, "c1-config")["data"]["CHROMA_MODE"] == "cluster",
        what="hand-edited ConfigMap restored",
    )


def test_optional_children_follow_the_spec(api: Api, namespace: str) -> None:
    api.create(
        cluster_body("c1", namespace, api={"ingress": {"enabled": True, "host": "chroma.test"}})
    )
    all_children(api, namespace)
    ing = wait_for(lambda: api.get("Ingress", namespace, "c1-api"), what="Ingress")
    assert ing["spec"]["rules"][0]["host"] == "chroma.test"

    api.patch(
        "ChromaCluster",
        namespace,
        "c1",
        {
            "spec": {
                "api": {"ingress": {"enabled": False}},
                "qdrant": {"mode": "External", "url": "http://qdrant.vectors:6333"},
            }
        },
    )
    wait_for(lambda: api.get("Ingress", namespace, "c1-api") is None, what="Ingress removed")
    wait_for(lambda: api.get("StatefulSet", namespace, "c1-qdrant") is None, what="sts removed")
    wait_for(lambda: api.get("Service", namespace, "c1-qdrant") is None, what="qdrant svc removed")
    cm = api.get("ConfigMap", namespace, "c1-config")
    assert cm["data"]["CHROMA_QDRANT_URL"] == "http://qdrant.vectors:6333"
    obj = wait_status(
        api,
        namespace,
        lambda o: conditions(o).get("QueryEngineReady", {}).get("reason") == "External",
        "QueryEngineReady External",
    )
    assert "qdrant" not in obj["status"]["components"]


def test_clean_deletion(api: Api, namespace: str, operator: OperatorProcess) -> None:
    """kopf's finalizer (it stops the resync timer) is released by the running operator,
    so deleting a ChromaCluster completes; children go with the garbage collector
    through their owner references."""
    api.create(cluster_body("c1", namespace))
    all_children(api, namespace)
    wait_for(
        lambda: (
            "chroma.dev/finalizer" in (cluster(api, namespace)["metadata"].get("finalizers") or [])
        ),
        what="kopf finalizer",
    )
    api.delete("ChromaCluster", namespace, "c1")
    wait_for(lambda: api.get("ChromaCluster", namespace, "c1") is None, what="c1 deleted")
    assert "Traceback" not in operator.log()


def test_an_apply_pinned_to_a_stale_read_is_refused_and_read_again(
    control_plane: ControlPlane, api: Api, namespace: str
) -> None:
    """What drift reporting rests on: the apply carries the resourceVersion of its read,
    so a hand edit between the two is refused (409), read again, and so reported."""
    import kubernetes

    from chroma_operator.kube import Conflict, Kube
    from chroma_operator.reconcile.cluster import _apply_observed

    kube = Kube(kubernetes.config.new_client_from_config(
        config_file=str(control_plane.admin_kubeconfig)))
    desired = {"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "pinned", "namespace": namespace}, "data": {"a": "1"}}
    read = kube.apply(desired)
    api.patch("ConfigMap", namespace, "pinned", {"data": {"a": "7"}})  # the hand edit
    stale = {**desired, "metadata": {**desired["metadata"],
                                     "resourceVersion": read["metadata"]["resourceVersion"]}}
    with pytest.raises(Conflict):
        kube.apply(stale)
    before, after = _apply_observed(kube, desired)
    assert before is not None and before["data"] == {"a": "7"}
    assert after["data"] == {"a": "1"}
