"""Unit tests of the reconcilers' order of work and idempotence, on an in-memory Kube."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from chroma_operator import constants as c
from chroma_operator.kube import Conflict, NotFound
from chroma_operator.reconcile import Outcome, reconcile_cluster, reconcile_indexjob, record

Body = dict[str, Any]
KEY = "ab" * 20


class FakeKube:
    """The subset of ``Kube`` the reconcilers use, with API-server-like bookkeeping."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Body] = {}
        self.rv = itertools.count(1)
        self.uids = itertools.count(1)

    def _key(self, kind: str, ns: str, name: str) -> tuple[str, str, str]:
        return (kind, ns, name)

    def _store(self, obj: Body) -> Body:
        meta = obj["metadata"]
        key = self._key(obj["kind"], meta["namespace"], meta["name"])
        old = self.objects.get(key)
        meta.setdefault("uid", old["metadata"]["uid"] if old else f"uid-{next(self.uids)}")
        meta.setdefault("generation", 1)
        strip = {"resourceVersion"}
        same = (
            old is not None
            and {k: v for k, v in old["metadata"].items() if k not in strip}
            == {k: v for k, v in meta.items() if k not in strip}
            and {k: v for k, v in old.items() if k != "metadata"}
            == {k: v for k, v in obj.items() if k != "metadata"}
        )
        meta["resourceVersion"] = old["metadata"]["resourceVersion"] if same else str(next(self.rv))
        self.objects[key] = copy.deepcopy(obj)
        return copy.deepcopy(obj)

    def add(self, obj: Body) -> Body:
        return self._store(copy.deepcopy(obj))

    def get(self, api_version: str, kind: str, ns: str, name: str) -> Body | None:
        obj = self.objects.get(self._key(kind, ns, name))
        return copy.deepcopy(obj) if obj else None

    def apply(self, obj: Body, **_: Any) -> Body:
        obj = copy.deepcopy(obj)
        old = self.get(
            obj["apiVersion"], obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]
        )
        if old:
            obj["metadata"]["uid"] = old["metadata"]["uid"]
            if "status" in old:
                obj["status"] = old["status"]
        return self._store(obj)

    def create(self, obj: Body) -> tuple[Body, bool]:
        meta = obj["metadata"]
        existing = self.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        if existing:
            return existing, False
        return self._store(copy.deepcopy(obj)), True

    def create_if_absent(self, obj: Body) -> bool:
        return self.create(obj)[1]

    def delete(self, api_version: str, kind: str, ns: str, name: str) -> bool:
        return self.objects.pop(self._key(kind, ns, name), None) is not None

    def list(self, api_version: str, kind: str, ns: str, label_selector: str = "") -> list[Body]:
        wanted = dict(p.split("=", 1) for p in label_selector.split(",") if p)
        return [
            copy.deepcopy(o)
            for (k, n, _), o in self.objects.items()
            if k == kind
            and n == ns
            and wanted.items() <= (o["metadata"].get("labels") or {}).items()
        ]

    def patch_status(self, body: Body, status: Body) -> Body:
        meta = body["metadata"]
        obj = self.objects[self._key(body["kind"], meta["namespace"], meta["name"])]
        merged = {**(obj.get("status") or {}), **status}
        obj["status"] = {k: v for k, v in merged.items() if v is not None}
        return copy.deepcopy(obj)

    def patch(self, api_version: str, kind: str, ns: str, name: str, patch: Body) -> Body:
        obj = self.objects.get(self._key(kind, ns, name))
        if obj is None:
            raise NotFound("gone", 404)
        for key, value in patch["metadata"]["annotations"].items():
            annotations = obj["metadata"].setdefault("annotations", {})
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = value
        return copy.deepcopy(obj)

    def kinds(self, kind: str) -> list[Body]:
        return [o for (k, _, _), o in self.objects.items() if k == kind]


def cluster(**annotations: str) -> Body:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.CLUSTER_KIND,
        "metadata": {"name": "demo", "namespace": "ml", "annotations": dict(annotations)},
        "spec": {
            "storage": {"url": "s3://b/p", "credentialsSecret": {"name": "s3"}},
            "database": {"secret": {"name": "pg"}},
        },
    }


def indexjob(name: str, embedding_set: str = KEY) -> Body:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.INDEXJOB_KIND,
        "metadata": {"name": name, "namespace": "ml"},
        "spec": {"cluster": "demo", "operation": "index", "embeddingSet": embedding_set},
    }


@pytest.fixture()
def kube() -> FakeKube:
    return FakeKube()


