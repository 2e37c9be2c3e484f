"""A real control plane for tests: etcd + kube-apiserver on loopback, and a tiny client.

Owns: starting and stopping the two servers from ``KUBEBUILDER_ASSETS`` (the envtest
convention), the admin kubeconfig, ServiceAccount kubeconfigs (TokenRequest), and
``Api``: a small JSON client over httpx that the tests use to create, read and patch
objects. Deliberately independent of the operator's own client code. Used by
``conftest.py`` (and by the tests, through relative imports).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
Body = dict[str, Any]
T = TypeVar("T")

REQUIRED_BINARIES = ("etcd", "kube-apiserver")


def assets_problem() -> str | None:
    """Why the control plane cannot start here, or None when it can."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if not assets:
        return (
            "KUBEBUILDER_ASSETS is not set: run the suite through scripts/test.sh (make test), "
            "which builds kube-apiserver + etcd with scripts/envtest-assets.sh, or point it at "
            "a directory holding envtest binaries"
        )
    missing = [b for b in REQUIRED_BINARIES if not os.access(Path(assets) / b, os.X_OK)]
    if missing:
        return f"KUBEBUILDER_ASSETS={assets} lacks {', '.join(missing)}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    fn: Callable[[], T | None], timeout: float = 45.0, interval: float = 0.2, what: str = ""
) -> T:
    """Poll ``fn`` until it returns something truthy; fail with its last error otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = value
        except (AssertionError, KeyError, IndexError, TypeError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}: {last!r}")
        time.sleep(interval)


class ApiError(Exception):
    def __init__(self, status: int, body: Body) -> None:
        super().__init__(f"{status}: {body.get('message', body)}")
        self.status = status
        self.body = body


PLURALS = {
    "ConfigMap": ("v1", "configmaps"),
    "Secret": ("v1", "secrets"),
    "Service": ("v1", "services"),
    "ServiceAccount": ("v1", "serviceaccounts"),
    "Namespace": ("v1", "namespaces"),
    "Event": ("v1", "events"),
    "Deployment": ("apps/v1", "deployments"),
    "StatefulSet": ("apps/v1", "statefulsets"),
    "Job": ("batch/v1", "jobs"),
    "Ingress": ("networking.k8s.io/v1", "ingresses"),
    "NetworkPolicy": ("networking.k8s.io/v1", "networkpolicies"),
    "Pod": ("v1", "pods"),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets"),
    "Role": ("rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings"),
    "ClusterRole": ("rbac.authorization.k8s.io/v1", "clusterroles"),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io/v1", "clusterrolebindings"),
    "CustomResourceDefinition": ("apiextensions.k8s.io/v1", "customresourcedefinitions"),
    "ChromaCluster": ("chroma.dev/v1alpha1", "chromaclusters"),
    "IndexJob": ("chroma.dev/v1alpha1", "indexjobs"),
    "Dataset": ("chroma.dev/v1alpha1", "datasets"),
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def path_for(kind: str, namespace: str | None = None, name: str | None = None) -> str:
    api_version, plural = PLURALS[kind]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = prefix if kind in CLUSTER_SCOPED else f"{prefix}/namespaces/{namespace}"
    path = f"{path}/{plural}"
    return f"{path}/{name}" if name else path


class Api:
    """Minimal JSON client of the API server (the tests' view of the world)."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=url,
            verify=False,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def request(self, method: str, path: str, **kw: Any) -> Body:
        resp = self.http.request(method, path, **kw)
        data = resp.json() if resp.content else {}
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, data)
        return data

    def create(self, obj: Body) -> Body:
        meta = obj["metadata"]
        return self.request("POST", path_for(obj["kind"], meta.get("namespace")), json=obj)

    def get(self, kind: str, namespace: str | None, name: str) -> Body | None:
        try:
            return self.request("GET", path_for(kind, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str | None, selector: str = "") -> list[Body]:
        params = {"labelSelector": selector} if selector else {}
        return self.request("GET", path_for(kind, namespace), params=params)["items"]

    def patch(
        self, kind: str, namespace: str | None, name: str, patch: Body, subresource: str = ""
    ) -> Body:
        path = path_for(kind, namespace, name) + (f"/{subresource}" if subresource else "")
        return self.request(
            "PATCH",
            path,
            content=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
            params={"fieldManager": "test-hand-edit"},
        )

    def delete(self, kind: str, namespace: str | None, name: str) -> None:
        with contextlib.suppress(ApiError):
            self.request("DELETE", path_for(kind, namespace, name))

    def dry_run_apply(self, obj: Body) -> list[str]:
        """Server-side apply ``obj`` with ``dryRun=All``: admission runs (PodSecurity
        included), nothing is stored. Returns the ``Warning`` headers of the answer;
        raises ``ApiError`` when the object is refused."""
        meta = obj["metadata"]
        resp = self.http.request(
            "PATCH",
            path_for(obj["kind"], meta.get("namespace"), meta["name"]),
            content=json.dumps(obj),
            headers={"Content-Type": "application/apply-patch+yaml"},
            params={"fieldManager": "test-dry-run", "dryRun": "All", "force": "true"},
        )
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, resp.json() if resp.content else {})
        return resp.headers.get_list("warning")

    def table(self, kind: str, namespace: str) -> Body:
        return self.request(
            "GET",
            path_for(kind, namespace),
            headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        )

    def apply_manifest(self, path: Path, namespace: str | None = None) -> list[Body]:
        out = []
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            if namespace and doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = namespace
            try:
                out.append(self.create(doc))
            except ApiError as exc:
                if exc.status != 409:
                    raise
        return out

    def events_for(self, namespace: str, name: str) -> list[Body]:
        return [
            e
            for e in self.list("Event", namespace)
            if (e.get("involvedObject") or {}).get("name") == name
        ]


