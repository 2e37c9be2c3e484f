"""chroma.operations.launchers without a cluster: names, bodies against the CRD, settings,
error handling, and the API's implicit trigger calling the launcher once per new operation.
The real API server is exercised in tests/controlplane/test_launcher.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from chroma import indexjob as ij
from chroma.api.services import IMPLICIT_OPERATIONS, Services
from chroma.catalog import Operation
from chroma.ingest import CommitResult
from chroma.operations import launchers
from chroma.operations.kinds import INDEXJOB_KINDS
from chroma.operations.launchers import (
    IndexJobLauncher,
    LauncherConfigError,
    QueueLauncher,
    indexjob_body,
    indexjob_name,
    make_launcher,
)
from chroma.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((REPO / "crds" / "chroma.dev_indexjobs.yaml").read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
KEY = "3f" * 20
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def operation(
    op_id: int = 7, kind: str = "index", key: str | None = KEY,
    params: dict[str, Any] | None = None,
) -> Operation:
    now = datetime.now(UTC)
    return Operation(
        id=op_id, kind=kind, embedding_set_key=key, params=params or {}, state="queued",
        progress=0.0,
        message=None, attempts=0, max_attempts=3, requested_by="trigger",
        cancel_requested=False, lease_owner=None, lease_expires_at=None, retry_at=None,
        created_at=now, started_at=None, finished_at=None, result=None, error=None,
    )


class FakeCustomObjects:
    """Records create calls; answers with ``status`` (0 = created)."""

    def __init__(self, status: int = 0) -> None:
        self.status = status
        self.calls: list[tuple[Any, ...]] = []

    def create_namespaced_custom_object(self, *args: Any, **kw: Any) -> dict[str, Any]:
        self.calls.append(args)
        if self.status:
            raise ApiException(status=self.status, reason="refused")
        return args[-1]


def launcher_with(api: FakeCustomObjects) -> IndexJobLauncher:
    launcher = IndexJobLauncher("prod", "ml", api_client=kubernetes.client.ApiClient())
    launcher._api = api
    return launcher


def test_operations_match_the_crd_enum() -> None:
    enum = SCHEMA["properties"]["spec"]["properties"]["operation"]["enum"]
    assert tuple(enum) == INDEXJOB_KINDS


def test_name_is_deterministic_bounded_and_distinct_per_operation() -> None:
    a = indexjob_name("prod", "index", KEY, 7)
    assert a == indexjob_name("prod", "index", KEY, 7)
    assert a != indexjob_name("prod", "index", KEY, 8)
    assert a != indexjob_name("prod", "reindex", KEY, 7)
    assert a != indexjob_name("prod", "index", "ab" * 20, 7)
    assert a.startswith("prod-index-7-") and DNS_LABEL.match(a)
    long = indexjob_name("c" * 63, "fit-mhb", KEY, 123456789)
    assert len(long) <= 63 and DNS_LABEL.match(long), long


def test_body_satisfies_the_crd_schema() -> None:
    body = indexjob_body(operation(), "prod", "ml")
    spec_schema = SCHEMA["properties"]["spec"]
    assert set(spec_schema["required"]) <= set(body["spec"])
    assert set(body["spec"]) <= set(spec_schema["properties"])
    assert body["spec"] == {"cluster": "prod", "operation": "index", "embeddingSet": KEY}
    assert body["metadata"]["namespace"] == "ml"
    assert body["metadata"]["labels"]["chroma.dev/cluster"] == "prod"
    assert body["metadata"]["labels"]["chroma.dev/operation-id"] == "7"
    assert all(len(v) <= 63 for v in body["metadata"]["labels"].values())


def test_body_shows_the_params_the_crd_can_hold() -> None:
    params = {"grace_s": 60, "ratio": 0.5, "dry_run": True, "method": "ledoit_wolf",
              "nested": {"a": 1}, "listed": [1], "none": None, "bad key": 1, "a=b": 2,
              "long": "x" * 1025, "huge": 2**63, "edge": 2**63 - 1}
    body = indexjob_body(operation(kind="compact", params=params), "prod", "ml")
    assert body["spec"] == {
        "cluster": "prod", "operation": "compact", "embeddingSet": KEY,
        "params": {"grace_s": 60, "ratio": 0.5, "dry_run": True, "method": "ledoit_wolf",
                   "edge": 2**63 - 1},
    }
    assert list(body["spec"]["params"]) == sorted(body["spec"]["params"])
    assert set(body["spec"]) <= set(SCHEMA["properties"]["spec"]["properties"])
    omitted = body["metadata"]["annotations"]["chroma.dev/params-omitted"]
    assert omitted == "a=b,bad key,huge,listed,long,nested,none"
    assert "chroma.dev/params-omitted" not in indexjob_body(
        operation(params={"seconds": 1}), "prod", "ml")["metadata"]["annotations"]


def test_body_params_stay_within_the_crd_limits() -> None:
    spec_schema = SCHEMA["properties"]["spec"]["properties"]["params"]
    many = {f"p{i:02d}": i for i in range(ij.MAX_PARAMS + 3)}
    body = indexjob_body(operation(params=many), "prod", "ml")
    assert len(body["spec"]["params"]) == spec_schema["maxProperties"] == ij.MAX_PARAMS
    assert body["metadata"]["annotations"]["chroma.dev/params-omitted"] == "p32,p33,p34"
    assert spec_schema["additionalProperties"]["maxLength"] == ij.MAX_PARAM_STRING


def test_params_the_launcher_keeps_are_params_the_operator_accepts() -> None:
    from chroma_operator.manifests import params_problem

    kept, _ = launchers.indexjob_params({"ok": 1, "a=b": 1, "": 1, "x" * 64: 1, "ok\n": 1})
    assert kept == {"ok": 1} and params_problem(kept) is None


def test_make_launcher_queue_by_default() -> None:
    assert isinstance(make_launcher(Settings()), QueueLauncher)
    assert QueueLauncher().submit(operation()) is None


def test_make_launcher_indexjob_needs_cluster_and_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client = kubernetes.client.ApiClient()
    with pytest.raises(LauncherConfigError, match="CHROMA_CLUSTER_NAME"):
        make_launcher(Settings(operation_launcher="indexjob"), api_client=client)
    monkeypatch.setattr(launchers, "SERVICEACCOUNT_NAMESPACE", tmp_path / "absent")
    with pytest.raises(LauncherConfigError, match="CHROMA_NAMESPACE"):
        make_launcher(Settings(operation_launcher="indexjob", cluster_name="prod"),
                      api_client=client)
    (tmp_path / "ns").write_text("from-sa\n")
    monkeypatch.setattr(launchers, "SERVICEACCOUNT_NAMESPACE", tmp_path / "ns")
    got = make_launcher(Settings(operation_launcher="indexjob", cluster_name="prod"),
                        api_client=client)
    assert isinstance(got, IndexJobLauncher) and got.namespace == "from-sa"


def test_indexjob_launcher_without_credentials_fails_loudly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(LauncherConfigError, match="credentials"):
        make_launcher(Settings(operation_launcher="indexjob", cluster_name="p", namespace="n"))


def test_submit_creates_and_treats_conflict_as_done() -> None:
    api = FakeCustomObjects()
    name = launcher_with(api).submit(operation())
    assert name == indexjob_name("prod", "index", KEY, 7)
    ((group, version, ns, plural, body),) = api.calls
    assert (group, version, ns, plural) == ("chroma.dev", "v1alpha1", "ml", "indexjobs")
    assert body["metadata"]["name"] == name
    assert launcher_with(FakeCustomObjects(409)).submit(operation()) == name


def test_submit_never_raises_and_skips_what_cannot_be_an_indexjob(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert launcher_with(FakeCustomObjects(403)).submit(operation()) is None
    assert "HTTP 403" in caplog.text
    api = FakeCustomObjects()
    launcher = launcher_with(api)
    assert launcher.submit(operation(kind="sleep")) is None
    assert launcher.submit(operation(kind="compact", key=None)) is None
    assert api.calls == []


def test_submit_survives_an_unreachable_api_server() -> None:
    cfg = kubernetes.client.Configuration()
    cfg.host = "http://127.0.0.1:9"  # discard port: connection refused
    cfg.retries = 0
    launcher = IndexJobLauncher("prod", "ml", api_client=kubernetes.client.ApiClient(cfg),
                                timeout_s=2)
    assert launcher.submit(operation()) is None


class FakeOperations:
    """enqueue: new the first time per (kind, key), joined afterwards."""

    def __init__(self) -> None:
        self.active: dict[tuple[str, str | None], Operation] = {}

    def enqueue(self, kind: str, key: str | None = None, **_: Any) -> tuple[Operation, bool]:
        if (kind, key) in self.active:
            return self.active[(kind, key)], False
        op = operation(len(self.active) + 1, kind, key)
        self.active[(kind, key)] = op
        return op, True


class RecordingLauncher:
    def __init__(self) -> None:
        self.submitted: list[Operation] = []

    def submit(self, op: Operation) -> str | None:
        self.submitted.append(op)
        return "x"


def test_implicit_trigger_submits_each_new_operation_once() -> None:
    recorder = RecordingLauncher()
    ops = FakeOperations()
    services = Services(
        Settings(index_trigger_debounce_s=0), None, None, None, None, ops,  # type: ignore[arg-type]
        launcher=recorder,
    )
    a, b = "aa" * 20, "bb" * 20
    services.trigger_index([CommitResult(a, ["1"]), CommitResult(a, ["2"])])
    services.trigger_index([CommitResult(a, ["3"]), CommitResult(b, ["4"])])  # a is joined
    submitted = sorted((op.embedding_set_key or "", op.kind) for op in recorder.submitted)
    assert "index" in IMPLICIT_OPERATIONS
    assert submitted == sorted((key, kind) for key in (a, b) for kind in IMPLICIT_OPERATIONS)


def test_kubeconfig_is_read_when_the_launcher_is_made(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """KUBECONFIG set after the kubernetes package was imported still counts (the package
    itself reads it once, at import)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": "https://10.1.2.3:6443"}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "u"}}],
    }))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    launcher = make_launcher(Settings(operation_launcher="indexjob", cluster_name="p",
                                      namespace="n"))
    assert isinstance(launcher, IndexJobLauncher)
    assert launcher.api_client.configuration.host == "https://10.1.2.3:6443"