def test_second_reconcile_changes_nothing(kube: FakeKube) -> None:
    body = kube.add(cluster())
    first = reconcile_cluster(kube, body)  # type: ignore[arg-type]
    # 9 workloads and their plumbing, 2 NetworkPolicies, 2 generated Secrets
    assert sum(1 for e in first.events if e[1] == "Created") == 13
    assert first.status["phase"] == "Progressing"
    versions = {
        k: o["metadata"]["resourceVersion"]
        for k, o in kube.objects.items()
        if k[0] != c.CLUSTER_KIND
    }
    second = reconcile_cluster(kube, body)  # type: ignore[arg-type]
    assert [e for e in second.events if e[1] != "PhaseChanged"] == []
    assert versions == {
        k: o["metadata"]["resourceVersion"]
        for k, o in kube.objects.items()
        if k[0] != c.CLUSTER_KIND
    }


def test_deleted_and_edited_children_are_restored_with_warnings(kube: FakeKube) -> None:
    body = kube.add(cluster())
    reconcile_cluster(kube, body)  # type: ignore[arg-type]
    kube.delete("v1", "Service", "ml", "demo-api")
    kube.objects[("Deployment", "ml", "demo-api")]["spec"]["replicas"] = 9
    kube.objects[("Deployment", "ml", "demo-api")]["metadata"]["resourceVersion"] = "999"
    out = reconcile_cluster(kube, body)  # type: ignore[arg-type]
    assert ("Warning", "Recreated", "recreated deleted Service demo-api") in out.events
    assert ("Warning", "DriftRepaired", "restored Deployment demo-api to the spec") in out.events
    assert kube.get("apps/v1", "Deployment", "ml", "demo-api")["spec"]["replicas"] == 2  # type: ignore[index]


def test_operation_annotation_creates_one_indexjob_even_when_handled_twice(kube: FakeKube) -> None:
    body = kube.add(cluster(**{c.ANNOTATION_OPERATION: f"reindex/{KEY}"}))
    kube.patch = lambda *a, **k: (_ for _ in ()).throw(Conflict("crash before removal", 409))  # type: ignore[method-assign]
    with pytest.raises(Conflict):
        reconcile_cluster(kube, body)  # type: ignore[arg-type]
    del kube.patch  # the operator restarts; this time the annotation is removed
    out = reconcile_cluster(kube, body)  # type: ignore[arg-type]
    (ij,) = kube.kinds(c.INDEXJOB_KIND)
    assert ij["spec"]["operation"] == "reindex"
    assert out.status["lastOperation"]["indexJob"] == ij["metadata"]["name"]
    assert (
        c.ANNOTATION_OPERATION
        not in kube.get(c.API_VERSION, c.CLUSTER_KIND, "ml", "demo")["metadata"]["annotations"]
    )  # type: ignore[index]
    assert not any(e[1] == "OperationRequested" for e in out.events), "not created twice"


def test_indexjob_job_is_created_once_and_siblings_wait(kube: FakeKube) -> None:
    kube.add(cluster())
    first = kube.add(indexjob("first"))
    out = reconcile_indexjob(kube, first)  # type: ignore[arg-type]
    assert ("Normal", "JobCreated", "created Job first") in out.events
    again = reconcile_indexjob(kube, first)  # type: ignore[arg-type]
    assert not any(e[1] == "JobCreated" for e in again.events)
    assert len(kube.kinds("Job")) == 1

    second = kube.add(indexjob("second"))
    waiting = reconcile_indexjob(kube, second)  # type: ignore[arg-type]
    assert waiting.status["phaseReason"] == "WaitingForActiveJob"
    assert waiting.retry_after
    other = kube.add(indexjob("other", "cd" * 20))
    reconcile_indexjob(kube, other)  # type: ignore[arg-type]
    assert len(kube.kinds("Job")) == 2

    kube.objects[("Job", "ml", "first")]["status"] = {"succeeded": 1}
    reconcile_indexjob(kube, second)  # type: ignore[arg-type]
    assert {j["metadata"]["name"] for j in kube.kinds("Job")} == {"first", "other", "second"}


def test_indexjob_without_cluster_retries(kube: FakeKube) -> None:
    orphan = kube.add(indexjob("orphan"))
    out = reconcile_indexjob(kube, orphan)  # type: ignore[arg-type]
    assert out.status["phaseReason"] == "ClusterNotFound"
    assert out.retry_after == 15
    assert kube.kinds("Job") == []


def test_indexjob_waits_while_cluster_is_suspended(kube: FakeKube) -> None:
    body = cluster()
    body["spec"]["suspend"] = True
    kube.add(body)
    ij = kube.add(indexjob("later"))
    out = reconcile_indexjob(kube, ij)  # type: ignore[arg-type]
    assert (out.status["phase"], out.status["phaseReason"]) == ("Pending", "ClusterSuspended")
    assert kube.kinds("Job") == []
    kube.objects[(c.CLUSTER_KIND, "ml", "demo")]["spec"]["suspend"] = False
    reconcile_indexjob(kube, ij)  # type: ignore[arg-type]
    assert len(kube.kinds("Job")) == 1