def kubeconfig(url: str, token: str, user: str) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "envtest", "cluster": {"server": url, "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": user}}],
        "current-context": "envtest",
    }


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver; ``admin`` is an Api with system:masters rights."""

    workdir: Path
    assets: Path
    url: str = ""
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16))
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def admin(self) -> Api:
        return Api(self.url, self.admin_token)

    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_log = open(self.workdir / "etcd.log", "wb")  # noqa: SIM115 (lives with the proc)
        self.procs.append(
            subprocess.Popen(
                [
                    str(self.assets / "etcd"),
                    "--data-dir",
                    str(self.workdir / "etcd"),
                    "--listen-client-urls",
                    f"http://127.0.0.1:{etcd_port}",
                    "--advertise-client-urls",
                    f"http://127.0.0.1:{etcd_port}",
                    "--listen-peer-urls",
                    f"http://127.0.0.1:{peer_port}",
                    "--initial-advertise-peer-urls",
                    f"http://127.0.0.1:{peer_port}",
                    "--initial-cluster",
                    f"default=http://127.0.0.1:{peer_port}",
                    "--unsafe-no-fsync",
                ],
                stdout=etcd_log,
                stderr=subprocess.STDOUT,
            )
        )
        key = self.workdir / "sa.key"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True
        )
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.admin_token},admin,admin,"system:masters"\n')
        api_log = open(self.workdir / "kube-apiserver.log", "wb")  # noqa: SIM115
        self.procs.append(
            subprocess.Popen(
                [
                    str(self.assets / "kube-apiserver"),
                    f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    f"--secure-port={api_port}",
                    f"--cert-dir={self.workdir / 'certs'}",
                    "--service-cluster-ip-range=10.96.0.0/24",
                    "--authorization-mode=RBAC",
                    f"--token-auth-file={tokens}",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={key}",
                    f"--service-account-signing-key-file={key}",
                    "--allow-privileged=true",
                    "--enable-priority-and-fairness=false",
                    "--profiling=false",
                    "--v=1",
                ],
                stdout=api_log,
                stderr=subprocess.STDOUT,
            )
        )
        self.url = f"https://127.0.0.1:{api_port}"
        self.admin_kubeconfig.write_text(
            yaml.safe_dump(kubeconfig(self.url, self.admin_token, "admin"))
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90.0) -> None:
        client = httpx.Client(verify=False, timeout=5)
        headers = {"Authorization": f"Bearer {self.admin_token}"}

        def ready() -> bool:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{proc.args[0]} exited with {proc.returncode}; see {self.workdir}/*.log:\n"
                        + self.log_tail()
                    )
            try:
                return client.get(f"{self.url}/readyz", headers=headers).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=timeout, interval=0.3, what="kube-apiserver /readyz")
        # The bootstrap controller creates 'default'; RBAC bootstrap roles come with readyz.
        wait_for(lambda: self.admin.get("Namespace", None, "default"), what="namespace default")

    def log_tail(self, lines: int = 40) -> str:
        path = self.workdir / "kube-apiserver.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def install_crds(self) -> None:
        api = self.admin
        for path in sorted(CRDS.glob("*.yaml")):
            api.apply_manifest(path)
        for path in sorted(CRDS.glob("*.yaml")):
            name = yaml.safe_load(path.read_text())["metadata"]["name"]

            def established(name: str = name) -> bool:
                crd = api.get("CustomResourceDefinition", None, name) or {}
                return any(
                    c["type"] == "Established" and c["status"] == "True"
                    for c in (crd.get("status") or {}).get("conditions") or []
                )

            wait_for(established, what=f"CRD {name} established")

    def service_account_kubeconfig(self, namespace: str, name: str, path: Path) -> Path:
        """A kubeconfig authenticating as the ServiceAccount (a TokenRequest token)."""
        token = self.admin.request(
            "POST",
            path_for("ServiceAccount", namespace, name) + "/token",
            json={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            },
        )["status"]["token"]
        path.write_text(
            yaml.safe_dump(kubeconfig(self.url, token, f"system:serviceaccount:{namespace}:{name}"))
        )
        return path

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


@dataclass
class OperatorProcess:
    """``python -m chroma_operator`` as a subprocess, logging to a file.

    With ``failpoint``, ``python -m tests.controlplane.failpoints FAILPOINT`` instead: the
    same operator with that crash injected (see ``failpoints.py``)."""

    kubeconfig: Path
    log_path: Path
    namespace: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    failpoint: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "CHROMA_OPERATOR_RESYNC_SECONDS": "3",
            "CHROMA_OPERATOR_DATASET_SYNC_SECONDS": "2",
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        env.pop("KUBERNETES_SERVICE_HOST", None)
        entry = ["tests.controlplane.failpoints", self.failpoint] if self.failpoint else [
            "chroma_operator"
        ]
        args = [sys.executable, "-m", *entry, "--verbose"]
        args += ["--namespace", self.namespace] if self.namespace else ["--all-namespaces"]
        log = open(self.log_path, "ab")  # noqa: SIM115 (closed by the process's end)
        self.proc = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO)
        )
        return self

    def stop(self, kill: bool = False) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def which_kubectl() -> str | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and os.access(Path(assets) / "kubectl", os.X_OK):
        return str(Path(assets) / "kubectl")
    return shutil.which("kubectl")


@contextlib.contextmanager
def running(op: OperatorProcess) -> Iterator[OperatorProcess]:
    op.start()
    try:
        yield op
    finally:
        op.stop()


def cluster_body(name: str, namespace: str, **spec: Any) -> Body:
    """A valid ChromaCluster; keyword arguments override top-level spec fields."""
    base: Body = {
        "storage": {
            "url": "s3://chroma-test/data",
            "endpointUrl": "http://minio.storage:9000",
            "credentialsSecret": {"name": "chroma-s3"},
        },
        "database": {"secret": {"name": "chroma-pg"}},
    }
    base.update(spec)
    return {
        "apiVersion": "chroma.dev/v1alpha1",
        "kind": "ChromaCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": base,
    }


def indexjob_body(name: str, namespace: str, cluster: str, **spec: Any) -> Body:
    base: Body = {"cluster": cluster, "operation": "index", "embeddingSet": "a" * 40}
    base.update(spec)
    return {
        "apiVersion": "chroma.dev/v1alpha1",
        "kind": "IndexJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": base,
    }
