"""Fixtures of the control-plane tier: a real etcd + kube-apiserver, the CRDs, the operator.

The control plane starts once per session from ``KUBEBUILDER_ASSETS`` (set by
scripts/test.sh through scripts/envtest-assets.sh); without it every test here is
skipped with the reason. Each test gets its own namespace, and ``operator`` starts
``python -m chroma_operator`` for that namespace (a subprocess, so tests can kill and
restart it; ``failpoint=`` starts it through ``failpoints.py`` to crash it on purpose).
No kubelet or controllers run: tests patch child status to simulate pods.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .envtest import (
    Api,
    ControlPlane,
    OperatorProcess,
    assets_problem,
)

Body = dict[str, Any]


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    problem = assets_problem()
    if problem:
        pytest.skip(f"control-plane tier skipped: {problem}")
    import os

    warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    cp = ControlPlane(
        tmp_path_factory.mktemp("controlplane"), Path(os.environ["KUBEBUILDER_ASSETS"])
    )
    try:
        cp.start()
        cp.install_crds()
    except Exception:
        cp.stop()
        raise
    yield cp
    cp.stop()


@pytest.fixture()
def api(control_plane: ControlPlane) -> Api:
    return control_plane.admin


@pytest.fixture()
def namespace(api: Api) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture()
def operator_factory(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operators (stopped at teardown; their log is printed when a test fails)."""
    started: list[OperatorProcess] = []

    def start(
        env: dict[str, str] | None = None,
        kubeconfig: Path | None = None,
        namespace_: str | None = namespace,
        failpoint: str | None = None,
    ) -> OperatorProcess:
        op = OperatorProcess(
            kubeconfig=kubeconfig or control_plane.admin_kubeconfig,
            log_path=tmp_path / f"operator-{len(started)}.log",
            namespace=namespace_,
            env=env or {},
            failpoint=failpoint,
        )
        started.append(op)
        return op.start()

    yield start
    for op in started:
        op.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for op in started:
            print(f"----- {op.log_path} -----\n{op.log()[-6000:]}")


@pytest.fixture()
def operator(operator_factory: Callable[..., OperatorProcess]) -> OperatorProcess:
    return operator_factory()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
