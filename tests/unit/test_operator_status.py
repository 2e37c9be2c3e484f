"""Unit tests of the operator's status derivation (phase, conditions, counts)."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from chroma_operator import status as st
from chroma_operator import status_types as stt


def cluster(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> dict:
    return {
        "metadata": {"name": "demo", "namespace": "ml", "uid": "u", "generation": 4},
        "spec": spec or {},
        "status": status or {},
    }


def workload(ready: int, **status: Any) -> dict[str, Any]:
    return {"metadata": {"generation": 1}, "status": {"readyReplicas": ready, **status}}


def conds(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_missing_children_mean_progressing() -> None:
    s = st.cluster_status(cluster(), {}, "2026-01-01T00:00:00Z")
    assert s["phase"] == "Progressing"
    assert s["observedGeneration"] == 4
    c = conds(s)
    assert c["ApiReady"]["status"] == "False" and c["ApiReady"]["reason"] == "Missing"
    assert c["Ready"]["status"] == "False"
    assert c["Progressing"]["status"] == "True"
    assert s["ready"] == "0/4"


def test_all_ready_means_ready() -> None:
    children = {"api": workload(2), "workers": workload(1), "qdrant": workload(1)}
    s = st.cluster_status(cluster(), children, "t1")
    assert s["phase"] == "Ready"
    c = conds(s)
    assert all(
        c[t]["status"] == "True" for t in ("Ready", "ApiReady", "QueryEngineReady", "WorkersReady")
    )
    assert c["Progressing"]["status"] == "False" and c["Degraded"]["status"] == "False"
    assert s["components"]["api"] == {"desired": 2, "ready": 2}
    assert s["ready"] == "4/4"


def test_partial_readiness_names_the_component() -> None:
    children = {"api": workload(1), "workers": workload(1), "qdrant": workload(1)}
    s = st.cluster_status(cluster(), children, "t1")
    assert s["phase"] == "Progressing"
    assert conds(s)["ApiReady"]["message"] == "1/2 replicas ready"
    assert "ApiReady" in conds(s)["Ready"]["message"]


def test_failed_rollout_means_degraded() -> None:
    failing = workload(
        0,
        conditions=[
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ],
    )
    s = st.cluster_status(
        cluster(), {"api": failing, "workers": workload(1), "qdrant": workload(1)}, "t"
    )
    assert s["phase"] == "Degraded"
    assert conds(s)["Degraded"]["status"] == "True"
    assert "ProgressDeadlineExceeded" in conds(s)["Degraded"]["message"]


def test_suspended_and_external_qdrant() -> None:
    spec = {"suspend": True, "qdrant": {"mode": "External", "url": "http://q:6333"}}
    s = st.cluster_status(cluster(spec), {"api": workload(0), "workers": workload(0)}, "t")
    assert s["phase"] == "Suspended"
    assert "qdrant" not in s["components"]
    assert conds(s)["QueryEngineReady"]["reason"] == "External"
    assert conds(s)["Ready"]["reason"] == "Suspended"


def test_last_transition_time_kept_while_status_unchanged() -> None:
    first = st.cluster_status(cluster(), {}, "t1")
    second = st.cluster_status(cluster(status=first), {}, "t2")
    assert conds(second)["ApiReady"]["lastTransitionTime"] == "t1"
    children = {"api": workload(2), "workers": workload(1), "qdrant": workload(1)}
    third = st.cluster_status(cluster(status=second), children, "t3")
    assert conds(third)["ApiReady"]["lastTransitionTime"] == "t3"


def job(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "j"}, "spec": {"backoffLimit": 2}, "status": status}


def indexjob() -> dict[str, Any]:
    return {"metadata": {"name": "ij", "generation": 1}, "status": {}}


def test_indexjob_mirrors_job_phases() -> None:
    assert st.indexjob_status(indexjob(), None, "t")["phase"] == "Pending"
    assert st.indexjob_status(indexjob(), job(), "t")["phase"] == "Pending"
    running = st.indexjob_status(indexjob(), job(active=1, startTime="s"), "t")
    assert running["phase"] == "Running" and running["startTime"] == "s"
    assert running["attempts"] == 1
    done = st.indexjob_status(
        indexjob(),
        job(
            succeeded=1,
            failed=1,
            completionTime="e",
            conditions=[{"type": "Complete", "status": "True"}],
        ),
        "t",
    )
    assert done["phase"] == "Succeeded" and done["attempts"] == 2 and done["completionTime"] == "e"
    failed = st.indexjob_status(
        indexjob(),
        job(
            failed=3,
            conditions=[
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ],
        ),
        "t",
    )
    assert failed["phase"] == "Failed" and failed["phaseReason"] == "BackoffLimitExceeded"
    assert {c["type"]: c["status"] for c in failed["conditions"]} == {
        "Finished": "True",
        "Succeeded": "False",
    }


def test_dataset_status() -> None:
    ds = {"metadata": {"generation": 2}, "status": {}}
    s = st.dataset_status(ds, True, {"record_count": 5, "last_log": "L"}, None, "t")
    assert (s["phase"], s["recordCount"], s["lastLog"]) == ("Ready", 5, "L")
    s = st.dataset_status(ds, False, None, "down", "t")
    assert s["phase"] == "Unavailable"


# -- The status contract (status_types) against crds/ -----------------------------------

CRDS = Path(__file__).resolve().parents[2] / "crds"


def crd_status(plural: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / f"chroma.dev_{plural}.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["status"]["properties"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("plural", "typed"),
    [
        ("chromaclusters", stt.ClusterStatus),
        ("indexjobs", stt.IndexJobStatus),
        ("datasets", stt.DatasetStatus),
    ],
)
def test_status_types_name_every_crd_status_field(plural: str, typed: type) -> None:
    assert set(typing.get_type_hints(typed)) == set(crd_status(plural))
    cond = crd_status(plural)["conditions"]["items"]["properties"]
    assert set(typing.get_type_hints(stt.Condition)) == set(cond)
    assert set(typing.get_args(stt.ConditionStatus)) == set(cond["status"]["enum"])


def test_cluster_status_nested_types_are_the_crds() -> None:
    status = crd_status("chromaclusters")
    assert set(typing.get_type_hints(stt.LastOperation)) == set(
        status["lastOperation"]["properties"])
    assert set(typing.get_type_hints(stt.ComponentCounts)) == set(
        status["components"]["additionalProperties"]["properties"])
    assert set(typing.get_type_hints(stt.ClusterAuth)) == set(status["auth"]["properties"])


def test_derived_statuses_use_only_the_typed_keys() -> None:
    children = {"api": workload(2), "workers": workload(1), "qdrant": workload(1)}
    for status, typed in [
        (st.cluster_status(cluster(), children, "t"), stt.ClusterStatus),
        (st.indexjob_status(indexjob(), job(active=1, startTime="s"), "t"), stt.IndexJobStatus),
        (st.indexjob_waiting(indexjob(), "ClusterSuspended", "m", "t"), stt.IndexJobStatus),
        (st.dataset_status({"metadata": {}}, True, {"record_count": 1}, None, "t"),
         stt.DatasetStatus),
    ]:
        assert set(status) <= set(typing.get_type_hints(typed)), set(status)


def test_condition_types_are_listed_in_order() -> None:
    s = st.cluster_status(cluster(), {}, "t")
    assert [c["type"] for c in s["conditions"]] == list(stt.ClusterCondition)
    ij = st.indexjob_status(indexjob(), None, "t")
    assert [c["type"] for c in ij["conditions"]] == list(stt.IndexJobCondition)
    ds = st.dataset_status({"metadata": {}}, False, None, None, "t")
    assert [c["type"] for c in ds["conditions"]] == list(stt.DatasetCondition)


def test_waiting_and_refused_indexjobs_carry_their_reason_in_conditions() -> None:
    waiting = st.indexjob_waiting(indexjob(), stt.IndexJobReason.CLUSTER_SUSPENDED, "later", "t")
    assert (waiting["phase"], waiting["phaseReason"]) == ("Pending", "ClusterSuspended")
    assert {c["reason"] for c in waiting["conditions"]} == {"ClusterSuspended"}
    assert all(c["status"] == "False" for c in waiting["conditions"])
    refused = st.indexjob_refused(indexjob(), stt.IndexJobReason.INVALID_PARAMS, "bad", "t")
    assert (refused["phase"], refused["attempts"]) == ("Failed", 0)
    assert conds(refused)["Finished"]["status"] == "True"
    assert conds(refused)["Succeeded"]["status"] == "False"


def test_phases_are_plain_strings_in_json() -> None:
    s = st.cluster_status(cluster(), {}, "t")
    assert json.loads(json.dumps(s))["phase"] == "Progressing" == s["phase"]
