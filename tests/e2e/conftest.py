"""Fixtures of the kind end-to-end tier: a kind cluster (pytest-kind), the image built
from this checkout and loaded into it, MinIO + PostgreSQL, and the Helm chart installed
with a ChromaCluster from values (tests/e2e/values.yaml).

Needs a reachable Docker engine: without one (``docker version`` fails) every test here
is skipped with the reason, before anything is downloaded or built. Nothing else in the
suite depends on this tier. Knobs (environment):

  CHROMA_E2E_IMAGE        image tag to build and load (default chroma-service:e2e; the
                          chart values expect that tag)
  CHROMA_E2E_BUILD=0      do not build; the image must already exist in Docker
  CHROMA_E2E_NODE_IMAGE   kindest/node image (default: the kind binary's own default)
  KIND_VERSION            kind release pytest-kind downloads when no ``kind`` is on PATH
                          (and --kind-bin is not given); use v0.30.0 or later (1.34 nodes)

pytest-kind's options apply: ``--cluster-name``, ``--keep-cluster``, ``--kind-bin``,
``--kind-kubectl-bin``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHART = REPO / "charts" / "chroma"
NAMESPACE = "chroma-e2e"
RELEASE = "chroma"
CLUSTER = "e2e"
IMAGE = os.environ.get("CHROMA_E2E_IMAGE", "chroma-service:e2e")
T = TypeVar("T")


def docker_problem() -> str | None:
    """Why there is no usable Docker engine here, or None."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker CLI on PATH"
    try:
        proc = subprocess.run([docker, "version", "--format", "{{.Server.Version}}"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`docker version` failed: {exc}"
    if proc.returncode != 0 or not proc.stdout.strip():
        detail = (proc.stderr.strip().splitlines() or ["no server version"])[-1]
        return f"no Docker engine reachable (`docker version`: {detail})"
    return None


def tool(name: str) -> str | None:
    """A binary from KUBEBUILDER_ASSETS (helm, kubectl) or PATH."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and os.access(Path(assets) / name, os.X_OK):
        return str(Path(assets) / name)
    return shutil.which(name)


def wait_for(fn: Callable[[], T | None], timeout: float, what: str,
             interval: float = 3.0) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = value
        except (AssertionError, KeyError, IndexError, subprocess.CalledProcessError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last!r}")
        time.sleep(interval)


@dataclass
class Deployed:
    """The kind cluster with the chart installed; helpers run kubectl and helm on it."""

    cluster: Any  # pytest_kind.KindCluster
    helm_path: str

    def kubectl(self, *args: str) -> str:
        return str(self.cluster.kubectl("-n", NAMESPACE, *args))

    def helm(self, *args: str, timeout: float = 600) -> str:
        return subprocess.run(
            [self.helm_path, "--kubeconfig", str(self.cluster.kubeconfig_path), *args],
            check=True, capture_output=True, text=True, timeout=timeout,
        ).stdout

    def jsonpath(self, kind: str, name: str, path: str) -> str:
        return self.kubectl("get", kind, name, "-o", f"jsonpath={{{path}}}")


@pytest.fixture(scope="session")
def kind_problem() -> None:
    problem = docker_problem()
    if problem:
        pytest.skip(f"kind e2e tier skipped: {problem}. It runs where Docker does "
                    "(CI: .github/workflows/e2e.yml).")
    if tool("helm") is None:
        pytest.skip("kind e2e tier skipped: helm not found (KUBEBUILDER_ASSETS or PATH)")


@pytest.fixture(scope="session")
def deployed(kind_problem: None, request: pytest.FixtureRequest) -> Iterator[Deployed]:
    """Build, create the kind cluster, load the image, install backing services + chart."""
    from pytest_kind import KindCluster

    if os.environ.get("CHROMA_E2E_BUILD", "1") != "0":
        subprocess.run(["docker", "build", "-t", IMAGE, str(REPO)], check=True)
    opt = request.config.getoption
    kind_bin = opt("kind_bin") or shutil.which("kind")
    kubectl_bin = opt("kind_kubectl_bin") or tool("kubectl")
    cluster = KindCluster(
        opt("cluster_name") if opt("cluster_name") != "pytest-kind" else "chroma-e2e",
        image=os.environ.get("CHROMA_E2E_NODE_IMAGE") or opt("kind_image"),
        kind_path=Path(kind_bin) if kind_bin else None,
        kubectl_path=Path(kubectl_bin) if kubectl_bin else None,
    )
    cluster.create()
    try:
        cluster.load_docker_image(IMAGE)
        env = Deployed(cluster, str(tool("helm")))
        cluster.kubectl("create", "namespace", NAMESPACE)
        backing = (HERE / "manifests" / "backing.yaml").read_text().replace(
            "CHROMA_IMAGE", IMAGE)
        cluster.kubectl("-n", NAMESPACE, "apply", "-f", "-", input=backing)
        for deployment in ("minio", "postgres"):
            env.kubectl("rollout", "status", f"deployment/{deployment}", "--timeout=300s")
        env.kubectl("wait", "--for=condition=complete", "job/make-bucket", "--timeout=300s")
        env.helm("install", RELEASE, str(CHART), "-n", NAMESPACE,
                 "-f", str(HERE / "values.yaml"), "--wait", "--timeout", "5m")
        wait_for(lambda: env.jsonpath("chromacluster", CLUSTER, ".status.phase") == "Ready",
                 600, "ChromaCluster e2e Ready")
        yield env
    finally:
        if not opt("keep_cluster"):
            cluster.delete()


@pytest.fixture()
def api_url(deployed: Deployed) -> Iterator[str]:
    """The cluster's API Service, port-forwarded to loopback."""
    with deployed.cluster.port_forward(f"service/{CLUSTER}-api", 8000, "-n", NAMESPACE) as port:
        yield f"http://127.0.0.1:{port}"