def test_invalid_params_fail_the_indexjob_at_once_without_a_job(kube: FakeKube) -> None:
    kube.add(cluster())
    body = indexjob("bad")
    body["spec"]["params"] = {"a=b": 1}
    out = reconcile_indexjob(kube, kube.add(body))  # type: ignore[arg-type]
    assert (out.status["phase"], out.status["phaseReason"]) == ("Failed", "InvalidParams")
    assert out.retry_after is None and kube.kinds("Job") == []
    assert [e[:2] for e in out.events] == [("Warning", "InvalidParams")]
    stored = kube.get(c.API_VERSION, c.INDEXJOB_KIND, "ml", "bad")["status"]  # type: ignore[index]
    assert stored["conditions"][0]["reason"] == "InvalidParams"


# -- record: the one way to write a status (and ask for a retry) --------------------------


def test_record_writes_status_and_asks_for_a_retry_with_its_message(kube: FakeKube) -> None:
    body = kube.add(indexjob("ij"))
    out = record(kube, body, Outcome(), {"phase": "Pending", "message": "wait"},  # type: ignore[arg-type]
                 retry_after=7)
    assert (out.retry_after, out.retry_reason) == (7, "wait")
    assert kube.get(c.API_VERSION, c.INDEXJOB_KIND, "ml", "ij")["status"] == {  # type: ignore[index]
        "phase": "Pending", "message": "wait"}
    done = record(kube, body, Outcome(), {"phase": "Running", "message": "go"})  # type: ignore[arg-type]
    assert done.retry_after is None


def test_record_prune_deletes_keys_the_new_status_lacks(kube: FakeKube) -> None:
    body = kube.add({**indexjob("ij"), "status": {"phase": "A", "gone": {"x": 1}, "keep": 1}})
    record(kube, body, Outcome(), {"phase": "B", "keep": 1}, prune=True)  # type: ignore[arg-type]
    status = kube.get(c.API_VERSION, c.INDEXJOB_KIND, "ml", "ij")["status"]  # type: ignore[index]
    assert status == {"phase": "B", "keep": 1}


# -- handlers: outcomes become Events and kopf retries in one place -----------------------


@pytest.fixture()
def posted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    from chroma_operator import handlers

    events: list[tuple[str, str, str]] = []
    monkeypatch.setattr(handlers.kopf, "event",
                        lambda body, type, reason, message: events.append((type, reason, message)))
    return events


def test_run_posts_events_and_turns_waiting_into_a_temporary_error(
    posted: list[tuple[str, str, str]]
) -> None:
    import kopf

    from chroma_operator import handlers

    def waits(body: Body, out: Outcome) -> None:
        out.note("Created", "made one")
        out.retry(12, "cluster missing")

    with pytest.raises(kopf.TemporaryError) as err:
        handlers._run({"metadata": {}}, waits)  # type: ignore[arg-type]
    assert err.value.delay == 12 and "cluster missing" in str(err.value)
    assert posted == [("Normal", "Created", "made one")]
    handlers._run({"metadata": {}}, waits, retry=False)  # type: ignore[arg-type]
    assert len(posted) == 2


def test_run_posts_work_done_before_an_api_failure(posted: list[tuple[str, str, str]]) -> None:
    import kopf

    from chroma_operator import handlers

    def fails(body: Body, out: Outcome) -> None:
        out.note("Created", "made one")
        raise NotFound("gone", 404)

    with pytest.raises(kopf.TemporaryError) as err:
        handlers._run({"metadata": {}}, fails)  # type: ignore[arg-type]
    assert err.value.delay == handlers.API_RETRY_S and "API server" in str(err.value)
    assert posted == [("Normal", "Created", "made one")]


def test_generated_secrets_are_created_once_and_never_overwritten(kube: FakeKube) -> None:
    body = kube.add(cluster())
    keys = iter(f"key-{i}-" + "x" * 40 for i in range(10))
    out = reconcile_cluster(kube, body, key_factory=keys.__next__)  # type: ignore[arg-type]
    assert ("Normal", "Created", "generated Secret demo-api-keys") in out.events
    first = kube.get("v1", "Secret", "ml", "demo-api-keys")
    assert first is not None and first["stringData"]["keys"].startswith("admin key-0-")
    # Rotated by hand: the next reconciles keep the edit.
    kube.objects[("Secret", "ml", "demo-api-keys")]["stringData"] = {"keys": "admin mine"}
    out = reconcile_cluster(kube, body, key_factory=keys.__next__)  # type: ignore[arg-type]
    assert not [e for e in out.events if "Secret" in e[2]]
    assert kube.get("v1", "Secret", "ml", "demo-api-keys")["stringData"] == {  # type: ignore[index]
        "keys": "admin mine"}
    status = kube.get(c.API_VERSION, c.CLUSTER_KIND, "ml", "demo")["status"]  # type: ignore[index]
    assert status["auth"] == {
        "enabled": True, "secretName": "demo-api-keys", "qdrantApiKeySecret": "demo-qdrant-api-key"}
