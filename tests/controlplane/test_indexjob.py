"""IndexJob on a real API server: one Job per IndexJob (direct or annotation-requested),
status mirrors the Job, at most one active per (cluster, kind, embedding set), a
restarted operator creates no duplicates, and ``spec.params`` reach the Job's args (the
server refusing values that are not scalars, the operator refusing keys it cannot pass)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from . import failpoints
from .envtest import Api, ApiError, OperatorProcess, cluster_body, indexjob_body, wait_for

pytestmark = pytest.mark.controlplane

KEY = "3f" * 20
NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:05:00Z"


def jobs(api: Api, ns: str) -> list[dict[str, Any]]:
    return api.list("Job", ns)


def indexjob(api: Api, ns: str, name: str) -> dict[str, Any]:
    got = api.get("IndexJob", ns, name)
    assert got is not None
    return got


def wait_phase(api: Api, ns: str, name: str, phase: str) -> dict[str, Any]:
    return wait_for(
        lambda: (ij := indexjob(api, ns, name)).get("status", {}).get("phase") == phase and ij,
        what=f"IndexJob {name} phase {phase}",
    )


def make_cluster(api: Api, ns: str, **spec: Any) -> None:
    api.create(cluster_body("c1", ns, image="chroma-service:7.0", **spec))


def start_job(api: Api, ns: str, name: str) -> None:
    api.patch("Job", ns, name, {"status": {"startTime": NOW, "active": 1}}, "status")


def succeed_job(api: Api, ns: str, name: str) -> None:
    api.patch(
        "Job",
        ns,
        name,
        {
            "status": {
                "startTime": NOW,
                "active": 0,
                "succeeded": 1,
                "ready": 0,
                "completionTime": LATER,
                "conditions": [
                    {
                        "type": "SuccessCriteriaMet",
                        "status": "True",
                        "reason": "CompletionsReached",
                        "message": "Reached expected number of succeeded pods",
                        "lastProbeTime": LATER,
                        "lastTransitionTime": LATER,
                    },
                    {
                        "type": "Complete",
                        "status": "True",
                        "reason": "CompletionsReached",
                        "message": "Reached expected number of succeeded pods",
                        "lastProbeTime": LATER,
                        "lastTransitionTime": LATER,
                    },
                ],
            }
        },
        "status",
    )


def fail_job(api: Api, ns: str, name: str, failed: int) -> None:
    api.patch(
        "Job",
        ns,
        name,
        {
            "status": {
                "startTime": NOW,
                "active": 0,
                "failed": failed,
                "ready": 0,
                "conditions": [
                    {
                        "type": "FailureTarget",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                        "lastProbeTime": LATER,
                        "lastTransitionTime": LATER,
                    },
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                        "lastProbeTime": LATER,
                        "lastTransitionTime": LATER,
                    },
                ],
            }
        },
        "status",
    )


def test_direct_indexjob_makes_one_job_and_mirrors_success(
    api: Api, namespace: str, operator: OperatorProcess
) -> None:
    make_cluster(api, namespace)
    created = api.create(
        indexjob_body(
            "ij1",
            namespace,
            "c1",
            operation="reindex",
            embeddingSet=KEY,
            backoffLimit=2,
            ttlSecondsAfterFinished=600,
        )
    )
    job = wait_for(lambda: api.get("Job", namespace, "ij1"), what="Job ij1")
    assert [j["metadata"]["name"] for j in jobs(api, namespace)] == ["ij1"]
    assert job["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    assert job["metadata"]["ownerReferences"][0]["kind"] == "IndexJob"
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["ttlSecondsAfterFinished"] == 600
    (ctr,) = job["spec"]["template"]["spec"]["containers"]
    assert ctr["image"] == "chroma-service:7.0"
    assert ctr["args"] == ["op", "run", "reindex", "--embedding-set", KEY, "--local"]
    assert ctr["envFrom"] == [{"configMapRef": {"name": "c1-config"}}]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"

    ij = wait_phase(api, namespace, "ij1", "Pending")
    assert ij["status"]["jobName"] == "ij1"
    assert ij["status"]["image"] == "chroma-service:7.0"

    start_job(api, namespace, "ij1")
    ij = wait_phase(api, namespace, "ij1", "Running")
    assert ij["status"]["startTime"] == NOW
    assert ij["status"]["attempts"] == 1

    succeed_job(api, namespace, "ij1")
    ij = wait_phase(api, namespace, "ij1", "Succeeded")
    assert ij["status"]["completionTime"] == LATER
    conds = {c["type"]: c["status"] for c in ij["status"]["conditions"]}
    assert conds == {"Finished": "True", "Succeeded": "True"}
    wait_for(
        lambda: (
            {"JobCreated", "Running", "Succeeded"}
            <= {e["reason"] for e in api.events_for(namespace, "ij1")}
        ),
        what="JobCreated, Running and Succeeded events",
    )
    assert len(jobs(api, namespace)) == 1


def test_job_failure_is_mirrored(api: Api, namespace: str, operator: OperatorProcess) -> None:
    make_cluster(api, namespace)
    api.create(indexjob_body("ij-fail", namespace, "c1", embeddingSet=KEY, backoffLimit=1))
    wait_for(lambda: api.get("Job", namespace, "ij-fail"), what="Job")
    start_job(api, namespace, "ij-fail")
    wait_phase(api, namespace, "ij-fail", "Running")
    fail_job(api, namespace, "ij-fail", failed=2)
    ij = wait_phase(api, namespace, "ij-fail", "Failed")
    assert ij["status"]["phaseReason"] == "BackoffLimitExceeded"
    assert "backoff limit" in ij["status"]["message"]
    assert ij["status"]["attempts"] == 2
    wait_for(
        lambda: any(
            e["reason"] == "Failed" and e["type"] == "Warning"
            for e in api.events_for(namespace, "ij-fail")
        ),
        what="Failed Warning event",
    )


def test_annotation_requests_exactly_one_indexjob(
    api: Api, namespace: str, operator: OperatorProcess
) -> None:
    make_cluster(api, namespace)
    wait_for(lambda: api.get("Deployment", namespace, "c1-api"), what="cluster reconciled")
    api.patch(
        "ChromaCluster",
        namespace,
        "c1",
        {"metadata": {"annotations": {"chroma.dev/operation": f"reindex/{KEY}"}}},
    )
    (ij,) = wait_for(lambda: api.list("IndexJob", namespace), what="an IndexJob")
    assert ij["spec"] == {
        "cluster": "c1",
        "operation": "reindex",
        "embeddingSet": KEY,
        "backoffLimit": 3,
        "ttlSecondsAfterFinished": 86400,
    }
    assert ij["metadata"]["ownerReferences"][0]["name"] == "c1"
    name = ij["metadata"]["name"]
    wait_for(lambda: api.get("Job", namespace, name), what="its Job")
    cluster = wait_for(
        lambda: (
            (c := api.get("ChromaCluster", namespace, "c1"))
            and "chroma.dev/operation" not in (c["metadata"].get("annotations") or {})
            and c
        ),
        what="annotation removed",
    )
    assert cluster["status"]["lastOperation"]["indexJob"] == name
    assert cluster["status"]["lastOperation"]["request"] == f"reindex/{KEY}"
    wait_for(
        lambda: any(e["reason"] == "OperationRequested" for e in api.events_for(namespace, "c1")),
        what="OperationRequested event",
    )
    assert len(api.list("IndexJob", namespace)) == 1
    assert len(jobs(api, namespace)) == 1


def test_invalid_annotation_is_reported_not_run(
    api: Api, namespace: str, operator: OperatorProcess
) -> None:
    make_cluster(api, namespace)
    api.patch(
        "ChromaCluster",
        namespace,
        "c1",
        {"metadata": {"annotations": {"chroma.dev/operation": "explode/abc"}}},
    )
    cluster = wait_for(
        lambda: (
            (c := api.get("ChromaCluster", namespace, "c1"))
            and (c.get("status") or {}).get("lastOperation")
            and c
        ),
        what="lastOperation",
    )
    assert "unknown operation 'explode'" in cluster["status"]["lastOperation"]["error"]
    wait_for(
        lambda: any(
            e["reason"] == "InvalidOperation" and e["type"] == "Warning"
            for e in api.events_for(namespace, "c1")
        ),
        what="InvalidOperation Warning event",
    )
    assert api.list("IndexJob", namespace) == []


def test_at_most_one_active_job_per_kind_and_embedding_set(
    api: Api, namespace: str, operator: OperatorProcess
) -> None:
    make_cluster(api, namespace)
    api.create(indexjob_body("first", namespace, "c1", embeddingSet=KEY))
    wait_for(lambda: api.get("Job", namespace, "first"), what="first Job")
    api.create(indexjob_body("second", namespace, "c1", embeddingSet=KEY))
    api.create(indexjob_body("other-set", namespace, "c1", embeddingSet="b" * 40))
    wait_for(lambda: api.get("Job", namespace, "other-set"), what="Job of another set")
    second = wait_for(
        lambda: (
            (ij := indexjob(api, namespace, "second")).get("status", {}).get("phaseReason")
            == "WaitingForActiveJob"
            and ij
        ),
        what="second waits",
    )
    assert "first" in second["status"]["message"]
    assert api.get("Job", namespace, "second") is None

    succeed_job(api, namespace, "first")
    wait_for(lambda: api.get("Job", namespace, "second"), timeout=40, what="second Job after first")
    assert sorted(j["metadata"]["name"] for j in jobs(api, namespace)) == [
        "first",
        "other-set",
        "second",
    ]


def test_restart_mid_flight_creates_no_duplicates(
    api: Api, namespace: str, operator_factory: Callable[..., OperatorProcess]
) -> None:
    make_cluster(api, namespace)
    api.create(indexjob_body("ij-crash", namespace, "c1", embeddingSet=KEY))
    # This operator dies right after creating the Job, before recording anything.
    crashing = operator_factory(failpoint="after-job-create")
    assert crashing.wait_exit(timeout=60) == failpoints.EXIT_CODE
    job = api.get("Job", namespace, "ij-crash")
    assert job is not None
    assert "jobName" not in (indexjob(api, namespace, "ij-crash").get("status") or {})

    # The annotation path too: request an operation while no operator runs.
    api.patch(
        "ChromaCluster",
        namespace,
        "c1",
        {"metadata": {"annotations": {"chroma.dev/operation": f"compact/{KEY}"}}},
    )
    second = operator_factory()
    wait_phase(api, namespace, "ij-crash", "Pending")
    requested = wait_for(
        lambda: [
            ij for ij in api.list("IndexJob", namespace) if ij["spec"]["operation"] == "compact"
        ],
        what="requested IndexJob",
    )
    wait_for(lambda: api.get("Job", namespace, requested[0]["metadata"]["name"]), what="its Job")
    second.stop(kill=True)  # and once more, abruptly
    third = operator_factory()
    wait_for(lambda: "Timer 'cluster_resync' succeeded" in third.log(), what="third resynced")
    wait_for(lambda: "Timer 'indexjob_resync' succeeded" in third.log(), what="third resynced ij")
    names = sorted(j["metadata"]["name"] for j in jobs(api, namespace))
    assert names == sorted(["ij-crash", requested[0]["metadata"]["name"]])
    assert api.get("Job", namespace, "ij-crash")["metadata"]["uid"] == job["metadata"]["uid"]
    assert len(api.list("IndexJob", namespace)) == 2


def test_params_reach_the_job_args_with_their_types(
    api: Api, namespace: str, operator: OperatorProcess
) -> None:
    make_cluster(api, namespace)
    params = {
        "small_file_rows": 5000,
        "grace_s": 0.5,
        "dry_run": True,
        "tag": "60",
        "method": "ledoit_wolf",
    }
    created = api.create(
        indexjob_body("ij-params", namespace, "c1", operation="compact", params=params)
    )
    assert created["spec"]["params"] == params
    job = wait_for(lambda: api.get("Job", namespace, "ij-params"), what="Job ij-params")
    (ctr,) = job["spec"]["template"]["spec"]["containers"]
    assert ctr["args"] == [
        "op", "run", "compact", "--embedding-set", "a" * 40,
        "--param", "dry_run=true",
        "--param", "grace_s=0.5",
        "--param", "method=ledoit_wolf",
        "--param", "small_file_rows=5000",
        "--param", 'tag="60"',  # a string of digits stays a string
        "--local",
    ]  # fmt: skip
    wait_phase(api, namespace, "ij-params", "Pending")
    table = api.table("IndexJob", namespace)
    columns = [col["name"] for col in table["columnDefinitions"]]
    (row,) = table["rows"]
    cells = dict(zip(columns, row["cells"], strict=True))
    assert cells["Params"] == (
        '{"dry_run":true,"grace_s":0.5,"method":"ledoit_wolf","small_file_rows":5000,"tag":"60"}'
    )
    with pytest.raises(ApiError) as info:  # params are part of the immutable spec
        api.patch("IndexJob", namespace, "ij-params", {"spec": {"params": {"grace_s": 1}}})
    assert info.value.status == 422
    assert "IndexJob spec is immutable" in info.value.body["message"]


@pytest.mark.parametrize(
    ("params", "complaint"),
    [
        ({"nested": {"a": 1}}, "spec.params.nested"),
        ({"empty": {}}, "spec.params.empty"),
        ({"listed": [1, 2]}, "spec.params.listed"),
        ({"empty_list": []}, "spec.params.empty_list"),
        ({"long": "x" * 1025}, "spec.params.long: Too long"),
        ({f"p{i}": i for i in range(33)}, "spec.params: Too many"),
    ],
)
def test_params_values_that_are_not_scalars_are_rejected(
    api: Api, namespace: str, params: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ApiError) as info:
        api.create(indexjob_body("bad-params", namespace, "c1", params=params))
    assert info.value.status == 422, info.value.body
    assert complaint in info.value.body["message"]
    assert api.get("IndexJob", namespace, "bad-params") is None
    ok = {"s": "x" * 1024, "i": -1, "f": 2.5, "b": False, **{f"p{i}": i for i in range(28)}}
    assert api.create(indexjob_body("ok-params", namespace, "c1", params=ok))["spec"][
        "params"
    ] == ok


def test_params_key_the_cli_cannot_split_fails_without_a_job(
    api: Api, namespace: str, operator: OperatorProcess
) -> None:
    make_cluster(api, namespace)
    api.create(indexjob_body("ij-badkey", namespace, "c1", params={"a=b": 1, "ok": 2}))
    ij = wait_phase(api, namespace, "ij-badkey", "Failed")
    assert ij["status"]["phaseReason"] == "InvalidParams"
    assert "'a=b'" in ij["status"]["message"] and "'ok'" not in ij["status"]["message"]
    conds = {cond["type"]: cond["status"] for cond in ij["status"]["conditions"]}
    assert conds == {"Finished": "True", "Succeeded": "False"}
    wait_for(
        lambda: any(
            e["reason"] == "InvalidParams" and e["type"] == "Warning"
            for e in api.events_for(namespace, "ij-badkey")
        ),
        what="InvalidParams Warning event",
    )
    # A good IndexJob next to it still runs: the refusal is per IndexJob.
    api.create(indexjob_body("ij-goodkey", namespace, "c1", params={"ok": 2}))
    wait_for(lambda: api.get("Job", namespace, "ij-goodkey"), what="Job ij-goodkey")
    assert api.get("Job", namespace, "ij-badkey") is None
